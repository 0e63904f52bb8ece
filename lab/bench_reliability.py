"""Reliability benchmark: what a client sees of each change and failure.

The lab's client sends one HTTP request to the IPv4 VIP every 50 ms, a new
connection each, with 2 s for the whole exchange (curl --max-time 2), while
one scenario runs; per scenario: requests sent, failed, and the longest time
the client went without an answer.

  enroll, unenroll   dsrprov enroll rs1 / unenroll rs1 (alternately, RUNS each)
  noop               ansible-playbook site.yml on the converged lab (RUNS)
  site-leave         site.yml after rs1's dsr_vips lost the IPv4 VIP (3 runs)
  site-join          site.yml after rs1's dsr_vips got it back (3 runs)
  rs-stopped         rs1's web service stopped for 12 s, then started
  rs-reboot          rs1 shut down, down for 15 s, booted again
  vip-lost-dsr-path  the IPv4 VIP removed from rs1's lo for 15 s (a DSR
                     blackhole: rs1's real address still answers), with the
                     director's DSR-path check (the default): rs1 leaves the
                     pool after the check's detection window
  vip-lost-real-address   the same with dsr_director_check=real_address: rs1
                     stays in the pool and every request sent to it is lost
  vip-lost-guard     the same removal with rs1's guard in heal mode (the lab's
                     inventory has it off; turned on for rs1 here, and off again)
  director-killed    the master of a VRRP pair killed (its QEMU, SIGKILL), with a
                     slow download running across it; then the killed director
                     comes back (a fresh VM configured by site.yml)

Not a test: figures are printed (and written as JSON with --json), not
asserted. Bounded: only the lab's own VIP, at most 20 requests a second, each
load at most 10 minutes.

    python lab/bench_reliability.py [--runs 5] [--only enroll,unenroll,...] [--json FILE] [--logs DIR]

--logs DIR keeps, per command and per scenario run, what explains a loss
afterwards: dsrprov's progress lines with the time since the load started,
its Ansible log (--log), and each request's start, end, outcome and phase.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

import dsrprov_lab as labmod
from dsrprov.model.inventory import Inventory
from dsrprov.run import playbook as pb
from dsrprov_lab import pair
from dsrprov_lab.load import Load, LoadResult
from dsrprov_lab.proof import Roles

SCENARIOS = (
    "unenroll",
    "enroll",
    "noop",
    "site-leave",
    "site-join",
    "rs-stopped",
    "rs-reboot",
    "vip-lost-dsr-path",
    "vip-lost-real-address",
    "vip-lost-guard",
    "director-killed",
)


# --logs: where each command's output and each run's request timeline go.
LOGS: Path | None = None
_seq = itertools.count(1)


def _log_path(suffix: str) -> Path | None:
    return LOGS / f"{next(_seq):03d}-{suffix}" if LOGS is not None else None


@dataclass
class Row:
    scenario: str
    runs: int = 0
    sent: int = 0
    failed: int = 0
    longest_gap: float = 0.0
    per_run: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, result: LoadResult, ok: bool = True, note: str = "") -> None:
        self.runs += 1
        self.sent += result.sent
        self.failed += len(result.failed)
        self.longest_gap = max(self.longest_gap, result.longest_gap())
        self.per_run.append(("" if ok else "COMMAND FAILED; ") + result.summary() + (f"; {note}" if note else ""))
        if (path := _log_path(f"{self.scenario}-{self.runs}.requests.tsv")) is not None:
            t0 = min((r.start for r in result.requests), default=0.0)
            lines = ["start_s\tend_s\tok\tphase\tdetail"] + [
                f"{r.start - t0:.3f}\t{r.end - t0:.3f}\t{int(r.ok)}\t{result.phase(r.start)}\t{r.detail}"
                for r in result.requests
            ]
            path.write_text("\n".join(lines) + "\n")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cli(load: Load | None, inventory: Path, *args: str) -> bool:
    """Run dsrprov; each of its progress lines marks a phase of the load."""
    out_log = _log_path(f"{args[0]}.out")
    extra = ["--log", str(out_log.with_suffix(".ansible.log"))] if out_log is not None else []
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsrprov", *args, *extra, "-i", str(inventory)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    kept: list[str] = []
    for line in proc.stderr:
        kept.append(f"{time.monotonic() - started:8.3f} {line.rstrip()}")
        if load is not None and line.startswith("dsrprov: "):
            load.mark(line[9:].strip()[:80])
    out = proc.stdout.read()
    proc.wait()
    if out_log is not None:
        out_log.write_text("\n".join([f"$ dsrprov {' '.join(args)}", *kept, out, f"exit {proc.returncode}"]) + "\n")
    say(f"    {' '.join(args[:2])}: exit {proc.returncode}: {out.strip()}")
    return proc.returncode == 0


def in_pool(inventory: Path, host: str) -> bool:
    return Inventory(inventory).host(host).is_realserver if Inventory(inventory).find(host) else False


def run_unenroll(roles: Roles, inventory: Path, vip: str, row: Row) -> None:
    with Load(roles.client, vip) as load:
        time.sleep(2)
        load.mark("unenroll")
        ok = cli(load, inventory, "unenroll", "rs1")
        load.mark("after unenroll")
        time.sleep(3)
    row.add(load.result, ok)


def run_enroll(roles: Roles, inventory: Path, vip: str, vips: list[str], row: Row) -> None:
    rs1 = next(h for h in roles.realservers if h.name == "rs1")
    args = ["enroll", "rs1", "--address", rs1.ip, *[a for v in vips for a in ("--vip", v)]]
    with Load(roles.client, vip) as load:
        time.sleep(2)
        load.mark("enroll")
        ok = cli(load, inventory, *args)
        load.mark("after enroll")
        time.sleep(3)
    row.add(load.result, ok)


def run_noop(roles: Roles, inventory: Path, vip: str, row: Row) -> None:
    with Load(roles.client, vip) as load:
        time.sleep(2)
        load.mark("site.yml")
        done = pb.run(inventory)
        load.mark("after site.yml")
        time.sleep(3)
    changed = sum(done.changed.values())
    row.add(load.result, done.returncode == 0, f"changed={changed}")


def set_rs1_vips(inventory: Path, vips: list[str] | None) -> None:
    """rs1's dsr_vips in the bench's copy of the inventory (None: the group's default)."""
    doc = yaml.safe_load(inventory.read_text())
    rs1 = doc["all"]["children"]["dsr_realservers"]["children"]["dsr_realservers_linux"]["hosts"]["rs1"]
    if vips is None:
        rs1.pop("dsr_vips", None)
    else:
        rs1["dsr_vips"] = vips
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))


def run_site_change(roles: Roles, inventory: Path, vip: str, vips: list[str] | None, row: Row) -> None:
    set_rs1_vips(inventory, vips)
    run_noop(roles, inventory, vip, row)


def run_rs_stopped(roles: Roles, vip: str, row: Row) -> None:
    rs1 = next(h for h in roles.realservers if h.name == "rs1")
    with Load(roles.client, vip) as load:
        time.sleep(2)
        load.mark("rs1 web stopped")
        labmod.lab_exec(rs1, "systemctl", "stop", "lab-web.service")
        time.sleep(12)
        load.mark("rs1 web started")
        labmod.lab_exec(rs1, "systemctl", "start", "lab-web.service")
        time.sleep(10)
    result = load.result
    row.add(result, True, _window(result))


def rs1_in_ipvs(roles: Roles, vip: str, rs1: labmod.LabHost) -> bool:
    out = labmod.lab_exec(roles.director, "ipvsadm", "-Ln", "-t", f"{vip}:80", check=False)
    return f"{rs1.ip}:80" in out


def run_vip_lost(roles: Roles, inventory: Path, vip: str, check: str, row: Row) -> None:
    """rs1 loses its IPv4 VIP for 15 s under load, with the director's CHECK."""
    rs1 = next(h for h in roles.realservers if h.name == "rs1")
    done = pb.run(inventory, "--limit", roles.director.name, "-e", f"dsr_director_check={check}")
    if done.returncode != 0:
        row.notes.append(f"site.yml with dsr_director_check={check} failed")
        return
    labmod.seconds_until(lambda: rs1_in_ipvs(roles, vip, rs1), 30)
    # The guard would put the VIP back within a second: this measures the director.
    labmod.lab_exec(rs1, "sh", "-c", "systemctl stop dsrprov-guard.service 2>/dev/null || true")
    # Independent requests (many clients): a lost request does not delay the next.
    with Load(roles.client, vip, independent=True) as load:
        time.sleep(2)
        load.mark("VIP removed from rs1")
        labmod.lab_exec(rs1, "ip", "addr", "del", f"{vip}/32", "dev", "lo")
        out = labmod.seconds_until(lambda: not rs1_in_ipvs(roles, vip, rs1), 15)
        time.sleep(max(0.0, 15 - (out or 15)))
        load.mark("VIP back on rs1")
        labmod.lab_exec(rs1, "ip", "addr", "add", f"{vip}/32", "dev", "lo", "label", "lo:1")
        back = labmod.seconds_until(lambda: rs1_in_ipvs(roles, vip, rs1), 30) if out is not None else 0.0
        time.sleep(3)
    labmod.lab_exec(rs1, "sh", "-c", "systemctl start dsrprov-guard.service 2>/dev/null || true")
    left = f"rs1 out of the pool {out:.1f} s after the VIP went" if out is not None else "rs1 stayed in the pool"
    row.add(load.result, True, f"{left}, back {back or 0:.1f} s after it returned")


def run_vip_lost_guard(roles: Roles, inventory: Path, vip: str, row: Row) -> None:
    """rs1 loses its IPv4 VIP under load with its guard in heal mode."""
    rs1 = next(h for h in roles.realservers if h.name == "rs1")
    done = pb.run(inventory, "--limit", f"{rs1.name},{roles.director.name}",
                  "-e", "dsr_realserver_linux_guard_mode=heal")  # fmt: skip
    if done.returncode != 0:
        row.notes.append("site.yml with the guard in heal mode failed")
        return
    labmod.seconds_until(lambda: rs1_in_ipvs(roles, vip, rs1), 30)
    on_lo = f"ip -o addr show dev lo | grep -q ' {vip}/32 '"
    # Independent requests (many clients): a lost request does not delay the next.
    with Load(roles.client, vip, independent=True) as load:
        time.sleep(2)
        load.mark("VIP removed from rs1")
        labmod.lab_exec(rs1, "ip", "addr", "del", f"{vip}/32", "dev", "lo")
        back = labmod.seconds_until(
            lambda: labmod.lab_exec(rs1, "sh", "-c", f"{on_lo} && echo yes", check=False) != "", 10
        )
        time.sleep(8)
        stayed = rs1_in_ipvs(roles, vip, rs1)
    pb.run(inventory, "--limit", rs1.name)  # the inventory's guard mode again
    seen = f"VIP back on lo within {back:.2f} s (seen from outside, polling)" if back is not None else "VIP not back"
    row.add(load.result, True, f"{seen}; rs1 {'still in' if stayed else 'out of'} the pool")


def run_rs_reboot(roles: Roles, vip: str, row: Row) -> None:
    rs1 = next(h for h in roles.realservers if h.name == "rs1")
    with Load(roles.client, vip) as load:
        time.sleep(2)
        load.mark("rs1 shuts down")
        # A container restarts in about a second, a machine does not: rs1
        # stays down for 15 s (firmware, kernel) before it boots again.
        labmod.podman("stop", "-t", "10", rs1.container)
        load.mark("rs1 down")
        time.sleep(15)
        load.mark("rs1 boots")
        labmod.podman("start", rs1.container)
        labmod.wait_for_boot(rs1)
        load.mark("rs1 booted")
        deadline = time.time() + 60
        while time.time() < deadline and "rs1" not in _answers_since(load, time.time() - 1):
            time.sleep(0.5)
        load.mark("rs1 answers again")
        time.sleep(5)
    result = load.result
    row.add(result, True, _window(result))


def _answers_since(load: Load, since: float) -> set[str]:
    out = set()
    for line in list(load.lines):
        try:
            t0, _, result, detail = json.loads(line)
        except ValueError:
            continue
        if t0 >= since and result == "ok":
            out.add(detail)
    return out


def _window(result: LoadResult) -> str:
    failed = result.failed
    if not failed:
        return "no failure"
    return f"failures from {result.phase(failed[0].start)!r} +{failed[-1].end - failed[0].start:.1f} s"


def run_director_killed(
    the_lab: labmod.Lab,
    roles: Roles,
    vip: str,
    sync: bool,
    rows: dict[str, Row],
    runs: int = 1,
    independent: bool = False,
) -> None:
    """``runs`` failovers in a row: the master is killed, the backup takes
    over, the killed one comes back (a fresh VM configured by site.yml) and is
    the next backup; the lab's own director is alive at the end."""
    say("  forming the director pair")
    inventory, master, backup = pair.form_pair(the_lab, sync=sync)
    try:
        for i in range(runs):
            say(f"  failover {i + 1}: {master.name} is master; killing it")
            result = pair.kill_master(
                the_lab, roles.client, master, backup, vip, download_url=f"http://{vip}/16m.bin",
                independent=independent,
            )  # fmt: skip
            rows["director-killed"].add(result.load, True, _failover_note(result, backup, sync))
            say(f"    {rows['director-killed'].per_run[-1]}")
            say(f"  bringing {master.name} back")
            labmod.start_spare(the_lab, master)
            with Load(roles.client, vip) as load:
                time.sleep(2)
                load.mark(f"{master.name} configured")
                done = pb.run(inventory, "--limit", master.name)
                load.mark(f"{master.name} configured, done")
                time.sleep(10)
            holder = next((d.name for d in (backup, master) if pair.holds(d, vip)), "nobody")
            rows["director returns"].add(load.result, done.returncode == 0, f"then {holder} holds the VIP")
            say(f"    {rows['director returns'].per_run[-1]}")
            master, backup = backup, master
    finally:
        say("  back to the lab's own director alone")
        pair.dissolve_pair(the_lab)


def _failover_note(result: pair.Failover, backup: labmod.LabHost, sync: bool) -> str:
    rc, code, size, seconds = result.download or (-1, "", 0, 0.0)
    return (
        f"backup {backup.name} held the VIP {result.takeover_s:.1f} s after the kill; "
        f"{result.garp_from_backup} gratuitous ARPs from it; client's ARP entry {result.client_mac_before} -> "
        f"{result.client_mac_after} ({'the backup' if result.client_mac_after == backup.mac else 'NOT the backup'}); "
        f"download across it: curl exit {rc}, HTTP {code}, {size} bytes in {seconds:.0f} s"
        f" (connection sync {'on' if sync else 'off'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path, help="keep each command's output and each run's requests here")
    parser.add_argument("--no-sync", action="store_true", help="director pair without connection sync")
    parser.add_argument("--failovers", type=int, default=1, help="director failovers in a row")
    parser.add_argument(
        "--independent", action="store_true",
        help="failover load: a request every 50 ms whether or not the ones before were answered (many clients)",
    )  # fmt: skip
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    if args.logs is not None:
        global LOGS
        args.logs.mkdir(parents=True, exist_ok=True)
        LOGS = args.logs
    if unknown := set(only) - set(SCENARIOS):
        parser.error(f"unknown scenario {sorted(unknown)[0]} (known: {', '.join(SCENARIOS)})")

    the_lab = labmod.up()
    roles = Roles.of(the_lab)
    inventory = labmod.inventory_copy(the_lab, "bench")
    services = Inventory(inventory).services()
    vips = [str(s["vip"]) for s in services]
    vip = next(v for v in vips if ":" not in v)
    done = pb.run(inventory)
    if done.returncode != 0:
        sys.exit(done.stdout[-3000:])
    rows = {name: Row(name) for name in [*SCENARIOS, "director returns"]}
    start = time.monotonic()
    for i in range(args.runs):
        for scenario in ("unenroll", "enroll"):
            if scenario not in only:
                continue
            enrolled = in_pool(inventory, "rs1")
            if scenario == "unenroll" and not enrolled:
                cli(None, inventory, *_enroll_args(roles, vips))
            if scenario == "enroll" and in_pool(inventory, "rs1"):
                cli(None, inventory, "unenroll", "rs1")
            say(f"{scenario} run {i + 1}")
            if scenario == "unenroll":
                run_unenroll(roles, inventory, vip, rows[scenario])
            else:
                run_enroll(roles, inventory, vip, vips, rows[scenario])
            say(f"  {rows[scenario].per_run[-1]}")
    if not in_pool(inventory, "rs1"):
        cli(None, inventory, *_enroll_args(roles, vips))
    if "noop" in only:
        for i in range(args.runs):
            say(f"noop run {i + 1}")
            run_noop(roles, inventory, vip, rows["noop"])
            say(f"  {rows['noop'].per_run[-1]}")
    for i in range(3 if {"site-leave", "site-join"} & set(only) else 0):
        for scenario, rs1_vips in (("site-leave", [v for v in vips if ":" in v]), ("site-join", None)):
            if scenario in only:
                say(f"{scenario} run {i + 1}")
                run_site_change(roles, inventory, vip, rs1_vips, rows[scenario])
                say(f"  {rows[scenario].per_run[-1]}")
    set_rs1_vips(inventory, None)
    if "rs-stopped" in only:
        say("rs-stopped")
        run_rs_stopped(roles, vip, rows["rs-stopped"])
        say(f"  {rows['rs-stopped'].per_run[-1]}")
    if "rs-reboot" in only:
        say("rs-reboot")
        run_rs_reboot(roles, vip, rows["rs-reboot"])
        say(f"  {rows['rs-reboot'].per_run[-1]}")
    for check in ("dsr-path", "real-address"):
        if f"vip-lost-{check}" in only:
            for i in range(args.runs):
                say(f"vip-lost-{check} run {i + 1}")
                run_vip_lost(roles, inventory, vip, check.replace("-", "_"), rows[f"vip-lost-{check}"])
                say(f"  {rows[f'vip-lost-{check}'].per_run[-1]}")
    if "vip-lost-guard" in only:
        for i in range(args.runs):
            say(f"vip-lost-guard run {i + 1}")
            run_vip_lost_guard(roles, inventory, vip, rows["vip-lost-guard"])
            say(f"  {rows['vip-lost-guard'].per_run[-1]}")
    if {"vip-lost-dsr-path", "vip-lost-real-address"} & set(only):
        pb.run(inventory, "--limit", roles.director.name)  # the inventory's check again
    if "director-killed" in only:
        say("director-killed")
        try:
            run_director_killed(the_lab, roles, vip, not args.no_sync, rows, args.failovers, args.independent)
        except labmod.LabError as exc:  # the figures so far are still printed
            rows["director-killed"].notes.append(f"FAILED: {exc}")
            say(f"  FAILED: {exc}")
        for name in ("director-killed", "director returns"):
            say(f"  {name}: {rows[name].per_run[-1] if rows[name].per_run else 'not run'}")

    print(f"\nreliability on lab {the_lab.network}, {time.monotonic() - start:.0f} s")
    print(f"{'scenario':18} {'runs':>4} {'sent':>6} {'failed':>6} {'longest gap s':>13}")
    for row in rows.values():
        if row.runs:
            print(f"{row.scenario:18} {row.runs:4} {row.sent:6} {row.failed:6} {row.longest_gap:13.2f}")
    for row in rows.values():
        for n, line in enumerate(row.per_run, 1):
            print(f"  {row.scenario} {n}: {line}")
        for note in row.notes:
            print(f"  {row.scenario}: {note}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows.values() if r.runs], indent=1) + "\n")
    return 0


def _enroll_args(roles: Roles, vips: list[str]) -> list[str]:
    rs1 = next(h for h in roles.realservers if h.name == "rs1")
    return ["enroll", "rs1", "--address", rs1.ip, *[a for v in vips for a in ("--vip", v)]]


if __name__ == "__main__":
    sys.exit(main())
