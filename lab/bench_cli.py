"""Benchmark: `dsrprov status` and `dsrprov verify` over every lab host,
sequential (--parallel 1) against parallel (--parallel 8).

Runs the real CLI (a new process each time, as a user would) against the lab
named by DSRPROV_LAB_INVENTORY (default inventories/lab), which must be up.
The real servers are enrolled first (with their inventory VIPs, on a copy of
the inventory) so that verify has something to prove. Prints a table; figures
depend on the machine, they are reported, not asserted.

Usage: .venv/bin/python lab/bench_cli.py   (DSRPROV_BENCH_RUNS=5 for more runs)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dsrprov_lab as labmod  # noqa: E402
from dsrprov.model.inventory import Inventory  # noqa: E402

RUNS = int(os.environ.get("DSRPROV_BENCH_RUNS", "5"))
DSRPROV = str(Path(sys.executable).parent / "dsrprov")


def timed(*args: str) -> tuple[float, int]:
    start = time.monotonic()
    proc = subprocess.run([DSRPROV, *args], capture_output=True, text=True, check=False)
    return time.monotonic() - start, proc.returncode


def main() -> int:
    the_lab = labmod.load_lab()
    if not all(labmod.status(the_lab).values()):
        print("the lab is not up: run `make lab-up` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        inv = Path(tmp) / "hosts.yml"
        shutil.copy(the_lab.state_dir.parent / "hosts.yml", inv)
        shutil.copytree(the_lab.state_dir.parent / "group_vars", Path(tmp) / "group_vars")
        (Path(tmp) / ".state").symlink_to(the_lab.state_dir)
        inventory = Inventory(inv)
        rs = [h for h in inventory.hostnames() if inventory.host(h).is_realserver]
        hosts = inventory.hostnames()
        vip4 = [s["vip"] for s in inventory.services() if "." in str(s["vip"])]
        elapsed, code = timed("enroll", "-q", "-i", str(inv), *rs, *[a for v in vip4 for a in ("--vip", v)])
        print(f"enrolled {', '.join(rs)} in {elapsed:.1f} s (exit {code})")
        rows = []
        for command, targets in (("status", hosts), ("verify", rs)):
            for parallel in (1, 8):
                times, codes = [], set()
                for _ in range(RUNS):
                    t, c = timed(command, "-i", str(inv), "--parallel", str(parallel), *targets)
                    times.append(t)
                    codes.add(c)
                rows.append((command, len(targets), parallel, statistics.median(times), min(times), codes))
        timed("unenroll", "-q", "-i", str(inv), *rs)
    print(f"\n{RUNS} runs each, seconds (whole CLI process, lab {the_lab.network})")
    print(f"{'command':8} {'hosts':>5} {'parallel':>8} {'median':>7} {'best':>6}  exit")
    for command, n, parallel, med, best, codes in rows:
        print(f"{command:8} {n:>5} {parallel:>8} {med:>7.2f} {best:>6.2f}  {','.join(map(str, sorted(codes)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
