#!/usr/bin/python
"""Make the loopback hold exactly the managed VIPs, live; record what is managed."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_loopback_vips
short_description: Put DSR VIPs on the loopback as host addresses, live
description:
  - Adds each VIP to C(lo) as a host address (C(/32) with a label, C(/128) with
    C(nodad)) and removes VIPs this module added earlier that are no longer wanted.
  - Addresses it did not add are never touched. Which VIPs it manages is kept in
    I(record), one address a line, so removal works for IPv6 too (IPv6 has no labels).
  - Persistence across reboots is the job of the role's systemd unit, not of this module.
options:
  vips:
    description:
      - The VIPs, bare addresses, already validated.
      - With C(state=absent), VIPs given here are removed too, even when the
        record lost them (the inventory still lists them while a host is unenrolled).
    type: list
    elements: str
    default: []
  state:
    description: C(present) makes C(lo) hold exactly I(vips); C(absent) removes every managed VIP.
    type: str
    choices: [present, absent]
    default: present
  label:
    description: Label of the IPv4 VIPs.
    type: str
    default: "lo:1"
  record:
    description: File that lists the VIPs this module manages.
    type: path
    required: true
  ip_command:
    description: Path of the C(ip) command.
    type: path
    default: ip
author: dsrprov developers
"""

EXAMPLES = r"""
- name: The VIPs on lo (IPv4 with label lo:1, IPv6 nodad)
  dsrprov.dsr.dsr_loopback_vips:
    vips: [192.0.2.10, "2001:db8::10"]
    record: /var/lib/dsrprov/loopback-vips

- name: Remove every VIP this module put there
  dsrprov.dsr.dsr_loopback_vips:
    state: absent
    record: /var/lib/dsrprov/loopback-vips
"""

RETURN = r"""
added:
  description: VIPs added to C(lo).
  returned: always
  type: list
removed:
  description: VIPs removed from C(lo).
  returned: always
  type: list
"""

import ipaddress
import os

from ansible.module_utils.basic import AnsibleModule

RECORD_HEADER = "# Managed by dsrprov: the VIPs it put on the loopback. Do not edit.\n"


def read_record(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return []


def live_vips(module, ip_command, label):
    """Addresses on lo, and the IPv4 ones that carry our label."""
    rc, out, err = module.run_command([ip_command, "-o", "addr", "show", "dev", "lo"], check_rc=False)
    if rc != 0:
        module.fail_json(msg="cannot read the loopback's addresses: %s" % err.strip())
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


def main():
    module = AnsibleModule(
        argument_spec={
            "vips": {"type": "list", "elements": "str", "default": []},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "label": {"type": "str", "default": "lo:1"},
            "record": {"type": "path", "required": True},
            "ip_command": {"type": "path", "default": "ip"},
        },
        supports_check_mode=True,
    )
    params = module.params
    ip_command, label = params["ip_command"], params["label"]
    wanted = [str(ipaddress.ip_address(v)) for v in params["vips"]] if params["state"] == "present" else []
    recorded = read_record(params["record"])
    present, labelled = live_vips(module, ip_command, label)

    to_add = [v for v in wanted if v not in present]
    managed = set(recorded) | labelled
    if params["state"] == "absent":
        managed |= {str(ipaddress.ip_address(v)) for v in params["vips"]}
    to_remove = sorted(v for v in managed if v in present and v not in wanted)
    new_record = RECORD_HEADER + "".join(v + "\n" for v in wanted) if wanted else None
    old_record = None
    if os.path.exists(params["record"]):
        with open(params["record"], encoding="utf-8") as handle:
            old_record = handle.read()
    record_changes = old_record != new_record

    changed = bool(to_add or to_remove or record_changes)
    result = {
        "changed": changed,
        "added": to_add,
        "removed": to_remove,
        "diff": {
            "before_header": "loopback VIPs",
            "after_header": "loopback VIPs",
            "before": "".join(v + "\n" for v in sorted(present & (managed | set(wanted)))),
            "after": "".join(v + "\n" for v in sorted(wanted)),
        },
    }
    if module.check_mode or not changed:
        module.exit_json(**result)

    for vip in to_remove:
        addr = ipaddress.ip_address(vip)
        module.run_command(
            [ip_command, "-%d" % addr.version, "addr", "del", "%s/%d" % (addr, addr.max_prefixlen), "dev", "lo"],
            check_rc=True,
        )
    for vip in to_add:
        addr = ipaddress.ip_address(vip)
        cmd = [ip_command, "-%d" % addr.version, "addr", "add", "%s/%d" % (addr, addr.max_prefixlen), "dev", "lo"]
        # IPv6 duplicate address detection would hold the VIP "tentative"; the
        # VIP is shared with the director by design, so DAD must be off.
        cmd += ["label", label] if addr.version == 4 else ["nodad"]
        module.run_command(cmd, check_rc=True)
    if record_changes:
        if new_record is None:
            os.unlink(params["record"])
            try:
                os.rmdir(os.path.dirname(params["record"]))
            except OSError:
                pass  # not empty: something else lives there too
        else:
            os.makedirs(os.path.dirname(params["record"]), mode=0o755, exist_ok=True)
            tmp = params["record"] + ".tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(new_record)
            os.chmod(tmp, 0o644)
            os.replace(tmp, params["record"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
