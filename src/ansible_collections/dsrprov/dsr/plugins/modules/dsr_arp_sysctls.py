#!/usr/bin/python
"""Write the ARP sysctls for DSR to one sysctl.d file and apply them live."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_arp_sysctls
short_description: Set arp_ignore and arp_announce for DSR, persisted and live
description:
  - Renders one file in C(/etc/sysctl.d/) holding C(arp_ignore) and C(arp_announce)
    for C(all) and each given interface, and writes the same values to C(/proc/sys)
    only where the live value differs (one step, no per-key tasks, no loops with
    other roles that set the same keys to the same values).
  - The live values found before the first change are kept as comments in the
    file, so C(state=absent) can restore them before it removes the file.
options:
  path:
    description: The sysctl file.
    type: path
    required: true
  interfaces:
    description: Interfaces that get the per-interface keys besides C(all).
    type: list
    elements: str
    default: []
  arp_ignore:
    description: Value of C(arp_ignore).
    type: int
    default: 1
  arp_announce:
    description: Value of C(arp_announce).
    type: int
    default: 2
  keep_addr_on_down:
    description:
      - Also set C(net.ipv6.conf.lo.keep_addr_on_down=1), so that a down/up of C(lo)
        (C(ip link set lo down), C(ifdown lo)) keeps the IPv6 VIPs; the kernel keeps IPv4
        addresses anyway. Skipped on a host without IPv6.
    type: bool
    default: false
  state:
    description: C(present) sets the values; C(absent) restores the recorded ones and removes the file.
    type: str
    choices: [present, absent]
    default: present
author: dsrprov developers
"""

EXAMPLES = r"""
- name: ARP keys for DSR on all and eth0, persisted and live
  dsrprov.dsr.dsr_arp_sysctls:
    path: /etc/sysctl.d/90-dsrprov-arp.conf
    interfaces: [eth0]
    arp_ignore: 1
    arp_announce: 2
    keep_addr_on_down: true

- name: Put the recorded live values back and remove the file
  dsrprov.dsr.dsr_arp_sysctls:
    path: /etc/sysctl.d/90-dsrprov-arp.conf
    state: absent
"""

RETURN = r"""
live_changes:
  description: Keys whose live value was (or, in check mode, would be) written.
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

ORIGINAL_MARK = "# original: "
KEEP_KEY = "net.ipv6.conf.lo.keep_addr_on_down"


def proc_path(key):
    return "/proc/sys/" + key.replace(".", "/")


def read_live(key):
    try:
        with open(proc_path(key), encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def strict_enough(live, wanted):
    """A live value at least as strict as ours is left alone: for both keys
    a larger value is stricter (e.g. arp_ignore=2 from a hardening role), and
    rewriting it would fight that role on every run."""
    try:
        return int(live) >= int(wanted)
    except (TypeError, ValueError):
        return False


def parse_originals(text):
    originals = {}
    for line in (text or "").splitlines():
        if line.startswith(ORIGINAL_MARK) and "=" in line:
            key, value = line[len(ORIGINAL_MARK) :].split("=", 1)
            originals[key.strip()] = value.strip()
    return originals


def render(values, originals):
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


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "interfaces": {"type": "list", "elements": "str", "default": []},
            "arp_ignore": {"type": "int", "default": 1},
            "arp_announce": {"type": "int", "default": 2},
            "keep_addr_on_down": {"type": "bool", "default": False},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        supports_check_mode=True,
    )
    p = module.params
    old_text = None
    if os.path.exists(p["path"]):
        with open(p["path"], encoding="utf-8") as handle:
            old_text = handle.read()
    originals = parse_originals(old_text)

    if p["state"] == "present":
        values = {}
        for scope in ["all"] + [i for i in p["interfaces"] if i != "all"]:
            if read_live("net.ipv4.conf.%s.arp_ignore" % scope) is None:
                module.fail_json(msg="interface %r has no IPv4 sysctls on this host (does it exist?)" % scope)
            values["net.ipv4.conf.%s.arp_ignore" % scope] = str(p["arp_ignore"])
            values["net.ipv4.conf.%s.arp_announce" % scope] = str(p["arp_announce"])
        if p["keep_addr_on_down"] and read_live(KEEP_KEY) is not None:
            values[KEEP_KEY] = "1"
        # Remember what was live before the first change, for absent.
        for key in values:
            if key not in originals:
                originals[key] = read_live(key)
        originals = {k: v for k, v in originals.items() if k in values}
        new_text = render(values, originals)
        live_changes = {k: v for k, v in values.items() if not strict_enough(read_live(k), v)}
    else:
        new_text = None
        live_changes = {k: v for k, v in originals.items() if v is not None and read_live(k) not in (None, v)}

    changed = bool(live_changes) or old_text != new_text
    result = {
        "changed": changed,
        "live_changes": live_changes,
        "diff": {
            "before_header": p["path"],
            "after_header": p["path"],
            "before": old_text or "",
            "after": new_text or "",
        },
    }
    if module.check_mode or not changed:
        module.exit_json(**result)

    # File first, then live: a crash in between leaves the boot state right.
    if new_text is None:
        if old_text is not None:
            os.unlink(p["path"])
    elif old_text != new_text:
        tmp = p["path"] + ".dsrprov-tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(new_text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p["path"])
    for key, value in live_changes.items():
        try:
            with open(proc_path(key), "w", encoding="ascii") as handle:
                handle.write(value + "\n")
        except OSError as exc:
            module.fail_json(msg="cannot set %s=%s live: %s (is /proc/sys read-only here?)" % (key, value, exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
