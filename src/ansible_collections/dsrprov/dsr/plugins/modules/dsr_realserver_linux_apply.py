#!/usr/bin/python
"""Make a Linux host a DSR real server (or leave no trace of it) in one module call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_realserver_linux_apply
short_description: Make a Linux host a Direct Server Return real server, in one step on the host
description:
  - The whole job of the role M(dsrprov.dsr.dsr_realserver_linux) in one call, so one round trip per host
    (the precedent is linux-system-roles/network's C(network_connections)).
  - Called without arguments, as the role calls it, its action plugin builds them on the controller from the
    role's variables, after validating them against the role's argument spec and checking the values that end
    up in files and commands on the host; bad input fails there, before the host is contacted.
  - Reads the host (its addresses and interfaces, the sysctl files that apply after the role's own, whether
    PID 1 is systemd, who manages C(lo)), then checks everything, then changes the host. Every check runs
    before any change; the first problem fails the call with one line and the host as it was.
  - C(state=present), in this order; ARP keys before any VIP, so the host never holds a VIP while answering
    ARP for it. C(arp_ignore) and C(arp_announce) for C(all) and each interface (and
    C(net.ipv6.conf.lo.keep_addr_on_down=1)) in one sysctl.d file and live; the VIPs in the configuration
    of whatever manages C(lo) (NetworkManager profiles and dispatcher hook, systemd-networkd drop-in);
    the VIPs on C(lo) (IPv4 C(/32) labelled, IPv6 C(/128) C(nodad)); the systemd unit that restores them
    at boot, written, C(daemon-reload) when it changed, enabled and started, never restarted.
  - C(state=absent) undoes it all in the reverse order; the manager's configuration first (nothing may put
    the VIPs back), the VIPs, the unit, then the sysctl file and the live values recorded before the first change.
  - When a change fails, the changes this call made are undone, newest first, and the call fails saying so.
  - Changes to the manager's configuration are noted in I(manager_record) before they are made (write-ahead),
    so a call killed at any point leaves a record from which the next call finishes them and C(state=absent)
    removes them; a change whose undo failed stays in the record for the same reason.
  - Check mode runs every read and check and reports exactly the changes a real run would make; C(--diff)
    shows each file, the live sysctls, the VIPs on C(lo) and the unit's state.
options:
  state:
    description: C(present) configures the host; C(absent) removes every trace.
    type: str
    choices: [present, absent]
    default: present
  vips:
    description:
      - The VIPs, bare or with a host prefix, already checked on the controller (by the role's step); checked
        here again against the host's own addresses.
      - With C(state=absent), VIPs given here are removed from C(lo) too, even when the record lost them
        (their host address only; a wider one of the same VIP, made by hand, stays).
      - A VIP on C(lo) with a wider prefix (C(VIP/24)) is replaced by the host prefix.
    type: list
    elements: str
    default: []
  host_name:
    description: The host's name in the inventory, for the messages.
    type: str
    default: this host
  host_address:
    description: The address Ansible reaches the host at; a VIP may not be that either.
    type: str
  arp_interfaces:
    description:
      - Interfaces that get the per-interface ARP keys besides C(all); empty means every non-loopback interface.
      - Names as the kernel takes them (dots and dashes included, at most 15 bytes); a name with C(/), C(:),
        whitespace, quotes or shell characters is refused before the host is read.
    type: list
    elements: str
    default: []
  label:
    description:
      - Label of the IPv4 VIPs on C(lo) - C(lo:) and letters, digits, C(_) or C(-), at most 15 bytes in all;
        anything else is refused before the host is read.
    type: str
    default: "lo:1"
  sysctl_file:
    description: The sysctl file this module owns.
    type: path
    default: /etc/sysctl.d/90-dsrprov-arp.conf
  sysctl_override_action:
    description: C(fail) or C(warn) when a sysctl file applied after I(sysctl_file) would weaken its keys at boot.
    type: str
    choices: [fail, warn]
    default: fail
  record_file:
    description: The file listing the VIPs this module put on C(lo) (so it removes only its own).
    type: path
    default: /etc/dsrprov/loopback-vips
  manager_record:
    description: Where what was changed in the configuration of whatever manages C(lo) is recorded (root only).
    type: path
    default: /etc/dsrprov/loopback-manager.json
  unit_name:
    description:
      - The systemd unit that restores the VIPs at boot.
      - "Letters, digits, C(_ . @ : -), ending in C(.service)."
    type: str
    default: dsrprov-loopback-vips.service
  guard:
    description:
      - The guard (the role's C(dsrprov-guard) service) - what it is told is part of this call's plan, and comes
        before any other change, since a running guard acts on C(lo). Omitted, the guard is left alone.
      - C(state=present) with I(mode) C(heal) or C(report) - first writes I(config) (the guard re-reads it before
        it judges the next change of C(lo)), then creates I(textfile_dir) when missing and notes in I(config) that
        dsrprov made it.
      - C(state=absent), or I(mode) C(off) - first stops the guard's unit when it runs (it would put back a VIP this
        call removes), disables it, removes it (and reloads systemd), then removes I(program), its metric file,
        I(textfile_dir) (and the parents dsrprov made with it) when dsrprov made it and it is empty, and I(config).
      - With I(program_source) (and C(state=present), I(mode) C(heal) or C(report)) - last, once the VIPs are in
        place, writes I(program) and the guard's unit, enables and starts it, and restarts it when either changed
        (a new configuration alone needs no restart). Without it, installing and starting the guard is the
        caller's.
      - Like every change, these happen only after every check passed, show in check mode and C(--diff), and are
        undone when a later change fails. Paths must be absolute with no whitespace, quotes or shell or systemd
        special characters; the unit name a plain C(.service) name; anything else is refused with one line
        before the host is read.
    type: dict
    suboptions:
      mode:
        description: C(heal), C(report) or C(off).
        type: str
        choices: [heal, report, "off"]
        default: heal
      config:
        description: The guard's configuration file (JSON).
        type: str
        default: /etc/dsrprov/guard.json
      program:
        description: The guard program (removed here with C(state=absent) or I(mode) C(off)).
        type: str
        default: /usr/local/sbin/dsrprov-guard
      unit_name:
        description: The guard's systemd unit.
        type: str
        default: dsrprov-guard.service
      textfile_dir:
        description: node_exporter's textfile collector directory, where the guard writes its metrics.
        type: str
        default: /var/lib/prometheus/node-exporter
      period:
        description: Seconds between two checks of the sysctls.
        type: int
        default: 30
      flap_limit:
        description: Restores of one VIP within I(flap_window) seconds beyond which the guard stops restoring it.
        type: int
        default: 10
      flap_window:
        description: The window of the flapping limit, in seconds.
        type: int
        default: 300
      program_source:
        description: The guard program's text (the role passes its C(files/dsrprov_guard.py)).
        type: str
author: dsrprov maintainers (@dsrprov)
"""

EXAMPLES = r"""
- name: Make this host a DSR real server for two VIPs
  dsrprov.dsr.dsr_realserver_linux_apply:
    vips: [192.0.2.10, "2001:db8::10"]
    host_name: "{{ inventory_hostname }}"
    host_address: "{{ ansible_host | default(inventory_hostname) }}"

- name: Leave no trace
  dsrprov.dsr.dsr_realserver_linux_apply:
    state: absent
    vips: [192.0.2.10, "2001:db8::10"]
"""

RETURN = r"""
changes:
  description: The changes made (in check mode, the ones a real run would make), in order.
  returned: always
  type: list
lo_manager:
  description: "Who manages C(lo): C(manager), C(detail), C(problems) and C(risks)."
  returned: always
  type: dict
persisted_in:
  description: Where the VIPs are kept besides the unit (NetworkManager profiles, hook, drop-in).
  returned: always
  type: list
live_sysctls:
  description: Keys whose live value was (or, in check mode, would be) written.
  returned: always
  type: dict
added:
  description: VIPs added to C(lo).
  returned: always
  type: list
removed:
  description: VIPs removed from C(lo).
  returned: always
  type: list
interfaces:
  description: The interfaces that got the per-interface ARP keys.
  returned: always
  type: list
ip_command:
  description: Absolute path of the C(ip) command.
  returned: always
  type: str
guard:
  description: "The guard's mode as configured (C(heal), C(report) or C(off)) and whether dsrprov made its
    textfile directory; empty without the I(guard) option."
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_arp_sysctls as arp
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_boot_unit as unit
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_guard_setup as guard_setup
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_host_facts as facts
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_persist as persist
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_loopback_vips as lo_vips
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_sysctl_overrides as overrides
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import ChangePlan, StepFailed
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_linux_names import (
    BadName,
    check_interface,
    check_interfaces,
    check_label,
    check_unit_name,
)
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_lo_manager import assess
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_plan_inputs import Desired, Found
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_vips import VipError, check_vips

# The values the role sets, and what a later sysctl file must not undo: a
# negative all.keep_addr_on_down overrides lo's (the kernel takes all when it
# is non-zero), so it is checked though the role never sets it.
ARP_IGNORE = 1
ARP_ANNOUNCE = 2
SYSCTL_VALUES = {
    "net.ipv4.conf.all.arp_ignore": ARP_IGNORE,
    "net.ipv4.conf.all.arp_announce": ARP_ANNOUNCE,
    "net.ipv6.conf.lo.keep_addr_on_down": 1,
    "net.ipv6.conf.all.keep_addr_on_down": 0,
}


def check_names(module):
    """The label and interface names go into a root shell hook, a unit and
    sysctl/networkd files: checked before the host is even read."""
    p = module.params
    try:
        check_label(p["label"])
        check_interfaces(p["arp_interfaces"])
        # A file under /etc/systemd/system and an argument of systemctl: no "/" or "..".
        check_unit_name(p.get("unit_name", "dsrprov-loopback-vips.service"), "unit_name")
        guard_setup.check(p.get("guard"))
    except (BadName, ValueError) as exc:
        module.fail_json(msg="dsrprov: %s" % exc)


def read_and_check(module):
    """Every read and every check, before any change. Return what the plan needs."""
    p = module.params
    present = p["state"] == "present"
    ip_command = facts.find_ip_command()
    found = facts.read_addresses(module, ip_command)
    own = found["addresses"] + ([p["host_address"]] if p["host_address"] else [])
    problems = []
    vips = []
    try:
        vips = check_vips(p["vips"], own if present else (), allow_empty=not present)
    except VipError as exc:
        problems.append("dsrprov: %s" % exc)
    interfaces = []
    for name in facts.interfaces():
        try:
            interfaces.append(check_interface(name))
        except BadName as exc:
            # The kernel takes names no sysctl line could carry; "all" covers them.
            module.warn("%s: skipped for the per-interface ARP keys (net.ipv4.conf.all covers it)" % exc)
    found_overrides = overrides.find_overrides(p["sysctl_file"], SYSCTL_VALUES)
    for item in found_overrides:
        module.warn("%(file)s sets %(key)s = %(value)s, which would weaken DSR's settings at boot" % item)
    if len(found["ipv4_interfaces"]) > 1:
        # arp_ignore=1 stops answering ARP for an address held by another
        # interface; multi-homed setups that relied on that need a look.
        module.warn(
            "this host has IPv4 addresses on several interfaces (%s): with arp_ignore=1 each "
            "answers ARP only for its own addresses" % ", ".join(found["ipv4_interfaces"])
        )
    lo_state = persist.probe(module)
    lo = assess(lo_state, vips)
    arp_interfaces = p["arp_interfaces"] or interfaces
    if present:
        if not facts.runs_systemd():
            problems.append(
                "dsrprov: %s does not run systemd as PID 1; the VIPs could not be restored at boot" % p["host_name"]
            )
        problems += ["dsrprov: %s" % problem for problem in lo.problems]
        if p["sysctl_override_action"] == "fail":
            problems += [
                "dsrprov: %s at boot (it applies after %s); fix it or set "
                "dsr_realserver_linux_sysctl_override_action=warn" % (line, p["sysctl_file"])
                for line in overrides.summaries(found_overrides)
            ]
        missing = arp.missing_interface(arp_interfaces)
        if missing:
            problems.append(missing)
    return {
        "ip_command": ip_command,
        "lo_read": found["lo"],
        "vips": vips,
        "lo_state": lo_state,
        "lo": {"manager": lo.manager, "detail": lo.detail, "problems": lo.problems, "risks": lo.risks},
        "arp_interfaces": arp_interfaces,
        "problems": problems,
    }


def plan_changes(module, desired, found):
    """The changes, in the order they are made, and what each part planned."""
    change = ChangePlan()
    # The parts of the plan, all called the same way.
    parts = {
        "guard": guard_setup.plan,
        "sysctls": arp.plan,
        "manager": persist.plan,
        "vips": lo_vips.plan,
        "boot unit": unit.plan,
        "guard install": guard_setup.install,
    }
    # The guard first, in both directions: it acts on lo between runs, so it
    # is told (or stopped) before anything it watches changes. ARP next: the
    # VIPs go on lo only once the host can no longer answer ARP for them.
    # The guard's program and unit last, once what it guards is in place.
    # Absent: the manager's configuration first (nothing may put the VIPs
    # back), then the VIPs, the unit, and the ARP sysctls last.
    if desired.present:
        order = ("guard", "sysctls", "manager", "vips", "boot unit", "guard install")
    else:
        order = ("guard", "manager", "vips", "boot unit", "sysctls")
    return change, {name: parts[name](change, module, desired, found) or {} for name in order}


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "vips": {"type": "list", "elements": "str", "default": []},
            "host_name": {"type": "str", "default": "this host"},
            "host_address": {"type": "str"},
            "arp_interfaces": {"type": "list", "elements": "str", "default": []},
            "label": {"type": "str", "default": "lo:1"},
            "sysctl_file": {"type": "path", "default": "/etc/sysctl.d/90-dsrprov-arp.conf"},
            "sysctl_override_action": {"type": "str", "choices": ["fail", "warn"], "default": "fail"},
            "record_file": {"type": "path", "default": "/etc/dsrprov/loopback-vips"},
            "manager_record": {"type": "path", "default": "/etc/dsrprov/loopback-manager.json"},
            "unit_name": {"type": "str", "default": "dsrprov-loopback-vips.service"},
            "guard": guard_setup.OPTION,
        },
        supports_check_mode=True,
    )
    check_names(module)
    try:
        found = read_and_check(module)
    except StepFailed as exc:
        module.fail_json(msg=str(exc))
    if found["problems"]:
        module.fail_json(msg=found["problems"][0], problems=found["problems"], lo_manager=found["lo"])
    p = module.params
    # Built once: every part of the plan takes these two.
    desired = Desired(
        present=p["state"] == "present",
        vips=found["vips"],
        label=p["label"],
        arp_interfaces=found["arp_interfaces"],
        sysctl_file=p["sysctl_file"],
        record_file=p["record_file"],
        manager_record=p["manager_record"],
        unit_name=p["unit_name"],
        guard=p["guard"],
        arp_ignore=ARP_IGNORE,
        arp_announce=ARP_ANNOUNCE,
    )
    host = Found(ip_command=found["ip_command"], lo_state=found["lo_state"], lo_read=found["lo_read"])
    try:
        change, planned = plan_changes(module, desired, host)
    except (StepFailed, OSError, ValueError) as exc:
        module.fail_json(msg="dsrprov: %s" % exc)
    result = {
        "changed": change.changed,
        "changes": change.changes,
        "lo_manager": found["lo"],
        "persisted_in": planned["manager"].get("persisted_in", []),
        "live_sysctls": planned["sysctls"],
        "added": planned["vips"].get("added", []),
        "removed": planned["vips"].get("removed", []),
        "interfaces": found["arp_interfaces"],
        "ip_command": found["ip_command"],
        "guard": planned["guard"],
        "diff": change.diffs,
    }
    if module.check_mode or not change.steps:
        module.exit_json(**result)
    failure = change.apply()
    if failure is not None:
        module.fail_json(msg="dsrprov: %s" % failure, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
