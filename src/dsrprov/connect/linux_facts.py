"""Facts of a Linux host, read over one SSH session with one command.

Reading is split from parsing: :data:`PROBE_SCRIPT` prints every section
after a marker line, :func:`parse_probe` turns that raw text into
:class:`LinuxFacts`. The parsers are pure functions, tested on recorded
output. Nothing here changes the host.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lomgr
from dsrprov.connect import guard_facts

UNIT = "dsrprov-loopback-vips.service"
SYSCTL_FILE = "/etc/sysctl.d/90-dsrprov-arp.conf"
MARK = "@@dsrprov:"

PROBE_SCRIPT = f"""export PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin" LC_ALL=C
echo {MARK}addr@@; ip -o addr show 2>&1
echo {MARK}link@@; ip -o link show 2>&1
echo {MARK}route@@; ip -o route show default 2>/dev/null; ip -o -6 route show default 2>/dev/null
echo {MARK}sysctl@@; grep -H . /proc/sys/net/ipv4/conf/*/arp_ignore /proc/sys/net/ipv4/conf/*/arp_announce 2>/dev/null
echo {MARK}listen@@; ss -Hltnu 2>&1
echo {MARK}pid1@@; cat /proc/1/comm 2>&1
echo {MARK}os@@; cat /etc/os-release 2>/dev/null
echo {MARK}unit@@; echo "enabled=$(systemctl is-enabled {UNIT} 2>/dev/null)"
echo "active=$(systemctl is-active {UNIT} 2>/dev/null)"
echo {MARK}sysctlfile@@; test -f {SYSCTL_FILE} && echo present || echo missing
echo {MARK}guard@@
{guard_facts.PROBE}echo {MARK}ssh@@; echo "$SSH_CONNECTION"
echo {MARK}hostname@@; hostname 2>/dev/null || cat /proc/sys/kernel/hostname
echo {MARK}lo@@
{lomgr.PROBE}
echo {MARK}end@@
"""


@dataclass
class Address:
    iface: str
    address: str
    prefix: int
    family: int
    label: str = ""
    scope: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"iface": self.iface, "address": f"{self.address}/{self.prefix}", "label": self.label}


@dataclass
class Listener:
    protocol: str
    address: str  # "*" for any address
    port: int

    def covers(self, vip: str, port: int, protocol: str) -> bool:
        if self.port != port or self.protocol != protocol:
            return False
        if self.address in ("*", "0.0.0.0", "::"):
            # "::" is dual-stack unless bindv6only; "0.0.0.0" covers IPv4 only.
            return self.address != "0.0.0.0" or ipaddress.ip_address(vip).version == 4
        return ipaddress.ip_address(self.address) == ipaddress.ip_address(vip)


@dataclass
class LinuxFacts:
    hostname: str = ""
    os: str = ""
    addresses: list[Address] = field(default_factory=list)
    macs: dict[str, str] = field(default_factory=dict)  # iface -> MAC
    link_up: dict[str, bool] = field(default_factory=dict)  # iface -> administratively up (flag UP)
    gateways: list[str] = field(default_factory=list)
    arp: dict[str, dict[str, int]] = field(default_factory=dict)  # iface -> {arp_ignore, arp_announce}
    listeners: list[Listener] = field(default_factory=list)
    systemd: bool = False
    unit_enabled: str = ""
    unit_active: str = ""
    sysctl_file: bool = False
    ssh_client: str = ""  # the controller's address as the host sees it
    ssh_server: str = ""  # the host's address the connection came in on
    # Who manages lo, read by the same script as the role's (module_utils/dsr_lo_manager.py).
    lo: lomgr.LoState = field(default_factory=lomgr.LoState)
    # The guard that heals the VIPs and ARP sysctls between runs (connect/guard_facts.py).
    guard: guard_facts.GuardState = field(default_factory=guard_facts.GuardState)

    @property
    def own_addresses(self) -> list[str]:
        """Addresses on interfaces other than lo (what the host "uses")."""
        return [a.address for a in self.addresses if a.iface != "lo"]

    @property
    def interfaces(self) -> list[str]:
        return sorted(i for i in self.macs if i != "lo")

    def ipv6_beside(self, address: str) -> str | None:
        """A global IPv6 address on the interface that holds ``address``: the
        real address an IPv6 service reaches the host at (LVS-DR cannot mix
        families)."""
        ifaces = {a.iface for a in self.addresses if a.address == address and a.iface != "lo"}
        for a in self.addresses:
            if a.iface in ifaces and a.family == 6 and a.scope == "global":
                return a.address
        return None

    def loopback_vips(self) -> list[str]:
        """Global host addresses (/32, /128) on lo: the VIPs."""
        out = []
        for a in self.addresses:
            if a.iface != "lo" or a.scope == "host":
                continue
            if a.prefix == (32 if a.family == 4 else 128):
                out.append(a.address)
        return out

    def effective_arp(self, iface: str) -> tuple[int, int]:
        """(arp_ignore, arp_announce) the kernel applies on iface: the max of all and iface."""
        all_ = self.arp.get("all", {})
        one = self.arp.get(iface, {})
        return (
            max(all_.get("arp_ignore", 0), one.get("arp_ignore", 0)),
            max(all_.get("arp_announce", 0), one.get("arp_announce", 0)),
        )


def split_sections(text: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    current = None
    lines: list[str] = []
    for line in text.splitlines():
        m = re.fullmatch(re.escape(MARK) + r"(\w+)@@", line.strip())
        if m:
            if current is not None:
                sections[current] = "\n".join(lines)
            current, lines = m.group(1), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        sections[current] = "\n".join(lines)
    return sections


def parse_ip_addr(text: str) -> list[Address]:
    """``ip -o addr show`` lines: ``2: eth0    inet 10.0.0.1/24 brd ... scope global eth0``."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\d+:\s+(\S+)\s+(inet6?)\s+(\S+)/(\d+)(.*)", line)
        if not m:
            continue
        iface = m.group(1).split("@")[0]
        rest = m.group(5).split("\\")[0].split()
        scope = rest[rest.index("scope") + 1] if "scope" in rest else ""
        # The label is the last word before the "\" continuation, when it is not a flag.
        label = rest[-1] if rest and rest[-1].startswith(iface + ":") else ""
        family = 6 if m.group(2) == "inet6" else 4
        out.append(Address(iface, m.group(3).split("%")[0], int(m.group(4)), family, label, scope))
    return out


def parse_ip_link(text: str) -> dict[str, str]:
    """``ip -o link show`` lines to {iface: MAC}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\d+:\s+([^:\s@]+)(?:@\S+)?:.*link/\w+\s+([0-9a-fA-F:]{17})", line)
        if m:
            out[m.group(1)] = m.group(2).lower()
    return out


def parse_link_up(text: str) -> dict[str, bool]:
    """``ip -o link show`` lines to {iface: whether its flags hold UP} (lo has no MAC, so apart)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\d+:\s+([^:\s@]+)(?:@\S+)?:\s+<([^>]*)>", line)
        if m:
            out[m.group(1)] = "UP" in m.group(2).split(",")
    return out


def parse_routes(text: str) -> list[str]:
    """Gateways of ``ip -o route show default`` (both families)."""
    return re.findall(r"\bvia\s+(\S+)", text)


def parse_arp_sysctls(text: str) -> dict[str, dict[str, int]]:
    """``grep -H . /proc/sys/net/ipv4/conf/*/arp_*`` to {iface: {key: value}}."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        m = re.match(r"/proc/sys/net/ipv4/conf/([^/]+)/(arp_\w+):(-?\d+)", line.strip())
        if m:
            out.setdefault(m.group(1), {})[m.group(2)] = int(m.group(3))
    return out


def _split_host_port(text: str) -> tuple[str, int] | None:
    m = re.fullmatch(r"\[?(.*?)\]?(?:%\S+)?:(\d+|\*)", text)
    if not m or m.group(2) == "*":
        return None
    host = m.group(1)
    host = host.split("%")[0]
    return ("*" if host in ("*", "") else host), int(m.group(2))


def parse_ss(text: str) -> list[Listener]:
    """``ss -Hltnu``: ``tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:*`` (UDP state is UNCONN)."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 6 or words[0] not in ("tcp", "udp"):
            continue
        hp = _split_host_port(words[4])
        if hp:
            out.append(Listener(words[0], hp[0], hp[1]))
    return out


def parse_os_release(text: str) -> str:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            try:
                values[key.strip()] = " ".join(shlex.split(value))
            except ValueError:
                values[key.strip()] = value.strip().strip('"')
    return values.get("PRETTY_NAME") or values.get("NAME", "")


def parse_probe(text: str) -> LinuxFacts:
    """The whole probe output to facts."""
    s = split_sections(text)
    unit = dict(line.strip().partition("=")[::2] for line in s.get("unit", "").splitlines() if "=" in line)
    ssh = s.get("ssh", "").split()
    return LinuxFacts(
        hostname=s.get("hostname", "").strip(),
        os=parse_os_release(s.get("os", "")),
        addresses=parse_ip_addr(s.get("addr", "")),
        macs=parse_ip_link(s.get("link", "")),
        link_up=parse_link_up(s.get("link", "")),
        gateways=parse_routes(s.get("route", "")),
        arp=parse_arp_sysctls(s.get("sysctl", "")),
        listeners=parse_ss(s.get("listen", "")),
        systemd=s.get("pid1", "").strip() == "systemd",
        unit_enabled=unit.get("enabled", ""),
        unit_active=unit.get("active", ""),
        sysctl_file=s.get("sysctlfile", "").strip() == "present",
        ssh_client=ssh[0] if len(ssh) >= 4 else "",
        ssh_server=ssh[2] if len(ssh) >= 4 else "",
        lo=lomgr.parse(s.get("lo", "")),
        guard=guard_facts.parse(s.get("guard", "")),
    )
