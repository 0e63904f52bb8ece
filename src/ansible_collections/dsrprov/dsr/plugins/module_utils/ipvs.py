"""Read the kernel's IPVS table from /proc/net/ip_vs (no ipvsadm needed).

Runs on the director's Python (3.8 and newer): standard library only, and no
syntax newer than 3.8 outside annotations.

The format is the kernel's (net/netfilter/ipvs/ip_vs_ctl.c,
ip_vs_info_seq_show): a virtual service per line, ``TCP  0AFD00C8:0050 rr``
(IPv4 in hex, IPv6 as ``[fd42:0d5a:...:0200]``), then each of its
destinations on a line of its own,
``  -> 0AFD000B:0050      Route   1      0          282`` (address, forwarding
method, weight, ActiveConn, InActConn). Firewall-mark services (``FWM``) are
skipped: dsrprov makes none.
"""

from __future__ import annotations

import ipaddress
from typing import Any

PROC = "/proc/net/ip_vs"


def _address(text: str) -> tuple[str, int]:
    """``("10.253.0.200", 80)`` from ``0AFD00C8:0050`` or ``[fd42:...:0200]:0050``."""
    host, _sep, port = text.rpartition(":")
    addr = ipaddress.ip_address(host.strip("[]")) if host.startswith("[") else ipaddress.ip_address(int(host, 16))
    return str(addr), int(port, 16)


def parse(text: str) -> list[dict[str, Any]]:
    """The table as a list of services: ``{protocol, vip, port, scheduler,
    dests: [{address, port, forward, weight, active, inactive}]}``."""
    services: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] in ("TCP", "UDP", "SCTP") and len(parts) >= 3:
            try:
                vip, port = _address(parts[1])
            except ValueError:
                current = None
                continue
            current = {"protocol": parts[0].lower(), "vip": vip, "port": port, "scheduler": parts[2], "dests": []}
            services.append(current)
        elif parts[0] == "->" and current is not None and len(parts) >= 6:
            try:
                address, port = _address(parts[1])
                current["dests"].append(
                    {
                        "address": address,
                        "port": port,
                        "forward": parts[2],
                        "weight": int(parts[3]),
                        "active": int(parts[4]),
                        "inactive": int(parts[5]),
                    }
                )
            except ValueError:
                continue
        elif parts[0] == "FWM":
            current = None
    return services


def read(path: str = PROC) -> list[dict[str, Any]]:
    """The live table; empty when IPVS is not loaded."""
    try:
        with open(path, encoding="ascii") as handle:
            return parse(handle.read())
    except OSError:
        return []


def key(protocol: str, vip: str, port: int) -> tuple[str, str, int]:
    """A service's key, its address in canonical form."""
    return (str(protocol).lower(), str(ipaddress.ip_address(str(vip).split("/", maxsplit=1)[0])), int(port))


def index(services: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, dict[str, Any]]]:
    """``{service key: {dest address: dest}}``."""
    return {key(s["protocol"], s["vip"], s["port"]): {d["address"]: d for d in s["dests"]} for s in services}
