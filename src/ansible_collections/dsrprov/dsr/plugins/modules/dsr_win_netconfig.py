# Documentation stub for the PowerShell module dsr_win_netconfig.ps1.

DOCUMENTATION = r"""
---
module: dsr_win_netconfig
short_description: VIPs, metric and weak host model for Direct Server Return on Windows
description:
  - On the loopback adapter (found by O(loopback_interface_guid), so check
    mode finds it before a due rename) puts each VIP as a host
    address (IPv4 /32 = mask 255.255.255.255, IPv6 /128) with
    C(SkipAsSource), no gateway, IPv4 DHCP off, DNS registration off,
    interface metric O(metric) with automatic metric off, C(WeakHostSend)
    and C(WeakHostReceive) enabled.
  - On the network adapter enables C(WeakHostReceive).
  - Both for IPv4, and for IPv6 whenever a VIP is IPv6.
  - Optionally renames the network adapter.
  - Every value it changes on an adapter the role did not create is first
    recorded under O(registry_key)C(\\prior\\<interface guid>); C(state=absent)
    removes the VIPs and puts those values back.
  - A VIP is removed (on C(state=absent), or when it leaves the list) from
    each policy store that holds it, C(ActiveStore) and C(PersistentStore),
    because C(Remove-NetIPAddress) works on the active store by default.
  - Waits up to O(wait_seconds) for the loopback's IP interface of each
    family with VIPs (TCP/IP binds a new adapter a moment after it
    appears), and names the cause on timeout.
  - A failed read stops the module; only "not found" counts as absent.
  - Check mode reports every change it would make and makes none.
options:
  state:
    description: C(present) or C(absent).
    type: str
    choices: [present, absent]
    default: present
  vips:
    description: The VIPs, validated on the controller (bare or with /32 or /128).
    type: list
    elements: str
    default: []
  loopback_name:
    description:
      - Name of the KM-TEST loopback adapter (after dsr_win_loopback's rename), used in messages and, with
        C(state=absent), to find it when O(loopback_interface_guid) is empty.
    type: str
    default: loopback
  loopback_interface_guid:
    description: Interface GUID of the loopback, as dsr_win_loopback returns it. Required with C(state=present) unless O(loopback_pending).
    type: str
    default: ''
  wait_seconds:
    description: How long to wait for the loopback's IPv4/IPv6 interface to exist.
    type: int
    default: 60
  loopback_pending:
    description:
      - Check mode only. The loopback does not exist yet because the
        install was only simulated; report the settings it would get.
    type: bool
    default: false
  network_interface_index:
    description: Interface index of the network adapter. Required with C(state=present).
    type: int
  network_name:
    description: New name for the network adapter; empty keeps its name.
    type: str
    default: ''
  metric:
    description: Interface metric of the loopback.
    type: int
    default: 254
  registry_key:
    description: Registry key holding the role's records.
    type: str
    default: HKLM:\\SOFTWARE\\dsrprov
author:
  - dsrprov maintainers (@dsrprov)
"""

EXAMPLES = r"""
- name: VIPs and weak host model
  dsr_win_netconfig:
    vips: [192.0.2.10, 2001:db8::10]
    loopback_name: loopback
    network_interface_index: 6
"""

RETURN = r"""
actions:
  description: One line per change made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["loopback add 192.0.2.10/32 SkipAsSource", "Ethernet0 IPv4 weak_host_receive: Disabled -> Enabled"]
"""
