"""The VIPs on the loopback, live: host addresses (/32 with a label, /128 nodad).

Removes only VIPs dsrprov added (listed in the record file, or carrying the
label); addresses it did not add are never touched. Persistence across
reboots is the boot unit's job (dsr_boot_unit.py) and the network manager's
(dsr_lo_persist.py). Standard library only, Python 3.8+.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional, Set, Tuple

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import (
    ChangePlan,
    StepFailed,
    put_file,
    read_text,
    run,
)

RECORD_HEADER = "# Managed by dsrprov: the VIPs it put on the loopback. Do not edit.\n"


def read_record(path: str) -> List[str]:
    text = read_text(path) or ""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def live_vips(module: Any, ip_command: str, label: str) -> Tuple[Set[str], Set[str]]:
    """Addresses on lo, and the IPv4 ones that carry our label."""
    rc, out, err = module.run_command([ip_command, "-o", "addr", "show", "dev", "lo"], check_rc=False)
    if rc != 0:
        raise StepFailed("cannot read the loopback's addresses: %s" % err.strip())
    present, labelled = set(), set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] not in ("inet", "inet6"):
            continue
        addr = str(ipaddress.ip_address(fields[3].split("/")[0]))
        present.add(addr)
        if fields[2] == "inet" and fields[-1] == label:
            labelled.add(addr)
    return present, labelled


def add_cmd(ip_command: str, vip: str, label: str) -> List[str]:
    addr = ipaddress.ip_address(vip)
    cmd = [ip_command, "-%d" % addr.version, "addr", "add", "%s/%d" % (addr, addr.max_prefixlen), "dev", "lo"]
    # IPv6 duplicate address detection would hold the VIP "tentative"; the
    # VIP is shared with the director by design, so DAD must be off.
    return cmd + (["label", label] if addr.version == 4 else ["nodad"])


def del_cmd(ip_command: str, vip: str) -> List[str]:
    addr = ipaddress.ip_address(vip)
    return [ip_command, "-%d" % addr.version, "addr", "del", "%s/%d" % (addr, addr.max_prefixlen), "dev", "lo"]


def plan(
    change: ChangePlan,
    module: Any,
    vips: List[str],
    state: str,
    record: str,
    label: str,
    ip_command: str,
) -> Dict[str, List[str]]:
    """Plan lo to hold exactly VIPS (present) or none of the managed ones
    (absent: VIPS given are removed too, even when the record lost them).
    Return {added, removed}."""
    wanted = [str(ipaddress.ip_address(v)) for v in vips] if state == "present" else []
    present, labelled = live_vips(module, ip_command, label)
    managed = set(read_record(record)) | labelled
    if state == "absent":
        managed |= {str(ipaddress.ip_address(v)) for v in vips}
    to_add = [v for v in wanted if v not in present]
    to_remove = sorted(v for v in managed if v in present and v not in wanted)
    before = sorted(present & (managed | set(wanted)))
    change.diff("loopback VIPs", "".join(v + "\n" for v in before), "".join(v + "\n" for v in sorted(wanted)))
    if to_add or to_remove:

        def apply() -> None:
            # Read lo again: a step before this one may have changed it (after
            # its drop-in, systemd-networkd puts the VIPs on lo itself).
            now, _ = live_vips(module, ip_command, label)
            for vip in to_remove:
                if vip in now:
                    run(module, del_cmd(ip_command, vip))
            for vip in to_add:
                if vip not in now:
                    run(module, add_cmd(ip_command, vip, label))

        def undo() -> None:
            # Back to what lo held before this call: a VIP this call (or the
            # stop of the boot unit) took away comes back, one it added goes.
            now, _ = live_vips(module, ip_command, label)
            for vip in to_add:
                if vip in now:
                    run(module, del_cmd(ip_command, vip))
            for vip in before:
                if vip not in now:
                    run(module, add_cmd(ip_command, vip, label))

        change.step("put the VIPs on the loopback" if state == "present" else "remove the VIPs from the loopback",
                    apply, undo)  # fmt: skip
    new_record: Optional[str] = RECORD_HEADER + "".join(v + "\n" for v in wanted) if wanted else None
    old_record = read_text(record)
    if old_record != new_record:
        change.step(
            "write %s" % record if new_record else "remove %s" % record,
            lambda: put_file(record, new_record, 0o644, remove_dir=new_record is None),
            lambda: put_file(record, old_record, 0o644, remove_dir=old_record is None),
        )
    return {"added": to_add, "removed": to_remove}
