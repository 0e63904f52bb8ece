"""Ansible filters over the service model (``plugin_utils/service_model.py``):
the value, or "" / the one-line reason for the roles' asserts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.dsrprov.dsr.plugins.plugin_utils.service_model import (
    DEFAULT_REALSERVER_GROUPS,
    ModelError,
    check_director,
    check_vrrp,
    director_model,
    pool_plan,
    service_vips,
)


def _as_value(check: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that returns the checked value, or fails the task with the reason."""

    def value(*args: Any) -> Any:
        try:
            return check(*args)
        except ModelError as exc:
            raise AnsibleFilterError(f"dsrprov: {exc}") from None

    return value


def _as_problem(check: Callable[..., Any]) -> Callable[..., str]:
    """A filter that returns "" or the one-line reason, for the roles' asserts."""

    def problem(*args: Any) -> str:
        try:
            check(*args)
        except ModelError as exc:
            return f"dsrprov: {exc}"
        return ""

    return problem


def _model(
    services: Any,
    groups: Any,
    hostvars: Any,
    realserver_groups: Any = DEFAULT_REALSERVER_GROUPS,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    return director_model(services, groups, hostvars, list(realserver_groups), allow_empty)


def _vrrp(instances: Any, model: Any) -> list[dict[str, Any]]:
    return check_vrrp(instances, list(model))


def _director(model: Any, host: str, addresses: Any) -> None:
    check_director(list(model), host, list(addresses))


def _pool_plan(model: Any, current: Any, add_joining: Any = True) -> dict[str, Any]:
    return pool_plan(list(model), None if current is None else list(current), bool(add_joining))


class FilterModule:
    """Ansible filters: ``dsr_director_model``, ``dsr_director_model_problem``,
    ``dsr_director_vrrp``, ``dsr_director_vrrp_problem``, ``dsr_director_host_problem``,
    ``dsr_director_pool_plan``, ``dsr_service_vips``."""

    def filters(self) -> dict[str, Any]:
        return {
            "dsr_director_model": _as_value(_model),
            "dsr_director_model_problem": _as_problem(_model),
            "dsr_director_vrrp": _as_value(_vrrp),
            "dsr_director_vrrp_problem": _as_problem(_vrrp),
            "dsr_director_host_problem": _as_problem(_director),
            "dsr_director_pool_plan": _pool_plan,
            "dsr_service_vips": service_vips,
        }
