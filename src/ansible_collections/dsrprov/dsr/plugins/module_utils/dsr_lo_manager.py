"""Who manages a Linux host's loopback, and how DSR VIPs on it survive that manager.

Shared, unchanged, by the module ``dsr_realserver_linux_apply`` (with
``dsr_lo_persist.py``, on the managed host) and by the CLI's probe
(``dsrprov status``/``verify``, on the controller): standard library only, no
Ansible import, Python 3.8 or newer (Debian 11 has 3.9).

One read, :data:`PROBE`, a POSIX shell script that prints sections; one parser,
:func:`parse`; one judgement, :func:`assess`. Both sides run the same script,
so the role and the CLI can never disagree about a host.

What each manager does to addresses on lo, checked by hand in the lab
(README, "Whatever manages the network"):

- NetworkManager (1.42 Debian 12, 1.52 Debian 13) with udev: lo is
  "connected (externally)" through a generated in-memory connection. Taking
  that connection down (``nmcli con down lo``) deletes every address on lo
  but 127.0.0.1 and ::1. Once a stored loopback profile exists, ``nmcli con
  up``/``down`` of it and ``nmcli device reapply lo`` delete every address that
  is not in the profile; NetworkManager re-adds the ones that are. Addresses
  of a family whose method is ``ignore`` are left alone.
- systemd-networkd with a ``.network`` matching lo: a reconfiguration of lo
  (257: ``networkctl reconfigure lo``, a restart, a reload after a change; 247:
  a reload after a change) deletes every address the configuration does not
  list. networkd before 251 deletes 127.0.0.1 and ::1 as well (fixed by
  systemd commit b69bfa4, "network: do not remove localhost address").
  Drop-ins in /etc/systemd/network/NAME.network.d/ extend the file NAME
  wherever it lives.
- netplan (0.106 Debian 12 / Ubuntu 22.04, 1.1 Debian 13), networkd
  renderer: it renders ``/etc/netplan/*.yaml`` into
  ``/run/systemd/network/10-netplan-*`` at every boot and ``netplan
  generate``/``apply``, so a drop-in or profile next to those files is the
  wrong place: the VIPs go into a netplan file of dsrprov's own (address
  lists of several files are concatenated). Labels work
  (``addresses: [VIP/32: {label: "lo:1"}]``). Once lo leaves netplan's
  configuration, networkd 252 and 257 delete every address on lo, 127.0.0.1
  and ::1 included (canonical/netplan PR 408). With the NetworkManager
  renderer (1.1, NetworkManager 1.52) netplan renders lo as an ethernet
  profile NetworkManager cannot bring up on lo, and ``netplan apply`` leaves
  lo without any address: refused.
- ifupdown's ``inet loopback`` method only sets lo down and up; the kernel
  then drops lo's IPv6 addresses unless ``net.ipv6.conf.lo.keep_addr_on_down``
  is set, and keeps the IPv4 ones.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_linux_names import check_label, sh_quote
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_vips import parse_vip

# What dsrprov installs beside the manager's own configuration.
NM_HOOK = "/etc/NetworkManager/dispatcher.d/90-dsrprov-loopback-vips"
NETWORKD_DROPIN = "90-dsrprov-loopback-vips.conf"
NETWORKD_DIRS = (
    "/etc/systemd/network",
    "/run/systemd/network",
    "/usr/local/lib/systemd/network",
    "/usr/lib/systemd/network",
    "/lib/systemd/network",
)
NETPLAN_FILE = "/etc/netplan/90-dsrprov-loopback-vips.yaml"
NETPLAN_MARK = "# Managed by dsrprov"
# networkd releases that keep 127.0.0.1 and ::1 when they reconfigure lo.
NETWORKD_KEEPS_LOCALHOST = 251
MARK = "@@lo:"

PROBE = r"""export PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin" LC_ALL=C
echo '@@lo:keep@@'
cat /proc/sys/net/ipv6/conf/all/keep_addr_on_down /proc/sys/net/ipv6/conf/lo/keep_addr_on_down 2>/dev/null
# One systemctl call for both managers: each is a round trip to PID 1, and
# this probe runs on every host at every run. One state a line, in order.
set -- $(systemctl is-active NetworkManager.service systemd-networkd.service 2>/dev/null)
nm_state=${1:-} networkd_state=${2:-}
echo '@@lo:nm@@'
echo "$nm_state"
if [ "$nm_state" = active ]; then
  echo '@@lo:nm-nmcli@@'
  command -v nmcli 2>/dev/null
  echo '@@lo:nm-version@@'
  nmcli -g VERSION general 2>/dev/null
  echo '@@lo:nm-dispatcher@@'
  systemctl is-enabled NetworkManager-dispatcher.service 2>/dev/null
  echo '@@lo:nm-device@@'
  nmcli -g GENERAL.STATE device show lo 2>/dev/null
  nmcli -g UUID,TYPE,ACTIVE,DEVICE,READONLY,FILENAME connection show 2>/dev/null |
  while IFS=: read -r uuid type active device readonly file; do
    [ "$type" = loopback ] || continue
    echo '@@lo:nm-profile@@'
    echo "filename:$file"
    echo "active:$active"
    echo "device:$device"
    echo "readonly:$readonly"
    if grep -qs '^nm-generated=true' "$file"; then echo generated:yes; else echo generated:no; fi
    echo "connection.uuid:$uuid"
    nmcli -t -f connection.id,connection.autoconnect,ipv4.method,ipv4.addresses,ipv6.method,ipv6.addresses \
      connection show uuid "$uuid" 2>&1
  done
fi
echo '@@lo:nm-hook@@'
cat /etc/NetworkManager/dispatcher.d/90-dsrprov-loopback-vips 2>/dev/null
echo '@@lo:networkd@@'
echo "$networkd_state"
if [ "$networkd_state" = active ]; then
  echo '@@lo:networkd-version@@'
  networkctl --version 2>/dev/null | head -n 1
  file=$(networkctl status lo --no-pager 2>/dev/null | sed -n 's/^ *Network File: *//p' | head -n 1)
  echo '@@lo:networkd-file@@'
  echo "$file"
  if [ -f "$file" ]; then
    echo '@@lo:networkd-config@@'
    cat "$file"
    for dir in /etc/systemd/network /run/systemd/network /usr/local/lib/systemd/network \
        /usr/lib/systemd/network /lib/systemd/network; do
      for dropin in "$dir/${file##*/}.d/"*.conf; do
        [ -f "$dropin" ] || continue
        echo "@@lo:networkd-dropin@@"
        echo "$dropin"
        cat "$dropin"
      done
    done
  fi
fi
echo '@@lo:netplan@@'
if command -v netplan >/dev/null 2>&1; then
  for f in /lib/netplan/*.yaml /etc/netplan/*.yaml /run/netplan/*.yaml; do [ -f "$f" ] && echo "$f"; done
fi
if [ -n "$(ls /lib/netplan/*.yaml /etc/netplan/*.yaml /run/netplan/*.yaml 2>/dev/null)" ] &&
    command -v netplan >/dev/null 2>&1; then
  echo '@@lo:netplan-version@@'
  dpkg-query -W -f '${Version}' netplan.io 2>/dev/null
  echo
  echo '@@lo:netplan-renderer@@'
  netplan get renderer 2>&1
  echo '@@lo:netplan-lo@@'
  netplan get ethernets.lo 2>&1
  echo '@@lo:netplan-generated@@'
  ls -d /run/systemd/network/10-netplan-* /run/NetworkManager/system-connections/netplan-* 2>/dev/null
  echo '@@lo:netplan-ours@@'
  cat /etc/netplan/90-dsrprov-loopback-vips.yaml 2>/dev/null
fi
echo '@@lo:ifupdown@@'
if command -v ifquery >/dev/null 2>&1 && ifquery lo >/dev/null 2>&1; then echo lo; fi
echo '@@lo:end@@'
"""


@dataclass
class NmProfile:
    uuid: str = ""
    name: str = ""
    filename: str = ""
    generated: bool = False
    active: bool = False
    device: str = ""
    autoconnect: bool = True
    readonly: bool = False
    error: str = ""  # what nmcli said when it could not show the profile
    methods: dict[int, str] = field(default_factory=dict)  # family -> method
    addresses: dict[int, list[str]] = field(default_factory=dict)  # family -> ["a/len", ...]

    @property
    def stored(self) -> bool:
        """A profile kept on disk: not NetworkManager's generated stand-in for an
        externally configured lo, and not an in-memory one under /run."""
        return not self.generated and bool(self.filename) and not self.filename.startswith("/run/")

    def holds(self, vip: str) -> bool:
        addr = ipaddress.ip_address(vip)
        return any(_same_host(a, addr) for a in self.addresses.get(addr.version, []))

    def manages(self, family: int) -> bool:
        """NetworkManager leaves a family with method ``ignore`` alone."""
        return self.methods.get(family, "auto") != "ignore"

    def label(self) -> str:
        return f"NetworkManager profile {self.name!r} ({self.filename or 'in memory'})"


@dataclass
class LoState:
    keep_all: int | None = None
    keep_lo: int | None = None
    nm_active: bool = False
    nm_nmcli: bool = False
    nm_version: str = ""
    nm_dispatcher: str = ""
    nm_lo_state: str = ""
    nm_profiles: list[NmProfile] = field(default_factory=list)
    nm_hook: str = ""
    networkd_active: bool = False
    networkd_version: int | None = None
    networkd_file: str = ""
    networkd_config: str = ""
    networkd_dropins: list[tuple[str, str]] = field(default_factory=list)
    ifupdown_lo: bool = False
    netplan_files: list[str] = field(default_factory=list)
    netplan_version: str = ""
    netplan_renderer: str = ""  # the global one ("null": unset)
    netplan_lo: str = ""  # `netplan get ethernets.lo`: YAML, "null", or netplan's error
    netplan_generated: list[str] = field(default_factory=list)
    netplan_ours: str = ""  # NETPLAN_FILE as it is

    @property
    def netplan_owns(self) -> bool:
        """netplan installed and configured: it renders the network at every boot."""
        return bool(self.netplan_files)

    @property
    def netplan_error(self) -> str:
        """netplan's own complaint about its configuration (it exits 0 on some)."""
        for line in self.netplan_lo.splitlines():
            if re.search(r"Command failed|Error|Invalid|[Pp]ermission denied", line):
                return line.strip()
        return ""

    @property
    def netplan_lo_addresses(self) -> list[str]:
        """Addresses netplan's configuration (every file, dsrprov's too) gives lo."""
        return re.findall(r"""^\s*-\s*["']?([0-9A-Fa-f:.]+/\d+)["']?:?\s*$""", self.netplan_lo, re.MULTILINE)

    @property
    def netplan_lo_renderer(self) -> str:
        """Who netplan renders lo for: lo's own renderer, else the global one."""
        m = re.search(r"^renderer:\s*(\S+)", self.netplan_lo, re.MULTILINE)
        value = m.group(1) if m else self.netplan_renderer.strip()
        return "NetworkManager" if value.strip("\"'") == "NetworkManager" else "networkd"

    def netplan_holds(self, vip: str) -> bool:
        addr = ipaddress.ip_address(vip)
        return any(_same_host(a, addr) for a in self.netplan_lo_addresses)

    def netplan_generated_for(self, path: str) -> bool:
        """A file netplan renders (so changes there do not last)."""
        base = path.rsplit("/", 1)[-1]
        return self.netplan_owns and (
            (path.startswith("/run/systemd/network/") and base.startswith("10-netplan-"))
            or (path.startswith("/run/NetworkManager/system-connections/") and base.startswith("netplan-"))
        )

    @property
    def keep_addr_on_down(self) -> bool:
        """The kernel takes ``all`` when it is non-zero, else lo's own value."""
        value = self.keep_all if self.keep_all else self.keep_lo
        return bool(value and value > 0)

    @property
    def nm_manages_lo(self) -> bool:
        return self.nm_active and bool(self.nm_lo_state) and "unmanaged" not in self.nm_lo_state

    @property
    def nm_stored_profiles(self) -> list[NmProfile]:
        return [p for p in self.nm_profiles if p.stored]

    @property
    def networkd_manages_lo(self) -> bool:
        return self.networkd_active and self.networkd_file not in ("", "n/a")

    def networkd_addresses(self) -> list[str]:
        """Address= values of lo's .network and its drop-ins (first of each drop-in name)."""
        texts = [self.networkd_config] + [text for _path, text in self.networkd_dropins]
        out = []
        for text in texts:
            for key, value in _ini_items(text):
                if key == "Address":
                    out.extend(value.split())
        return out

    def networkd_holds(self, vip: str) -> bool:
        addr = ipaddress.ip_address(vip)
        return any(_same_host(a, addr) for a in self.networkd_addresses())


def _same_host(text: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_interface(text.strip()).ip == addr
    except ValueError:
        return False


def _ini_items(text: str) -> list[tuple[str, str]]:
    """key=value pairs of a systemd-style file, sections ignored."""
    items = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        items.append((key.strip(), value.strip()))
    return items


def _ini_section(text: str, section: str) -> list[tuple[str, str]]:
    items, current = [], ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and line and line[0] not in "#;" and "=" in line:
            key, value = line.split("=", 1)
            items.append((key.strip(), value.strip()))
    return items


def split_sections(text: str) -> dict[str, list[str]]:
    """Sections of the probe's output; a repeated section keeps each block."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        m = re.fullmatch(re.escape(MARK) + r"([\w-]+)@@", line.strip())
        if m:
            if current is not None:
                sections.setdefault(current, []).append("\n".join(lines))
            current, lines = m.group(1), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        sections.setdefault(current, []).append("\n".join(lines))
    return sections


def _first(sections: dict[str, list[str]], name: str) -> str:
    blocks = sections.get(name)
    return blocks[0].strip() if blocks else ""


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_nm_profile(block: str) -> NmProfile:
    """One ``@@lo:nm-profile@@`` block: our ``key:value`` lines, then
    ``nmcli -t -f ... connection show`` (``ipv4.addresses:a/32, b/32``)."""
    profile = NmProfile()
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        if key == "filename":
            profile.filename = value
        elif key == "active":
            profile.active = value == "yes"
        elif key == "device":
            profile.device = value
        elif key == "generated":
            profile.generated = value == "yes"
        elif key == "connection.uuid":
            profile.uuid = value
        elif key == "connection.id":
            profile.name = value
        elif key == "connection.autoconnect":
            profile.autoconnect = value == "yes"
        elif key == "readonly":
            profile.readonly = value == "yes"
        elif key == "Error":
            profile.error = line
        elif key in ("ipv4.method", "ipv6.method"):
            profile.methods[4 if key.startswith("ipv4") else 6] = value
        elif key in ("ipv4.addresses", "ipv6.addresses"):
            family = 4 if key.startswith("ipv4") else 6
            profile.addresses[family] = [a.strip() for a in value.split(",") if a.strip() and a.strip() != "--"]
    return profile


def parse_networkd_version(text: str) -> int | None:
    m = re.match(r"systemd (\d+)", text.strip())
    return int(m.group(1)) if m else None


def parse(text: str) -> LoState:
    """The probe's output to a :class:`LoState`."""
    s = split_sections(text)
    state = LoState()
    keep = [_int(v) for v in _first(s, "keep").split()]
    if len(keep) == 2:
        state.keep_all, state.keep_lo = keep
    state.nm_active = _first(s, "nm") == "active"
    state.nm_nmcli = bool(_first(s, "nm-nmcli"))
    state.nm_version = _first(s, "nm-version")
    state.nm_dispatcher = _first(s, "nm-dispatcher")
    # "100 (connected (externally))" -> "connected (externally)"
    lo_state = _first(s, "nm-device")
    m = re.match(r"\d+ \((.*)\)$", lo_state)
    state.nm_lo_state = m.group(1) if m else lo_state
    state.nm_profiles = [parse_nm_profile(block) for block in s.get("nm-profile", [])]
    state.nm_hook = "\n".join(s.get("nm-hook", [])).strip()
    state.networkd_active = _first(s, "networkd") == "active"
    state.networkd_version = parse_networkd_version(_first(s, "networkd-version"))
    state.networkd_file = _first(s, "networkd-file")
    state.networkd_config = "\n".join(s.get("networkd-config", []))
    seen = set()
    for block in s.get("networkd-dropin", []):
        path, _sep, body = block.strip("\n").partition("\n")
        name = path.rsplit("/", 1)[-1]
        if name in seen:  # /etc shadows /run shadows /usr/lib, as networkd reads them
            continue
        seen.add(name)
        state.networkd_dropins.append((path, body))
    state.ifupdown_lo = _first(s, "ifupdown") == "lo"
    state.netplan_files = _first(s, "netplan").split()
    state.netplan_version = _first(s, "netplan-version")
    state.netplan_renderer = _first(s, "netplan-renderer")
    state.netplan_lo = _first(s, "netplan-lo")
    state.netplan_generated = _first(s, "netplan-generated").split()
    state.netplan_ours = "\n".join(s.get("netplan-ours", [])).strip("\n")
    return state


def _match_is_lo_only(config: str) -> bool:
    """True when a .network's [Match] can only ever match lo: a Name= of
    exactly "lo", or Type=loopback. Anything broader (Name=*, Name=lo eth*, no
    Match at all) would carry the VIPs onto other links through a drop-in."""
    match = _ini_section(config, "Match")
    for key, value in match:
        if key == "Type" and value.split() == ["loopback"]:
            return True
    names = [v for key, value in match if key == "Name" for v in value.split()]
    return bool(names) and all(n == "lo" for n in names)


@dataclass
class Assessment:
    manager: str  # "NetworkManager", "systemd-networkd", "ifupdown" or "none"
    detail: str  # one line for people
    problems: list[str] = field(default_factory=list)  # why the VIPs cannot be made safe
    risks: list[str] = field(default_factory=list)  # what could remove these VIPs now


def _vip_list(vips: list[str]) -> str:
    return ", ".join(vips)


def _assess_netplan(
    state: LoState, vips: list[str], managers: list[tuple[str, str]], problems: list[str], risks: list[str]
) -> None:
    """netplan owns the network: the VIPs go into a netplan file of dsrprov's."""
    in_netplan = state.netplan_lo not in ("", "null") and not state.netplan_error
    renderer = state.netplan_lo_renderer
    detail = "netplan {} ({} renderer), lo {} its configuration".format(
        state.netplan_version or "?", renderer, "in" if in_netplan else "not in"
    )
    managers.append(("netplan", detail))
    if state.netplan_error:
        problems.append(
            f"netplan cannot read its configuration ({state.netplan_error}): fix it first (netplan generate says where)"
        )
    if state.netplan_ours and NETPLAN_MARK not in state.netplan_ours:
        problems.append(f"{NETPLAN_FILE} exists and is not dsrprov's: move it away, dsrprov keeps the VIPs there")
    if renderer == "NetworkManager":
        # Measured in the lab (kind debian13-netplan-nm, docs/linux.md): netplan
        # 1.1 renders lo for NetworkManager 1.52 as an ethernet profile, which
        # NetworkManager cannot activate on lo ("No suitable device"), and
        # `netplan apply` then leaves lo unmanaged and without any address,
        # 127.0.0.1 and ::1 included. A VIP in a netplan file would never reach lo.
        problems.append(
            "netplan renders lo for NetworkManager here: dsrprov keeps VIPs in netplan with the networkd renderer "
            "only (netplan renders lo for NetworkManager as an ethernet profile that NetworkManager cannot bring "
            "up on lo, and netplan apply then leaves lo without any address); give lo `renderer: networkd` "
            "(ethernets: lo: renderer: networkd, systemd-networkd running)"
        )
    missing = [v for v in vips if not state.netplan_holds(v)]
    if missing and in_netplan and renderer == "NetworkManager":
        risks.append(f"netplan apply removes {_vip_list(missing)}: it leaves lo without any address")
    elif missing and in_netplan:
        risks.append(
            f"netplan apply, networkctl reload or reconfigure lo removes {_vip_list(missing)}: lo is in netplan's "
            "configuration and they are not"
        )
    elif missing:
        risks.append(
            f"once lo is in netplan's configuration (an admin's or cloud-init's file, then netplan apply), "
            f"{_vip_list(missing)} are removed: they are not in it"
        )


def assess(state: LoState, vips: list[str], *, hook_vips: list[str] | None = None) -> Assessment:
    """Who manages lo, what would stop dsrprov from keeping ``vips`` there, and
    what could remove them as the host stands now.

    ``hook_vips``: the VIPs dsrprov's NetworkManager hook puts back (read from
    the hook when None)."""
    vips = [str(ipaddress.ip_address(v.split("/", 1)[0])) for v in vips]
    v4 = [v for v in vips if ipaddress.ip_address(v).version == 4]
    v6 = [v for v in vips if ipaddress.ip_address(v).version == 6]
    problems: list[str] = []
    risks: list[str] = []
    managers: list[tuple[str, str]] = []

    if state.netplan_owns:
        _assess_netplan(state, vips, managers, problems, risks)

    if state.nm_active:
        stored = state.nm_stored_profiles
        if stored:
            detail = "NetworkManager {}, loopback profile {}".format(
                state.nm_version or "?",
                ", ".join(f"{p.name!r} ({p.filename})" for p in stored),
            )
        else:
            detail = "NetworkManager {}, no loopback profile (lo {})".format(
                state.nm_version or "?",
                state.nm_lo_state or "?",
            )
        if state.nm_manages_lo or stored:
            managers.append(("NetworkManager", detail))
        if not state.nm_nmcli:
            problems.append(
                "NetworkManager runs but nmcli is missing: dsrprov cannot read or change its loopback profile"
            )
        for p in state.nm_profiles:
            if p.stored or p.generated or state.netplan_generated_for(p.filename):
                continue
            problems.append(
                f"{p.label()} lives in /run: another tool (netplan, an initrd) generates it again at boot, so "
                "VIPs added there would not last; add the VIPs to that tool's configuration for lo, or remove "
                "the profile"
            )
        for p in stored:
            if p.error:
                problems.append(f"cannot read {p.label()}: {p.error}")
            if p.readonly:
                problems.append(
                    f"{p.label()} is read-only (another settings plugin owns it): dsrprov cannot add the VIPs"
                )
            for family, fam_vips in ((4, v4), (6, v6)):
                if fam_vips and p.methods.get(family) == "disabled":
                    problems.append(
                        f"{p.label()} has ipv{family}.method=disabled: NetworkManager removes every IPv{family} "
                        f"address from lo and cannot hold the VIPs {_vip_list(fam_vips)}"
                    )
            missing = [v for v in vips if p.manages(ipaddress.ip_address(v).version) and not p.holds(v)]
            if missing:
                risks.append(
                    f"nmcli con up/down of {p.label()} or nmcli device reapply lo removes {_vip_list(missing)} "
                    "(not in the profile)"
                )
        if state.nm_manages_lo and state.nm_dispatcher == "masked":
            problems.append(
                "NetworkManager-dispatcher.service is masked: after `nmcli con down` of lo's connection nothing "
                "could put the VIPs back; unmask it"
            )
        if state.nm_manages_lo:
            guarded = hook_vips if hook_vips is not None else hook_addresses(state.nm_hook)
            unguarded = [v for v in vips if v not in guarded]
            if unguarded:
                risks.append(
                    f"nmcli con down of lo's connection removes {_vip_list(unguarded)} and nothing puts them back "
                    f"(no dsrprov hook in {NM_HOOK})"
                )

    if state.networkd_manages_lo and not state.netplan_generated_for(state.networkd_file):
        path = state.networkd_file
        detail = f"systemd-networkd {state.networkd_version or '?'}, {path} matches lo"
        managers.append(("systemd-networkd", detail))
        if not _match_is_lo_only(state.networkd_config):
            problems.append(
                f"{path} matches lo and other links too ([Match] is not Name=lo or Type=loopback): VIPs added to it "
                "would go onto those links as well; give lo a .network of its own"
            )
        if state.networkd_version is not None and state.networkd_version < NETWORKD_KEEPS_LOCALHOST:
            addresses = state.networkd_addresses()
            lacking = [a for a in ("127.0.0.1/8", "::1/128") if a not in addresses]
            if lacking:
                lacking_text = " and ".join(lacking)
                fix = " and ".join("Address=" + a for a in lacking)
                problems.append(
                    f"systemd-networkd {state.networkd_version} deletes every lo address that {path} does not "
                    f"list, {lacking_text} included, when it reconfigures lo (dsrprov's reload would do that): "
                    f"add {fix} to it first"
                )
        missing = [v for v in vips if not state.networkd_holds(v)]
        if missing:
            # What the lab saw: 257 drops unlisted addresses on every
            # reconfiguration of lo, 247 only on a reload after a change.
            when = (
                "a reload after a change to its configuration"
                if state.networkd_version is not None and state.networkd_version < NETWORKD_KEEPS_LOCALHOST
                else "networkctl reconfigure lo, a restart, a reload after a change"
            )
            risks.append(
                f"systemd-networkd removes {_vip_list(missing)} when it reconfigures lo ({when}): not in {path}"
            )

    if state.ifupdown_lo:
        managers.append(("ifupdown", "ifupdown, lo in /etc/network/interfaces"))

    # A VIP the manager itself keeps on lo with a wide prefix: the manager would
    # put the wide one back after dsrprov narrowed it, and it is the admin's.
    kept = []
    if state.nm_active:
        kept = [(p.label(), a) for p in state.nm_stored_profiles for f in (4, 6) for a in p.addresses.get(f, [])]
    if state.networkd_manages_lo and not state.netplan_generated_for(state.networkd_file):
        kept += [(state.networkd_file, a) for a in state.networkd_addresses()]
    if state.netplan_owns:
        kept += [("netplan's configuration of lo", a) for a in state.netplan_lo_addresses]
    for where, text in kept:
        try:
            iface = ipaddress.ip_interface(text.strip())
        except ValueError:
            continue
        if str(iface.ip) in vips and iface.network.prefixlen != iface.ip.max_prefixlen:
            problems.append(
                f"{where} puts the VIP {iface.ip} on lo as {text.strip()}, which makes all of {iface.network} local "
                f"to this host: make it {iface.ip}/{iface.ip.max_prefixlen} there (or remove it), then run again"
            )

    if state.nm_active and state.nm_stored_profiles and state.networkd_manages_lo:
        problems.append(
            f"both NetworkManager and systemd-networkd manage lo ({managers[0][1]}; {managers[1][1]}): each "
            "would remove the other's addresses; leave lo to one of them"
        )
    if v6 and not state.keep_addr_on_down and state.keep_lo is not None:
        risks.append(
            f"a down/up of lo (ip link set lo down, ifdown lo) removes {_vip_list(v6)}: "
            "net.ipv6.conf.lo.keep_addr_on_down is not set"
        )
    if managers:
        name, detail = managers[0]
        if len(managers) > 1:
            detail += "; also " + "; ".join(d for _kind, d in managers[1:])
    else:
        name, detail = "none", "nothing manages lo"
    return Assessment(name, detail, problems, risks)


_HOOK_ADDR = re.compile(r"\baddr add (\S+)/\d+ dev lo\b")


def hook_addresses(text: str) -> list[str]:
    """The VIPs a dsrprov NetworkManager hook puts back."""
    return [str(ipaddress.ip_address(m.group(1))) for m in _HOOK_ADDR.finditer(text)]


def host_prefix(vip: str) -> str:
    addr = ipaddress.ip_address(vip)
    return f"{addr}/{addr.max_prefixlen}"


def render_nm_hook(vips: list[str], ip_command: str, label: str) -> str:
    """The dispatcher hook. Every value is checked again (ValueError) and
    shell-quoted: the hook runs as root."""
    check_label(label)
    lines = [
        "#!/bin/sh",
        "# Managed by dsrprov (role dsr_realserver_linux); local changes are overwritten.",
        "# NetworkManager runs this after every device event. When lo's connection goes",
        "# down or up or is reapplied (nmcli con down/up, nmcli device reapply lo),",
        "# NetworkManager may have deleted addresses it does not know: put back each",
        "# DSR VIP that is missing. The ARP sysctls stay set, so lo never answers ARP.",
        '[ "$1" = lo ] || exit 0',
        'case "$2" in up|down|reapply) ;; *) exit 0 ;; esac',
    ]
    for vip in vips:
        addr = parse_vip(vip)
        extra = f"label {sh_quote(label)}" if addr.version == 4 else "nodad"
        # "add" fails harmlessly when the VIP is still there.
        lines.append(
            f"{sh_quote(ip_command)} -{addr.version} addr add {sh_quote(host_prefix(str(addr)))} dev lo {extra} "
            "2>/dev/null"
        )
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def render_networkd_dropin(vips: list[str], label: str, network_file: str) -> str:
    """The drop-in. A value in a networkd file runs to the end of its line and
    knows no quoting: the label and VIPs are checked again (ValueError), so
    none can hold a newline or anything else but its own characters."""
    check_label(label)
    lines = [
        "# Managed by dsrprov (role dsr_realserver_linux); local changes are overwritten.",
        "# The DSR VIPs on lo, so that systemd-networkd keeps them whenever it",
        f"# reconfigures lo ({network_file.replace(chr(10), ' ')} matches lo).",
    ]
    for vip in vips:
        addr = parse_vip(vip)
        lines += ["", "[Address]", f"Address={host_prefix(str(addr))}"]
        if addr.version == 4:
            lines.append(f"Label={label}")
        else:
            # The VIP is shared with the director by design: no DAD.
            lines.append("DuplicateAddressDetection=none")
    return "\n".join(lines) + "\n"


def networkd_dropin_path(network_file: str) -> str:
    """Drop-ins in /etc extend the file of that name wherever it lives."""
    return f"{NETWORKD_DIRS[0]}/{network_file.rsplit('/', 1)[-1]}.d/{NETWORKD_DROPIN}"


def render_netplan(vips: list[str], label: str, localhost: bool) -> str:
    """dsrprov's netplan file: lo's VIPs, merged by netplan with the admin's
    files (lists are concatenated). Never a ``renderer:``, which is global and
    would win or lose against the admin's. LOCALHOST: list 127.0.0.1/8 and
    ::1/128 too (networkd before 251 deletes them otherwise, netplan's own
    documentation lists them). Values are checked again (ValueError) and
    quoted: YAML has no other way to be safe."""
    check_label(label)
    lines = [
        f"{NETPLAN_MARK} (role dsr_realserver_linux); local changes are overwritten.",
        "# The DSR VIPs on lo, so that netplan renders them whenever it renders lo.",
        "network:",
        "  version: 2",
        "  ethernets:",
        "    lo:",
        "      addresses:",
    ]
    if localhost:
        lines += ['        - "127.0.0.1/8"', '        - "::1/128"']
    for vip in vips:
        addr = parse_vip(vip)
        if addr.version == 4:
            lines += [f'        - "{host_prefix(str(addr))}":', f'            label: "{label}"']
        else:
            lines.append(f'        - "{host_prefix(str(addr))}"')
    return "\n".join(lines) + "\n"
