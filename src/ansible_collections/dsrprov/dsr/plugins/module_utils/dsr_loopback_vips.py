"""The VIPs on the loopback, live: host addresses (/32 with a label, /128 nodad).

Removes only VIPs dsrprov added (listed in the record file, or carrying the
label); addresses it did not add are never touched. A VIP found on lo with a
wider prefix (the hand-made ``ip addr add VIP/24 dev lo``, which makes the
whole /24 local, so the host stops answering anyone in it) is replaced by the
host prefix. Persistence across
reboots is the boot unit's job (dsr_boot_unit.py) and the network manager's
(dsr_lo_persist.py). Standard library only, Python 3.8+.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional, Set, Tuple

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import (
    ChangePlan,
    StepFailed,
    read_text,
    run,
)
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_plan_inputs import Desired, Found

RECORD_HEADER = "# Managed by dsrprov: the VIPs it put on the loopback. Do not edit.\n"


def read_record(path: str) -> List[str]:
    text = read_text(path) or ""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def parse_lo_addresses(out: str, label: str) -> Tuple[Dict[str, Set[int]], Set[str]]:
    """``ip -o addr show dev lo`` to {address: {prefix lengths}}, and the IPv4
    addresses that carry LABEL.

    One line per address: ``1: lo    inet 10.0.0.1/32 scope global lo:1\
    valid_lft forever preferred_lft forever``. The IPv4 label is the last word
    before the backslash (the lifetimes follow it)."""
    present: Dict[str, Set[int]] = {}
    labelled: Set[str] = set()
    for line in out.splitlines():
        head = line.split("\\", 1)[0]
        fields = head.split()
        if len(fields) < 4 or fields[2] not in ("inet", "inet6"):
            continue
        addr_text, _sep, length = fields[3].partition("/")
        addr = ipaddress.ip_address(addr_text)
        present.setdefault(str(addr), set()).add(int(length) if length.isdigit() else addr.max_prefixlen)
        if fields[2] == "inet" and fields[-1] == label:
            labelled.add(str(addr))
    return present, labelled


def live_vips(module: Any, ip_command: str, label: str) -> Tuple[Dict[str, Set[int]], Set[str]]:
    """Addresses on lo (with their prefix lengths), and the IPv4 ones that carry our label."""
    rc, out, err = module.run_command([ip_command, "-o", "addr", "show", "dev", "lo"], check_rc=False)
    if rc != 0:
        raise StepFailed("cannot read the loopback's addresses: %s" % err.strip())
    return parse_lo_addresses(out, label)


def has_host(present: Dict[str, Set[int]], vip: str) -> bool:
    """VIP is on lo with the host prefix (/32, /128)."""
    return ipaddress.ip_address(vip).max_prefixlen in present.get(vip, set())


def wide(present: Dict[str, Set[int]], vip: str) -> List[int]:
    """The prefix lengths other than the host's VIP has on lo, e.g. [24]."""
    full = ipaddress.ip_address(vip).max_prefixlen
    return sorted(n for n in present.get(vip, set()) if n != full)


def add_cmd(ip_command: str, vip: str, label: str) -> List[str]:
    addr = ipaddress.ip_address(vip)
    cmd = [ip_command, "-%d" % addr.version, "addr", "add", "%s/%d" % (addr, addr.max_prefixlen), "dev", "lo"]
    # IPv6 duplicate address detection would hold the VIP "tentative"; the
    # VIP is shared with the director by design, so DAD must be off.
    return cmd + (["label", label] if addr.version == 4 else ["nodad"])


def del_cmd(ip_command: str, vip: str, length: Optional[int] = None) -> List[str]:
    addr = ipaddress.ip_address(vip)
    length = addr.max_prefixlen if length is None else length
    return [ip_command, "-%d" % addr.version, "addr", "del", "%s/%d" % (addr, length), "dev", "lo"]


# What ip(8) says when lo already is as a change wanted it: the manager (NetworkManager,
# systemd-networkd) applies its configuration on its own time after a reload, and may
# add or remove a VIP between a step's read of lo and the step's own command (seen in
# the lab with networkd 247 and NetworkManager 1.42).
ALREADY_ON_LO = ("file exists", "already assigned")
ALREADY_OFF_LO = ("not found", "cannot assign requested address")


def set_vip(module: Any, ip_command: str, vip: str, label: str, on: bool) -> None:
    """Put VIP's host address on lo (ON) or take it off. A failure whose text says
    lo is already that way counts as done once a new read of lo confirms it."""
    cmd = add_cmd(ip_command, vip, label) if on else del_cmd(ip_command, vip)
    try:
        run(module, cmd)
    except StepFailed as exc:
        text = str(exc).lower()
        if not any(said in text for said in (ALREADY_ON_LO if on else ALREADY_OFF_LO)):
            raise
        now, _labels = live_vips(module, ip_command, label)
        if has_host(now, vip) != on:
            raise


def narrow(module: Any, ip_command: str, vip: str, lengths: List[int], label: str) -> None:
    """VIP/len -> VIP/host. IPv4 takes the host address beside the wide one
    first (no moment without the VIP); IPv6 keeps one prefix per address, so
    the wide one goes first there."""
    if ipaddress.ip_address(vip).version == 4:
        run(module, add_cmd(ip_command, vip, label))
    for length in lengths:
        run(module, del_cmd(ip_command, vip, length))
    if ipaddress.ip_address(vip).version == 6:
        run(module, add_cmd(ip_command, vip, label))


def widen(module: Any, ip_command: str, vip: str, lengths: List[int], label: str) -> None:
    """The undo of narrow(): the wide prefixes back as they were found."""
    now, _labels = live_vips(module, ip_command, label)
    if ipaddress.ip_address(vip).max_prefixlen in now.get(vip, set()):
        run(module, del_cmd(ip_command, vip))
    addr = ipaddress.ip_address(vip)
    for length in lengths:
        run(module, [ip_command, "-%d" % addr.version, "addr", "add", "%s/%d" % (addr, length), "dev", "lo"])


def plan_narrow(change: ChangePlan, module: Any, ip_command: str, vip: str, lengths: List[int], label: str) -> None:
    """The step that replaces VIP/len by the host prefix, with its undo."""
    prefix = ipaddress.ip_address(vip).max_prefixlen
    change.step(
        "replace %s on the loopback by %s/%d" % (", ".join("%s/%d" % (vip, n) for n in lengths), vip, prefix),
        lambda: narrow(module, ip_command, vip, lengths, label),
        lambda: widen(module, ip_command, vip, lengths, label),
    )


def plan(change: ChangePlan, module: Any, desired: Desired, found: Found) -> Dict[str, List[str]]:
    """Plan lo to hold exactly VIPS (present) or none of the managed ones
    (absent: VIPS given are removed too, even when the record lost them).
    Return {added, removed}."""
    vips, label, ip_command, record = desired.vips, desired.label, found.ip_command, desired.record_file
    wanted = [str(ipaddress.ip_address(v)) for v in vips] if desired.present else []
    if found.lo_read is None:
        present, labelled = live_vips(module, ip_command, label)
    else:
        present, labelled = parse_lo_addresses(found.lo_read, label)
    managed = set(read_record(record)) | labelled
    if not desired.present:
        managed |= {str(ipaddress.ip_address(v)) for v in vips}
    to_add = [v for v in wanted if v not in present]
    # Only the host address is dsrprov's: a wide one of the same VIP (hand-made)
    # is left where it is.
    to_remove = sorted(v for v in managed if has_host(present, v) and v not in wanted)
    before = sorted(set(present) & (managed | set(wanted)))
    to_narrow = {v: wide(present, v) for v in wanted if wide(present, v)}

    def shown(vip: str) -> str:
        # A wide prefix is shown as found; a host prefix as the bare VIP.
        lengths = wide(present, vip)
        return "".join("%s/%d\n" % (vip, n) for n in lengths) if lengths else vip + "\n"

    change.diff("loopback VIPs", "".join(shown(v) for v in before), "".join(v + "\n" for v in sorted(wanted)))
    for vip, lengths in sorted(to_narrow.items()):
        plan_narrow(change, module, ip_command, vip, lengths, label)
    if to_add or to_remove:

        def apply() -> None:
            # Read lo again: a step before this one may have changed it (after
            # its drop-in, systemd-networkd puts the VIPs on lo itself).
            now, _labels = live_vips(module, ip_command, label)
            for vip in to_remove:
                if has_host(now, vip):
                    set_vip(module, ip_command, vip, label, on=False)
            for vip in to_add:
                if vip not in now:
                    set_vip(module, ip_command, vip, label, on=True)

        def undo() -> None:
            # Back to what lo held before this call: a VIP this call (or the
            # stop of the boot unit) took away comes back, one it added goes.
            now, _labels = live_vips(module, ip_command, label)
            for vip in to_add:
                if has_host(now, vip):
                    run(module, del_cmd(ip_command, vip))
            for vip in before:
                if vip not in now:
                    set_vip(module, ip_command, vip, label, on=True)

        change.step("put the VIPs on the loopback" if desired.present else "remove the VIPs from the loopback",
                    apply, undo)  # fmt: skip
    new_record = RECORD_HEADER + "".join(v + "\n" for v in wanted) if wanted else None
    # The VIPs' diff above says it all: the record is not shown again.
    change.file(record, new_record, 0o644, remove_dir=new_record is None, diff=False)
    return {"added": to_add, "removed": to_remove}
