# Documentation stub for the PowerShell module dsr_win_loopback.ps1.

DOCUMENTATION = r"""
---
module: dsr_win_loopback
short_description: Install, name or remove the Microsoft KM-TEST Loopback Adapter
description:
  - Installs the Microsoft KM-TEST Loopback Adapter (hardware id C(*MSLOOP),
    driver C(%windir%\\inf\\netloop.inf)) without devcon.exe and without
    internet, by the same SetupAPI and newdev calls devcon makes, then
    renames it.
  - Finds an existing loopback by its hardware id (also one whose driver is
    missing), so a re-run never adds a second device.
  - Records in the registry (O(registry_key), values C(LoopbackCreatedByRole),
    C(LoopbackInstanceId) and C(LoopbackInterfaceGuid)) that it created the
    device; C(state=absent) removes the device only when both its instance id
    and its interface GUID match (Windows can reuse an instance id for a
    device made by hand), and reports C(reboot_required) as devcon does
    (C(DI_NEEDRESTART) or C(DI_NEEDREBOOT) in the device install params after
    C(DIF_REMOVE)).
  - With several KM-TEST adapters it uses, in this order, the one with
    O(interface_guid), the one named O(name), the one it created, the one
    holding one of O(vips), else the one with the lowest interface index.
    The others are never changed.
  - A device without driver (no driver key) is repaired only when it is the
    only KM-TEST device, because the driver update reinstalls the driver of
    every device with the hardware id. A failed read stops the module; it is
    never taken for a missing adapter.
  - Adapters are looked up by comparing names, never with C(-Name) (which
    takes wildcards), and renamed by piping the adapter object.
  - A loopback that exists and that this module did not create (one made by
    hand, following the vendor manual) is taken over; its name is recorded
    under O(registry_key)C(\\prior\\<interface guid>) before the rename,
    and C(dsr_win_netconfig state=absent) gives it back.
  - The driver is installed with C(INSTALLFLAG_NONINTERACTIVE), because over WinRM
    no UI can be shown; an install that wants UI then fails instead of
    waiting.
  - If the install fails after the device was registered, the half-made
    device is removed as devcon removes a device (C(SP_REMOVEDEVICE_PARAMS)
    with C(DI_REMOVEDEVICE_GLOBAL), then C(DIF_REMOVE)) and the module fails
    with the error, SetupAPI codes named (for example
    C(ERROR_NO_SUCH_DEVINST)) and the code in hex.
  - Check mode reports what would happen and changes nothing; C(--diff)
    shows the adapter before and after.
options:
  state:
    description: C(present) installs and names the adapter; C(absent) removes it if this module created it.
    type: str
    choices: [present, absent]
    default: present
  name:
    description: Name (interface alias) of the loopback adapter.
    type: str
    default: loopback
  inf_path:
    description: Full path of the driver INF. Empty means C(%windir%\\inf\\netloop.inf).
    type: str
    default: ''
  registry_key:
    description: Registry key holding the role's records.
    type: str
    default: HKLM:\\SOFTWARE\\dsrprov
  wait_seconds:
    description: How long to wait for the new network adapter to appear.
    type: int
    default: 60
  interface_guid:
    description: Interface GUID of the KM-TEST adapter to use when there are several (the role passes the one its preflight chose).
    type: str
    default: ''
  vips:
    description: VIPs of this host; with several KM-TEST adapters, one holding one of them is preferred.
    type: list
    elements: str
    default: []
author:
  - dsrprov maintainers (@dsrprov)
"""

EXAMPLES = r"""
- name: KM-TEST loopback named loopback
  dsr_win_loopback:
    name: loopback
  register: loopback
"""

RETURN = r"""
name:
  description: Name of the loopback adapter, the new one in check mode when a rename is due (null in check mode before it exists).
  returned: always
  type: str
interface_index:
  description: Its interface index.
  returned: always
  type: int
interface_guid:
  description: Its interface GUID.
  returned: always
  type: str
instance_id:
  description: PnP device instance id, for example C(ROOT\\NET\\0000).
  returned: always
  type: str
instance_ids:
  description: Every present device with hardware id C(*MSLOOP).
  returned: always
  type: list
  elements: str
created_by_role:
  description: Whether the device was created by this module.
  returned: always
  type: bool
reboot_required:
  description: Whether Windows asked for a reboot to finish the driver install or the device removal.
  returned: always
  type: bool
taken_over:
  description: Whether the loopback existed before and was not created by this module.
  returned: when O(state=present)
  type: bool
"""
