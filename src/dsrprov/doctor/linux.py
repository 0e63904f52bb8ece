"""Doctor's read of a Linux real server, and the findings it supports.

One SSH command (:func:`script`) prints the verify probe's sections plus what
doctor needs besides: rp_filter, keep_addr_on_down, the sysctl files that set
the ARP keys at boot, the routes back to the client and the
rp_filter verdict for a DR packet, and the firewall rules. :func:`parse`
turns it into :class:`DoctorFacts`; :func:`findings` judges them. Pure
functions, tested on recorded output.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lomgr
from dsrprov.connect.linux_facts import MARK, PROBE_SCRIPT, LinuxFacts, parse_probe, split_sections
from dsrprov.doctor.findings import Finding

# systemd-sysctl's order: for one file name the first directory wins; files
# are applied sorted by name, /etc/sysctl.conf last; a later setting wins.
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
ARP_KEYS = ("arp_ignore", "arp_announce")
WANT = {"arp_ignore": 1, "arp_announce": 2}


def script(client: str, iface_address: str, vips: Iterable[str]) -> str:
    """The probe: verify's sections plus doctor's, for a DR packet from CLIENT."""
    c, a = shlex.quote(client), shlex.quote(iface_address)
    dirs = " ".join(f"{d}/*.conf" for d in SYSCTL_DIRS)
    extra = f"""echo {MARK}rpfilter@@; grep -H . /proc/sys/net/ipv4/conf/*/rp_filter 2>/dev/null
echo {MARK}keepaddr@@; cat /proc/sys/net/ipv6/conf/lo/keep_addr_on_down 2>/dev/null
echo {MARK}sysctlfiles@@; grep -HE \\
  '^[[:space:]]*net[./]ipv4[./]conf[./][^.= ]+[./](arp_ignore|arp_announce|rp_filter)' {dirs} /etc/sysctl.conf \\
  2>/dev/null
echo {MARK}iface@@; ip -o addr show to {a} 2>/dev/null | awk '{{print $2}}' | head -n1
echo {MARK}routeback@@; ip route get {c} 2>&1 | head -n1
"""
    for vip in vips:
        q = shlex.quote(vip)
        extra += (
            f"echo {MARK}drroute@@; echo vip={q}; "
            f"dev=$(ip -o addr show to {a} 2>/dev/null | awk '{{print $2}}' | head -n1); "
            f'ip route get {q} from {c} iif "${{dev:-eth0}}" 2>&1 | head -n1\n'
        )
    extra += f"""echo {MARK}nft@@; nft list ruleset 2>/dev/null
echo {MARK}iptables@@; iptables-save 2>/dev/null; ip6tables-save 2>/dev/null
"""
    return PROBE_SCRIPT.replace(f"echo {MARK}end@@", extra + f"echo {MARK}end@@")


@dataclass
class SysctlSetting:
    file: str
    line: int
    key: str  # dotted, e.g. net.ipv4.conf.all.arp_ignore
    value: int


@dataclass
class DoctorFacts:
    base: LinuxFacts
    rp_filter: dict[str, int] = field(default_factory=dict)
    keep_addr_on_down: int | None = None
    boot_settings: list[SysctlSetting] = field(default_factory=list)  # in boot order
    iface: str = ""  # the interface holding the management address
    route_back: str = ""  # first line of `ip route get CLIENT`
    dr_route: dict[str, str] = field(default_factory=dict)  # vip -> first line of `ip route get VIP from C iif I`
    firewall: str = ""  # nft ruleset, else iptables-save

    def effective_rp_filter(self, iface: str) -> int:
        return max(self.rp_filter.get("all", 0), self.rp_filter.get(iface, 0))


def _parse_sysctl_lines(text: str) -> list[SysctlSetting]:
    """grep -H output (``file:line`` without numbers) in systemd-sysctl's boot order."""
    by_file: dict[str, list[tuple[str, int]]] = {}
    for raw in text.splitlines():
        path, sep, rest = raw.partition(":")
        if not sep:
            continue
        m = re.match(r"\s*([\w./-]+)\s*=\s*(-?\d+)", rest)
        if m:
            key = m.group(1).replace("/", ".")
            by_file.setdefault(path, []).append((key, int(m.group(2))))
    chosen: dict[str, str] = {}
    for path in by_file:
        p = PurePosixPath(path)
        if str(p) == "/etc/sysctl.conf":
            continue
        name = p.name
        rank = SYSCTL_DIRS.index(str(p.parent)) if str(p.parent) in SYSCTL_DIRS else len(SYSCTL_DIRS)
        old = chosen.get(name)
        if old is None or rank < SYSCTL_DIRS.index(str(PurePosixPath(old).parent)):
            chosen[name] = path
    order = [chosen[n] for n in sorted(chosen)] + (["/etc/sysctl.conf"] if "/etc/sysctl.conf" in by_file else [])
    out = []
    for path in order:
        for i, (key, value) in enumerate(by_file[path], start=1):
            out.append(SysctlSetting(path, i, key, value))
    return out


def parse(text: str) -> DoctorFacts:
    s = split_sections(text)
    rp: dict[str, int] = {}
    for line in s.get("rpfilter", "").splitlines():
        m = re.match(r"/proc/sys/net/ipv4/conf/([^/]+)/rp_filter:(-?\d+)", line.strip())
        if m:
            rp[m.group(1)] = int(m.group(2))
    keep = s.get("keepaddr", "").strip()
    dr: dict[str, str] = {}
    for block in re.split(rf"{re.escape(MARK)}drroute@@", text)[1:]:
        lines = block.strip().splitlines()
        if lines and lines[0].startswith("vip="):
            dr[lines[0][4:]] = lines[1].strip() if len(lines) > 1 and not lines[1].startswith(MARK) else ""
    return DoctorFacts(
        base=parse_probe(text),
        rp_filter=rp,
        keep_addr_on_down=int(keep) if keep.isdigit() else None,
        boot_settings=_parse_sysctl_lines(s.get("sysctlfiles", "")),
        iface=s.get("iface", "").strip(),
        route_back=s.get("routeback", "").strip(),
        dr_route=dr,
        firewall=s.get("nft", "").strip() or s.get("iptables", "").strip(),
    )


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("/")[0]) == ipaddress.ip_address(b.split("/")[0])
    except ValueError:
        return False


def _service_ports(vip: str, services: Iterable[dict[str, Any]]) -> list[tuple[int, str]]:
    return [
        (int(s["port"]), str(s.get("protocol", "tcp")).lower())
        for s in services
        if s.get("port") and _same(str(s.get("vip", "")), vip)
    ]


def firewall_evidence(ruleset: str, vip: str, port: int) -> list[str]:
    """Rules that drop or reject what a DR packet to VIP:port is (best effort, shown as evidence)."""
    out = []
    for line in ruleset.splitlines():
        low = line.strip().lower()
        if not re.search(r"\b(drop|reject)\b", low):
            continue
        mentions = str(port) in re.findall(r"\d+", low) or vip in low
        policy = "policy drop" in low and "input" in ruleset.lower()
        if mentions or policy or re.match(r"^-p\s+input\s+drop", low):
            out.append(line.strip())
    return out


def findings(
    host: str,
    facts: DoctorFacts,
    vips: list[str],
    services: list[dict[str, Any]],
    *,
    client: str,
    director_addresses: Iterable[str] = (),
) -> list[Finding]:
    """Everything wrong on this host that its own facts show."""
    out: list[Finding] = []
    base = facts.base
    on_lo = base.loopback_vips()
    # lo itself first: these explain a DR path that fails though the VIPs are there.
    if base.link_up.get("lo") is False:
        out.append(Finding("rs-lo-down", host, f"{host}: lo is down: the kernel delivers nothing to its VIPs",
                           ["ip link show lo: no UP flag (the local routes of lo's addresses are gone)"]))  # fmt: skip
    wide = {vip: a for vip in vips for a in base.addresses
            if a.iface == "lo" and _same(vip, a.address) and a.prefix != (32 if a.family == 4 else 128)}  # fmt: skip
    for vip, a in wide.items():
        out.append(Finding("rs-vip-wide-prefix", host, f"{host}: VIP {vip} is on lo as /{a.prefix}, not as a host "
                           "address", [f"lo: {a.address}/{a.prefix}: the host takes every address of that prefix as "
                                       "its own and cannot reach the others"],
                           {"vip": vip, "address": f"{a.address}/{a.prefix}"}))  # fmt: skip
    # VIPs: on lo, not elsewhere.
    for vip in vips:
        if vip not in wide and not any(_same(vip, a) for a in on_lo):
            fam = "IPv6" if ":" in vip else "IPv4"
            out.append(Finding("rs-vip-missing", host, f"{host}: {fam} VIP {vip} is not on lo",
                               [f"lo holds: {', '.join(on_lo) or 'no VIP'}"], {"vip": vip}))  # fmt: skip
        for a in base.addresses:
            if a.iface != "lo" and _same(vip, a.address):
                out.append(Finding("rs-vip-on-interface", host, f"{host}: VIP {vip} is on {a.iface}",
                                   [f"{a.iface}: {a.address}/{a.prefix}"],
                                   {"vip": f"{a.address}/{a.prefix}", "iface": a.iface}))  # fmt: skip
    # ARP: the effective values, and what wins at boot.
    if any(":" not in v for v in vips):
        weak = []
        for iface in base.interfaces:
            ignore, announce = base.effective_arp(iface)
            if ignore < 1 or announce < 2:
                al, one = base.arp.get("all", {}), base.arp.get(iface, {})
                weak.append(f"{iface}: arp_ignore={ignore} (all {al.get('arp_ignore')}, {iface} "
                            f"{one.get('arp_ignore')}), arp_announce={announce} (all {al.get('arp_announce')}, "
                            f"{iface} {one.get('arp_announce')})")  # fmt: skip
        if weak:
            out.append(Finding("rs-arp-weak", host, f"{host}: ARP settings let it answer for its VIPs",
                               weak + _boot_winners(facts), {"iface": base.interfaces[0] if base.interfaces
                                                              else "eth0"}))  # fmt: skip
        else:
            late = _weak_at_boot(facts)
            if late:
                out.append(Finding("rs-arp-boot-override", host,
                                   f"{host}: at boot, {late[0].file} sets {late[0].key} = {late[0].value}",
                                   [f"{s.file}:{s.line}: {s.key} = {s.value}" for s in late]))  # fmt: skip
    # The service on the VIP.
    for vip in vips:
        for port, proto in _service_ports(vip, services):
            if any(lst.covers(vip, port, proto) for lst in base.listeners):
                continue
            on_port = [f"{lst.address}:{lst.port}/{lst.protocol}" for lst in base.listeners
                       if lst.port == port and lst.protocol == proto]  # fmt: skip
            where = f"[{vip}]:{port}" if ":" in vip else f"{vip}:{port}"
            out.append(Finding("rs-service-not-on-vip", host, f"{host}: nothing listens on {where}/{proto}",
                               [f"listening on port {port}: {', '.join(on_port) or 'nothing'}"],
                               {"vip": vip, "port": str(port)}))  # fmt: skip
    # The return path. A failed `ip route get VIP from CLIENT iif IFACE` is
    # rp_filter's doing only when rp_filter is on for that interface, the route
    # back makes it drop the packet, and the kernel's answer is the one a failed
    # source validation gives. "No route to host" is what a host that does not
    # forward says of an address it does not hold: the missing VIP, found above,
    # explains it.
    iface = facts.iface or "eth0"
    for vip, verdict in facts.dr_route.items():
        if ":" in vip or not verdict.startswith("RTNETLINK"):
            continue
        evidence = f"ip route get {vip} from {client} iif {iface}: {verdict}"
        if rp_filter_cause(facts, iface, verdict):
            out.append(Finding("rs-rp-filter-drops", host,
                               f"{host}: rp_filter drops a DR packet from {client} to {vip} on {iface}",
                               [evidence,
                                f"rp_filter: all={facts.rp_filter.get('all')}, {iface}={facts.rp_filter.get(iface)}",
                                f"route back to {client}: {facts.route_back}"],
                               {"iface": iface, "vip": vip}))  # fmt: skip
            continue
        cause = next((f for f in out if f.id in ("rs-lo-down", "rs-vip-wide-prefix")
                      or (f.id == "rs-vip-missing" and f.values.get("vip") == vip)), None)  # fmt: skip
        if cause is not None:
            cause.evidence.append(evidence)
            continue
        out.append(Finding("rs-dr-path-fails", host, f"{host}: the kernel would not deliver a DR packet to {vip}",
                           [evidence, f"rp_filter: all={facts.rp_filter.get('all')}, {iface}="
                            f"{facts.rp_filter.get(iface)} (not the cause)"], {"vip": vip}))  # fmt: skip
    m = re.search(r"\bvia\s+(\S+)", facts.route_back)
    if m and any(_same(m.group(1), d) for d in director_addresses):
        out.append(Finding("rs-return-via-director", host,
                           f"{host}: replies to {client} go through the director {m.group(1)}",
                           [f"ip route get {client}: {facts.route_back}"]))  # fmt: skip
    # Who manages lo, judged as the role judges it (module_utils/dsr_lo_manager):
    # a manager is a finding only where it could remove these VIPs, so a host
    # the role made safe (VIPs in the profile, the hook, the drop-in) has none.
    # The lo bounce risk is rs-ipv6-keep-addr-off's.
    lo = lomgr.assess(facts.base.lo, list(vips))
    reasons = lo.problems + [r for r in lo.risks if "keep_addr_on_down" not in r]
    if reasons:
        out.append(Finding("rs-lo-manager", host, f"{host}: {lo.detail} could remove the VIPs", reasons))
    if any(":" in v for v in vips) and facts.keep_addr_on_down == 0:
        out.append(
            Finding(
                "rs-ipv6-keep-addr-off",
                host,
                f"{host}: an IPv6 VIP and net.ipv6.conf.lo.keep_addr_on_down=0",
                ["ip link set lo down; ip link set lo up would drop the IPv6 VIPs"],
            )
        )
    return out


def unreachable_hint(reason: str) -> list[str]:
    """What a Linux real server that does not answer at all points to. A
    timeout (no refusal) fits a host that cannot reply: with a VIP put on lo
    with a wide prefix that covers the controller's address, the host takes
    the replies for itself (doctor's own causes, which it cannot read now)."""
    if "no answer" not in reason and "timed out" not in reason:
        return []
    return [
        "what this points to: nothing answers, not even a refusal: the host is down, a firewall drops SSH, or the "
        "host cannot reply: a VIP on lo with a wide prefix covering the controller's address keeps the replies on "
        "the host (rs-vip-wide-prefix); from its console: ip -o addr show dev lo; ip link show lo"
    ]


def rp_filter_cause(facts: DoctorFacts, iface: str, verdict: str) -> bool:
    """Whether rp_filter explains a failed route lookup for a DR packet on IFACE.

    The kernel takes the larger of ``all`` and the interface. Strict (1) drops
    a packet whose route back leaves by another interface, loose (2) one with
    no route back at all. A failed source validation answers EINVAL ("Invalid
    argument": ip_route_input_slow's martian_source, for a local address such
    as a VIP on lo) or EXDEV ("Invalid cross-device link", for a packet that
    would be forwarded). Any other error, or rp_filter off, has another cause."""
    if facts.effective_rp_filter(iface) < 1 or not any(
        e in verdict.lower() for e in ("invalid argument", "invalid cross-device link")
    ):
        return False
    back = facts.route_back
    if facts.effective_rp_filter(iface) == 1:
        m = re.search(r"\bdev\s+(\S+)", back)
        return m is None or m.group(1) != iface
    return back.startswith("RTNETLINK") or "unreachable" in back


def _weak_at_boot(facts: DoctorFacts) -> list[SysctlSetting]:
    """Settings that, applied in boot order, leave a key weaker than DSR needs."""
    final: dict[str, SysctlSetting] = {}
    for s in facts.boot_settings:
        final[s.key] = s
    return [s for key, s in final.items() if key.rsplit(".", 1)[-1] in WANT and s.value < WANT[key.rsplit(".", 1)[-1]]]


def _boot_winners(facts: DoctorFacts) -> list[str]:
    final: dict[str, SysctlSetting] = {}
    for s in facts.boot_settings:
        if s.key.rsplit(".", 1)[-1] in ARP_KEYS:
            final[s.key] = s
    return [f"at boot: {s.key} = {s.value} from {s.file}" for s in final.values()]
