"""Is a host a working DSR real server? Read-only checks on its facts, and an
ARP/ND probe from a vantage host on the same segment.

Per host: the VIPs on the loopback; the ARP sysctls live and the boot-time
unit (Linux) or the KM-TEST adapter, its metric and the weak host model
(Windows); a listener for each service port of its VIPs. From the vantage
host: nobody but the director answers ARP (IPv4) or ND (IPv6) for a VIP.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dsrprov.connect import ssh
from dsrprov.connect.linux_facts import UNIT, LinuxFacts
from dsrprov.connect.winrm import WindowsFacts


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not applicable / skipped (never a failure)
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _vip_ports(vips: list[str], services: Iterable[dict[str, Any]]) -> list[tuple[str, int, str]]:
    out = []
    for svc in services:
        vip = str(svc.get("vip", ""))
        if any(_same(vip, v) for v in vips) and svc.get("port"):
            out.append((vip, int(svc["port"]), str(svc.get("protocol", "tcp")).lower()))
    return out


def _listen_checks(
    facts: LinuxFacts | WindowsFacts, vips: list[str], services: Iterable[dict[str, Any]], dual_stack: bool
) -> list[Check]:
    checks = []
    for vip, port, proto in _vip_ports(vips, services):
        where = f"[{vip}]:{port}/{proto}" if ":" in vip else f"{vip}:{port}/{proto}"
        ok = any(
            lst.covers(vip, port, proto) and (dual_stack or lst.address != "::" or ":" in vip)
            for lst in facts.listeners
        )
        checks.append(Check(f"listen {where}", ok, "a service listens" if ok else f"nothing listens on {where}"))
    return checks


def linux_checks(facts: LinuxFacts, vips: list[str], services: Iterable[dict[str, Any]]) -> list[Check]:
    checks = []
    on_lo = facts.loopback_vips()
    missing = [v for v in vips if not any(_same(v, a) for a in on_lo)]
    extra = [a for a in on_lo if not any(_same(v, a) for v in vips)]
    detail = f"missing {', '.join(missing)}" if missing else f"{', '.join(vips)} on lo"
    if extra:
        detail += f"; also on lo: {', '.join(extra)}"
    checks.append(Check("vips on loopback", not missing, detail))
    bad = []
    for iface in facts.interfaces:
        ignore, announce = facts.effective_arp(iface)
        if ignore < 1 or announce != 2:
            bad.append(f"{iface}: arp_ignore={ignore} arp_announce={announce}")
    checks.append(
        Check(
            "arp sysctls",
            not bad,
            "; ".join(bad) + " (want arp_ignore>=1, arp_announce=2)" if bad else "arp_ignore>=1, arp_announce=2 live",
        )
    )
    persisted = facts.unit_enabled == "enabled" and facts.sysctl_file
    sysctl_file = "present" if facts.sysctl_file else "missing"
    checks.append(
        Check(
            "persisted",
            persisted,
            f"{UNIT} enabled, sysctl file present"
            if persisted
            else f"{UNIT}: {facts.unit_enabled or 'missing'}; sysctl file {sysctl_file}",
        )
    )
    # The guard, where the role installed it: shown, never a failure (a DSR path works without it;
    # doctor names a guard that is down where the inventory wants one).
    if facts.guard.installed:
        checks.append(Check("guard", True if facts.guard.running else None, facts.guard.summary()))
    checks.extend(_listen_checks(facts, vips, services, dual_stack=True))
    return checks


def windows_checks(
    facts: WindowsFacts,
    vips: list[str],
    services: Iterable[dict[str, Any]],
    *,
    management_address: str,
    metric: int = 254,
    network_adapter: str = "",
) -> list[Check]:
    checks = []
    loops = facts.loopbacks
    checks.append(
        Check(
            "loopback adapter",
            bool(loops),
            f"{loops[0].name} (KM-TEST, ifIndex {loops[0].ifindex})" if loops else "no KM-TEST loopback adapter",
        )
    )
    on_lo = facts.loopback_vips()
    missing = [v for v in vips if not any(_same(v, a) for a in on_lo)]
    not_skip = [
        a.address
        for a in facts.addresses
        if a.ifindex in facts.loopback_indexes and any(_same(v, a.address) for v in vips) and not a.skip_as_source
    ]
    detail = f"missing {', '.join(missing)}" if missing else f"{', '.join(vips)} on the loopback"
    if not_skip:
        detail += f"; SkipAsSource off for {', '.join(not_skip)}"
    checks.append(Check("vips on loopback", not missing and not not_skip, detail))
    families = sorted({"IPv6" if ":" in v else "IPv4" for v in vips})
    problems = []
    for loop in loops:
        for fam in families:
            i = facts.interface(loop.ifindex, fam)
            if i is None:
                problems.append(f"{loop.name} {fam}: no IP interface")
                continue
            if i.metric != metric or i.automatic_metric != "Disabled":
                problems.append(f"{loop.name} {fam}: metric {i.metric}, automatic {i.automatic_metric}")
            if i.weak_host_send != "Enabled" or i.weak_host_receive != "Enabled":
                problems.append(
                    f"{loop.name} {fam}: weakhostsend {i.weak_host_send}, weakhostreceive {i.weak_host_receive}"
                )
    net = None
    if network_adapter:
        net = next((a for a in facts.adapters if a.name == network_adapter), None)
    net = net or facts.adapter_holding(management_address)
    if net is None:
        problems.append(f"no network adapter holds {management_address}")
    else:
        for fam in families:
            i = facts.interface(net.ifindex, fam)
            if i is None or i.weak_host_receive != "Enabled":
                problems.append(f"{net.name} {fam}: weakhostreceive {i.weak_host_receive if i else 'unknown'}")
    if loops:
        checks.append(
            Check(
                "metric and weak host",
                not problems,
                "; ".join(problems)
                if problems
                else f"metric {metric}, weakhostsend+receive on {loops[0].name}, weakhostreceive on "
                f"{net.name if net else '?'}",
            )
        )
    checks.extend(_listen_checks(facts, vips, services, dual_stack=False))
    return checks


# -- the ARP / ND probe from the vantage host ---------------------------------
@dataclass
class NeighbourProbe:
    vip: str
    iface: str = ""
    macs: list[str] = field(default_factory=list)
    error: str = ""


_MAC = r"([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})"


def parse_arping(text: str) -> list[str]:
    """Replying MACs: Habets' arping ("42 bytes from MAC (ip): ...") and iputils ("reply from ip [MAC]")."""
    macs: list[str] = []
    for line in text.splitlines():
        m = re.search(r"bytes from " + _MAC, line) or re.search(r"reply from \S+ \[" + _MAC + r"\]", line)
        if m and m.group(1).lower() not in macs:
            macs.append(m.group(1).lower())
    return macs


def parse_ndisc6(text: str) -> list[str]:
    """Replying MACs of ``ndisc6 -m``: "Target link-layer address: MAC"."""
    macs: list[str] = []
    for m in re.finditer(r"Target link-layer address:\s*" + _MAC, text):
        if m.group(1).lower() not in macs:
            macs.append(m.group(1).lower())
    return macs


def probe_command(vip: str) -> str:
    q = shlex.quote(vip)
    tool = f'ndisc6 -m -n -r 2 -w 1000 {q} "$dev"' if ":" in vip else f'arping -c 2 -w 2 -i "$dev" {q}'
    return (
        'export PATH="$PATH:/usr/sbin:/sbin" LC_ALL=C; '
        f"dev=$(ip -o route get {q} 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'); "
        'echo "dev=$dev"; [ -n "$dev" ] || exit 90; '
        f"command -v {'ndisc6' if ':' in vip else 'arping'} >/dev/null || exit 91; "
        f"{tool} 2>&1; true"
    )


def neighbour_probe(target: ssh.SSHTarget, vips: list[str]) -> dict[str, NeighbourProbe]:
    """Ask the segment who answers for each VIP (all VIPs at once, one SSH connection)."""
    results: dict[str, NeighbourProbe] = {}
    with ssh.session(target) as client:
        transport = client.get_transport()
        assert transport is not None
        channels = []
        for vip in vips:
            chan = transport.open_session(timeout=target.timeout)
            chan.exec_command(probe_command(vip))
            channels.append((vip, chan))
        for vip, chan in channels:
            out = b""
            while True:
                data = chan.recv(65536)
                if not data:
                    break
                out += data
            rc = chan.recv_exit_status()
            text = out.decode(errors="replace")
            m = re.search(r"^dev=(\S*)", text, re.M)
            res = NeighbourProbe(vip, iface=m.group(1) if m else "")
            if rc == 90:
                res.error = f"no route from {target.name} to {vip}"
            elif rc == 91:
                res.error = f"{'ndisc6' if ':' in vip else 'arping'} is not installed on {target.name}"
            else:
                res.macs = parse_ndisc6(text) if ":" in vip else parse_arping(text)
            results[vip] = res
    return results


def neighbour_check(
    host: str,
    host_macs: Iterable[str],
    vips: list[str],
    probes: dict[str, NeighbourProbe],
    *,
    vantage: str,
    director_macs: dict[str, str],
    realserver_macs: dict[str, str],
) -> Check:
    """OK when the host answers for none of its VIPs and, with a director known, only it answers."""
    own = {m.lower() for m in host_macs}
    problems, notes = [], []
    for vip in vips:
        p = probes.get(vip)
        if p is None:
            continue
        if p.error:
            problems.append(p.error)
            continue
        kind = "ND" if ":" in vip else "ARP"
        if own & set(p.macs):
            problems.append(f"{host} answers {kind} for {vip} ({', '.join(sorted(own & set(p.macs)))})")
            continue
        others = [m for m in p.macs if m not in own]
        rs = [f"{realserver_macs[m]} ({m})" for m in others if m in realserver_macs]
        if rs:
            problems.append(f"real server {', '.join(rs)} answers {kind} for {vip}")
        elif director_macs:
            strangers = [m for m in others if m not in director_macs]
            if strangers:
                problems.append(f"{', '.join(strangers)} answers {kind} for {vip}, not the director")
            elif others:
                notes.append(f"{vip}: only the director answers")
            elif vantage in director_macs.values():
                notes.append(f"{vip}: no other host answers (probed from the director, which holds it)")
            else:
                notes.append(f"{vip}: no answer (the director does not hold it yet)")
        else:
            notes.append(f"{vip}: " + (f"answered by {', '.join(others)}" if others else "no answer"))
    if problems:
        return Check("arp/nd probe", False, "; ".join(problems) + f" (probed from {vantage})")
    if not vips:
        return Check("arp/nd probe", None, "no VIP to probe")
    suffix = "" if director_macs else "; no director in the inventory: checked only that no real server answers"
    return Check("arp/nd probe", True, f"from {vantage}: " + "; ".join(notes) + suffix)
