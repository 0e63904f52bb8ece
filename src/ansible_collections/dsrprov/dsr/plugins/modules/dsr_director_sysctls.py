#!/usr/bin/python
"""The director's IPVS sysctls: one file in /etc/sysctl.d, applied live in the same step."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_director_sysctls
short_description: Set a director's net.ipv4.vs sysctls live and persist them in one file
description:
  - Writes I(path) with the values (read by systemd-sysctl at boot, after systemd-modules-load has loaded
    C(ip_vs)) and sets the live values that differ, in one step. The first write records the live values
    found before, as comments, so that I(state=absent) can put them back.
  - Only C(net.ipv4.vs.*) names; they exist once C(ip_vs) is loaded.
  - Supports check mode and diff.
options:
  path:
    description: The sysctl file the role owns.
    type: path
    required: true
  values:
    description: "C(name: value) pairs, e.g. C(net.ipv4.vs.expire_nodest_conn: 1)."
    type: dict
    default: {}
  state:
    description: C(present) sets and persists; C(absent) restores the recorded values and removes the file.
    type: str
    choices: [present, absent]
    default: present
author: dsrprov maintainers (@dsrprov)
"""

EXAMPLES = r"""
- name: Expire connections to removed real servers at once
  dsrprov.dsr.dsr_director_sysctls:
    path: /etc/sysctl.d/90-dsrprov-director.conf
    values:
      net.ipv4.vs.expire_nodest_conn: 1
"""

RETURN = r"""
set:
  description: The live values changed (or, in check mode, that would change).
  returned: always
  type: dict
"""

import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

HEADER = "# Managed by dsrprov (role dsr_director): IPVS settings, applied at boot once ip_vs is loaded.\n"
_BEFORE = re.compile(r"^# before: (\S+)=(\S*)\s*$")
_NAME = re.compile(r"^net\.ipv4\.vs\.[a-z0-9_]+$")


def proc_path(name):
    return "/proc/sys/" + name.replace(".", "/")


def live(name):
    try:
        with open(proc_path(name), encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def read_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def recorded(text):
    out = {}
    for line in (text or "").splitlines():
        m = _BEFORE.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def render(values, before):
    lines = [HEADER]
    lines += ["# before: %s=%s\n" % (k, before.get(k, "")) for k in sorted(before)]
    lines += ["%s = %s\n" % (k, values[k]) for k in sorted(values)]
    return "".join(lines)


def write_atomic(path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".dsrprov-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def set_live(module, name, value):
    try:
        with open(proc_path(name), "w", encoding="ascii") as handle:
            handle.write("%s\n" % value)
    except OSError as exc:
        module.fail_json(msg="dsrprov: cannot set %s=%s: %s" % (name, value, exc.strerror))


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "values": {"type": "dict", "default": {}},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    old = read_file(path)
    before = recorded(old)
    changes = {}
    if module.params["state"] == "absent":
        if old is not None:
            changes = dict((k, v) for k, v in before.items() if v != "" and live(k) not in (None, v))
            if not module.check_mode:
                for name, value in changes.items():
                    set_live(module, name, value)
                os.unlink(path)
        module.exit_json(changed=old is not None, set=changes, diff={"before": old or "", "after": ""})
    values = {}
    for name, value in module.params["values"].items():
        if not _NAME.match(str(name)):
            module.fail_json(msg="dsrprov: %s is not an IPVS sysctl (net.ipv4.vs.*)" % name)
        if isinstance(value, bool) or not str(value).strip().lstrip("-").isdigit():
            module.fail_json(msg="dsrprov: %s must be a whole number, not %r" % (name, value))
        values[str(name)] = str(int(str(value).strip()))
    for name, value in values.items():
        current = live(name)
        if current is None and not module.check_mode:
            module.fail_json(msg="dsrprov: %s does not exist on this host: is ip_vs loaded?" % name)
        if name not in before:
            before[name] = current or ""
        if current != value:
            changes[name] = value
    # A name no longer wanted gets its recorded value back.
    for name in [k for k in before if k not in values]:
        if before[name] != "" and live(name) not in (None, before[name]):
            changes[name] = before[name]
        del before[name]
    text = render(values, before)
    file_changed = text != old
    if not module.check_mode:
        if file_changed:
            write_atomic(path, text)
        for name, value in changes.items():
            set_live(module, name, value)
    module.exit_json(changed=file_changed or bool(changes), set=changes, diff={"before": old or "", "after": text})


if __name__ == "__main__":
    main()
