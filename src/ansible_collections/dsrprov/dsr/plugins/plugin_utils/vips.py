"""The rules a VIP list must satisfy, for the CLI and the filters (controller side).

The rules themselves live in ``module_utils/dsr_vips.py``, the single source,
because the Linux real-server module checks the VIPs against the host's own
addresses on the host with the very same code.
"""

from __future__ import annotations

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_vips import (
    Address,
    VipError,
    check_vips,
    parse_vip,
    vip_family,
    vip_prefix,
)

__all__ = ["Address", "VipError", "check_vips", "parse_vip", "vip_family", "vip_prefix"]
