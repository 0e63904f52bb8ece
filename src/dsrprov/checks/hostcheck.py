"""``dsrprov status`` and ``dsrprov verify``: read many hosts in parallel (bounded),
check them against the inventory, and probe ARP/ND from the vantage host."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lomgr
from dsrprov.checks.verify import Check, NeighbourProbe, linux_checks, neighbour_check, neighbour_probe, windows_checks
from dsrprov.connect.linux_facts import LinuxFacts
from dsrprov.connect.probe import ConnOptions, Facts, detect_os, probe, probe_linux, ssh_target
from dsrprov.connect.winrm import WindowsFacts
from dsrprov.errors import EXIT_FAILED, EXIT_USAGE, DsrError
from dsrprov.model.inventory import Host, Inventory
from dsrprov.report import HostReport


@dataclass
class Probed:
    host: Host
    report: HostReport
    facts: Facts | None = None


def select_hosts(inv: Inventory, names: list[str]) -> tuple[list[str], list[HostReport]]:
    """Inventory names for the given names/addresses (default: every real server), and reports for unknown ones."""
    if not names:
        return [h for h in inv.hostnames() if inv.host(h).is_realserver], []
    found, bad = [], []
    for n in names:
        name = inv.find(n)
        if name is None:
            bad.append(HostReport(n).fail(EXIT_USAGE, f"not in the inventory {inv.path}"))
        elif name not in found:
            found.append(name)
    return found, bad


def host_checks(host: Host, facts: Facts, services: list[dict[str, object]]) -> list[Check]:
    if isinstance(facts, WindowsFacts):
        return windows_checks(
            facts,
            host.vips,
            services,
            management_address=host.address,
            metric=int(host.str_var("dsr_realserver_windows_metric") or 254),
            network_adapter=host.str_var("dsr_realserver_windows_network_name")
            or host.str_var("dsr_realserver_windows_network_adapter"),
        )
    return linux_checks(facts, host.vips, services)


def _probe_one(host: Host, opts: ConnOptions, services: list[dict[str, object]]) -> Probed:
    report = HostReport(host.name, address=host.address, vips=host.vips)
    try:
        os_name = host.os or detect_os(host.name, host.address, opts.timeout)
        report.os = os_name
        facts = probe(host, os_name, opts)
    except DsrError as exc:
        return Probed(host, report.fail(exc.exit_code, exc.reason))
    report.checks = host_checks(host, facts, services)
    on_lo = facts.loopback_vips()
    configured = bool(on_lo) and all(c.ok for c in report.checks if c.name != "persisted" and c.ok is not None)
    report.state = {
        "hostname": facts.hostname,
        "os_release": facts.os,
        "loopback_vips": on_lo,
        "summary": "configured" if configured and report.verified else ("partial" if on_lo else "not configured"),
    }
    if isinstance(facts, LinuxFacts):
        report.state["arp"] = {
            i: dict(zip(("arp_ignore", "arp_announce"), facts.effective_arp(i), strict=True)) for i in facts.interfaces
        }
        report.state["unit"] = facts.unit_enabled or "missing"
        report.state["guard"] = facts.guard.to_json()
        # Who manages lo, and what it could do to the VIPs: warnings, not
        # failures (the VIPs are there now; the role makes the manager keep them).
        found = lomgr.assess(facts.lo, host.vips)
        report.state["lo_manager"] = {
            "manager": found.manager,
            "detail": found.detail,
            "problems": found.problems,
            "risks": found.risks,
        }
        report.warnings = found.problems + found.risks
    return Probed(host, report, facts)


def collect(
    inv: Inventory, names: list[str], opts: ConnOptions, *, parallel: int = 8, arp: bool = True
) -> list[HostReport]:
    """Probe hosts in parallel; with ``arp``, add the neighbour probe from the vantage host."""
    selected, bad = select_hosts(inv, names)
    services = inv.services()
    hosts = [inv.host(n) for n in selected]
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        probed = list(pool.map(lambda h: _probe_one(h, opts, services), hosts))
        if arp:
            _arp_checks(inv, probed, opts, pool)
    return bad + [p.report for p in probed]


def _macs(facts: Facts) -> list[str]:
    return [m for i, m in facts.macs.items() if i != "lo" and m != "00:00:00:00:00:00"]


def _arp_checks(inv: Inventory, probed: list[Probed], opts: ConnOptions, pool: ThreadPoolExecutor) -> None:
    ok = [p for p in probed if p.facts is not None]
    vips = sorted({v for p in ok for v in p.host.vips})
    if not ok:
        return
    vantage_name = inv.vantage_host()
    if not vantage_name or not inv.has_host(vantage_name):
        for p in ok:
            p.report.checks.append(
                Check("arp/nd probe", None, "no vantage host: set dsr_vantage_host or add a dsr_directors host")
            )
        return
    # The vantage host and the directors are reached with their own inventory
    # settings: the command line's options are for the hosts being checked.
    own = opts.inventory_only()
    vantage = ssh_target(inv.host(vantage_name), own)
    directors = [d for d in inv.directors()]
    dir_future = [pool.submit(probe_linux, ssh_target(inv.host(d), own)) for d in directors]
    try:
        probes: dict[str, NeighbourProbe] = neighbour_probe(vantage, vips) if vips else {}
    except DsrError as exc:
        for p in ok:
            p.report.checks.append(Check("arp/nd probe", False, f"vantage host {vantage_name}: {exc.reason}"))
        return
    director_macs: dict[str, str] = {}
    for name, fut in zip(directors, dir_future, strict=True):
        try:
            director_macs.update({m: name for m in _macs(fut.result())})
        except DsrError as exc:
            for p in ok:
                p.report.checks.append(Check("arp/nd probe", False, f"director {name}: {exc.reason}"))
            return
    rs_macs = {m: p.host.name for p in ok if p.facts is not None for m in _macs(p.facts)}
    for p in ok:
        assert p.facts is not None
        p.report.checks.append(
            neighbour_check(
                p.host.name,
                _macs(p.facts),
                p.host.vips,
                probes,
                vantage=vantage_name,
                director_macs=director_macs,
                realserver_macs=rs_macs,
            )
        )


def verify(inv: Inventory, names: list[str], opts: ConnOptions, *, parallel: int = 8) -> list[HostReport]:
    reports = collect(inv, names, opts, parallel=parallel, arp=True)
    for r in reports:
        if not r.vips and not r.error:
            r.checks.append(Check("vips in inventory", False, "the host has no VIPs in the inventory"))
        r.settle()
    return reports


__all__ = ["EXIT_FAILED", "collect", "select_hosts", "verify"]
