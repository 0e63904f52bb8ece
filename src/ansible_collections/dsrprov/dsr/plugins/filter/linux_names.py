"""Ansible filters over the names the Linux real-server role renders on the host (``module_utils/dsr_linux_names.py``).

The role runs them on the controller, so a bad label or interface name fails
the task with one line before the host is contacted."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_linux_names import (
    BadName,
    check_interfaces,
    check_label,
)


def _filter_label(label: Any) -> str:
    """Jinja filter: the label, or an error Ansible shows as is."""
    try:
        return check_label(label)
    except BadName as exc:
        raise AnsibleFilterError(f"dsrprov: {exc}") from None


def _filter_interfaces(names: Any) -> list[str]:
    """Jinja filter: the interface names, or an error Ansible shows as is."""
    try:
        return check_interfaces(names)
    except BadName as exc:
        raise AnsibleFilterError(f"dsrprov: {exc}") from None


class FilterModule:
    """Ansible filters: ``dsr_check_lo_label``, ``dsr_check_interfaces``."""

    def filters(self) -> dict[str, Any]:
        return {"dsr_check_lo_label": _filter_label, "dsr_check_interfaces": _filter_interfaces}
