"""Under load, on the lab: a planned change of pool loses no request, and a
director pair fails over within VRRP's bound with a download surviving it.

The client sends one request to the VIP every 50 ms, a new connection each,
2 s for each (dsrprov_lab.load); everything it sees is counted. The pair is
the lab's director and its spare VM, started here and stopped at the end:
the lab is left as the other tests expect it (one director, static VIPs).
lab/bench_reliability.py runs the same scenarios more often and prints the
figures of the README."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import dsrprov_lab as labmod
from dsrprov_lab import pair
from dsrprov_lab.load import Load
from dsrprov_lab.proof import Roles
from tests.support import lab_vips, run_playbook

pytestmark = pytest.mark.lab

ADVERT_INT = 1.0  # the pair's VRRP advert_int (dsrprov_lab.pair_inventory)
BACKUP_PRIORITY = 249


def dsrprov(load: Load, inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI; each of its progress lines marks a phase of the load."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsrprov", *args, "-i", str(inventory)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    err = []
    for line in proc.stderr:
        err.append(line)
        if line.startswith("dsrprov: "):
            load.mark(line[9:].strip()[:80])
    out = proc.stdout.read()
    return subprocess.CompletedProcess(proc.args, proc.wait(), out, "".join(err))


@pytest.fixture(scope="module")
def setup(lab: labmod.Lab) -> tuple[Roles, Path, str]:
    """A copy of the lab's inventory (enroll edits it), converged."""
    inventory = labmod.inventory_copy(lab, "test-ha")
    done = run_playbook(inventory=inventory)
    assert done.returncode == 0, done.stdout[-3000:]
    return Roles.of(lab), inventory, lab_vips()[0]


def test_unenroll_and_enroll_under_load_lose_no_request(setup: tuple[Roles, Path, str]) -> None:
    roles, inventory, vip = setup
    rs1 = next(h for h in roles.realservers if h.name == "rs1")
    with Load(roles.client, vip) as load:
        time.sleep(1)
        load.mark("unenroll")
        out = dsrprov(load, inventory, "unenroll", "rs1")
        assert out.returncode == 0, out.stderr
        load.mark("between")
        time.sleep(1)
        load.mark("enroll")
        out = dsrprov(
            load, inventory, "enroll", "rs1", "--address", rs1.ip, *[a for v in lab_vips() for a in ("--vip", v)]
        )
        assert out.returncode == 0, out.stderr
        load.mark("after")
        time.sleep(2)
    result = load.result
    print(f"\nunenroll + enroll rs1 under load: {result.summary()}; answered by {result.answered_by()}")
    assert result.sent > 100
    assert result.failed == [], result.summary()
    # rs1 was out of the pool in between and is back in it at the end.
    between = [r for r in result.requests if result.phase(r.start) == "between"]
    assert between and {r.detail for r in between} == {"rs2"}
    assert "rs1" in {r.detail for r in result.requests if result.phase(r.start) == "after"}

    # Negative control: the same load counts the requests lost to a real
    # server that drops the VIP while the director still sends it connections.
    with Load(roles.client, vip) as load:
        labmod.lab_exec(rs1, "ip", "addr", "del", f"{vip}/32", "dev", "lo")
        try:
            time.sleep(3)
        finally:
            labmod.lab_exec(rs1, "ip", "addr", "add", f"{vip}/32", "dev", "lo", "label", "lo:1")
        time.sleep(1)
    print(f"negative control, rs1 without its VIP for 3 s: {load.result.summary()}")
    assert load.result.failed


def test_the_backup_director_takes_over_within_the_vrrp_bound_and_a_download_survives(
    lab: labmod.Lab, setup: tuple[Roles, Path, str]
) -> None:
    roles, _, vip = setup
    pool = 2 * sum(1 for h in lab.hosts if h.is_realserver)  # each real server, IPv4 and IPv6 service
    try:
        _, master, backup = pair.form_pair(lab, sync=True)
        # Both directors check the real servers the way clients reach them,
        # each from a probe namespace of its own: the backup's table is full
        # before it is needed (a failing probe there would empty it).
        for d in (master, backup):
            out = labmod.ssh_exec(d, "sh", "-c", "ip netns list; ipvsadm -Ln | grep -c Route")
            assert "dsrprov-dsrpath" in out and out.split()[-1] == str(pool), f"{d.name}: {out}"
        # Requests start every 50 ms whether or not the ones before were
        # answered (many clients): the gap is the director's, not one client's
        # SYN backoff (a lone client waits for its next retransmission, 1 s).
        with pair.PoolWatch(backup) as watch:
            result = pair.kill_master(
                lab, roles.client, master, backup, vip, download_url=f"http://{vip}/16m.bin", independent=True
            )
    finally:
        pair.dissolve_pair(lab)
    gap = result.load.longest_gap()
    rc, code, size, seconds = result.download or (-1, "", 0, 0.0)
    print(
        f"\nmaster {master.name} killed: {result.load.summary()}; {backup.name} held the VIP "
        f"{result.takeover_s:.1f} s later, {result.garp_from_backup} gratuitous ARPs from it; download: curl exit "
        f"{rc}, HTTP {code}, {size} bytes in {seconds:.0f} s"
    )
    print(f"backup's pool through the failover: {len(watch.counts)} polls, sizes {sorted(set(watch.counts))}")
    # No false positive on the backup while it takes over: no real server ever
    # leaves its table, and both answer clients through it afterwards.
    assert len(watch.counts) >= 10 and set(watch.counts) == {pool}, watch.counts
    after = {r.detail for r in result.load.requests if result.load.phase(r.start) == "backup holds the VIP"}
    assert {h.name for h in roles.realservers} <= after, after
    # The client sent its requests to the master, and to the backup afterwards.
    assert result.client_mac_before == master.mac
    assert result.client_mac_after == backup.mac
    assert result.garp_from_backup > 0
    # VRRP's bound: a backup takes over 3 advert intervals plus its skew,
    # (256 - priority)/256 s, after the last advert it heard; the master died
    # up to one interval after that. 0.5 s for the client's next request and
    # the GARP under TCG.
    bound = 3 * ADVERT_INT + (256 - BACKUP_PRIORITY) / 256 * ADVERT_INT + 0.5
    assert gap <= bound, result.load.summary()
    # With connection sync the backup forwards the download's packets to the
    # same real server: it completes (without it: curl exit 56, reset).
    assert (rc, code, size) == (0, "200", 16 * 1024 * 1024)
