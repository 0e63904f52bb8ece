"""Benchmark: how long site.yml takes on the lab.

Measures, per run: a first converge from a clean state (after
dsr_state=absent), and a no-op re-run. Prints a table. Not a test: figures
depend on the machine; they are reported, not asserted."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsrprov import lab as labmod  # noqa: E402

RUNS = int(os.environ.get("DSRPROV_BENCH_RUNS", "3"))


def playbook(*extra: str) -> tuple[float, int]:
    start = time.monotonic()
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(ROOT / "inventories" / "lab"), "site.yml", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(proc.stdout + proc.stderr)
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", proc.stdout))
    return elapsed, changed


def main() -> int:
    the_lab = labmod.up()
    hosts = sum(1 for h in the_lab.hosts if h.is_realserver)
    rows: dict[str, list[float]] = {"first converge (from clean)": [], "no-op re-run": [], "state=absent": []}
    for _ in range(RUNS):
        t, _c = playbook("-e", "dsr_state=absent")
        rows["state=absent"].append(t)
        t, changed = playbook()
        assert changed > 0
        rows["first converge (from clean)"].append(t)
        t, changed = playbook()
        assert changed == 0, "re-run changed something"
        rows["no-op re-run"].append(t)
    print(f"site.yml on the lab: {hosts} Linux real servers, {RUNS} runs each, {os.cpu_count()} cores")
    print(f"{'step':32} {'median s':>9} {'min s':>7} {'max s':>7}")
    for step, times in rows.items():
        print(f"{step:32} {statistics.median(times):9.2f} {min(times):7.2f} {max(times):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
