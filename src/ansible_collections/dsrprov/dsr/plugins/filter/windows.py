"""Windows-only filters of the dsr_realserver_windows role.

``dsr_windows_firewall_rules`` turns the host's (already validated) VIP list
plus either the group-wide service model (``dsr_services``) or an explicit
port list into the firewall rules the ``dsr_win_firewall`` module enforces.
``dsr_windows_firewall_profile`` checks the firewall profile and writes it
the one way the module compares it. Both run on the controller, before
anything on the host changes, and raise a one-line error for bad input.

Standard library only: Ansible loads this file by path, and the tests import
it the same way.
"""

from __future__ import annotations

import difflib
import ipaddress
from typing import Any

PROTOCOLS = ("tcp", "udp")
RULE_PREFIX = "dsrprov"
# Windows Firewall's profile flags, in Windows' own order. "Any" is none of
# them (0) and means all.
FIREWALL_PROFILES = ("Domain", "Private", "Public")
PROFILE_VARIABLE = "dsr_realserver_windows_firewall_profile"


class FirewallSpecError(ValueError):
    """The service or port list is malformed; the message is one readable line."""


def _normalise_vip(text: Any) -> str | None:
    """Bare, compressed form of a VIP (``10.0.0.1/32`` -> ``10.0.0.1``), or None."""
    if not isinstance(text, str):
        return None
    try:
        return str(ipaddress.ip_address(text.strip().split("/")[0]))
    except ValueError:
        return None


def _port(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise FirewallSpecError(f"{where}: port {value!r} is not a number")
    try:
        port = int(str(value).strip())
    except ValueError:
        raise FirewallSpecError(f"{where}: port {value!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise FirewallSpecError(f"{where}: port {port} is outside 1-65535")
    return port


def _protocol(value: Any, where: str) -> str:
    proto = str(value if value is not None else "tcp").strip().lower()
    if proto not in PROTOCOLS:
        raise FirewallSpecError(f"{where}: protocol {value!r} must be tcp or udp")
    return proto


def rule_name(vip: str, protocol: str, port: int) -> str:
    """The firewall rule name (its unique ID in Windows Firewall)."""
    return f"{RULE_PREFIX}-{protocol}-{port}-{vip}"


def firewall_rules(
    vips: list[str],
    services: Any = None,
    ports: Any = None,
) -> list[dict[str, Any]]:
    """Rules, one per (VIP, protocol, port), sorted by name.

    ``ports`` (a list of ``{port, protocol}``), when non-empty, wins and
    applies to every VIP of the host. Otherwise the ports come from
    ``services`` (``dsr_services``: ``{name, vip, port, protocol}``), keeping
    only the services whose VIP is one of ``vips``.
    """
    host_vips = [v for v in (_normalise_vip(v) for v in vips or []) if v]
    wanted: dict[str, dict[str, Any]] = {}

    def add(vip: str, proto: str, port: int, service: str) -> None:
        name = rule_name(vip, proto, port)
        rule = wanted.setdefault(
            name,
            {"name": name, "vip": vip, "protocol": proto, "port": port, "services": []},
        )
        if service and service not in rule["services"]:
            rule["services"].append(service)

    if ports:
        if not isinstance(ports, list):
            raise FirewallSpecError("dsr_realserver_windows_firewall_ports must be a list")
        for i, item in enumerate(ports):
            where = f"dsr_realserver_windows_firewall_ports[{i}]"
            if not isinstance(item, dict) or "port" not in item:
                raise FirewallSpecError(f"{where}: expected a mapping with 'port' (and 'protocol')")
            port = _port(item["port"], where)
            proto = _protocol(item.get("protocol"), where)
            for vip in host_vips:
                add(vip, proto, port, "")
    else:
        if services is None:
            services = []
        if not isinstance(services, list):
            raise FirewallSpecError("dsr_services must be a list")
        for i, svc in enumerate(services):
            where = f"dsr_services[{i}]"
            if not isinstance(svc, dict):
                raise FirewallSpecError(f"{where}: expected a mapping with vip, port, protocol")
            name = str(svc.get("name", where))
            svc_vip = _normalise_vip(svc.get("vip"))
            if svc_vip is None:
                raise FirewallSpecError(f"{where} ({name}): vip {svc.get('vip')!r} is not an address")
            if svc_vip not in host_vips:
                continue
            if "port" not in svc:
                raise FirewallSpecError(f"{where} ({name}): no port")
            add(svc_vip, _protocol(svc.get("protocol"), where), _port(svc["port"], where), name)
    return [wanted[k] for k in sorted(wanted)]


def firewall_profile(value: Any) -> str:
    """``Any``, or the named profiles joined by commas in Windows' order.

    Accepts a string (``"Domain, private"``) or a list of names, case and
    spaces ignored; raises FirewallSpecError for anything else, so that a
    typo never reaches the host (where it would cost the service its rule).
    """
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise FirewallSpecError(f"{PROFILE_VARIABLE} must be a string such as 'Any' or 'Domain,Private', not {value!r}")
    names = [n for n in names if n]
    usage = "use Any, or one or more of Domain, Private, Public (comma-separated)"
    if not names:
        raise FirewallSpecError(f"{PROFILE_VARIABLE} is empty; {usage}")
    by_lower = {p.lower(): p for p in (*FIREWALL_PROFILES, "Any")}
    chosen: set[str] = set()
    for name in names:
        canonical = by_lower.get(name.lower())
        if canonical is None:
            close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
            hint = f" (did you mean {by_lower[close[0]]}?)" if close else ""
            raise FirewallSpecError(f"{PROFILE_VARIABLE}: {name!r} is not a firewall profile{hint}; {usage}")
        chosen.add(canonical)
    if "Any" in chosen:
        if len(names) > 1:
            raise FirewallSpecError(f"{PROFILE_VARIABLE}: 'Any' already means every profile; give it alone")
        return "Any"
    return ",".join(p for p in FIREWALL_PROFILES if p in chosen)


def _filter_firewall_profile(value: Any) -> str:
    try:
        return firewall_profile(value)
    except FirewallSpecError as exc:
        from ansible.errors import AnsibleFilterError

        raise AnsibleFilterError(f"dsrprov: {exc}") from None


def _filter_firewall_rules(vips: Any, services: Any = None, ports: Any = None) -> list[dict[str, Any]]:
    try:
        return firewall_rules(vips, services, ports)
    except FirewallSpecError as exc:
        from ansible.errors import AnsibleFilterError

        raise AnsibleFilterError(f"dsrprov: {exc}") from None


class FilterModule:
    """Ansible filters: ``dsr_windows_firewall_rules``, ``dsr_windows_firewall_profile``."""

    def filters(self) -> dict[str, Any]:
        return {
            "dsr_windows_firewall_rules": _filter_firewall_rules,
            "dsr_windows_firewall_profile": _filter_firewall_profile,
        }
