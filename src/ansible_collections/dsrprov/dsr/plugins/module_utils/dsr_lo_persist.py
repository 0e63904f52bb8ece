"""Make whatever manages the loopback keep the DSR VIPs, in that manager's own terms.

- NetworkManager: every loopback profile stored on disk gets the VIPs
  (``ipv4.addresses``, ``ipv6.addresses``, through nmcli), so NetworkManager
  itself re-adds them on ``nmcli con up`` and ``nmcli device reapply lo``; a
  dispatcher hook puts them back after ``nmcli con down`` of lo's
  connection, which deletes them even without a profile.
- systemd-networkd: a drop-in next to lo's ``.network`` lists the VIPs, then
  ``networkctl reload`` makes networkd hold them.
- netplan: a netplan file of dsrprov's own lists the VIPs for lo, then
  ``netplan generate`` and ``networkctl reload``, the least disruptive way to
  make the rendered configuration current (``netplan apply`` on 0.106 deletes
  and re-adds every address of every interface; see docs/linux.md).
- ifupdown or nothing: nothing to do here (the boot unit and
  ``net.ipv6.conf.lo.keep_addr_on_down`` cover them).

What it changed is recorded (JSON, root only); absent puts each profile back
as it was (byte for byte when nobody changed it since) and removes the hook
and the drop-in. The record is written ahead: before the first change to a
manager's configuration it already names what is about to change (the VIPs
to add and remove in each profile, with the profile's original; the drop-in
and the directory made for it), marked ``pending``; after the changes it is
written again as done. So a run killed at any point leaves a record from
which the next run finishes the change, and absent undoes it. Who manages
lo, and the refusals, come from dsr_lo_manager.py.
Standard library only, Python 3.8+ (runs on the managed host).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import (
    ChangePlan,
    StepFailed,
    put_file,
    read_text,
    run,
    write_text,
)
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_lo_manager import (
    NETPLAN_FILE,
    NETWORKD_KEEPS_LOCALHOST,
    NM_HOOK,
    PROBE,
    LoState,
    host_prefix,
    networkd_dropin_path,
    parse,
    render_netplan,
    render_networkd_dropin,
    render_nm_hook,
)
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_plan_inputs import Desired, Found

RECORD_VERSION = 1
# What netplan renders for lo (networkd renderer). A constant so that the
# module-level unit tests can point it into a temporary root.
NETPLAN_LO_NETWORK = "/run/systemd/network/10-netplan-lo.network"
DIFF_HEADER = "what manages lo"


def probe(module: Any) -> LoState:
    """Read who manages lo (the same script as the CLI's probe)."""
    rc, out, err = module.run_command(["sh", "-c", PROBE], check_rc=False)
    if "@@lo:end@@" not in out:
        raise StepFailed("dsrprov: cannot read who manages lo (exit %d): %s" % (rc, err.strip()))
    return parse(out)


def mtime_ns(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def without_timestamp(text: Optional[str]) -> str:
    """NetworkManager writes connection.timestamp into the keyfile whenever it
    saves it: not a change anyone made."""
    return "\n".join(line for line in (text or "").splitlines() if not line.startswith("timestamp="))


def read_record(path: str) -> Dict[str, Any]:
    text = read_text(path)
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class Persist:
    """The manager's part of a change plan: its steps go into CHANGE; its diff
    is one text (one file per manager, shown by check mode and --diff)."""

    def __init__(self, change: ChangePlan, module: Any, lo_state: LoState) -> None:
        self.change = change
        self.module = module
        self.lo_state = lo_state
        self.before: List[str] = []
        self.after: List[str] = []
        self.persisted_in: List[str] = []
        self.steps = 0
        # An undo of a manager change failed: the write-ahead record must stay,
        # it is the only note of what is still on the host.
        self.undo_failed = False

    def show(self, title: str, before: Optional[str], after: Optional[str]) -> None:
        if before != after:
            self.before.append("# %s\n%s" % (title, before or "(none)\n"))
            self.after.append("# %s\n%s" % (title, after or "(none)\n"))

    def watched(self, undo: Any) -> Any:
        """UNDO, noting when it fails (the write-ahead record must then stay)."""
        if undo is None:
            return None

        def watched_undo() -> None:
            try:
                undo()
            except Exception:
                self.undo_failed = True
                raise

        return watched_undo

    def step(self, description: str, action: Any, undo: Any = None, reload: bool = False) -> None:
        self.steps += 1
        self.change.step(description, action, self.watched(undo), reload=reload)

    def file(self, path: str, content: Optional[str], mode: int, remove_dir: bool = False, reload: Any = None) -> bool:
        """Make PATH hold CONTENT (None: absent); RELOAD runs after its undo.
        The change plan's file step; its diff is part of the manager's one."""
        old = read_text(path)
        if os.path.exists(path) and old is None:
            old = ""
        self.show(path, old, content)
        step = self.change.file(path, content, mode, remove_dir, diff=False, after_undo=reload)
        if step is None:
            return False
        self.steps += 1
        step.undo = self.watched(step.undo)
        return True

    def nmcli_modify(self, uuid: str, changes: List[Tuple[str, str, str]]) -> None:
        """changes: [("+", "ipv4.addresses", "a/32"), ...]"""
        cmd = ["nmcli", "connection", "modify", "uuid", uuid]
        for sign, prop, value in changes:
            cmd += [sign + prop, value]
        run(self.module, cmd)


def _family(a: str) -> int:
    return ipaddress.ip_interface(a).version


def _inverse(changes: List[Tuple[str, str, str]]) -> List[Tuple[str, str, str]]:
    return [("-" if sign == "+" else "+", prop, value) for sign, prop, value in changes]


def healed_modified(rec: Dict[str, Any], profile: Any) -> Optional[str]:
    """The profile's file as dsrprov's last change left it. A record still
    ``pending`` was written ahead of a change the run did not see through:
    when the profile shows that change made, its file now is what the change
    produced; otherwise the change never happened and the old note stands."""
    pending = rec.get("pending")
    if not pending or profile is None:
        return rec.get("modified")
    made = all(profile.holds(a.split("/", 1)[0]) for a in pending.get("add", [])) and not any(
        profile.holds(a.split("/", 1)[0]) for a in pending.get("remove", [])
    )
    return read_text(profile.filename) if made else rec.get("modified")


def plan_nm_profiles(
    p_: Persist, wanted: List[str], record: Dict[str, Any], new_record: Dict[str, Any], intent: Dict[str, Any]
) -> None:
    """Plan each profile; INTENT gets the write-ahead entries (what is about to change)."""
    lo_state = p_.lo_state
    recorded = record.get("nm_profiles", {})
    current = {p.uuid: p for p in lo_state.nm_stored_profiles} if lo_state.nm_active else {}
    wanted_set = {host_prefix(v) for v in wanted}
    for uuid, p in sorted(current.items()):
        rec = recorded.get(uuid, {})
        ours = list(rec.get("added", []))
        to_add = [host_prefix(v) for v in wanted if p.manages(ipaddress.ip_address(v).version) and not p.holds(v)]
        to_remove = [a for a in ours if a not in wanted_set and p.holds(a.split("/", 1)[0])]
        added = sorted(set([a for a in ours if a in wanted_set and p.holds(a.split("/", 1)[0])] + to_add))
        if wanted and all(p.holds(v) or host_prefix(v) in to_add for v in wanted):
            p_.persisted_in.append(p.label())
        if not added:
            if rec:
                plan_nm_restore(p_, uuid, rec)
            continue
        entry = {
            "name": p.name,
            "filename": p.filename,
            "added": added,
            # The file before dsrprov's first change, for absent.
            "original": rec.get("original") if rec else read_text(p.filename),
            "original_mtime_ns": rec.get("original_mtime_ns") if rec else mtime_ns(p.filename),
            "modified": healed_modified(rec, p),
        }
        new_record.setdefault("nm_profiles", {})[uuid] = entry
        if not (to_add or to_remove):
            continue
        # Ahead of the change: every VIP dsrprov has or is about to have there,
        # so whichever way a kill falls, the next run knows them as its own.
        intent.setdefault("nm_profiles", {})[uuid] = dict(
            entry, added=sorted(set(ours) | set(added)), pending={"add": to_add, "remove": to_remove}
        )
        before = {4: list(p.addresses.get(4, [])), 6: list(p.addresses.get(6, []))}
        after = {f: [a for a in before[f] if a not in to_remove] for f in (4, 6)}
        for a in to_add:
            after[_family(a)].append(a)
        p_.show(
            p.label(),
            "".join("ipv%d.addresses: %s\n" % (f, ", ".join(before[f]) or "--") for f in (4, 6)),
            "".join("ipv%d.addresses: %s\n" % (f, ", ".join(after[f]) or "--") for f in (4, 6)),
        )
        changes = [("+", "ipv%d.addresses" % _family(a), a) for a in to_add]
        changes += [("-", "ipv%d.addresses" % _family(a), a) for a in to_remove]

        # Defaults bind this iteration's values: each closure updates this profile's own record entry.
        def modify(  # pylint: disable=dangerous-default-value
            uuid: str = uuid, changes: Any = changes, filename: str = p.filename, entry: Any = entry
        ) -> None:
            p_.nmcli_modify(uuid, changes)
            # The file once dsrprov changed it: absent puts the original back
            # only while nobody else has changed it since.
            entry["modified"] = read_text(filename)

        def unmodify(  # pylint: disable=dangerous-default-value
            uuid: str = uuid,
            changes: Any = changes,
            filename: str = p.filename,
            entry: Any = entry,
            text: Optional[str] = read_text(p.filename),
            mtime: Optional[int] = mtime_ns(p.filename),
        ) -> None:
            # Byte for byte while the file is as the change left it (nmcli
            # would rewrite it in its own layout), else the inverse change.
            if text is not None and entry.get("modified") is not None and read_text(filename) == entry["modified"]:
                put_back_profile(p_.module, lo_state, filename, text, mtime)
            else:
                p_.nmcli_modify(uuid, _inverse(changes))

        p_.step("add the VIPs to %s" % p.label(), modify, unmodify)
    # Profiles changed earlier that this run no longer keeps VIPs in (absent,
    # or a profile that left the disk): put them back.
    for uuid, rec in sorted(recorded.items()):
        if uuid not in current:
            plan_nm_restore(p_, uuid, rec)


def put_back_profile(module: Any, lo_state: LoState, path: str, text: Optional[str], mtime: Optional[int]) -> None:
    """A profile's file byte for byte, then NetworkManager re-reads it, then the mtime."""
    mode = os.stat(path).st_mode & 0o7777
    write_text(path, text or "", mode)
    if lo_state.nm_active:
        run(module, ["nmcli", "connection", "load", path])
    if mtime:
        os.utime(path, ns=(os.stat(path).st_atime_ns, mtime))


def plan_nm_restore(p_: Persist, uuid: str, rec: Dict[str, Any]) -> None:
    lo_state, module = p_.lo_state, p_.module
    p = next((q for q in lo_state.nm_profiles if q.uuid == uuid), None)
    label = "NetworkManager profile %r (%s)" % (rec.get("name", uuid), rec.get("filename", "?"))
    if p is None:
        if lo_state.nm_active:
            return  # the profile was deleted since: nothing to put back
        p_file = rec.get("filename")
        current = read_text(p_file) if p_file else None
        if current is None:
            return
    else:
        p_file = p.filename
        current = read_text(p_file)
    p_file = str(p_file)
    ours = [a for a in rec.get("added", []) if p is None or p.holds(a.split("/", 1)[0])]
    original, modified = rec.get("original"), healed_modified(rec, p)
    untouched = (
        original is not None and modified is not None and without_timestamp(current) == without_timestamp(modified)
    )
    if not ours and (not untouched or current == original):
        return
    p_.show(label, current, original if untouched else "%s without %s\n" % (label, ", ".join(ours)))
    removals = [("-", "ipv%d.addresses" % _family(a), a) for a in ours]
    reapply = p is not None and p.active and p.device == "lo"

    def put_back(text: Optional[str], mtime: Optional[int]) -> None:
        put_back_profile(module, lo_state, p_file, text, mtime)

    def restore() -> None:
        if untouched:
            put_back(original, rec.get("original_mtime_ns"))
        elif lo_state.nm_active:
            p_.nmcli_modify(uuid, removals)
        else:
            module.warn(
                "%s changed since dsrprov added %s, and NetworkManager is not running: remove them by hand"
                % (label, ", ".join(ours))
            )
        if reapply:
            # NetworkManager re-adds the addresses of the connection it applied
            # (after a down/up of lo, for one): reapply the restored profile, or
            # the VIPs would come back after the ARP sysctls are gone.
            run(module, ["nmcli", "device", "reapply", "lo"])

    current_mtime = mtime_ns(p_file)

    def undo() -> None:
        if untouched:
            put_back(current, current_mtime)
        elif lo_state.nm_active:
            p_.nmcli_modify(uuid, _inverse(removals))
        if reapply:
            run(module, ["nmcli", "device", "reapply", "lo"])

    p_.step("put %s back as it was" % label, restore, undo)


def reload_networkd(module: Any, network_file: str) -> None:
    """Make networkd re-read lo's .network and its drop-ins and reconfigure lo:
    from then on it holds the VIPs (or no longer does) itself.

    networkd 247 re-reads a .network on `networkctl reload` only when the file
    itself looks newer than what it loaded: a drop-in that changed or went
    away is missed, and networkd puts the old VIPs back at the next down/up of
    lo (seen in the lab). So the file's mtime is bumped for the reload and
    then put back as it was: its contents are never touched."""
    try:
        before: Optional[os.stat_result] = os.stat(network_file)
        os.utime(network_file, None)
    except OSError:
        before = None  # read-only or gone: the reload alone
    try:
        run(module, ["networkctl", "reload"])
    finally:
        if before is not None:
            os.utime(network_file, ns=(before.st_atime_ns, before.st_mtime_ns))


def regenerate_netplan(module: Any, lo_state: LoState, ip: str, wanted: List[str]) -> None:
    """Render netplan's configuration again and make networkd load it: lo is
    reconfigured (with 252 eth0 as well: its reload reconfigures every link,
    seen in the lab; netplan apply would also restart networkd).

    When lo leaves netplan's configuration, networkd deletes every address on
    it, 127.0.0.1 and ::1 included: they are put back as the kernel had them."""
    run(module, ["netplan", "generate"])
    if lo_state.networkd_active:
        run(module, ["networkctl", "reload"])
    if lo_state.networkd_active and wanted and os.path.exists(NETPLAN_LO_NETWORK):
        # networkd puts the VIPs on lo after reload returns: wait for them (3 s
        # at most), or the next step's own `ip addr add` races it.
        for _attempt in range(30):
            out = run(module, [ip, "-o", "addr", "show", "dev", "lo"])
            if all(" %s " % host_prefix(v) in out for v in wanted):
                break
            time.sleep(0.1)
    if lo_state.networkd_active and not os.path.exists(NETPLAN_LO_NETWORK):
        for _attempt in range(20):  # networkd lets go of lo after reload returns
            out = run(module, [ip, "-o", "addr", "show", "dev", "lo"])
            if " 127.0.0.1/8 " not in out:
                break
            time.sleep(0.1)
        out = run(module, [ip, "-o", "addr", "show", "dev", "lo"])
        if " 127.0.0.1/8 " not in out:
            run(module, [ip, "addr", "add", "127.0.0.1/8", "dev", "lo", "scope", "host"])
        if " ::1/128 " not in out:
            rc, _out, _err = module.run_command([ip, "-6", "addr", "add", "::1/128", "dev", "lo", "proto", "kernel_lo"])
            if rc != 0:  # an ip without address protocols
                run(module, [ip, "-6", "addr", "add", "::1/128", "dev", "lo"])


def plan(change: ChangePlan, module: Any, desired: Desired, found: Found) -> Dict[str, Any]:
    """Plan the manager's part: hook, profiles, drop-in, reload, record.
    Return {persisted_in, steps} (steps: how many changes it makes)."""
    if found.lo_state is None:
        raise StepFailed("dsrprov: who manages lo was not read")
    lo_state, label, record_path, ip_command = found.lo_state, desired.label, desired.manager_record, found.ip_command
    present = desired.present
    wanted = [str(ipaddress.ip_address(v.split("/", 1)[0])) for v in desired.vips] if present else []
    p_ = Persist(change, module, lo_state)
    record = read_record(record_path)
    new_record: Dict[str, Any] = {"version": RECORD_VERSION}
    # Written before the first change (see the docstring at the top).
    intent: Dict[str, Any] = json.loads(json.dumps(record)) if record else {"version": RECORD_VERSION}
    first_step = len(change.steps)

    # The hook first on the way out: the reapply of a restored profile must
    # not set it off.
    want_hook = present and bool(wanted) and (lo_state.nm_manages_lo or bool(lo_state.nm_stored_profiles))
    hook = render_nm_hook(wanted, ip_command, label) if want_hook else None
    if hook is not None or os.path.exists(NM_HOOK):
        p_.file(NM_HOOK, hook, 0o755)
    if hook is not None:
        p_.persisted_in.append(NM_HOOK)

    plan_nm_profiles(p_, wanted, record, new_record, intent)

    # systemd-networkd: our drop-in beside lo's .network, and nowhere else.
    dropins = set(record.get("networkd_dropins", []))
    created = set(record.get("created_dirs", []))
    want_dropin = None
    if (
        present
        and wanted
        and lo_state.networkd_manages_lo
        and not lo_state.netplan_generated_for(lo_state.networkd_file)
    ):
        want_dropin = networkd_dropin_path(lo_state.networkd_file)
    reload_needed = False

    def reload() -> None:
        if lo_state.networkd_active:
            reload_networkd(module, lo_state.networkd_file)

    # netplan: our file in /etc/netplan, rendered with the admin's.
    if present and wanted and lo_state.netplan_owns:
        localhost = lo_state.networkd_version is not None and lo_state.networkd_version < NETWORKD_KEEPS_LOCALHOST
        content: Optional[str] = render_netplan(wanted, label, localhost)
    else:
        content = None
    if content is not None or NETPLAN_FILE in record.get("netplan_files", []):

        def regenerate() -> None:
            regenerate_netplan(module, lo_state, ip_command, wanted)

        if p_.file(NETPLAN_FILE, content, 0o600, reload=regenerate if lo_state.netplan_owns else None):
            p_.step("netplan generate, networkctl reload", regenerate, reload=True)
    if content is not None:
        new_record["netplan_files"] = [NETPLAN_FILE]
        p_.persisted_in.append(NETPLAN_FILE)
    intent["netplan_files"] = sorted(set(record.get("netplan_files", [])) | set(new_record.get("netplan_files", [])))

    for path in sorted(dropins - {want_dropin}):
        if os.path.exists(path):
            removed = p_.file(path, None, 0o644, remove_dir=os.path.dirname(path) in created, reload=reload)
            reload_needed = removed or reload_needed
        created.discard(os.path.dirname(path))
    if want_dropin is not None:
        if not os.path.isdir(os.path.dirname(want_dropin)):
            created.add(os.path.dirname(want_dropin))
        content = render_networkd_dropin(wanted, label, lo_state.networkd_file)
        reload_needed = p_.file(want_dropin, content, 0o644, reload=reload) or reload_needed
        new_record["networkd_dropins"] = [want_dropin]
        p_.persisted_in.append(want_dropin)
    if created:
        new_record["created_dirs"] = sorted(created)
    intent["networkd_dropins"] = sorted(dropins | set(new_record.get("networkd_dropins", [])))
    intent["created_dirs"] = sorted(set(record.get("created_dirs", [])) | created)
    if reload_needed and lo_state.networkd_active:
        p_.step("networkctl reload", reload, reload=True)

    change.diff(DIFF_HEADER, "".join(p_.before), "".join(p_.after))
    keep_record = len(new_record) > 1
    old_record_text = read_text(record_path)
    # The record as it stands while the changes run: the write-ahead one, if any.
    during = old_record_text
    if p_.steps:
        intent["version"] = RECORD_VERSION
        intent_text = json.dumps(intent, indent=1, sort_keys=True) + "\n"
        during = intent_text

        def undo_intent() -> None:
            # Only once every manager change is undone may the record forget them.
            if not p_.undo_failed:
                put_file(record_path, old_record_text, 0o600, remove_dir=old_record_text is None)

        change.insert(
            first_step,
            "note in %s what is about to change" % record_path,
            lambda: put_file(record_path, intent_text, 0o600),
            undo_intent,
            quiet=True,
        )
    if p_.steps or old_record_text != (
        json.dumps(new_record, indent=1, sort_keys=True) + "\n" if keep_record else None
    ):
        # Written after the steps ran: they fill in the files as modified.
        # The profiles' original contents are in it: root only, like the keyfiles.
        change.step(
            "write %s" % record_path if keep_record else "remove %s" % record_path,
            lambda: put_file(
                record_path, json.dumps(new_record, indent=1, sort_keys=True) + "\n" if keep_record else None, 0o600
            ),
            lambda: put_file(record_path, during, 0o600, remove_dir=during is None),
            # Bookkeeping: a rewrite of the record alone is no change to the host.
            quiet=not p_.steps,
        )
    return {"persisted_in": p_.persisted_in, "steps": p_.steps}
