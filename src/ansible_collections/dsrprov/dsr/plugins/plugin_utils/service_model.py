"""The service model: what the directors balance, derived from the inventory.

``dsr_services`` (group_vars) lists the services; the real servers of each
service are never listed by hand: they are the hosts of the real-server
groups whose ``dsr_vips`` hold the service's VIP. This module turns the
inventory into one normalised list of services, each with its real servers,
and refuses bad input with one readable line.

It is the single source of these rules: the CLI imports it, and the
collection's filters (``plugins/filter/service_model.py``) wrap it for the
roles. Standard library only (plus the VIP rules beside it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.dsrprov.dsr.plugins.plugin_utils import vips as _vips

DEFAULT_REALSERVER_GROUPS = ("dsr_realservers_linux", "dsr_realservers_windows")
LB_ALGOS = ("rr", "wrr", "lc", "wlc", "sh", "mh")
PROTOCOLS = ("tcp", "udp")
CHECK_TYPES = ("tcp", "http", "udp")
SERVICE_KEYS = {"name", "vip", "port", "protocol", "lb_algo", "persistence_timeout", "health_check", "allow_empty"}
CHECK_KEYS = {
    "type",
    "path",
    "status",
    "port",
    "delay_loop",
    "connect_timeout",
    "retries",
    "delay_before_retry",
}
VRRP_KEYS = {
    "name",
    "interface",
    "state",
    "priority",
    "virtual_router_id",
    "advert_int",
    "unicast_src_ip",
    "unicast_peers",
    "auth_pass",
    "virtual_ipaddresses",
    "nopreempt",
    "preempt_delay",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_IFACE_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


class ModelError(ValueError):
    """The service model breaks a rule; the message is one readable line."""


# --------------------------------------------------------------------------
# small checkers
# --------------------------------------------------------------------------


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ModelError(f"{what} must be a whole number from {low} to {high}, not {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise ModelError(f"{what} must be a whole number from {low} to {high}, not {value!r}")
    if not low <= value <= high:
        raise ModelError(f"{what} {value} is out of range ({low}-{high})")
    return value


def _timer(value: Any, what: str, low: float) -> int | float:
    """A keepalived TIMER: seconds, whole or decimal."""
    if isinstance(value, bool):
        raise ModelError(f"{what} must be a number of seconds, not {value!r}")
    if isinstance(value, str):
        try:
            value = float(value) if "." in value else int(value)
        except ValueError:
            raise ModelError(f"{what} must be a number of seconds, not {value!r}") from None
    if not isinstance(value, (int, float)):
        raise ModelError(f"{what} must be a number of seconds, not {value!r}")
    if value < low or value > 86400:
        raise ModelError(f"{what} {value} is out of range ({low:g}-86400 seconds)")
    return int(value) if float(value).is_integer() else value


def _vip(value: Any, where: str) -> str:
    try:
        return str(_vips.parse_vip(value))
    except _vips.VipError as exc:
        raise ModelError(f"{where}: {exc}") from None


def _address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(str(value).strip().split("%", maxsplit=1)[0])
    except ValueError:
        return None


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ModelError(f"{what} must be a mapping, not {type(value).__name__}")
    return value


def _unknown_keys(item: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(str(k) for k in item if k not in allowed)
    if unknown:
        raise ModelError(f"{what}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


# --------------------------------------------------------------------------
# services
# --------------------------------------------------------------------------


def check_service(raw: Any, index: int = 0) -> dict[str, Any]:
    """Validate one entry of ``dsr_services`` and return it with every default filled in."""
    item = _mapping(raw, f"dsr_services[{index}]")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ModelError(f"dsr_services[{index}]: name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    where = f"service {name}"
    _unknown_keys(item, SERVICE_KEYS, where)
    if "vip" not in item:
        raise ModelError(f"{where}: no vip given")
    vip = _vip(item["vip"], where)
    if "port" not in item:
        raise ModelError(f"{where}: no port given")
    port = _int(item["port"], f"{where}: port", 1, 65535)
    protocol = str(item.get("protocol", "tcp") or "tcp").lower()
    if protocol not in PROTOCOLS:
        raise ModelError(f"{where}: unknown protocol {item.get('protocol')!r} (known: tcp, udp)")
    lb_algo = str(item.get("lb_algo", "wlc") or "wlc").lower()
    if lb_algo not in LB_ALGOS:
        raise ModelError(f"{where}: unknown lb_algo {item.get('lb_algo')!r} (known: {', '.join(LB_ALGOS)})")
    persistence = item.get("persistence_timeout")
    if persistence is not None:
        persistence = _int(persistence, f"{where}: persistence_timeout", 1, 2678400)
    allow_empty = item.get("allow_empty", False)
    if not isinstance(allow_empty, bool):
        raise ModelError(f"{where}: allow_empty must be true or false, not {allow_empty!r}")
    hc = dict(_mapping(item.get("health_check") or {}, f"{where}: health_check"))
    _unknown_keys(hc, CHECK_KEYS, f"{where}: health_check")
    ctype = str(hc.get("type", "tcp") or "tcp").lower()
    if ctype not in CHECK_TYPES:
        raise ModelError(f"{where}: unknown health_check type {hc.get('type')!r} (known: {', '.join(CHECK_TYPES)})")
    if ctype == "http" and protocol == "udp":
        raise ModelError(f"{where}: an http health check needs a tcp service, this one is udp")
    check: dict[str, Any] = {
        "type": ctype,
        "port": _int(hc.get("port", port), f"{where}: health_check port", 1, 65535),
        "delay_loop": _timer(hc.get("delay_loop", 5), f"{where}: health_check delay_loop", 1),
        "connect_timeout": _timer(hc.get("connect_timeout", 3), f"{where}: health_check connect_timeout", 1),
        "retries": _int(hc.get("retries", 2), f"{where}: health_check retries", 0, 100),
        "delay_before_retry": _timer(hc.get("delay_before_retry", 1), f"{where}: health_check delay_before_retry", 0),
    }
    if ctype == "http":
        path = hc.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
            raise ModelError(f"{where}: health_check path {path!r} must start with '/' and hold no spaces")
        check["path"] = path
        check["status"] = _int(hc.get("status", 200), f"{where}: health_check status", 100, 599)
    elif "path" in hc or "status" in hc:
        raise ModelError(f"{where}: health_check path and status need type http")
    return {
        "name": name,
        "vip": vip,
        "family": _vips.vip_family(vip),
        "port": port,
        "protocol": protocol,
        "lb_algo": lb_algo,
        "persistence_timeout": persistence,
        "health_check": check,
        "allow_empty": allow_empty,
    }


def check_services(services: Any) -> list[dict[str, Any]]:
    """Validate the whole ``dsr_services`` list (without real servers)."""
    if services is None or isinstance(services, (str, bytes, Mapping)):
        raise ModelError("dsr_services must be a list of services")
    result = [check_service(raw, i) for i, raw in enumerate(services)]
    names: set[str] = set()
    keys: dict[tuple[str, int, str], str] = {}
    for svc in result:
        if svc["name"] in names:
            raise ModelError(f"two services are named {svc['name']}")
        names.add(svc["name"])
        key = (svc["vip"], svc["port"], svc["protocol"])
        if key in keys:
            raise ModelError(
                f"services {keys[key]} and {svc['name']} are the same virtual server "
                f"({svc['vip']} port {svc['port']}/{svc['protocol']})"
            )
        keys[key] = svc["name"]
    return result


# --------------------------------------------------------------------------
# real servers
# --------------------------------------------------------------------------


def _hostvar(hostvars: Mapping[str, Any], host: str, key: str) -> Any:
    try:
        hv = hostvars[host]
    except KeyError:
        return None
    try:
        return hv.get(key)
    except Exception:  # an undefined or broken variable reads as unset
        return None


def realserver_hosts(groups: Mapping[str, Any], realserver_groups: Iterable[str]) -> list[str]:
    """The hosts of the real-server groups, in inventory order, each once."""
    seen: list[str] = []
    for group in realserver_groups:
        for host in groups.get(group) or []:
            if host not in seen:
                seen.append(host)
    return seen


def real_address(hostvars: Mapping[str, Any], host: str, family: int) -> str:
    """The address the director sends to: dsr_real_address(6), else ansible_host."""
    keys = (
        ("dsr_real_address6", "dsr_real_address", "ansible_host")
        if family == 6
        else (
            "dsr_real_address",
            "ansible_host",
        )
    )
    given: list[str] = []
    for key in keys:
        value = _hostvar(hostvars, host, key)
        if value in (None, ""):
            continue
        given.append(f"{key}={value}")
        addr = _address(value)
        if addr is None:
            if key == "ansible_host":
                continue
            raise ModelError(f"real server {host}: {key} {value!r} is not an IP address")
        if addr.version == family:
            return str(addr)
    hint = "dsr_real_address6" if family == 6 else "dsr_real_address"
    found = f" (has {', '.join(given)})" if given else ""
    raise ModelError(
        f"real server {host} holds an IPv{family} VIP but has no IPv{family} real address{found}: set {hint}"
    )


def director_model(
    services: Any,
    groups: Mapping[str, Any],
    hostvars: Mapping[str, Any],
    realserver_groups: Iterable[str] = DEFAULT_REALSERVER_GROUPS,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """Every service, normalised, with ``real_servers``: ``[{name, address, weight}]``.

    A real server of a service is a host of ``realserver_groups`` whose
    ``dsr_vips`` holds the service's VIP. A service that no real server
    holds is an error (most often a mistyped VIP), unless the service says
    ``allow_empty: true``: one rule, recorded in the inventory, for site.yml
    and the CLI alike. ``allow_empty`` here is for callers that inspect a
    model, never for a run that changes a director."""
    model = check_services(services)
    hosts = realserver_hosts(groups, realserver_groups)
    held: dict[str, list[str]] = {}
    for host in hosts:
        raw = _hostvar(hostvars, host, "dsr_vips") or []
        try:
            held[host] = _vips.check_vips(raw, allow_empty=True)
        except _vips.VipError as exc:
            raise ModelError(f"real server {host}: {exc}") from None
    for svc in model:
        servers: list[dict[str, Any]] = []
        seen_addr: dict[str, str] = {}
        for host in hosts:
            if svc["vip"] not in held[host]:
                continue
            address = real_address(hostvars, host, svc["family"])
            if address in seen_addr:
                raise ModelError(f"real servers {seen_addr[address]} and {host} have the same real address {address}")
            seen_addr[address] = host
            if address == svc["vip"]:
                raise ModelError(f"real server {host}: its real address is the VIP {address} itself")
            weight = _hostvar(hostvars, host, "dsr_weight")
            servers.append(
                {
                    "name": host,
                    "address": address,
                    "weight": _int(1 if weight is None else weight, f"real server {host}: dsr_weight", 0, 65535),
                }
            )
        if not servers and not (allow_empty or svc["allow_empty"]):
            raise ModelError(empty_service_problem(svc, realserver_groups))
        svc["real_servers"] = servers
    return model


def empty_service_problem(svc: Mapping[str, Any], realserver_groups: Iterable[str] = DEFAULT_REALSERVER_GROUPS) -> str:
    """The one line for a service that no real server holds."""
    return (
        f"service {svc['name']}: no real server holds its VIP {svc['vip']} (no host of "
        f"{', '.join(realserver_groups)} has it in dsr_vips); add the VIP to a real server, or set "
        "allow_empty: true on the service to keep it empty on purpose"
    )


def service_vips(model: Iterable[Mapping[str, Any]]) -> list[str]:
    """The distinct VIPs of a model, in order."""
    out: list[str] = []
    for svc in model:
        if svc["vip"] not in out:
            out.append(svc["vip"])
    return out


# --------------------------------------------------------------------------
# VRRP
# --------------------------------------------------------------------------


def check_vrrp(instances: Any, model: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate ``dsr_director_vrrp_instances`` against the model.

    Returns them normalised, without the secret (``auth`` is a bool): the
    VIPs as ``addresses`` (those of the instance's family, which carry the
    adverts) and ``excluded`` (the other family, which VRRP moves along but
    does not advertise). Every service VIP must be in exactly one instance."""
    if instances is None:
        instances = []
    if isinstance(instances, (str, bytes, Mapping)):
        raise ModelError("dsr_director_vrrp_instances must be a list")
    vips = service_vips(model)
    result: list[dict[str, Any]] = []
    names: set[str] = set()
    vrids: dict[tuple[str, int], str] = {}
    owner: dict[str, str] = {}
    for i, raw in enumerate(instances):
        item = _mapping(raw, f"dsr_director_vrrp_instances[{i}]")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ModelError(
                f"dsr_director_vrrp_instances[{i}]: name {name!r} must be letters, digits, '_', '.' or '-'"
            )
        where = f"VRRP instance {name}"
        _unknown_keys(item, VRRP_KEYS, where)
        if name in names:
            raise ModelError(f"two VRRP instances are named {name}")
        names.add(name)
        iface = item.get("interface")
        if not isinstance(iface, str) or not _IFACE_RE.match(iface):
            raise ModelError(f"{where}: interface {iface!r} is not an interface name")
        state = str(item.get("state", "BACKUP")).upper()
        if state not in ("MASTER", "BACKUP"):
            raise ModelError(f"{where}: state {item.get('state')!r} must be MASTER or BACKUP")
        priority = _int(item.get("priority", 100), f"{where}: priority", 1, 255)
        if "virtual_router_id" not in item:
            raise ModelError(f"{where}: no virtual_router_id given")
        vrid = _int(item["virtual_router_id"], f"{where}: virtual_router_id", 1, 255)
        # VRIDs are per interface on the wire, but one per director is what an
        # operator means; keepalived itself warns about duplicates.
        for (_iface, other_vrid), other in vrids.items():
            if other_vrid == vrid:
                raise ModelError(f"VRRP instances {other} and {name} both use virtual_router_id {vrid}")
        vrids[(iface, vrid)] = name
        advert = _timer(item.get("advert_int", 1), f"{where}: advert_int", 1)
        nopreempt = item.get("nopreempt", False)
        if not isinstance(nopreempt, bool):
            raise ModelError(f"{where}: nopreempt must be true or false, not {nopreempt!r}")
        delay = item.get("preempt_delay") or 0
        if delay:
            delay = _timer(delay, f"{where}: preempt_delay", 0)
            if delay > 1000:
                raise ModelError(f"{where}: preempt_delay {delay} is out of range (0-1000 seconds)")
        if (nopreempt or delay) and state != "BACKUP":
            # keepalived.conf(5): "For this to work, the initial state must not be MASTER."
            what = "nopreempt" if nopreempt else "preempt_delay"
            raise ModelError(f"{where}: {what} needs state BACKUP (keepalived ignores it on a MASTER)")
        src = item.get("unicast_src_ip")
        if src not in (None, ""):
            addr = _address(src)
            if addr is None:
                raise ModelError(f"{where}: unicast_src_ip {src!r} is not an IP address")
            src = str(addr)
        else:
            src = None
        peers_raw = item.get("unicast_peers") or []
        if isinstance(peers_raw, (str, bytes)):
            raise ModelError(f"{where}: unicast_peers must be a list of addresses")
        peers: list[str] = []
        for p in peers_raw:
            addr = _address(p)
            if addr is None:
                raise ModelError(f"{where}: unicast peer {p!r} is not an IP address")
            peers.append(str(addr))
        secret = item.get("auth_pass")
        # keepalived cuts PASS secrets at 8 characters (VRRPv2 auth data).
        if secret not in (None, "") and (
            not isinstance(secret, str) or len(secret) > 8 or any(c.isspace() or c in '{}#!"' for c in secret)
        ):
            raise ModelError(f"{where}: auth_pass must be 1-8 characters without spaces, braces, quotes, # or !")
        listed = item.get("virtual_ipaddresses")
        if listed is None:
            addresses = list(vips)
        else:
            if isinstance(listed, (str, bytes)):
                raise ModelError(f"{where}: virtual_ipaddresses must be a list")
            addresses = [_vip(v, where) for v in listed]
        if not addresses:
            raise ModelError(f"{where}: no virtual address")
        for vip in addresses:
            if vip in owner:
                raise ModelError(f"VIP {vip} is in two VRRP instances: {owner[vip]} and {name}")
            owner[vip] = name
        family = ipaddress.ip_address(src).version if src else _vips.vip_family(addresses[0])
        if any(ipaddress.ip_address(p).version != family for p in peers):
            raise ModelError(f"{where}: unicast_src_ip and unicast_peers must be of one address family")
        result.append(
            {
                "name": name,
                "interface": iface,
                "state": state,
                "priority": priority,
                "virtual_router_id": vrid,
                "advert_int": advert,
                "nopreempt": nopreempt,
                "preempt_delay": delay,
                "unicast_src_ip": src,
                "unicast_peers": peers,
                "auth": secret not in (None, ""),
                "addresses": [_vips.vip_prefix(v) for v in addresses if _vips.vip_family(v) == family],
                "excluded": [_vips.vip_prefix(v) for v in addresses if _vips.vip_family(v) != family],
            }
        )
    if result:
        missing = [v for v in vips if v not in owner]
        if missing:
            raise ModelError(f"VIP {missing[0]} is in no VRRP instance: add it to one instance's virtual_ipaddresses")
    return result


# --------------------------------------------------------------------------
# checks against the director host itself
# --------------------------------------------------------------------------


def check_director(
    model: list[dict[str, Any]],
    host: str,
    addresses: Iterable[Mapping[str, Any]],
) -> None:
    """Refuse a model the director host cannot serve.

    ``addresses`` are the director's addresses (``{address, prefixlen,
    interface}``); a VIP it already holds as a host address (/32, /128, as
    keepalived puts it) is its own doing and ignored. A VIP must not be one of
    the others; a real server must be on a directly connected network (LVS-DR
    rewrites only the MAC address); the director must not be its own real
    server."""
    vips = {ipaddress.ip_address(v) for v in service_vips(model)}
    own: list[tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, str]] = []
    for a in addresses:
        try:
            iface = ipaddress.ip_interface(f"{a['address']}/{a['prefixlen']}")
        except (KeyError, ValueError):
            continue
        if iface.ip in vips and iface.network.prefixlen == iface.max_prefixlen:
            continue
        own.append((iface, str(a.get("interface", ""))))
    own_ips = {i.ip for i, _name in own}
    for svc in model:
        if ipaddress.ip_address(svc["vip"]) in own_ips:
            raise ModelError(f"service {svc['name']}: VIP {svc['vip']} is one of director {host}'s own addresses")
        for rs in svc["real_servers"]:
            if rs["name"] == host:
                raise ModelError(f"service {svc['name']}: director {host} cannot be its own real server")
            ip = ipaddress.ip_address(rs["address"])
            if ip in own_ips:
                raise ModelError(f"service {svc['name']}: real server {rs['name']} has director {host}'s address {ip}")
            if not any(
                ip.version == i.version and ip in i.network and i.network.prefixlen < i.max_prefixlen for i, _n in own
            ):
                raise ModelError(
                    f"service {svc['name']}: real server {rs['name']} ({ip}) is on no network of director {host}; "
                    "LVS-DR needs every real server on the director's LAN"
                )


# --------------------------------------------------------------------------
# a change of pool: who leaves, who joins, and in which order
# --------------------------------------------------------------------------


def _svc_key(protocol: str, vip: str, port: int) -> tuple[str, str, int]:
    return (str(protocol).lower(), str(_address(vip)), int(port))


def pool_plan(
    model: list[dict[str, Any]], current: list[Mapping[str, Any]] | None, add_joining: bool = True
) -> dict[str, Any]:
    """How a director goes from the real servers it balances now to the model's.

    ``current`` lists the real servers of the live configuration
    (``{protocol, vip, port, address, name}``), or is None when unknown (a
    configuration written before dsrprov recorded them). Returns:

    - ``leaving``: real servers of a service that stays, which the model drops.
      They are quiesced first (``quiesce``: the model plus them at weight 0,
      so that no new connection reaches them while established ones finish),
      and removed only then (``final``);
    - ``joining``: real servers the model adds. ``add_joining=False`` leaves
      them out of both configurations (a drain before the real servers are
      configured: a server is added only once it holds its VIPs);
    - ``expect``: what IPVS must hold after ``final``, for the read-back; a
      joining real server is ``required`` (it must pass its health check and
      be in the pool when the run ends), one already there may be missing
      (its check fails now).
    """
    old: dict[tuple[str, str, int], dict[str, Mapping[str, Any]]] = {}
    for rs in current or []:
        old.setdefault(_svc_key(rs["protocol"], rs["vip"], rs["port"]), {})[str(_address(rs["address"]))] = rs
    plan: dict[str, list[dict[str, Any]]] = {k: [] for k in ("leaving", "joining", "quiesce", "final", "expect")}
    for svc in model:
        where = {"protocol": svc["protocol"], "vip": svc["vip"], "port": svc["port"]}
        before = old.get(_svc_key(svc["protocol"], svc["vip"], svc["port"]), {})
        keep: list[dict[str, Any]] = []
        joined: set[str] = set()
        for rs in svc["real_servers"]:
            if current is not None and rs["address"] not in before:
                plan["joining"].append({**where, **rs})
                if not add_joining:
                    continue
                joined.add(rs["address"])
            keep.append(dict(rs))
        wanted = {rs["address"] for rs in svc["real_servers"]}
        gone = [
            {"name": str(rs.get("name") or address), "address": address, "weight": 0}
            for address, rs in before.items()
            if address not in wanted
        ]
        plan["leaving"] += [{**where, **rs} for rs in gone]
        # A service left with no real server (allow_empty, or one whose only
        # servers are still to join) cannot be quiesced: keepalived refuses a
        # virtual server whose weights add up to 0 (its config test exits 5 on
        # the quorum warning), and no other server could take the new
        # connections anyway. Its leaving servers go at the quiesce step, so
        # still before the real servers change; the drain finds them gone.
        quiesced = [{**rs, "leaving": True} for rs in gone] if keep else []
        plan["quiesce"].append({**svc, "real_servers": keep + quiesced})
        plan["final"].append({**svc, "real_servers": keep})
        plan["expect"].append(
            {
                **where,
                "real_servers": [{**rs, "required": rs["address"] in joined} for rs in keep],
            }
        )
    return plan
