# Documentation stub for the PowerShell module dsr_win_facts.ps1.
# The module itself runs on the Windows host; this file only documents it.

DOCUMENTATION = r"""
---
module: dsr_win_facts
short_description: Read-only preflight facts for a DSR real server on Windows
description:
  - Reports the Windows build, whether the connection has administrator
    rights, which adapter is "the network adapter", the host's own addresses
    and any Microsoft KM-TEST Loopback Adapters.
  - Never changes anything; the same in check mode.
  - On a build older than 14393 (Windows Server 2016, the oldest that
    Ansible supports) it returns only C(os_build), C(os_version),
    C(minimum_build) and C(is_admin), so the role can stop with a clear
    message before any change.
options:
  network_adapter:
    description:
      - Name of the network adapter to use. Empty selects it automatically,
        first the adapter holding O(connect_address), then the adapter with
        the default route of lowest total metric (IPv4 first, then IPv6).
    type: str
    default: ''
  network_name:
    description:
      - The name the role renames the network adapter to, if any. When no
        adapter is named O(network_adapter) but one is named O(network_name),
        that one is used, so a re-run after the rename still finds it.
    type: str
    default: ''
  connect_address:
    description:
      - The address Ansible connects to. Used only if it is an IP address.
    type: str
    default: ''
  loopback_hardware_id:
    description: Hardware id of the loopback adapter (C(ComponentID), the same in every language).
    type: str
    default: '*MSLOOP'
  loopback_name:
    description: Name the role gives its loopback; with several KM-TEST adapters the one so named is chosen first.
    type: str
    default: loopback
  registry_key:
    description: Registry key holding the role's records (the marker of the loopback it created).
    type: str
    default: HKLM:\\SOFTWARE\\dsrprov
  vips:
    description: The host's VIPs; with several KM-TEST adapters and none named O(loopback_name) or created by the role, the one holding a VIP is chosen.
    type: list
    elements: str
    default: []
author:
  - dsrprov maintainers (@dsrprov)
"""

EXAMPLES = r"""
- name: Preflight
  dsr_win_facts:
    connect_address: "{{ ansible_host }}"
  register: facts
"""

RETURN = r"""
os_build:
  description: Windows build number (14393 is Windows Server 2016).
  returned: always
  type: int
  sample: 20348
os_version:
  description: Full version.
  returned: always
  type: str
  sample: 10.0.20348.0
minimum_build:
  description: The oldest build the role supports, 14393 (Windows Server 2016).
  returned: always
  type: int
os_caption:
  description: Product name.
  returned: when the build is 14393 or later
  type: str
is_admin:
  description: Whether the connection runs with administrator rights.
  returned: always
  type: bool
network_adapter:
  description: The selected network adapter, or null when none was found.
  returned: always
  type: dict
  sample: {name: Ethernet0, interface_index: 6, interface_guid: '{...}', selected_by: default_route}
host_addresses:
  description: Every IP address on the host, except those on the chosen KM-TEST loopback (RV(loopback)); addresses on any other loopback are included.
  returned: always
  type: list
  elements: str
loopback:
  description: >-
    The KM-TEST loopback the role will use (name, interface_index,
    interface_guid, pnp_device_id, description, selected_by: name, marker,
    vip or first), or null when there is none.
  returned: always
  type: dict
loopback_adapters:
  description: KM-TEST loopback adapters found (name, interface_index, pnp_device_id).
  returned: always
  type: list
  elements: dict
"""
