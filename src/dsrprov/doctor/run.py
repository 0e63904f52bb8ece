"""Run every probe of ``dsrprov doctor`` in parallel (bounded) and turn the
facts into findings. Read-only: nothing here changes a host (the DR-path
probe makes and removes a network namespace of its own on the vantage host)."""

from __future__ import annotations

import ipaddress
import json
import shlex
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.dsrprov.dsr.plugins.plugin_utils import service_model
from dsrprov.checks import hostcheck
from dsrprov.checks.verify import NeighbourProbe, neighbour_probe
from dsrprov.connect import ssh
from dsrprov.connect.probe import ConnOptions, detect_os, probe, ssh_target
from dsrprov.connect.winrm import WindowsFacts
from dsrprov.doctor import director as director_doctor
from dsrprov.doctor import drpath
from dsrprov.doctor import guard as guard_doctor
from dsrprov.doctor import linux as linux_doctor
from dsrprov.doctor import windows as windows_doctor
from dsrprov.doctor.findings import ERROR, Finding
from dsrprov.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, DsrError
from dsrprov.model.inventory import Host, Inventory


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    vantage: str = ""
    elapsed: float = 0.0
    unknown: list[str] = field(default_factory=list)  # names not in the inventory

    @property
    def exit_code(self) -> int:
        if self.unknown:
            return EXIT_USAGE
        if any(f.id == "probe-failed" for f in self.findings):
            return EXIT_UNREACHABLE
        return EXIT_FAILED if self.findings else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "hosts": self.hosts,
            "vantage": self.vantage,
            "elapsed_seconds": round(self.elapsed, 2),
            "unknown": self.unknown,
            "findings": [f.to_json() for f in self.findings],
        }


def _ssh_run(host: Host, opts: ConnOptions, command: str, timeout: float = 60) -> str:
    with ssh.session(ssh_target(host, opts)) as client:
        _code, out, err = ssh.run(client, command, timeout=timeout)
    return out + err


def _real_address(host: Host, family: int) -> str:
    keys = ("dsr_real_address6",) if family == 6 else ("dsr_real_address", "ansible_host")
    for key in keys:
        value = host.str_var(key)
        if value:
            return value
    return host.address if family == 4 else ""


def _director_model(inv: Inventory) -> list[dict[str, Any]]:
    groups = {g: inv.group_hosts(g) for g in service_model.DEFAULT_REALSERVER_GROUPS}
    hostvars = {h: inv.host(h).vars for h in inv.hostnames()}
    try:
        return service_model.director_model(inv.services(), groups, hostvars, allow_empty=True)
    except service_model.ModelError:
        return []  # site.yml says what is wrong with the model; doctor judges the hosts


def diagnose(inv: Inventory, names: list[str], opts: ConnOptions, *, parallel: int = 8) -> DoctorReport:
    start = time.monotonic()
    report = DoctorReport()
    selected, bad = hostcheck.select_hosts(inv, names)
    report.unknown = [b.host for b in bad]
    report.hosts = selected
    services = inv.services()
    hosts = [inv.host(n) for n in selected]
    directors = [inv.host(d) for d in inv.directors()]
    vantage_name = inv.vantage_host()
    vantage = inv.host(vantage_name) if vantage_name and inv.has_host(vantage_name) else None
    report.vantage = vantage_name or ""
    client = (vantage.str_var("dsr_doctor_client") or vantage.address) if vantage else ""
    director_addresses = [d.address for d in directors]
    vips = sorted({v for h in hosts for v in h.vips})
    targets = _dr_targets(hosts, services)

    with ThreadPoolExecutor(max(2, parallel)) as pool:
        host_futures = {h.name: pool.submit(_probe_host, h, opts, client) for h in hosts}
        dir_futures = {d.name: pool.submit(_ssh_run, d, opts, director_doctor.SCRIPT) for d in directors}
        neigh: Future[dict[str, NeighbourProbe]] | None = None
        dr: Future[str] | None = None
        if vantage is not None and vips:
            neigh = pool.submit(neighbour_probe, ssh_target(vantage, opts), vips)
            dr = pool.submit(_dr_probe, vantage, opts, targets, vips, inv)
        facts: dict[str, Any] = {}
        for name, fut in host_futures.items():
            try:
                facts[name] = fut.result()
            except DsrError as exc:
                hint = linux_doctor.unreachable_hint(exc.reason) if inv.host(name).os != "windows" else []
                report.findings.append(Finding("probe-failed", name, f"{name}: {exc.reason}", [exc.reason, *hint]))
        host_by_name = {h.name: h for h in hosts}
        per_host: dict[str, list[Finding]] = {}
        for name, f in facts.items():
            h = host_by_name[name]
            if isinstance(f, WindowsFacts):
                metric = int(h.str_var("dsr_realserver_windows_metric") or 254)
                per_host[name] = windows_doctor.findings(name, f, h.vips, metric=metric)
            else:
                per_host[name] = linux_doctor.findings(
                    name, f, h.vips, services, client=client, director_addresses=director_addresses
                ) + guard_doctor.findings(
                    name, f.base.guard, h.vips, wanted=h.str_var("dsr_realserver_linux_guard_mode", "heal")
                )
        model = _director_model(inv)
        for name, fut in dir_futures.items():
            try:
                dfacts = director_doctor.parse(fut.result())
            except DsrError as exc:
                report.findings.append(Finding("probe-failed", name, f"{name}: {exc.reason}", [exc.reason]))
                continue
            report.findings += director_doctor.findings(name, dfacts, model)
        macs = {m: name for name, f in facts.items() for i, m in _macs(f).items()}
        if neigh is not None:
            try:
                report.findings += _neighbour_findings(neigh.result(), macs, vantage_name or "")
            except DsrError as exc:
                report.findings.append(Finding("probe-failed", vantage_name or "", f"vantage host: {exc.reason}"))
        if dr is not None:
            try:
                out = dr.result()
            except DsrError as exc:
                report.findings.append(Finding("probe-failed", vantage_name or "", f"DR-path probe: {exc.reason}"))
            else:
                results, error, cache = _parse_dr(out, targets)
                if error:
                    report.findings.append(Finding("probe-failed", vantage_name or "", f"DR-path probe: {error}",
                                                   [error]))  # fmt: skip
                for r in results:
                    _attribute(r, per_host.setdefault(r.target.host, []), facts.get(r.target.host))
                report.findings += _cache_findings(cache, macs, vantage_name or "")
    for name in selected:
        report.findings += per_host.get(name, [])
    report.findings = fold_pool_consequences(report.findings)
    if vantage is None and hosts:
        report.findings.append(Finding("doctor-no-vantage", "", "no vantage host: the ARP and DR-path probes did "
                                       "not run", ["no dsr_vantage_host, lab client or director"]))  # fmt: skip
    order = {ERROR: 0}
    report.findings.sort(key=lambda f: (order.get(f.severity, 1), f.host, f.id))
    report.elapsed = time.monotonic() - start
    return report


def _probe_host(host: Host, opts: ConnOptions, client: str) -> Any:
    os_name = host.os or detect_os(host.name, host.address, opts.timeout)
    if os_name == "windows":
        return probe(host, "windows", opts)
    return linux_doctor.parse(_ssh_run(host, opts, linux_doctor.script(client or "192.0.2.1", host.address,
                                                                        host.vips)))  # fmt: skip


def _macs(facts: Any) -> dict[str, str]:
    base = facts.base if isinstance(facts, linux_doctor.DoctorFacts) else facts
    return {i: m for i, m in base.macs.items() if i != "lo" and m != "00:00:00:00:00:00"}


def _dr_targets(hosts: list[Host], services: list[dict[str, Any]]) -> list[drpath.Target]:
    out = []
    for h in hosts:
        for vip in h.vips:
            fam = 6 if ":" in vip else 4
            rip = _real_address(h, fam)
            if not rip:
                continue
            for svc in services:
                try:
                    same = ipaddress.ip_address(str(svc.get("vip", "")).split("/")[0]) == ipaddress.ip_address(vip)
                except ValueError:
                    same = False
                if same and str(svc.get("protocol", "tcp")).lower() == "tcp" and svc.get("port"):
                    out.append(drpath.Target(h.name, rip, vip, int(svc["port"])))
    return out


_CACHE_MARK = "@@dsrprov-neigh@@"


def _dr_probe(vantage: Host, opts: ConnOptions, targets: list[drpath.Target], vips: list[str], inv: Inventory) -> str:
    taken = [inv.host(n).address for n in inv.hostnames()] + vips
    req = drpath.request(
        targets, taken, vantage.str_var("dsr_doctor_probe_address"), vantage.str_var("dsr_doctor_probe_address6")
    )
    cache = "; ".join(f"echo {shlex.quote(v)} $(ip neigh show {shlex.quote(v)})" for v in vips)
    command = (
        'export PATH="$PATH:/usr/sbin:/sbin" LC_ALL=C; '
        f"echo {_CACHE_MARK}; {cache}; echo {_CACHE_MARK}; "
        f"python3 - {shlex.quote(req)} <<'DSRPROV_DR_PROBE'\n{drpath.PROBE}\nDSRPROV_DR_PROBE\n"
    )
    return _ssh_run(vantage, opts, command, timeout=30 + 10 * len(targets))


def _parse_dr(out: str, targets: list[drpath.Target]) -> tuple[list[drpath.Result], str, dict[str, str]]:
    parts = out.split(_CACHE_MARK)
    cache: dict[str, str] = {}
    rest = out
    if len(parts) >= 3:
        for line in parts[1].strip().splitlines():
            words = line.split()
            if words and "lladdr" in words:
                cache[words[0]] = words[words.index("lladdr") + 1].lower()
        rest = parts[2]
    results, error = drpath.parse(rest, targets)
    return results, error, cache


def _neighbour_findings(probes: dict[str, NeighbourProbe], rs_macs: dict[str, str], vantage: str) -> list[Finding]:
    out = []
    for vip, p in probes.items():
        kind = "ND" if ":" in vip else "ARP"
        if p.error:
            out.append(Finding("probe-failed", vantage, f"{kind} probe for {vip}: {p.error}", [p.error]))
            continue
        for mac in p.macs:
            if mac in rs_macs:
                out.append(Finding("arp-rs-answers", rs_macs[mac], f"{rs_macs[mac]} answers {kind} for {vip} "
                                   f"({mac})", [f"asked from {vantage}: answered by {', '.join(p.macs)}"],
                                   {"vip": vip}))  # fmt: skip
        if len(p.macs) > 1:
            out.append(Finding("arp-several-macs", vantage, f"{len(p.macs)} MACs answer {kind} for {vip}",
                               [f"{m} ({rs_macs.get(m, 'not a real server')})" for m in p.macs]))  # fmt: skip
    return out


def _cache_findings(cache: dict[str, str], rs_macs: dict[str, str], vantage: str) -> list[Finding]:
    return [
        Finding(
            "arp-cache-holds-rs",
            vantage,
            f"{vantage}'s neighbour cache sends {vip} to {rs_macs[mac]} ({mac})",
            [f"ip neigh show {vip}: lladdr {mac}"],
            {"vip": vip},
        )
        for vip, mac in cache.items()
        if mac in rs_macs
    ]


# Real-server findings that break the DSR path for a VIP: with the director's
# DSR-path health check (dsr_director_check: dsr_path, the default) each of them
# also takes the real server out of that VIP's pool.
_BREAKS_DSR_PATH = {"rs-vip-missing", "rs-service-not-on-vip", "rs-rp-filter-drops", "rs-firewall-drops",
                    "rs-dr-path-fails", "rs-return-via-director", "rs-lo-down", "rs-vip-wide-prefix"}  # fmt: skip


def fold_pool_consequences(findings: list[Finding]) -> list[Finding]:
    """A director that dropped a real server from a VIP's pool because the real
    server cannot answer on that VIP did its job: the cause is the real
    server's finding, which gets the director's view as evidence, and the
    director's dir-rs-missing goes (doctor names causes, not consequences)."""
    causes = {(f.host, _norm(f.values.get("vip"))): f for f in findings if f.id in _BREAKS_DSR_PATH}
    out = []
    for f in findings:
        key = (f.values.get("rs", ""), _norm(f.values.get("vip")))
        # A cause with no VIP (lo down) explains every VIP of its host.
        cause = (causes.get(key) or causes.get((key[0], None))) if f.id == "dir-rs-missing" else None
        if cause is None:
            out.append(f)
        else:
            cause.evidence.append(f"{f.line} (its health check took it out of the pool)")
    return out


def _norm(vip: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(vip)) if vip else None
    except ValueError:
        return vip


def _attribute(result: drpath.Result, found: list[Finding], facts: Any) -> None:
    """Put a DR-path probe result on the finding that explains it, or raise a new one."""
    t = result.target
    where = f"[{t.vip}]:{t.port}" if ":" in t.vip else f"{t.vip}:{t.port}"
    evidence = f"DR probe from the vantage host to {where} via {t.rip}: {result.status} {result.detail}".strip()
    if result.status == "ok":
        macs = set(_macs(facts).values()) if facts is not None else set()
        if result.captured and result.reply_mac and macs and result.reply_mac not in macs:
            # A host that cannot take the VIP (missing, or lo down) and forwards
            # (ip_forward=1) sends the packet on, and another host answers.
            cause = next((f for f in found if f.id == "rs-lo-down"
                          or (f.id == "rs-vip-missing" and f.values.get("vip") == t.vip)), None)  # fmt: skip
            if cause is not None:
                cause.evidence.append(f"{evidence}; the reply came from {result.reply_mac}, not from {t.host}")
                return
            found.append(
                Finding(
                    "rs-dr-reply-wrong-mac",
                    t.host,
                    f"{t.host}: the DR reply from {where} came from {result.reply_mac}",
                    [evidence, f"{t.host}'s MACs: {', '.join(sorted(macs))}"],
                )
            )
        return
    vip_ids = {"rs-lo-down", "rs-vip-wide-prefix", "rs-vip-missing", "rs-service-not-on-vip",
               "rs-rp-filter-drops", "rs-return-via-director", "rs-dr-path-fails"}  # fmt: skip
    for f in found:
        if f.id in vip_ids and (f.values.get("vip") in (t.vip, None) or f.id == "rs-return-via-director"):
            f.evidence.append(evidence)
            return
    if result.status == "refused":
        found.append(Finding("rs-service-not-on-vip", t.host, f"{t.host}: {where} refuses a DR connection",
                             [evidence], {"vip": t.vip, "port": str(t.port)}))  # fmt: skip
        return
    rules = linux_doctor.firewall_evidence(facts.firewall, t.vip, t.port) if isinstance(
        facts, linux_doctor.DoctorFacts) else []  # fmt: skip
    if rules:
        found.append(Finding("rs-firewall-drops", t.host, f"{t.host}: its firewall drops DR packets to {where}",
                             [evidence, *rules], {"vip": t.vip, "port": str(t.port)}))  # fmt: skip
        return
    found.append(Finding("rs-dr-path-fails", t.host, f"{t.host}: a DR packet to {where} gets no answer", [evidence]))


def render(report: DoctorReport) -> str:
    if not report.findings:
        return f"no finding: {len(report.hosts)} real server(s) healthy ({report.elapsed:.1f} s)"
    lines = []
    for f in report.findings:
        lines.append(f"{f.severity.upper():8} {f.id:24} {f.line}")
        lines += [f"{'':9}  evidence: {e}" for e in f.evidence]
        lines.append(f"{'':9}  fix: {f.fix}")
    lines.append(f"{len(report.findings)} finding(s) on {len(report.hosts)} real server(s) ({report.elapsed:.1f} s)")
    return "\n".join(lines)


def as_json(report: DoctorReport) -> str:
    return json.dumps(report.to_json(), indent=2)
