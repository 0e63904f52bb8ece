# Documentation stub for the PowerShell module dsr_win_firewall.ps1.

DOCUMENTATION = r"""
---
module: dsr_win_firewall
short_description: Windows Firewall rules that let DSR traffic reach a VIP
description:
  - One inbound allow rule per VIP, protocol and port, with C(LocalAddress)
    set to the VIP and C(LocalPort) to the port, in the rule group O(group).
  - Rules in O(group) that are not in O(rules) are removed, so the group
    holds exactly the wanted rules; C(state=absent) removes the whole group.
  - A rule that differs from the wanted one is updated in place
    (C(Set-NetFirewallRule)), never removed and re-created, and rules no
    longer wanted are removed only after the wanted ones are in place.
  - The profile is C(Any) by default. The KM-TEST loopback has no gateway, so
    Windows puts it in an unidentified network with the Public profile;
    scoping each rule to a VIP and port keeps it as narrow as a
    profile-specific rule while working whatever profile applies.
  - Check mode and C(--diff) are supported.
options:
  state:
    description: C(present) or C(absent).
    type: str
    choices: [present, absent]
    default: present
  group:
    description: Rule group that marks the rules owned by dsrprov.
    type: str
    default: dsrprov
  profile:
    description:
      - Firewall profile of the rules, C(Any) or one or more of C(Domain),
        C(Private), C(Public), comma-separated (case and spaces do not
        matter).
      - Anything else fails the module before any rule changes. Profiles
        are compared as flags, so C(Domain,Private) matches a rule that
        Windows shows as C(Domain, Private).
    type: str
    default: Any
  rules:
    description: Wanted rules.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Rule name (its unique id).
        type: str
        required: true
      vip:
        description: The VIP (rule LocalAddress).
        type: str
        required: true
      protocol:
        description: C(tcp) or C(udp).
        type: str
        choices: [tcp, udp]
        default: tcp
      port:
        description: Local port.
        type: int
        required: true
      services:
        description: Names of the services behind the rule, for its description.
        type: list
        elements: str
        default: []
author:
  - dsrprov maintainers (@dsrprov)
"""

EXAMPLES = r"""
- name: Allow HTTP to the VIP
  dsr_win_firewall:
    rules:
      - {name: dsrprov-tcp-80-192.0.2.10, vip: 192.0.2.10, protocol: tcp, port: 80}
"""

RETURN = r"""
rules:
  description: Names of the rules that are now wanted.
  returned: always
  type: list
  elements: str
actions:
  description: One line per change made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
"""
