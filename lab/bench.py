"""Benchmark (`make bench`): how long site.yml takes on the lab, per role,
and the director's share of the bytes of a download-heavy load.

Per role, RUNS times: state=absent, a first converge from that clean state,
and a no-op re-run. Not a test: the figures depend on the machine; they are
printed, not asserted."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import dsrprov_lab as labmod
from dsrprov.run import playbook as pb
from dsrprov_lab.proof import Roles, path_report

ROOT = Path(__file__).resolve().parents[1]

RUNS = int(os.environ.get("DSRPROV_BENCH_RUNS", "3"))
ROLES = {"dsr_realserver_linux": "dsr_realservers_linux", "dsr_director": "dsr_directors"}


def playbook(limit: str, *extra: str) -> tuple[float, int]:
    done = pb.run(ROOT / "inventories" / "lab", "--limit", limit, *extra)
    if done.returncode != 0:
        sys.exit(done.stdout)
    return done.elapsed, sum(done.changed.values())


def main() -> int:
    the_lab = labmod.up()
    roles = Roles.of(the_lab)
    boot = (labmod.vm_state_dir(roles.director) / "boot-seconds").read_text().strip()
    rows: list[tuple[str, str, list[float]]] = []
    for role, group in ROLES.items():
        hosts = len([h for h in the_lab.hosts if group in h.groups])
        times: dict[str, list[float]] = {"first converge": [], "no-op re-run": []}
        for _ in range(RUNS):
            playbook(group, "-e", "dsr_state=absent")
            t, changed = playbook(group)
            assert changed > 0, "converge from clean changed nothing"
            times["first converge"].append(t)
            t, changed = playbook(group)
            assert changed == 0, "re-run changed something"
            times["no-op re-run"].append(t)
        rows += [(f"{role} ({hosts} host{'s' * (hosts > 1)})", step, ts) for step, ts in times.items()]
    whole = [playbook("all")[0] for _ in range(RUNS)]
    rows.append(("site.yml, whole lab", "no-op re-run", whole))

    print(f"site.yml on the lab, {RUNS} runs each, {os.cpu_count()} cores; director VM boot to SSH: {boot} s")
    print(f"{'role':34} {'step':16} {'median s':>9} {'min s':>7} {'max s':>7}")
    for role, step, ts in rows:
        print(f"{role:34} {step:16} {statistics.median(ts):9.2f} {min(ts):7.2f} {max(ts):7.2f}")

    vip = "10.250.0.200"
    report, _ = path_report(the_lab, roles, vip, 80, "/1m.bin", 8, body=False)
    print(
        f"\n8 downloads of 1 MiB through {vip}: client->director {report.total(1)} B, "
        f"director->real servers {report.total(2)} B, real servers->client {report.total(3)} B;\n"
        f"director's share of the bytes on the path {report.director_share:.2%}; "
        f"{report.reduction:.1%} less than if the replies went back through it"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
