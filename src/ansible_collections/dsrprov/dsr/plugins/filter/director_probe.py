"""Ansible filters over the director's DSR-path check (``plugin_utils/director_probe.py``)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.dsrprov.dsr.plugins.plugin_utils.director_probe import (
    ProbeError,
    check_kind,
    probe_plan,
    probe_url,
)


def _plan(
    model: Any, check: str, addresses: Any, interface: str, address: str = "", address6: str = "", extra: Any = ()
) -> dict[str, Any]:
    """The probe namespace's plan, or ``{"problem": "one line"}``: the role refuses it before any change."""
    try:
        return probe_plan(list(model), check, list(addresses), interface, address, address6, list(extra or []))
    except ProbeError as exc:
        return {"config": None, "problem": f"dsrprov: {exc}"}


def _url(svc: Any, rip: str) -> str:
    try:
        return probe_url(svc, rip)
    except ProbeError as exc:
        raise AnsibleFilterError(f"dsrprov: {exc}") from None


class FilterModule:
    """Ansible filters: ``dsr_director_probe_plan``, ``dsr_director_check_kind``, ``dsr_director_probe_url``."""

    def filters(self) -> dict[str, Any]:
        return {
            "dsr_director_probe_plan": _plan,
            "dsr_director_check_kind": check_kind,
            "dsr_director_probe_url": _url,
        }
