"""Fleet benchmark: dsrprov against the floor, side by side, on N lab real servers.

For each N (default 8 and 32; DSRPROV_BENCH_SIZES="8 32"), on a fleet lab of
N real servers (`python -m dsrprov_lab up --realservers N`, brought up here):

- floor: one SSH session per host, all at once, doing the same host changes as
  the role (sysctl file and live keys, the VIPs on lo, a unit written and
  enabled): what a hand-written parallel SSH loop costs;
- site.yml: first converge from a clean host, then a no-op re-run;
- dsrprov enroll of all N (from clean), then dsrprov verify of all N.

Each is run DSRPROV_BENCH_RUNS times (default 3), median reported, with its
ratio to the floor. Figures depend on the machine: printed, never asserted.
Traffic stays on the fleet lab's own network.

DSRPROV_BENCH_COMPARE=/path/to/another/checkout (e.g. a worktree of an older
commit) also measures that checkout's site.yml, enroll and verify on the same
lab in the same run, each run of it right after the same run of this one, so
both meet the same load: the "before" columns.

Usage: .venv/bin/python lab/bench_fleet.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dsrprov_lab as labmod
from dsrprov.model.inventory import Inventory
from dsrprov.run import playbook as pb

RUNS = int(os.environ.get("DSRPROV_BENCH_RUNS", "3"))
SIZES = [int(n) for n in os.environ.get("DSRPROV_BENCH_SIZES", "8 32").split()]
DSRPROV = str(Path(sys.executable).parent / "dsrprov")
UNIT = "dsrprov-loopback-vips.service"
COMPARE = os.environ.get("DSRPROV_BENCH_COMPARE", "")
# The floor makes the role's host changes without the guard, so the ratios are
# set with the guard off; DSRPROV_BENCH_GUARD=heal measures the role with it.
GUARD = os.environ.get("DSRPROV_BENCH_GUARD", "off")
# The runner of a checkout, run by that checkout's own code (its collection,
# its ansible.cfg): prints how long ansible-playbook took, as pb.run times it.
OTHER_SITE = """import sys
from dsrprov.run import playbook as pb
done = pb.run(sys.argv[1], *sys.argv[2:])
print(done.elapsed if done.returncode == 0 else -1)
print(done.stdout[-2000:] if done.returncode else "", file=sys.stderr)
"""


def checkout_env(tree: str) -> dict[str, str]:
    """The environment that makes Python and Ansible use TREE's code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(tree) / "src")
    env["ANSIBLE_CONFIG"] = str(Path(tree) / "ansible.cfg")
    return env


FLOOR_APPLY = """set -e
cat > /etc/sysctl.d/90-dsrprov-arp.conf <<'EOF'
net.ipv4.conf.all.arp_ignore = 1
net.ipv4.conf.all.arp_announce = 2
net.ipv4.conf.eth0.arp_ignore = 1
net.ipv4.conf.eth0.arp_announce = 2
EOF
sysctl -q -p /etc/sysctl.d/90-dsrprov-arp.conf
ip -4 addr replace {vip}/32 dev lo label lo:1
ip -6 addr replace {vip6}/128 dev lo nodad
cat > /etc/systemd/system/{unit} <<'EOF'
[Unit]
DefaultDependencies=no
After=systemd-sysctl.service
Before=network-pre.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/ip -4 addr replace {vip}/32 dev lo label lo:1
ExecStart=/usr/sbin/ip -6 addr replace {vip6}/128 dev lo nodad
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable -q {unit}
"""

FLOOR_UNDO = """systemctl disable -q {unit} 2>/dev/null
rm -f /etc/systemd/system/{unit} /etc/sysctl.d/90-dsrprov-arp.conf
systemctl daemon-reload; ip addr del {vip}/32 dev lo 2>/dev/null; ip -6 addr del {vip6}/128 dev lo 2>/dev/null
sysctl -qw net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0 net.ipv4.conf.eth0.arp_ignore=0 \
  net.ipv4.conf.eth0.arp_announce=0; true
"""


def ssh_all(hosts: list[labmod.LabHost], script: str) -> float:
    """One OpenSSH session per host, all at once (the floor)."""

    def one(h: labmod.LabHost) -> int:
        return subprocess.run(
            labmod.ssh_argv(h, "sh -s"), input=script, capture_output=True, text=True, check=False
        ).returncode

    start = time.monotonic()
    with ThreadPoolExecutor(len(hosts)) as pool:
        codes = list(pool.map(one, hosts))
    elapsed = time.monotonic() - start
    if any(codes):
        sys.exit(f"floor script failed on {sum(1 for c in codes if c)} hosts")
    return elapsed


def median_of(
    label: str, fns: list[Callable[[], float]], before: Callable[[], object] | None = None
) -> list[list[float]]:
    """Each of FNS (this checkout, then the compared one) RUNS times,
    interleaved, BEFORE each; the times of each."""
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(RUNS):
        for times, fn in zip(out, fns, strict=True):
            if before is not None:
                before()
            times.append(fn())
    for tag, times in zip(("", " (before)"), out, strict=False):
        print(f"  {label}{tag}: {', '.join(f'{t:.2f}' for t in times)} s", flush=True)
    return out


Row = tuple[int, str, list[float], float, list[float] | None, float | None]


def measure(n: int) -> list[Row]:
    """Bring up a fleet lab of N, measure every step, take it down."""
    inventory = labmod.fleet_inventory(n, guard_mode=GUARD)
    the_lab = labmod.load_lab(inventory)
    start = time.monotonic()
    labmod.up(the_lab)
    print(f"fleet lab of {n} real servers up in {time.monotonic() - start:.0f} s", flush=True)
    rs = [h for h in the_lab.hosts if h.is_realserver]
    services = Inventory(inventory).services()
    vip = next(str(s["vip"]) for s in services if ":" not in str(s["vip"]))
    vip6 = next(str(s["vip"]) for s in services if ":" in str(s["vip"]))
    fmt = {"vip": vip, "vip6": vip6, "unit": UNIT}
    limit = "dsr_realservers_linux"

    def clean() -> None:
        done = pb.run(inventory, "--limit", limit, "-e", "dsr_state=absent", "--forks", "50")
        if done.returncode:
            sys.exit(done.stdout[-2000:])
        ssh_all(rs, FLOOR_UNDO.format(**fmt))

    def site() -> float:
        done = pb.run(inventory, "--limit", limit, "--forks", "50")
        if done.returncode:
            sys.exit(done.stdout[-2000:])
        return done.elapsed

    def other_site() -> float:
        proc = subprocess.run(
            [sys.executable, "-c", OTHER_SITE, str(inventory), "--limit", limit, "--forks", "50"],
            capture_output=True, text=True, check=False, env=checkout_env(COMPARE), cwd=COMPARE,
        )  # fmt: skip
        if proc.returncode or float(proc.stdout.split()[-1]) < 0:
            sys.exit(proc.stdout[-2000:] + proc.stderr[-2000:])
        return float(proc.stdout.split()[-1])

    def first_and_noop(run: Callable[[], float]) -> Callable[[], float]:
        """A first converge, then its no-op re-run right after (kept for later)."""
        noops: list[float] = []

        def first() -> float:
            t = run()
            noops.append(run())
            return t

        first.noops = noops  # type: ignore[attr-defined]
        return first

    sites = [first_and_noop(site)] + ([first_and_noop(other_site)] if COMPARE else [])
    (floor,) = median_of("floor", [lambda: ssh_all(rs, FLOOR_APPLY.format(**fmt))], clean)
    firsts = median_of("site.yml first converge", list(sites), clean)
    noops = [f.noops for f in sites]  # type: ignore[attr-defined]
    for tag, times in zip(("", " (before)"), noops, strict=False):
        print(f"  site.yml no-op re-run{tag}: {', '.join(f'{t:.2f}' for t in times)} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "hosts.yml"
        shutil.copy(inventory, copy)
        shutil.copytree(inventory.parent / "group_vars", Path(tmp) / "group_vars")
        (Path(tmp) / ".state").symlink_to(the_lab.state_dir)
        names = [h.name for h in rs]

        def cli(*args: str, tree: str = "") -> float:
            t = time.monotonic()
            proc = subprocess.run([DSRPROV, *args, "-i", str(copy), "--parallel", "50"],
                                  capture_output=True, text=True, check=False,
                                  env=checkout_env(tree) if tree else None, cwd=tree or None)  # fmt: skip
            if proc.returncode:
                sys.exit(proc.stdout[-2000:] + proc.stderr[-2000:])
            return time.monotonic() - t

        trees = [""] + ([COMPARE] if COMPARE else [])
        enroll = median_of("dsrprov enroll", [lambda t=t: cli("enroll", "-q", *names, tree=t) for t in trees], clean)
        verify = median_of("dsrprov verify", [lambda t=t: cli("verify", *names, tree=t) for t in trees])
    clean()
    labmod.down(the_lab)
    f = statistics.median(floor)
    rows: list[Row] = []
    for label, times in (("floor: parallel SSH", [floor, floor]), ("site.yml first converge", firsts),
                         ("site.yml no-op re-run", noops), ("dsrprov enroll", enroll),
                         ("dsrprov verify", verify)):  # fmt: skip
        other = times[1] if len(times) > 1 else None
        rows.append((n, label, times[0], statistics.median(times[0]) / f, other,
                     statistics.median(other) / f if other else None))  # fmt: skip
    return rows


def main() -> int:
    rows: list[Row] = []
    for n in SIZES:
        rows += measure(n)
    load = os.getloadavg()
    print(f"\nfleet benchmark, guard {GUARD}, {RUNS} runs each, {os.cpu_count()} cores,"
          f" load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end"
          " (median, min-max; ratio to the floor)")  # fmt: skip
    head = f"{'N':>3}  {'step':28} {'median s':>9} {'min-max s':>13} {'x floor':>8}"
    if COMPARE:
        head += f"  | before: {'median s':>9} {'x floor':>8}   ({COMPARE})"
    print(head)
    for n, label, times, ratio, other, other_ratio in rows:
        line = f"{n:>3}  {label:28} {statistics.median(times):9.2f} {min(times):6.2f}-{max(times):<6.2f} {ratio:8.2f}"
        if other is not None and other_ratio is not None:
            line += f"  |         {statistics.median(other):9.2f} {other_ratio:8.2f}"
        print(line)
    by = {(n, label): statistics.median(t) for n, label, t, *_ in rows}
    if len(SIZES) >= 2:
        lo, hi = SIZES[0], SIZES[-1]
        for label in ("floor: parallel SSH", "site.yml first converge", "site.yml no-op re-run"):
            per = (by[(hi, label)] - by[(lo, label)]) / (hi - lo)
            print(f"per added host, {lo}->{hi}: {label}: {per:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
