"""What every part of the Linux real server's plan takes: the Desired end state and what was Found on the host.

The module builds both once, after every read and check; each part
(dsr_guard_setup, dsr_arp_sysctls, dsr_lo_persist, dsr_loopback_vips,
dsr_boot_unit) then plans its steps with the same call,
``plan(change, module, desired, found)``. Standard library only, Python 3.8+.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_lo_manager import LoState


@dataclass
class Desired:
    """The host as the call wants it (the module's options, checked)."""

    present: bool  # state=present; False: leave no trace
    vips: List[str]  # checked against the host's own addresses
    label: str = "lo:1"
    arp_interfaces: List[str] = field(default_factory=list)  # the given ones, else every interface found
    sysctl_file: str = "/etc/sysctl.d/90-dsrprov-arp.conf"
    record_file: str = "/etc/dsrprov/loopback-vips"
    manager_record: str = "/etc/dsrprov/loopback-manager.json"
    unit_name: str = "dsrprov-loopback-vips.service"
    guard: Optional[Dict[str, Any]] = None
    arp_ignore: int = 1
    arp_announce: int = 2
    keep_addr_on_down: bool = True


@dataclass
class Found:
    """What the reads found on the host before any change."""

    ip_command: str
    lo_state: Optional[LoState] = None  # who manages lo (the probe)
    lo_read: Optional[str] = None  # lo's lines of the module's own read of every address; None: read them again
