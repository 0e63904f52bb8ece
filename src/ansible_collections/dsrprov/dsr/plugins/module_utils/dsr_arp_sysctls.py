"""The ARP keys for DSR: one sysctl.d file, and the same values live.

The file holds ``arp_ignore`` and ``arp_announce`` for ``all`` and each given
interface (and ``net.ipv6.conf.lo.keep_addr_on_down=1``); live values are
written to /proc/sys only where they are weaker than ours (no loops with a
hardening role that sets the same keys, or stricter ones). The live values
found before the first change are kept as comments in the file, so absent
restores them before it removes the file.

Standard library only, Python 3.8+ (runs on the managed host).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import ChangePlan, StepFailed, read_text
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_plan_inputs import Desired, Found

ORIGINAL_MARK = "# original: "
KEEP_KEY = "net.ipv6.conf.lo.keep_addr_on_down"
PROC_SYS = "/proc/sys/"


def conf_key(scope: str, name: str, family: int = 4) -> str:
    """The key of net.ipvF.conf.SCOPE.NAME as the sysctl file spells it.

    An interface name may hold dots (VLANs: eth0.100, bond0.20). sysctl.d(5):
    when a key's first separator is "/", the other "/" separate and "." are
    part of names; so such keys are written net/ipv4/conf/eth0.100/arp_ignore,
    which systemd-sysctl and procps' sysctl -p both read (tried on systemd 252
    and procps-ng 4.0.2). Names without dots keep the dotted form."""
    if "." in scope:
        return "net/ipv%d/conf/%s/%s" % (family, scope, name)
    return "net.ipv%d.conf.%s.%s" % (family, scope, name)


def canonical(key: str) -> str:
    """KEY as a path under /proc/sys, whichever form it is written in: the
    first separator decides (sysctl.d(5)); in the dotted form a "/" stands
    for a "." inside a name (net.ipv4.conf.eth0/100.arp_ignore)."""
    key = key.strip()
    slash, dot = key.find("/"), key.find(".")
    if slash != -1 and (dot == -1 or slash < dot):
        return key.strip("/")
    return key.translate(str.maketrans("./", "/."))


def proc_path(key: str) -> str:
    return PROC_SYS + canonical(key)


def read_live(key: str) -> Optional[str]:
    try:
        with open(proc_path(key), encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def write_live(key: str, value: str) -> None:
    try:
        with open(proc_path(key), "w", encoding="ascii") as handle:
            handle.write(value + "\n")
    except OSError as exc:
        raise StepFailed("cannot set %s=%s live: %s (is /proc/sys read-only here?)" % (key, value, exc)) from None


def strict_enough(live: Optional[str], wanted: str) -> bool:
    """A live value at least as strict as ours is left alone: for both keys
    a larger value is stricter (e.g. arp_ignore=2 from a hardening role), and
    rewriting it would fight that role on every run."""
    try:
        return int(str(live)) >= int(wanted)
    except (TypeError, ValueError):
        return False


def parse_originals(text: Optional[str]) -> Dict[str, str]:
    originals = {}
    for line in (text or "").splitlines():
        if line.startswith(ORIGINAL_MARK) and "=" in line:
            key, value = line[len(ORIGINAL_MARK) :].split("=", 1)
            originals[key.strip()] = value.strip()
    return originals


def render(values: Dict[str, str], originals: Dict[str, Optional[str]]) -> str:
    lines = [
        "# Managed by dsrprov (role dsr_realserver_linux): a Direct Server Return real",
        "# server must never answer ARP for the VIPs it holds on the loopback.",
        "# arp_ignore=1: answer only for addresses on the receiving interface.",
        "# arp_announce=2: always use the interface's own address as ARP source.",
    ]
    if KEEP_KEY in values:
        lines.append("# keep_addr_on_down=1 on lo: a down/up of lo keeps the IPv6 VIPs.")
    lines += [
        "# Live values before dsrprov changed them (restored on removal):",
    ]
    lines += ["%s%s=%s" % (ORIGINAL_MARK, k, v) for k, v in sorted(originals.items())]
    lines += ["%s = %s" % (k, v) for k, v in values.items()]
    return "\n".join(lines) + "\n"


def missing_interface(interfaces: List[str]) -> Optional[str]:
    """The check present makes before any change: every interface has IPv4 sysctls."""
    for scope in ["all"] + [i for i in interfaces if i != "all"]:
        if read_live(conf_key(scope, "arp_ignore")) is None:
            return "interface %r has no IPv4 sysctls on this host (does it exist?)" % scope
    return None


def plan(change: ChangePlan, module: Any, desired: Desired, found: Found) -> Dict[str, str]:
    """Plan the file, then the live keys (a crash in between leaves the boot
    state right). Return the live changes."""
    path = desired.sysctl_file
    old_text = read_text(path)
    originals: Dict[str, Optional[str]] = dict(parse_originals(old_text))
    if desired.present:
        values = {}
        for scope in ["all"] + [i for i in desired.arp_interfaces if i != "all"]:
            values[conf_key(scope, "arp_ignore")] = str(desired.arp_ignore)
            values[conf_key(scope, "arp_announce")] = str(desired.arp_announce)
        if desired.keep_addr_on_down and read_live(KEEP_KEY) is not None:
            values[KEEP_KEY] = "1"
        # Remember what was live before the first change, for absent.
        for key in values:
            if key not in originals:
                originals[key] = read_live(key)
        originals = {k: v for k, v in originals.items() if k in values}
        new_text: Optional[str] = render(values, originals)
        live_changes = {k: v for k, v in values.items() if not strict_enough(read_live(k), v)}
    else:
        new_text = None
        live_changes = {k: str(v) for k, v in originals.items() if v is not None and read_live(k) not in (None, v)}
    change.file(path, new_text, 0o644)
    if live_changes:
        before = {k: read_live(k) for k in live_changes}
        change.diff(
            "live sysctls",
            "".join("%s = %s\n" % (k, before[k]) for k in sorted(live_changes)),
            "".join("%s = %s\n" % (k, live_changes[k]) for k in sorted(live_changes)),
        )

        def set_live() -> None:
            for key, value in live_changes.items():
                write_live(key, value)

        def undo_live() -> None:
            for key, value in before.items():
                if value is not None:
                    write_live(key, value)

        change.step("set the ARP sysctls live", set_live, undo_live)
    return live_changes
