"""Fleet benchmark: dsrprov against the floor, side by side, on N lab real servers.

For each N (default 8 and 32; DSRPROV_BENCH_SIZES="8 32"), on a fleet lab of
N real servers (`dsrprov lab up --realservers N`, brought up here):

- floor: one SSH session per host, all at once, doing the same host changes as
  the role (sysctl file and live keys, the VIPs on lo, a unit written and
  enabled): what a hand-written parallel SSH loop costs;
- site.yml: first converge from a clean host, then a no-op re-run;
- dsrprov enroll of all N (from clean), then dsrprov verify of all N.

Each is run DSRPROV_BENCH_RUNS times (default 3), median reported, with its
ratio to the floor. Figures depend on the machine: printed, never asserted.
Traffic stays on the fleet lab's own network.

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

from dsrprov import lab as labmod
from dsrprov.model.inventory import Inventory
from dsrprov.run import playbook as pb

RUNS = int(os.environ.get("DSRPROV_BENCH_RUNS", "3"))
SIZES = [int(n) for n in os.environ.get("DSRPROV_BENCH_SIZES", "8 32").split()]
DSRPROV = str(Path(sys.executable).parent / "dsrprov")
UNIT = "dsrprov-loopback-vips.service"

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


def ssh_all(the_lab: labmod.Lab, hosts: list[labmod.LabHost], script: str) -> float:
    """One OpenSSH session per host, all at once (the floor)."""
    state = the_lab.state_dir

    def one(h: labmod.LabHost) -> int:
        return subprocess.run(
            ["ssh", "-i", str(state / "id_ed25519"), "-o", f"UserKnownHostsFile={state / 'known_hosts'}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{h.ip}", "sh", "-s"],
            input=script, capture_output=True, text=True, check=False,
        ).returncode  # fmt: skip

    start = time.monotonic()
    with ThreadPoolExecutor(len(hosts)) as pool:
        codes = list(pool.map(one, hosts))
    elapsed = time.monotonic() - start
    if any(codes):
        sys.exit(f"floor script failed on {sum(1 for c in codes if c)} hosts")
    return elapsed


def median_of(fn: Callable[[], float], before: Callable[[], object] | None = None) -> list[float]:
    out = []
    for _ in range(RUNS):
        if before is not None:
            before()
        out.append(fn())
    print(f"  {getattr(fn, '__name__', 'step')}: {', '.join(f'{t:.2f}' for t in out)} s", flush=True)
    return out


def measure(n: int) -> list[tuple[int, str, list[float], float]]:
    """Bring up a fleet lab of N, measure every step, take it down."""
    inventory = labmod.fleet_inventory(n)
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
        ssh_all(the_lab, rs, FLOOR_UNDO.format(**fmt))

    def site() -> float:
        done = pb.run(inventory, "--limit", limit, "--forks", "50")
        if done.returncode:
            sys.exit(done.stdout[-2000:])
        return done.elapsed

    floor = median_of(lambda: ssh_all(the_lab, rs, FLOOR_APPLY.format(**fmt)), clean)
    first = median_of(site, clean)
    noop = median_of(site)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "hosts.yml"
        shutil.copy(inventory, copy)
        shutil.copytree(inventory.parent / "group_vars", Path(tmp) / "group_vars")
        (Path(tmp) / ".state").symlink_to(the_lab.state_dir)
        names = [h.name for h in rs]

        def cli(*args: str) -> float:
            t = time.monotonic()
            proc = subprocess.run([DSRPROV, *args, "-i", str(copy), "--parallel", "50"],
                                  capture_output=True, text=True, check=False)  # fmt: skip
            if proc.returncode:
                sys.exit(proc.stdout[-2000:] + proc.stderr[-2000:])
            return time.monotonic() - t

        enroll = median_of(lambda: cli("enroll", "-q", *names), clean)
        verify = median_of(lambda: cli("verify", *names))
    clean()
    labmod.down(the_lab)
    f = statistics.median(floor)
    return [
        (n, label, times, statistics.median(times) / f)
        for label, times in (("floor: parallel SSH", floor), ("site.yml first converge", first),
                             ("site.yml no-op re-run", noop), ("dsrprov enroll", enroll),
                             ("dsrprov verify", verify))
    ]  # fmt: skip


def main() -> int:
    rows: list[tuple[int, str, list[float], float]] = []
    for n in SIZES:
        rows += measure(n)
    print(f"\nfleet benchmark, {RUNS} runs each, {os.cpu_count()} cores (median, min-max; ratio to the floor)")
    print(f"{'N':>3}  {'step':28} {'median s':>9} {'min-max s':>13} {'x floor':>8}")
    for n, label, times, ratio in rows:
        print(f"{n:>3}  {label:28} {statistics.median(times):9.2f} {min(times):6.2f}-{max(times):<6.2f} {ratio:8.2f}")
    by = {(n, label): statistics.median(t) for n, label, t, _ in rows}
    if len(SIZES) >= 2:
        lo, hi = SIZES[0], SIZES[-1]
        for label in ("floor: parallel SSH", "site.yml first converge", "site.yml no-op re-run"):
            per = (by[(hi, label)] - by[(lo, label)]) / (hi - lo)
            print(f"per added host, {lo}->{hi}: {label}: {per:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
