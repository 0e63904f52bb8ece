"""Ansible filters over the VIP rules (``plugin_utils/vips.py``)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.dsrprov.dsr.plugins.plugin_utils.vips import VipError, check_vips, vip_family, vip_prefix


def _filter_check(vips: Any, host_addresses: Any = (), allow_empty: bool = False) -> list[str]:
    """Jinja filter: the normalised list, or an error Ansible shows as is."""
    try:
        return check_vips(vips, host_addresses or (), allow_empty=allow_empty)
    except VipError as exc:
        raise AnsibleFilterError(f"dsrprov: {exc}") from None


def _filter_problem(vips: Any, host_addresses: Any = (), allow_empty: bool = False) -> str:
    """Jinja filter: "" when the list is fine, else the one-line reason.

    The roles assert on it, so Ansible prints the reason as the task's message."""
    try:
        check_vips(vips, host_addresses or (), allow_empty=allow_empty)
    except VipError as exc:
        return f"dsrprov: {exc}"
    return ""


class FilterModule:
    """Ansible filters: ``dsr_check_vips``, ``dsr_vip_problem``, ``dsr_vip_prefix``, ``dsr_vip_family``."""

    def filters(self) -> dict[str, Any]:
        return {
            "dsr_check_vips": _filter_check,
            "dsr_vip_problem": _filter_problem,
            "dsr_vip_prefix": vip_prefix,
            "dsr_vip_family": vip_family,
        }
