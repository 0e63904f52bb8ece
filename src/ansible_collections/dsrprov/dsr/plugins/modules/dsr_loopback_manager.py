#!/usr/bin/python
"""Keep the DSR VIPs on lo whatever manages it, in that manager's own terms."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_loopback_manager
short_description: Make whatever manages the loopback keep the DSR VIPs
description:
  - Finds out who manages C(lo) (NetworkManager with or without a loopback profile,
    systemd-networkd with a C(.network) matching C(lo), ifupdown, or nothing) and
    persists the VIPs the way that survives that manager.
  - NetworkManager, every loopback profile stored on disk gets the VIPs (C(ipv4.addresses),
    C(ipv6.addresses), through nmcli), so that NetworkManager itself re-adds them on
    C(nmcli con up) and C(nmcli device reapply lo); a dispatcher hook puts them back
    after C(nmcli con down) of lo's connection, which deletes them even without a profile.
  - systemd-networkd, a drop-in next to lo's C(.network) lists the VIPs, then
    C(networkctl reload) makes networkd hold them.
  - ifupdown or nothing, nothing to do here (the role's unit and
    C(net.ipv6.conf.lo.keep_addr_on_down) cover them).
  - Fails before any change, naming the reason, where the VIPs cannot be made safe
    (a profile in /run or read-only, a C(.network) that matches more than lo,
    systemd-networkd before 251 with a lo C(.network) that does not list 127.0.0.1/8 and ::1/128, ...).
  - Records what it changed in I(record); C(state=absent) puts each profile back as it was
    (byte for byte when nobody changed it since) and removes the hook and the drop-in.
  - The live VIPs are the job of M(dsrprov.dsr.dsr_loopback_vips).
options:
  vips:
    description: The VIPs, bare addresses, already validated.
    type: list
    elements: str
    default: []
  state:
    description: C(present) persists I(vips) in the manager's configuration; C(absent) undoes what the record lists.
    type: str
    choices: [present, absent]
    default: present
  label:
    description: Label of the IPv4 VIPs (systemd-networkd and the hook keep it; NetworkManager has no labels).
    type: str
    default: "lo:1"
  record:
    description: JSON file recording what this module changed (profiles' original contents included).
    type: path
    required: true
  ip_command:
    description: Path of the C(ip) command, written into the NetworkManager hook.
    type: path
    default: /usr/sbin/ip
author: dsrprov developers
"""

EXAMPLES = r"""
- name: Make whatever manages lo keep the VIPs
  dsrprov.dsr.dsr_loopback_manager:
    vips: [192.0.2.10, "2001:db8::10"]
    record: /etc/dsrprov/loopback-manager.json

- name: Put every profile back and remove the hook and the drop-in
  dsrprov.dsr.dsr_loopback_manager:
    state: absent
    record: /etc/dsrprov/loopback-manager.json
"""

RETURN = r"""
manager:
  description: Who manages lo, C(NetworkManager), C(systemd-networkd), C(ifupdown) or C(none).
  returned: always
  type: str
detail:
  description: The manager in one line (version, profile or file).
  returned: always
  type: str
persisted_in:
  description: Where the VIPs are kept besides the role's unit (profiles, hook, drop-in).
  returned: always
  type: list
"""

import ipaddress
import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_lo_manager import (
    NM_HOOK,
    PROBE,
    assess,
    host_prefix,
    networkd_dropin_path,
    parse,
    render_networkd_dropin,
    render_nm_hook,
)

RECORD_VERSION = 1


def probe(module):
    rc, out, err = module.run_command(["sh", "-c", PROBE], check_rc=False)
    if "@@lo:end@@" not in out:
        module.fail_json(msg="dsrprov: cannot read who manages lo (exit %d): %s" % (rc, err.strip()))
    return parse(out)


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return None


def write_text(path, text, mode):
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, ".%s.dsrprov-tmp" % os.path.basename(path))
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def mtime_ns(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def without_timestamp(text):
    """NetworkManager writes connection.timestamp into the keyfile whenever it
    saves it: not a change anyone made."""
    return "\n".join(line for line in (text or "").splitlines() if not line.startswith("timestamp="))


def read_record(path):
    text = read_text(path)
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class Plan:
    """What to change, in order, and the diff that tells it."""

    def __init__(self):
        self.steps = []  # (description, callable)
        self.before = []
        self.after = []
        self.persisted_in = []

    def step(self, description, action):
        self.steps.append((description, action))

    def show(self, title, before, after):
        if before != after:
            self.before.append("# %s\n%s" % (title, before or "(none)\n"))
            self.after.append("# %s\n%s" % (title, after or "(none)\n"))


def nmcli_modify(module, uuid, changes):
    """changes: [("+", "ipv4.addresses", "a/32"), ...]"""
    cmd = ["nmcli", "connection", "modify", "uuid", uuid]
    for sign, prop, value in changes:
        cmd += [sign + prop, value]
    module.run_command(cmd, check_rc=True)


def plan_nm_profiles(module, state, wanted, record, new_record, plan):
    recorded = record.get("nm_profiles", {})
    current = {p.uuid: p for p in state.nm_stored_profiles} if state.nm_active else {}
    wanted_set = {host_prefix(v) for v in wanted}
    for uuid, p in sorted(current.items()):
        rec = recorded.get(uuid, {})
        ours = list(rec.get("added", []))
        to_add = [host_prefix(v) for v in wanted if p.manages(ipaddress.ip_address(v).version) and not p.holds(v)]
        to_remove = [a for a in ours if a not in wanted_set and p.holds(a.split("/")[0])]
        added = sorted(set([a for a in ours if a in wanted_set and p.holds(a.split("/")[0])] + to_add))
        if wanted and all(p.holds(v) or host_prefix(v) in to_add for v in wanted):
            plan.persisted_in.append(p.label())
        if not added:
            if rec:
                plan_nm_restore(module, state, uuid, rec, plan)
            continue
        entry = {
            "name": p.name,
            "filename": p.filename,
            "added": added,
            # The file before dsrprov's first change, for absent.
            "original": rec.get("original") if rec else read_text(p.filename),
            "original_mtime_ns": rec.get("original_mtime_ns") if rec else mtime_ns(p.filename),
            "modified": rec.get("modified"),
        }
        new_record.setdefault("nm_profiles", {})[uuid] = entry
        if not (to_add or to_remove):
            continue
        before = {4: list(p.addresses.get(4, [])), 6: list(p.addresses.get(6, []))}
        after = {f: [a for a in before[f] if a not in to_remove] for f in (4, 6)}
        for a in to_add:
            after[ipaddress.ip_interface(a).version].append(a)
        plan.show(
            p.label(),
            "".join("ipv%d.addresses: %s\n" % (f, ", ".join(before[f]) or "--") for f in (4, 6)),
            "".join("ipv%d.addresses: %s\n" % (f, ", ".join(after[f]) or "--") for f in (4, 6)),
        )
        changes = [("+", "ipv%d.addresses" % ipaddress.ip_interface(a).version, a) for a in to_add]
        changes += [("-", "ipv%d.addresses" % ipaddress.ip_interface(a).version, a) for a in to_remove]

        def modify(uuid=uuid, changes=changes, filename=p.filename, entry=entry):
            nmcli_modify(module, uuid, changes)
            # The file once dsrprov changed it: absent puts the original back
            # only while nobody else has changed it since.
            entry["modified"] = read_text(filename)

        plan.step("add the VIPs to %s" % p.label(), modify)
    # Profiles changed earlier that this run no longer keeps VIPs in (absent,
    # or a profile that left the disk): put them back.
    for uuid, rec in sorted(recorded.items()):
        if uuid not in current:
            plan_nm_restore(module, state, uuid, rec, plan)


def plan_nm_restore(module, state, uuid, rec, plan):
    p = next((q for q in state.nm_profiles if q.uuid == uuid), None)
    label = "NetworkManager profile %r (%s)" % (rec.get("name", uuid), rec.get("filename", "?"))
    if p is None:
        if state.nm_active:
            return  # the profile was deleted since: nothing to put back
        p_file = rec.get("filename")
        current = read_text(p_file) if p_file else None
        if current is None:
            return
    else:
        p_file = p.filename
        current = read_text(p_file)
    ours = [a for a in rec.get("added", []) if p is None or p.holds(a.split("/")[0])]
    original, modified = rec.get("original"), rec.get("modified")
    untouched = (
        original is not None and modified is not None and without_timestamp(current) == without_timestamp(modified)
    )
    if not ours and (not untouched or current == original):
        return
    plan.show(label, current, original if untouched else "%s without %s\n" % (label, ", ".join(ours)))

    def restore(p=p, p_file=p_file, original=original, untouched=untouched, ours=ours):
        if untouched:
            # Byte for byte what the admin had, then NetworkManager re-reads
            # it, then its old modification time.
            mode = os.stat(p_file).st_mode & 0o7777
            write_text(p_file, original, mode)
            if state.nm_active:
                module.run_command(["nmcli", "connection", "load", p_file], check_rc=True)
            if rec.get("original_mtime_ns"):
                os.utime(p_file, ns=(os.stat(p_file).st_atime_ns, rec["original_mtime_ns"]))
        elif state.nm_active:
            nmcli_modify(module, uuid, [("-", "ipv%d.addresses" % ipaddress.ip_interface(a).version, a) for a in ours])
        else:
            module.warn(
                "%s changed since dsrprov added %s, and NetworkManager is not running: remove them by hand"
                % (label, ", ".join(ours))
            )
        if p is not None and p.active and p.device == "lo":
            # NetworkManager re-adds the addresses of the connection it applied
            # (after a down/up of lo, for one): reapply the restored profile, or
            # the VIPs would come back after the ARP sysctls are gone.
            module.run_command(["nmcli", "device", "reapply", "lo"], check_rc=True)

    plan.step("put %s back as it was" % label, restore)


def plan_file(plan, path, content, mode, remove_dir=False):
    """Make PATH hold CONTENT (None: absent); REMOVE_DIR: also its directory
    once empty (one dsrprov made)."""
    old = read_text(path)
    if os.path.exists(path) and old is None:
        old = ""
    plan.show(path, old, content)
    if old == content:
        return False

    def apply(path=path, content=content):
        if content is None:
            os.unlink(path)
            if remove_dir:
                try:
                    os.rmdir(os.path.dirname(path))
                except OSError:
                    pass  # not empty: something else lives there too
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            write_text(path, content, mode)

    plan.step(("remove %s" if content is None else "write %s") % path, apply)
    return True


def reload_networkd(module, network_file):
    """Make networkd re-read lo's .network and its drop-ins and reconfigure lo:
    from then on it holds the VIPs (or no longer does) itself.

    networkd 247 re-reads a .network on `networkctl reload` only when the file
    itself looks newer than what it loaded: a drop-in that changed or went
    away is missed, and networkd puts the old VIPs back at the next down/up of
    lo (seen in the lab). So the file's mtime is bumped for the reload and
    then put back as it was: its contents are never touched."""
    try:
        before = os.stat(network_file)
        os.utime(network_file, None)
    except OSError:
        before = None  # read-only or gone: the reload alone
    try:
        module.run_command(["networkctl", "reload"], check_rc=True)
    finally:
        if before is not None:
            os.utime(network_file, ns=(before.st_atime_ns, before.st_mtime_ns))


def main():
    module = AnsibleModule(
        argument_spec={
            "vips": {"type": "list", "elements": "str", "default": []},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "label": {"type": "str", "default": "lo:1"},
            "record": {"type": "path", "required": True},
            "ip_command": {"type": "path", "default": "/usr/sbin/ip"},
        },
        supports_check_mode=True,
    )
    params = module.params
    present = params["state"] == "present"
    wanted = [str(ipaddress.ip_address(v.split("/")[0])) for v in params["vips"]] if present else []
    state = probe(module)
    found = assess(state, wanted)
    if present and found.problems:
        module.fail_json(msg="dsrprov: " + found.problems[0], manager=found.manager, detail=found.detail)

    record = read_record(params["record"])
    new_record = {"version": RECORD_VERSION}
    plan = Plan()

    # The hook first on the way out: the reapply of a restored profile must
    # not set it off.
    want_hook = present and bool(wanted) and (state.nm_manages_lo or bool(state.nm_stored_profiles))
    hook = render_nm_hook(wanted, params["ip_command"], params["label"]) if want_hook else None
    if hook is not None or os.path.exists(NM_HOOK):
        plan_file(plan, NM_HOOK, hook, 0o755)
    if hook is not None:
        plan.persisted_in.append(NM_HOOK)

    plan_nm_profiles(module, state, wanted, record, new_record, plan)

    # systemd-networkd: our drop-in beside lo's .network, and nowhere else.
    dropins = set(record.get("networkd_dropins", []))
    created = set(record.get("created_dirs", []))
    want_dropin = None
    if present and wanted and state.networkd_manages_lo:
        want_dropin = networkd_dropin_path(state.networkd_file)
    reload_needed = False
    for path in sorted(dropins - {want_dropin}):
        if os.path.exists(path):
            removed = plan_file(plan, path, None, 0o644, remove_dir=os.path.dirname(path) in created)
            reload_needed = removed or reload_needed
        created.discard(os.path.dirname(path))
    if want_dropin is not None:
        if not os.path.isdir(os.path.dirname(want_dropin)):
            created.add(os.path.dirname(want_dropin))
        content = render_networkd_dropin(wanted, params["label"], state.networkd_file)
        reload_needed = plan_file(plan, want_dropin, content, 0o644) or reload_needed
        new_record["networkd_dropins"] = [want_dropin]
        plan.persisted_in.append(want_dropin)
    if created:
        new_record["created_dirs"] = sorted(created)
    if reload_needed and state.networkd_active:
        plan.step("networkctl reload", lambda: reload_networkd(module, state.networkd_file))

    keep_record = len(new_record) > 1
    old_record_text = read_text(params["record"])
    new_record_text = json.dumps(new_record, indent=1, sort_keys=True) + "\n" if keep_record else None
    changed = bool(plan.steps)
    result = {
        "changed": changed,
        "manager": found.manager,
        "detail": found.detail,
        "persisted_in": plan.persisted_in,
        "diff": {
            "before_header": "what manages lo",
            "after_header": "what manages lo",
            "before": "".join(plan.before),
            "after": "".join(plan.after),
        },
    }
    if module.check_mode or (not changed and old_record_text == new_record_text):
        module.exit_json(**result)

    for _description, action in plan.steps:
        action()
    if keep_record:
        os.makedirs(os.path.dirname(params["record"]), mode=0o755, exist_ok=True)
        # The profiles' original contents are in it: root only, like the keyfiles.
        write_text(params["record"], json.dumps(new_record, indent=1, sort_keys=True) + "\n", 0o600)
    elif os.path.exists(params["record"]):
        os.unlink(params["record"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
