"""The CLI's side of the Kemp LoadMasters (group ``dsr_loadmasters``).

Writes go through the role ``dsr_loadmaster_kemp`` (ansible-playbook, run
beside the directors by ``dsrprov.enroll``); this module only selects the
LoadMasters, checks the command line against the inventory, and reads a
LoadMaster directly through the collection's API client
(``plugins/module_utils/kemp_api.py``, imported as ``kemp``) for ``status``
and for the read-back after ``enroll``.

Credentials: the inventory's ``dsr_loadmaster_kemp_user`` and ``_password``
(basic auth, the default) or ``dsr_loadmaster_kemp_api_key`` when they are
plain text; a vaulted value cannot be read here, so ``DSRPROV_KEMP_USER``
and ``DSRPROV_KEMP_PASSWORD`` (or ``DSRPROV_KEMP_API_KEY``) give them to the
CLI's reads instead. No secret is ever printed, nor put in a URL.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from typing import Any

from ansible_collections.dsrprov.dsr.plugins.module_utils import kemp_api as kemp
from dsrprov.checks.verify import Check
from dsrprov.errors import UsageError
from dsrprov.model.inventory import Host, Inventory

GROUP = "dsr_loadmasters"


def select(inv: Inventory, wanted: Iterable[str] | None) -> list[str]:
    """The LoadMasters to update: the named ones (each must be in the group), else all of the group."""
    known = inv.group_hosts(GROUP)
    names = list(wanted or [])
    for name in names:
        if name not in known:
            listed = ", ".join(known) or "none"
            raise UsageError(f"--loadmaster {name}: no such host in group {GROUP} of {inv.path} (has: {listed})")
    return names or known


def check_port(inv: Inventory, vips: Iterable[str], port: int) -> None:
    """Refuse --port when no service of dsr_services has that VIP and port."""
    services = inv.services()
    for vip in vips:
        bare = _ip(str(vip).split("/")[0])
        if not any(_ip(str(s.get("vip", "")).split("/")[0]) == bare and str(s.get("port")) == str(port)
                   for s in services):  # fmt: skip
            have = ", ".join(f"{s.get('vip')}:{s.get('port')}" for s in services) or "none"
            raise UsageError(
                f"no service {vip} port {port} in dsr_services (has: {have}); add it to the inventory's group_vars"
            )


def client(inv: Inventory, name: str, timeout: float = 15.0) -> kemp.Client:
    """A read client for LoadMaster ``name``, from its inventory variables (and the environment)."""
    host = inv.host(name)
    env = os.environ
    api_key = host.str_var("dsr_loadmaster_kemp_api_key") or env.get("DSRPROV_KEMP_API_KEY", "")
    user = host.str_var("dsr_loadmaster_kemp_user") or env.get("DSRPROV_KEMP_USER", "")
    password = host.str_var("dsr_loadmaster_kemp_password") or env.get("DSRPROV_KEMP_PASSWORD", "")
    if not api_key and not (user and password):
        raise kemp.KempError(
            f"no credentials the CLI can read for LoadMaster {name} (vaulted?): set DSRPROV_KEMP_USER and "
            "DSRPROV_KEMP_PASSWORD, or DSRPROV_KEMP_API_KEY"
        )
    return kemp.Client(
        host.str_var("dsr_loadmaster_kemp_address") or host.address,
        api_key=api_key or None,
        user=user or None,
        password=password or None,
        ca_file=host.str_var("dsr_loadmaster_kemp_ca_file") or None,
        fingerprint=host.str_var("dsr_loadmaster_kemp_fingerprint") or None,
        timeout=timeout,
    )


def _services(inv: Inventory, lm: Host) -> list[dict[str, Any]]:
    """The services this LoadMaster carries (dsr_loadmaster_kemp_services, else all)."""
    chosen = lm.vars.get("dsr_loadmaster_kemp_services") or []
    return [s for s in inv.services() if not chosen or s.get("name") in chosen]


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text.strip()


def _address(host: Host, vip: str) -> str:
    """The real address the LoadMaster sends to for ``vip`` (as the service model derives it)."""
    six = ":" in vip
    keys = ("dsr_real_address6", "dsr_real_address", "ansible_host") if six else ("dsr_real_address", "ansible_host")
    for key in keys:
        value = host.str_var(key)
        if value:
            try:
                if ipaddress.ip_address(value).version == (6 if six else 4):
                    return str(ipaddress.ip_address(value))
            except ValueError:
                continue
    return host.address


def read(inv: Inventory, names: list[str], timeout: float = 15.0) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every real server of the inventory's services on each LoadMaster, as the LoadMaster reports it.

    Returns rows ``{loadmaster, service, vs, layer, host, address, forward, weight, enable, status}``
    (layer: the Virtual Service's, as ``kemp.layer`` reads it; host is "-" for a real server
    the inventory does not list, forward "missing" for one the LoadMaster lacks) and the LoadMasters
    that could not be read, with the reason."""
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    rs_hosts = [inv.host(h) for h in inv.hostnames() if inv.host(h).is_realserver]
    for name in names:
        lm = inv.host(name)
        try:
            c = client(inv, name, timeout)
            for svc in _services(inv, lm):
                vip, port, prot = str(svc["vip"]).split("/")[0], int(svc["port"]), str(svc.get("protocol", "tcp"))
                vs = c.find_vs(vip, port, prot)
                layer = kemp.layer(vs) if vs is not None else "-"
                label = f"{vip}:{port}/{prot}" if ":" not in vip else f"[{vip}]:{port}/{prot}"
                held = {
                    _address(h, vip): h.name for h in rs_hosts if _ip(vip) in [_ip(v.split("/")[0]) for v in h.vips]
                }
                seen: set[str] = set()
                for r in kemp.real_servers(vs or {}):
                    addr = _ip(str(r.get("Addr", "")))
                    seen.add(addr)
                    rows.append({"loadmaster": name, "service": svc.get("name"), "vs": label, "layer": layer,
                                 "host": held.get(addr, "-"), "address": f"{addr}:{r.get('Port')}",
                                 "forward": r.get("Forward", ""), "weight": r.get("Weight", ""),
                                 "enable": r.get("Enable", ""), "status": r.get("Status", "")})  # fmt: skip
                for addr, host in held.items():
                    if addr not in seen:
                        rows.append({"loadmaster": name, "service": svc.get("name"), "vs": label, "layer": layer,
                                     "host": host, "address": f"{addr}:{port}", "forward": "missing", "weight": "-",
                                     "enable": "-", "status": "no virtual service" if vs is None else "-"})  # fmt: skip
        except kemp.KempError as exc:
            errors[name] = str(exc)
    return rows, errors


def table(rows: list[dict[str, Any]]) -> str:
    from dsrprov.report import table as render

    head = [
        "LOADMASTER",
        "SERVICE",
        "VIRTUAL SERVICE",
        "REAL SERVER",
        "ADDRESS",
        "FORWARD",
        "WEIGHT",
        "ENABLED",
        "STATUS",
    ]
    keys = ["loadmaster", "service", "vs", "host", "address", "forward", "weight", "enable", "status"]
    return render([head, *[[str(r[k]) for k in keys] for r in rows]])


def _drained(inv: Inventory, host: str) -> bool:
    """``dsr_weight: 0``: the host is registered disabled (no new connections), by design."""
    return inv.host(host).str_var("dsr_weight").strip() == "0"


def registered(inv: Inventory, names: list[str], hosts: list[str]) -> dict[str, Check]:
    """Read back after enroll: is each host a "route" real server of its services on the
    LoadMasters, in a Virtual Service that works at layer 4 (route on layer 7 is no DSR),
    enabled, or disabled where its ``dsr_weight`` is 0 (registered, drained)?"""
    rows, errors = read(inv, names)
    out: dict[str, Check] = {}
    for host in hosts:
        mine = [r for r in rows if r["host"] == host]
        enable = "N" if _drained(inv, host) else "Y"
        bad = [r for r in mine if r["forward"] != "route" or r["enable"] != enable or r["layer"] != "4"]
        if errors:
            out[host] = Check("registered at the LoadMaster", None, "not read back: " + "; ".join(errors.values()))
        elif not mine:
            out[host] = Check("registered at the LoadMaster", None, "no LoadMaster service holds its VIPs")
        elif bad:
            detail = ", ".join(
                f"{r['loadmaster']} {r['vs']}: layer={r['layer']} forward={r['forward']} enabled={r['enable']}"
                for r in bad
            )
            out[host] = Check("registered at the LoadMaster", False, detail)
        elif enable == "N":
            detail = ", ".join(f"{r['loadmaster']} {r['vs']} route, disabled (dsr_weight 0: drained)" for r in mine)
            out[host] = Check("registered at the LoadMaster", True, detail)
        else:
            detail = ", ".join(f"{r['loadmaster']} {r['vs']} route weight {r['weight']}" for r in mine)
            out[host] = Check("registered at the LoadMaster", True, detail)
    return out


__all__ = ["GROUP", "check_port", "client", "read", "registered", "select", "table"]
