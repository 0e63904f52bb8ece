"""Ansible filters over the names the Linux real-server role renders on the host (``module_utils/dsr_linux_names.py``).

The role runs them on the controller, so a bad label or interface name fails
the task with one line before the host is contacted."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_linux_names import (
    BadName,
    check_count,
    check_interfaces,
    check_label,
    check_path,
    check_unit_name,
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


def _filter_path(path: Any, what: str = "path") -> str:
    """Jinja filter: an absolute, plain path (the guard's program, configuration, textfile directory)."""
    try:
        return check_path(path, what)
    except BadName as exc:
        raise AnsibleFilterError(f"dsrprov: {exc}") from None


def _filter_unit_name(name: Any, what: str = "unit name") -> str:
    """Jinja filter: a plain systemd service name."""
    try:
        return check_unit_name(name, what)
    except BadName as exc:
        raise AnsibleFilterError(f"dsrprov: {exc}") from None


def _filter_count(value: Any, what: str = "value") -> int:
    """Jinja filter: a whole number from 1 to a day's seconds (the guard's period and flapping limits)."""
    try:
        return check_count(value, what)
    except BadName as exc:
        raise AnsibleFilterError(f"dsrprov: {exc}") from None


class FilterModule:
    """Ansible filters: ``dsr_check_lo_label``, ``dsr_check_interfaces``, ``dsr_check_path``,
    ``dsr_check_unit_name``, ``dsr_check_count``."""

    def filters(self) -> dict[str, Any]:
        return {
            "dsr_check_lo_label": _filter_label,
            "dsr_check_interfaces": _filter_interfaces,
            "dsr_check_path": _filter_path,
            "dsr_check_unit_name": _filter_unit_name,
            "dsr_check_count": _filter_count,
        }
