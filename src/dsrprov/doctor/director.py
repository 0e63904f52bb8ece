"""Doctor's read of a director: is keepalived up, and does IPVS hold what the
inventory says, forwarded by direct routing?"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from dsrprov.connect.linux_facts import MARK, split_sections
from dsrprov.doctor.findings import Finding

SCRIPT = f"""export PATH="$PATH:/usr/sbin:/sbin" LC_ALL=C
echo {MARK}keepalived@@; systemctl is-active keepalived 2>&1
echo {MARK}ipvs@@; ipvsadm -Ln 2>&1
echo {MARK}end@@
"""


@dataclass
class IpvsService:
    protocol: str  # tcp, udp
    vip: str
    port: int
    real_servers: dict[str, str] = field(default_factory=dict)  # address -> forward (Route, Masq, Tunnel)


@dataclass
class DirectorFacts:
    keepalived: str
    services: list[IpvsService]
    error: str = ""


def _host_port(text: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[?([0-9A-Fa-f:.]+)\]?:(\d+)", text)
    if not m:
        return text, 0
    return str(ipaddress.ip_address(m.group(1))), int(m.group(2))


def parse(text: str) -> DirectorFacts:
    s = split_sections(text)
    services: list[IpvsService] = []
    table = s.get("ipvs", "")
    for line in table.splitlines():
        m = re.match(r"^(TCP|UDP)\s+(\S+)\s+\S+", line)
        if m:
            vip, port = _host_port(m.group(2))
            services.append(IpvsService(m.group(1).lower(), vip, port))
            continue
        m = re.match(r"^\s+->\s+(\S+)\s+(\w+)\s+\d+", line)
        if m and services and m.group(2) != "Forward":
            address, _ = _host_port(m.group(1))
            services[-1].real_servers[address] = m.group(2)
    error = "" if "IP Virtual Server" in table else table.strip().splitlines()[0] if table.strip() else ""
    return DirectorFacts(s.get("keepalived", "").strip(), services, error)


def findings(host: str, facts: DirectorFacts, expected: list[dict[str, object]]) -> list[Finding]:
    """``expected``: the service model (name, vip, port, protocol, real_servers [{name, address}])."""
    out: list[Finding] = []
    if facts.keepalived != "active":
        out.append(Finding("dir-keepalived-down", host, f"{host}: keepalived is {facts.keepalived or 'unknown'}",
                           [f"systemctl is-active keepalived: {facts.keepalived}"]))  # fmt: skip
    live = {(s.protocol, s.vip, s.port): s for s in facts.services}
    named: set[tuple[str, str, int]] = set()
    for svc in expected:
        key = (str(svc["protocol"]), str(ipaddress.ip_address(str(svc["vip"]))), int(str(svc["port"])))
        named.add(key)
        rss = svc.get("real_servers") or []
        assert isinstance(rss, list)
        where = f"{key[1]}:{key[2]}/{key[0]}" if ":" not in key[1] else f"[{key[1]}]:{key[2]}/{key[0]}"
        vs = live.get(key)
        if vs is None:
            if rss:
                out.append(Finding("dir-vs-missing", host, f"{host}: no virtual server {where} (service "
                                   f"{svc['name']})", [f"ipvsadm -Ln lists: {_listing(facts)}"],
                                   {"vip": key[1]}))  # fmt: skip
            continue
        want = {str(ipaddress.ip_address(str(rs["address"]))): str(rs["name"]) for rs in rss}
        for address, name in want.items():
            if address not in vs.real_servers:
                out.append(Finding("dir-rs-missing", host, f"{host}: real server {name} ({address}) is not in "
                                   f"{where}", [f"{where} holds: {', '.join(vs.real_servers) or 'none'}"],
                                   {"rs": name, "vip": key[1]}))  # fmt: skip
        for address, forward in vs.real_servers.items():
            if address not in want:
                out.append(Finding("dir-rs-extra", host, f"{host}: {where} holds {address}, which the "
                                   "inventory does not name", [f"{address} {forward}"]))  # fmt: skip
            if forward != "Route":
                out.append(Finding("dir-not-route", host, f"{host}: {where} forwards to {address} by {forward}, "
                                   "not Route", [f"-> {address} {forward}"]))  # fmt: skip
    return out


def _listing(facts: DirectorFacts) -> str:
    return ", ".join(f"{s.vip}:{s.port}/{s.protocol}" for s in facts.services) or "nothing"
