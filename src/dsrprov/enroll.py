"""``dsrprov enroll`` and ``dsrprov unenroll``: validate, probe, preflight,
write the inventory, run the roles, verify. Hosts fail one by one: a bad host
never stops the others.

Nothing here changes a host: the roles do, through ansible-playbook.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ansible_collections.dsrprov.dsr.plugins.plugin_utils import service_model as model
from ansible_collections.dsrprov.dsr.plugins.plugin_utils.vips import VipError, check_vips
from dsrprov import loadmaster
from dsrprov.checks import hostcheck
from dsrprov.checks.verify import Check
from dsrprov.connect.linux_facts import LinuxFacts
from dsrprov.connect.probe import ConnOptions, Facts, detect_os, probe
from dsrprov.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, DsrError, UsageError
from dsrprov.model.inventory import (
    OS_GROUPS,
    REALSERVERS_GROUP,
    Host,
    Inventory,
    check_host_name,
    is_ip,
    locked,
    resolve_path,
    write_atomic,
)
from dsrprov.report import HostReport
from dsrprov.run.playbook import HostRun, run_roles

Progress = Callable[[str], None]


@dataclass
class Request:
    """One host to enroll, as given on the command line or in a hosts file."""

    host: str
    vips: list[str]
    address: str | None = None


@dataclass
class _Plan:
    req: Request
    report: HostReport
    name: str = ""
    os: str = ""
    address: str | None = None  # written as ansible_host
    real_address6: str | None = None  # written as dsr_real_address6
    vips: list[str] = field(default_factory=list)
    facts: Facts | None = None


def parse_hosts_file(path: Path, default_vips: list[str]) -> list[Request]:
    """Lines ``HOST [VIP ...]``; ``#`` starts a comment; no VIP means the --vip list."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read hosts file {path}: {exc.strerror}") from None
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            out.append(Request(words[0], words[1:] or list(default_vips)))
    return out


def preflight(name: str, vips: list[str], facts: Facts, management: str) -> None:
    """Refuse a VIP that would cut the host off or make it answer ARP for the VIP."""

    def same(a: str, b: str) -> bool:
        try:
            return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])
        except ValueError:
            return False

    for vip in vips:
        if same(vip, management):
            raise UsageError(f"VIP {vip} is the host's management address (ansible_host): refused", name)
        if isinstance(facts, LinuxFacts):
            if facts.ssh_server and same(vip, facts.ssh_server):
                raise UsageError(f"VIP {vip} is the address this SSH connection came in on: refused", name)
            if facts.ssh_client and same(vip, facts.ssh_client):
                raise UsageError(
                    f"VIP {vip} is this controller's own address: the host would answer it locally and lose the "
                    "connection; refused",
                    name,
                )
        for gw in getattr(facts, "gateways", []):
            if same(vip, gw):
                raise UsageError(f"VIP {vip} is the host's default gateway: it would lose its route; refused", name)
    try:
        check_vips(vips, facts.own_addresses)
    except VipError as exc:
        raise UsageError(str(exc), name) from None


def check_pools(inv: Inventory, changes: dict[str, list[str]]) -> None:
    """Refuse, before any change, an enroll or unenroll that would leave a
    service of the directors with no real server.

    The rule is site.yml's (``model.director_model``): an empty service is
    refused unless the service itself says ``allow_empty: true`` in the
    inventory. ``changes`` maps a host (inventory name or address) to its VIPs
    after the change; ``[]`` takes it out."""
    if not (inv.directors() or inv.group_hosts("dsr_loadmasters")):
        return  # nobody balances the services: an empty one harms nobody

    def normal(vips: list[str]) -> set[str]:
        try:
            return set(check_vips(vips, allow_empty=True))
        except VipError:
            return set()  # reported per host later, with its own line

    changed = {inv.find(h) or h for h in changes}
    held: set[str] = set()
    for name in inv.hostnames():
        host = inv.host(name)
        if host.is_realserver and name not in changed:
            held |= normal(host.vips)
    for vips in changes.values():
        held |= normal(vips)
    for raw in inv.services():
        try:
            svc = model.check_service(raw)
        except model.ModelError:
            continue  # site.yml and the director role say what is wrong with it
        if svc["vip"] not in held and not svc["allow_empty"]:
            raise UsageError(
                f"refused: service {svc['name']} would be left with no real server holding its VIP {svc['vip']}; "
                "give that VIP too, or set allow_empty: true on the service in dsr_services"
            )


def _prepare(inv: Inventory, req: Request, os_choice: str, opts: ConnOptions, progress: Progress) -> _Plan:
    plan = _Plan(req, HostReport(req.host))
    try:
        plan.vips = check_vips(req.vips)
    except VipError as exc:
        raise UsageError(str(exc), req.host) from None
    found = inv.find(req.host)
    plan.name = found or req.host
    plan.report.host = plan.name
    known = inv.host(plan.name) if found else None
    if req.address:
        plan.address = req.address
    elif not found and is_ip(req.host):
        plan.address = req.host
    if known is not None and known.os and os_choice != "auto" and known.os != os_choice:
        raise UsageError(f"the inventory has it as a {known.os} host, not {os_choice}", plan.name)
    address = plan.address or (known.address if known else req.host)
    plan.report.address = address
    plan.os = os_choice if os_choice != "auto" else ((known.os if known else None) or "")
    if not plan.os:
        plan.os = detect_os(plan.name, address, opts.timeout)
    plan.report.os = plan.os
    overrides = {"ansible_host": address, "dsr_vips": plan.vips}
    host = inv.host(plan.name, extra_groups=[OS_GROUPS[plan.os]], overrides=overrides)
    progress(f"dsrprov: {plan.name}: probing {address} ({plan.os})")
    plan.facts = probe(host, plan.os, opts)
    preflight(plan.name, plan.vips, plan.facts, address)
    plan.real_address6 = _real_address6(inv, plan, host, address)
    plan.report.vips = plan.vips
    return plan


def _real_address6(inv: Inventory, plan: _Plan, host: Host, address: str) -> str | None:
    """The IPv6 real address to record for a host that gets an IPv6 VIP.

    Directors and LoadMasters reach an IPv6 service's real servers over IPv6
    (LVS-DR cannot mix families). Taken from the inventory when set, else
    from the probe: a global IPv6 address beside the management address.
    Without one, the directors would refuse the host after it changed, so it
    is refused here, before anything changes."""
    if not any(":" in v for v in plan.vips) or ":" in address or host.str_var("dsr_real_address6"):
        return None
    found = plan.facts.ipv6_beside(address) if isinstance(plan.facts, LinuxFacts) else None
    if found is None and (inv.directors() or inv.group_hosts("dsr_loadmasters")):
        raise UsageError(
            f"an IPv6 VIP needs an IPv6 real address for the directors, and the host has no global IPv6 address "
            f"beside {address}: set dsr_real_address6 for it in the inventory",
            plan.name,
        )
    return found


@contextlib.contextmanager
def _overlay(inv: Inventory, hosts: dict[str, tuple[str, dict[str, object]]]) -> Iterator[Path]:
    """A second inventory source with what the command is about to write (or
    to take out), for the playbook and the checks to see in memory. It sits
    in the inventory's directory (so ``inventory_dir`` stays the same for a
    new host) under a hidden name, which Ansible skips in a directory source.

    ``hosts``: name -> (group, variables); group "" keeps the host's groups."""
    groups: dict[str, dict[str, object]] = {}
    plain: dict[str, object] = {}
    for name, (group, variables) in hosts.items():
        if group:
            groups.setdefault(group, {})[name] = variables
        else:
            plain[name] = variables
    doc: dict[str, object] = {"all": {"hosts": plain, "children": {REALSERVERS_GROUP: {"children": {
        g: {"hosts": members} for g, members in groups.items()}}}}}  # fmt: skip
    fd, tmp = tempfile.mkstemp(prefix=".dsrprov-overlay-", suffix=".yml", dir=inv.dir)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)  # JSON is YAML: no value is read as a template tag
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _entry_vars(p: _Plan) -> dict[str, object]:
    out: dict[str, object] = {"dsr_vips": p.vips}
    if p.address:
        out["ansible_host"] = p.address
    if p.real_address6:
        out["dsr_real_address6"] = p.real_address6
    return out


def _apply_run(plan_reports: dict[str, HostReport], runs: dict[str, HostRun], check: bool) -> None:
    for name, report in plan_reports.items():
        run = runs.get(name, HostRun())
        report.changed = run.changed
        if run.unreachable:
            report.fail(EXIT_UNREACHABLE, f"playbook: unreachable: {run.error}")
        elif run.failed or not run.in_recap:
            report.fail(EXIT_FAILED, f"playbook failed: {run.error or 'no result for the host'}")
        elif check:
            report.action = "would change" if run.changed else "nothing to change"


def _edit(inv: Inventory, plans: list[_Plan], *, enroll: bool) -> Inventory:
    """The inventory's files as they are, with the edits of ``plans`` (in memory).
    An edit that is unsafe fails its host, before anything changes."""
    inv.reset_edits()
    for p in plans:
        try:
            if enroll:
                inv.set_realserver(p.name, p.os, p.vips, p.address, p.real_address6)
            else:
                inv.remove_realserver(p.name)
        except DsrError as exc:
            p.report.fail(exc.exit_code, exc.reason)
    return inv


def _diff(inv: Inventory, progress: Progress) -> None:
    for f in inv.files().files:
        if f.edited and f.dump() != f.text:
            progress(f"dsrprov: the inventory file {f.path} would change:")
            for line in difflib.unified_diff(f.text.splitlines(), f.dump().splitlines(), lineterm="", n=1):
                progress(f"    {line}")


def enroll(
    inventory: Path | Inventory,
    requests: list[Request],
    *,
    os_choice: str = "auto",
    opts: ConnOptions,
    check: bool = False,
    parallel: int = 8,
    progress: Progress,
    log: IO[str] | None = None,
    loadmasters: list[str] | None = None,
) -> list[HostReport]:
    """A transaction per command: the role on the hosts, verification, and
    only then the inventory and the directors. The inventory is locked for
    the whole command; a host that fails is rolled back and left out of it.

    Given an ``Inventory`` (read once by the caller), the caller holds the lock."""
    names = [r.host for r in requests]
    if len(set(names)) != len(names):
        raise UsageError("a host is given more than once")
    for n in names:
        check_host_name(n)
    args = (requests, os_choice, opts, check, parallel, progress, log, loadmasters)
    if isinstance(inventory, Inventory) or check:
        return _enroll(inventory if isinstance(inventory, Inventory) else Inventory(inventory), *args)
    with locked(resolve_path(inventory)):
        return _enroll(Inventory(inventory), *args)


def _enroll(
    inv: Inventory,
    requests: list[Request],
    os_choice: str,
    opts: ConnOptions,
    check: bool,
    parallel: int,
    progress: Progress,
    log: IO[str] | None,
    loadmasters: list[str] | None,
) -> list[HostReport]:
    # The Kemp LoadMasters are directors too: updated with them, after verification.
    lms = loadmaster.select(inv, loadmasters)
    check_pools(inv, {r.host: r.vips for r in requests})
    directors = inv.directors() + lms

    def prepare(req: Request) -> _Plan:
        try:
            return _prepare(inv, req, os_choice, opts, progress)
        except DsrError as exc:
            plan = _Plan(req, HostReport(exc.host or req.host))
            plan.report.fail(exc.exit_code, exc.reason)
            return plan

    with ThreadPoolExecutor(max(1, parallel)) as pool:
        plans = list(pool.map(prepare, requests))
    ready = [p for p in plans if p.report.exit_code == EXIT_OK]
    if not ready:
        return [p.report for p in plans]
    # Every edit is tried in memory first: an unsafe one fails its host now.
    edited = _edit(inv, ready, enroll=True)
    ready = [p for p in ready if p.report.exit_code == EXIT_OK]
    if not ready:
        return [p.report for p in plans]
    was_realserver = {p.name: inv.has_host(p.name) and inv.host(p.name).is_realserver for p in ready}
    entries = {p.name: (OS_GROUPS[p.os], _entry_vars(p)) for p in ready}
    with _overlay(inv, entries) as overlay:
        sources = [inv.source, overlay]
        if check:
            _diff(edited, progress)
            runs = _run(sources, ready, opts, check=True, parallel=parallel, progress=progress, log=log)
            _update_directors(sources, directors, check=True, progress=progress, log=log)
            _apply_run({p.name: p.report for p in ready}, runs, check=True)
            return [p.report for p in plans]
        runs = _run(sources, ready, opts, check=False, parallel=parallel, progress=progress, log=log)
        _apply_run({p.name: p.report for p in ready}, runs, check=False)
        for p in ready:
            if p.report.exit_code == EXIT_OK:
                p.report.action = "enrolled" if p.report.changed else "unchanged"
        done = [p.name for p in ready if p.report.exit_code == EXIT_OK]
        if done:
            progress(f"dsrprov: verifying {', '.join(done)}")
            view = Inventory(inv.source, overlays=[overlay])  # the inventory as it will be
            for v in hostcheck.verify(view, done, opts, parallel=parallel):
                p = next(p for p in ready if p.name == v.host)
                p.report.checks = v.checks
                if v.exit_code != EXIT_OK:
                    p.report.fail(v.exit_code, f"not verified: {v.error}")
        failed = [p for p in ready if p.report.exit_code != EXIT_OK]
        _roll_back(inv, overlay, failed, was_realserver, opts, parallel, progress, log)
    good = [p for p in ready if p.report.exit_code == EXIT_OK]
    if not good:
        return [p.report for p in plans]
    # Only now, with the hosts configured and verified: the inventory, then the directors.
    final = _edit(inv, good, enroll=True)
    before = {f.path: f.text for f in final.files().files if f.path in final.files().changed()}
    written = final.save()
    if written:
        progress(f"dsrprov: inventory {', '.join(str(w) for w in written)} updated")
    if not directors:
        return [p.report for p in plans]
    problem = _update_directors(inv.source, directors, check=False, progress=progress, log=log)
    if problem:
        # Put everything back: the file, the hosts, the directors.
        for path, text in before.items():
            write_atomic(path, text)
        with _overlay(inv, entries) as overlay:
            _roll_back(inv, overlay, good, was_realserver, opts, parallel, progress, log)
        _update_directors(inv.source, directors, check=False, progress=progress, log=log)
        for p in good:
            p.report.fail(EXIT_FAILED, f"the directors were not updated ({problem}); rolled back: inventory unchanged")
        return [p.report for p in plans]
    for p in good:
        p.report.checks.append(Check("in the directors' pool", True, ", ".join(directors)))
    if lms:
        registered = loadmaster.registered(Inventory(inv.source), lms, [p.name for p in good])
        for p in good:
            p.report.checks.append(registered[p.name])
            if registered[p.name].ok is False:
                p.report.fail(EXIT_FAILED, f"not registered at the LoadMaster: {registered[p.name].detail}")
    return [p.report for p in plans]


def _roll_back(
    inv: Inventory,
    overlay: Path,
    failed: list[_Plan],
    was_realserver: dict[str, bool],
    opts: ConnOptions,
    parallel: int,
    progress: Progress,
    log: IO[str] | None,
) -> None:
    """Undo the role on hosts that failed: a new real server gets the role with
    state absent, one that was enrolled before gets its inventory settings back."""
    new = [p for p in failed if not was_realserver.get(p.name)]
    old = [p for p in failed if was_realserver.get(p.name)]
    undone: dict[str, HostRun] = {}
    if new:
        undone |= _run([inv.source, overlay], new, opts, check=False, parallel=parallel, progress=progress,
                       log=log, absent=True)  # fmt: skip
    if old:
        undone |= _run([inv.source], old, opts, check=False, parallel=parallel, progress=progress, log=log)
    for p in failed:
        run = undone.get(p.name, HostRun())
        state = "rolled back" if run.success else f"NOT rolled back ({run.error or 'no result'})"
        p.report.fail(p.report.exit_code, f"{p.report.error}; {state}, inventory unchanged")


def _run(
    inventory: Path | list[Path],
    plans: list[_Plan],
    opts: ConnOptions,
    *,
    check: bool,
    parallel: int,
    progress: Progress,
    log: IO[str] | None,
    absent: bool = False,
) -> dict[str, HostRun]:
    hosts = [p.name for p in plans]
    progress(f"dsrprov: running the roles{' in check mode' if check else ''} on {', '.join(hosts)}")
    return run_roles(
        inventory,
        hosts,
        check=check,
        absent=absent,
        forks=parallel,
        private_key=opts.identity,
        user=opts.user,
        known_hosts=opts.known_hosts,
        ssh_password=opts.ssh_password,
        winrm_password=opts.winrm_password,
        progress=progress,
        log=log,
    )


def _update_directors(
    inventory: Path | list[Path], hosts: list[str], *, check: bool, progress: Progress, log: IO[str] | None
) -> str | None:
    """Run the director role on every director, so that its real servers
    follow the inventory. Returns the failure, or None.

    The directors keep their own connection settings from the inventory: the
    options given for the enrolled hosts (key, user, known_hosts) are not
    theirs."""
    if not hosts:
        return None
    progress(f"dsrprov: updating the directors{' in check mode' if check else ''}: {', '.join(hosts)}")
    # No override of the empty-service rule here: check_pools refused, before
    # any change, what site.yml would refuse.
    runs = run_roles(inventory, hosts, check=check, progress=progress, log=log)
    failed = [f"{h}: {r.error or 'failed'}" for h, r in runs.items() if r.failed or r.unreachable or not r.in_recap]
    missing = [h for h in hosts if h not in runs]
    return "; ".join(failed + [f"{h}: no result" for h in missing]) or None


def unenroll(
    inventory: Path | Inventory,
    hosts: list[str],
    *,
    opts: ConnOptions,
    check: bool = False,
    parallel: int = 8,
    progress: Progress,
    log: IO[str] | None = None,
) -> list[HostReport]:
    """A transaction: the directors and LoadMasters drain the hosts (left out
    in memory, through an overlay), then the role removes DSR from them, and
    only then the inventory is written. A host that fails stays as it was:
    configured, in the inventory (byte for byte) and in the pool."""
    for h in hosts:
        check_host_name(h)
    args = (hosts, opts, check, parallel, progress, log)
    if isinstance(inventory, Inventory) or check:
        return _unenroll(inventory if isinstance(inventory, Inventory) else Inventory(inventory), *args)
    with locked(resolve_path(inventory)):
        return _unenroll(Inventory(inventory), *args)


def _unenroll(
    inv: Inventory,
    hosts: list[str],
    opts: ConnOptions,
    check: bool,
    parallel: int,
    progress: Progress,
    log: IO[str] | None,
) -> list[HostReport]:
    plans: list[_Plan] = []
    reports: list[HostReport] = []
    for h in hosts:
        name = inv.find(h)
        report = HostReport(name or h)
        reports.append(report)
        if name is None or not inv.host(name).is_realserver:
            report.fail(EXIT_USAGE, f"not enrolled: no real server of that name in {inv.source}")
            continue
        host = inv.host(name)
        report.os, report.address, report.vips = host.os or "", host.address, host.vips
        plans.append(_Plan(Request(name, host.vips), report, name=name, os=host.os or "linux"))
    if not plans:
        return reports
    check_pools(inv, {p.name: [] for p in plans})
    edited = _edit(inv, plans, enroll=False)  # refused edits fail their host here
    plans = [p for p in plans if p.report.exit_code == EXIT_OK]
    if not plans:
        return reports
    if check:
        _diff(edited, progress)
        runs = _run([inv.source], plans, opts, check=True, parallel=parallel, progress=progress, log=log, absent=True)
        _apply_run({p.name: p.report for p in plans}, runs, check=True)
        return reports
    directors = inv.directors() + loadmaster.select(inv, None)  # LoadMasters drain (disable, wait) and delete
    # Drain first: the directors run with the hosts holding no VIP (in memory
    # only), so IPVS lets established connections finish; then the role.
    with _overlay(inv, {p.name: ("", {"dsr_vips": []}) for p in plans}) as overlay:
        problem = _update_directors([inv.source, overlay], directors, check=False, progress=progress, log=log)
    if problem:
        _update_directors([inv.source], directors, check=False, progress=progress, log=log)
        for p in plans:
            p.report.fail(
                EXIT_FAILED, f"the directors were not updated ({problem}); nothing changed, inventory unchanged"
            )
        return reports
    runs = _run([inv.source], plans, opts, check=False, parallel=parallel, progress=progress, log=log, absent=True)
    _apply_run({p.name: p.report for p in plans}, runs, check=False)
    done = [p for p in plans if p.report.exit_code == EXIT_OK]
    failed = [p for p in plans if p.report.exit_code != EXIT_OK]
    if failed:
        # Still configured: back into the pool, as the unchanged inventory says.
        with _overlay(inv, {p.name: ("", {"dsr_vips": []}) for p in done}) as overlay:
            _update_directors([inv.source, overlay], directors, check=False, progress=progress, log=log)
        for p in failed:
            p.report.fail(p.report.exit_code, f"{p.report.error}; left in the inventory and the pool")
    for p in done:
        p.report.action = "removed"
    if done:
        written = _edit(inv, done, enroll=False).save()
        if written:
            progress(f"dsrprov: inventory {', '.join(str(w) for w in written)} updated")
    # Read back: nothing of the role may be left on a Linux host.
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        list(pool.map(lambda p: _check_gone(inv, p, opts), [p for p in done if p.os == "linux"]))
    return reports


def _check_gone(inv: Inventory, plan: _Plan, opts: ConnOptions) -> None:
    host: Host = inv.host(plan.name, extra_groups=[OS_GROUPS["linux"]], overrides={"ansible_host": plan.report.address})
    try:
        facts = probe(host, "linux", opts)
    except DsrError as exc:
        plan.report.checks.append(Check("nothing left", None, f"not read back: {exc.reason}"))
        return
    assert isinstance(facts, LinuxFacts)
    left = [v for v in plan.report.vips if v in facts.loopback_vips()]
    if facts.unit_enabled not in ("", "not-found"):
        left.append(f"unit {facts.unit_enabled}")
    if facts.sysctl_file:
        left.append("sysctl file")
    ok = not left
    plan.report.checks.append(Check("nothing left", ok, "no VIP, unit or sysctl file left" if ok else ", ".join(left)))
    if not ok:
        plan.report.fail(EXIT_FAILED, f"left on the host: {', '.join(left)}")


__all__ = ["EXIT_FAILED", "Request", "enroll", "parse_hosts_file", "preflight", "unenroll"]
