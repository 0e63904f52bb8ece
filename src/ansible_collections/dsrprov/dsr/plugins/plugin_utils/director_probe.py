"""The director's DSR-path health check: which real servers it covers, and the
probe namespace it needs.

``dsr_director_check: dsr_path`` (the default) checks every real server of a
TCP service (``health_check.type`` tcp or http) by connecting to VIP:port
delivered to that real server's MAC, from a network namespace of its own on
the director (the role's ``files/dsr-path``, a small service that keepalived's
HTTP_GET asks on 127.0.0.1). UDP services keep
keepalived's UDP_CHECK to the real address: a datagram that goes unanswered
proves nothing, on either path. ``real_address`` is keepalived's classic
check, to the real server's own address.

Standard library only; the roles call it through ``plugins/filter/director_probe.py``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

CHECK_KINDS = ("dsr_path", "real_address")
# Characters a URL path may hold that are also safe inside keepalived's
# double-quoted misc_path, which keepalived splits into arguments itself
# (no shell): no quotes, backslash, '#' or '!' (keepalived's comment signs).
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~$&()*+,;=:@%/?-]*$")
_NETNS = "dsrprov-dsrpath"
_LINK = "dsrpath0"


class ProbeError(ValueError):
    """The probe cannot be set up as asked; the message is one readable line."""


def mark_of(address: str) -> int:
    """The firewall mark and routing table of a real server in the probe
    namespace; the same formula as ``files/dsr-path`` (kept in step by a test)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return int(ip)
    return (int(ip) & 0xFFFFFFFF) ^ 0x80000000


def check_kind(svc: Mapping[str, Any], check: str) -> str:
    """The check a service's real servers get: ``dsr_path`` or ``real_address``."""
    if check == "dsr_path" and svc["health_check"]["type"] in ("tcp", "http"):
        return "dsr_path"
    return "real_address"


def probe_plan(
    model: Iterable[Mapping[str, Any]],
    check: str,
    addresses: Iterable[Mapping[str, Any]],
    interface: str,
    address: str = "",
    address6: str = "",
    extra: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The probe namespace's configuration (``config``, written as JSON on the
    director), or ``{"config": None}`` when no service uses the DSR-path check.

    ``addresses`` are the director's (``{address, prefixlen, interface}``);
    the probe address must be a free address on ``interface``'s IPv4 network
    (it takes that network's prefix length). ``extra`` are real servers that
    leave (``{protocol, vip, port, address}``): they keep their route while
    they drain."""
    addresses = list(addresses)
    if check not in CHECK_KINDS:
        raise ProbeError(f"dsr_director_check must be one of {', '.join(CHECK_KINDS)}, not {check!r}")
    services = [svc for svc in model if check_kind(svc, check) == "dsr_path"]
    served: dict[str, list[str]] = {}
    for svc in services:
        path = svc["health_check"].get("path")
        if path is not None and not _PATH_RE.match(path):
            raise ProbeError(
                f"service {svc['name']}: health_check path {path!r} holds a character the DSR-path probe "
                "does not pass (quotes, backslash, # or !); use dsr_director_check: real_address"
            )
        for rs in svc["real_servers"]:
            served.setdefault(rs["address"], [])
            if svc["vip"] not in served[rs["address"]]:
                served[rs["address"]].append(svc["vip"])
    by_key = {(svc["protocol"], svc["vip"], svc["port"]) for svc in services}
    for rs in extra:
        if (rs["protocol"], rs["vip"], rs["port"]) in by_key:
            served.setdefault(rs["address"], [])
            if rs["vip"] not in served[rs["address"]]:
                served[rs["address"]].append(rs["vip"])
    if not served:
        return {"config": None}
    if not interface:
        raise ProbeError("no interface for the DSR-path probe: set dsr_director_vip_interface")
    own = [a for a in addresses if a.get("interface") == interface]
    families = {ipaddress.ip_address(rip).version for rip in served}
    config: dict[str, Any] = {"netns": _NETNS, "link": _LINK, "parent": interface, "address": "", "address6": ""}
    if 4 in families:
        config["address"] = _probe_address(address, own, 4, "dsr_director_probe_address", interface)
    if 6 in families and address6:
        config["address6"] = _probe_address(address6, own, 6, "dsr_director_probe_address6", interface)
    taken = {str(ipaddress.ip_address(a["address"])) for a in addresses}
    taken |= set(served) | {vip for vips in served.values() for vip in vips}
    for key in ("address", "address6"):
        address = config[key].split("/", maxsplit=1)[0] if config[key] else ""
        if address and address in taken:
            raise ProbeError(
                f"dsr_director_probe_{key}: {address} is already in use "
                "(the director's, a VIP or a real server's); the probe needs an address of its own"
            )
    marks: dict[tuple[int, int], str] = {}
    for rip in served:
        mark_key = (ipaddress.ip_address(rip).version, mark_of(rip))
        if mark_key in marks:
            raise ProbeError(
                f"real servers {marks[mark_key]} and {rip} share the low 32 bits of their addresses; "
                "the DSR-path probe tells real servers apart by them: use dsr_director_check: real_address"
            )
        marks[mark_key] = rip
    config["real_servers"] = [{"rip": rip, "vips": vips} for rip, vips in served.items()]
    return {"config": config}


def _probe_address(value: str, own: list[Mapping[str, Any]], family: int, var: str, interface: str) -> str:
    nets = []
    for a in own:
        try:
            iface = ipaddress.ip_interface(f"{a['address']}/{a['prefixlen']}")
        except (KeyError, ValueError):
            continue
        if iface.version == family and iface.network.prefixlen < iface.max_prefixlen:
            nets.append(iface.network)
    if not value:
        raise ProbeError(
            f"the DSR-path check needs {var}: a free IPv{family} address on {interface}'s network "
            f"({', '.join(map(str, nets)) or 'none found'}) for the probe namespace; "
            "or set dsr_director_check: real_address"
        )
    try:
        ip = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ProbeError(f"{var} {value!r} is not an IP address") from None
    if ip.version != family:
        raise ProbeError(f"{var} {value} is not an IPv{family} address")
    net = next((n for n in nets if ip in n), None)
    if net is None or ip in (net.network_address, getattr(net, "broadcast_address", None)):
        raise ProbeError(
            f"{var} {ip} is not a host address of a network on {interface} "
            f"({', '.join(map(str, nets)) or 'none found'})"
        )
    return f"{ip}/{net.prefixlen}"


def probe_url(svc: Mapping[str, Any], rip: str) -> str:
    """The URL path keepalived's HTTP_GET asks the probe service for one real
    server (every part validated, percent-encoded: nothing keepalived or a
    URL would read otherwise)."""
    hc = svc["health_check"]
    query = [
        ("rip", str(ipaddress.ip_address(rip))),
        ("vip", str(ipaddress.ip_address(svc["vip"]))),
        ("port", str(int(hc["port"]))),
        ("timeout", str(hc["connect_timeout"])),
    ]
    if hc["type"] == "http":
        if not _PATH_RE.match(hc["path"]):
            raise ProbeError(f"service {svc['name']}: health_check path {hc['path']!r} cannot be passed to the probe")
        query += [("path", hc["path"]), ("status", str(int(hc["status"])))]
    return "/probe?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query)
