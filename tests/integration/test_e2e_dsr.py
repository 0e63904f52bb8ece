"""End to end on the lab: a client, the director VM (keepalived driving real
IPVS, direct routing) and two Linux real servers on one L2 segment, all
configured by site.yml. Everything is observed in real packets."""

from __future__ import annotations

import re
from collections import Counter

import pytest

import dsrprov_lab as labmod
from dsrprov_lab.proof import Roles, arp_replies, failover, http_get, path_report
from tests.support import lab_vips, run_playbook

pytestmark = pytest.mark.lab

VIP, VIP6 = lab_vips()


def recaps(output: str) -> dict[str, dict[str, int]]:
    return {
        m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M)
    }


@pytest.fixture(scope="module")
def dsr(lab: labmod.Lab) -> tuple[labmod.Lab, Roles]:
    first = run_playbook("site.yml")
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_playbook("site.yml")
    assert second.returncode == 0, second.stdout + second.stderr
    changed = {host: r["changed"] for host, r in recaps(second.stdout).items()}
    assert changed and not any(changed.values()), f"second run of site.yml changed something: {changed}"
    return lab, Roles.of(lab)


def test_requests_to_the_vip_are_answered_by_both_real_servers(dsr: tuple[labmod.Lab, Roles]) -> None:
    _, roles = dsr
    answers = Counter(http_get(roles.client, f"http://{VIP}/", 20))
    assert set(answers) == {"rs1", "rs2"}, answers


def test_ipv6_requests_to_the_vip_are_answered_by_both_real_servers(dsr: tuple[labmod.Lab, Roles]) -> None:
    _, roles = dsr
    answers = Counter(http_get(roles.client, f"http://[{VIP6}]/", 20))
    assert set(answers) == {"rs1", "rs2"}, answers


def test_only_the_director_answers_arp_for_the_vip(dsr: tuple[labmod.Lab, Roles]) -> None:
    _, roles = dsr
    assert arp_replies(roles.client, VIP) == [roles.director.mac]


def test_every_connection_takes_the_three_dsr_steps(dsr: tuple[labmod.Lab, Roles]) -> None:
    the_lab, roles = dsr
    report, bodies = path_report(the_lab, roles, VIP, 80, "/", 10)
    assert sorted(set(bodies)) == ["rs1", "rs2"]
    assert report.violations == []
    assert len(report.connections) == 10
    assert all(c.complete for c in report.connections.values())
    assert set(report.per_realserver()) == {"rs1", "rs2"}


def test_the_director_carries_a_small_share_of_a_download_heavy_workload(dsr: tuple[labmod.Lab, Roles]) -> None:
    the_lab, roles = dsr
    report, sizes = path_report(the_lab, roles, VIP, 80, "/1m.bin", 4, body=False)
    assert sizes == ["1048576"] * 4
    assert report.violations == []
    replies = report.total(3)
    assert replies > 4 * 1024 * 1024
    print(
        f"\n1 MiB x 4: client->director {report.total(1)} B, director->real server {report.total(2)} B, "
        f"real server->client {replies} B; director's share {report.director_share:.1%}, "
        f"{report.reduction:.1%} less than if replies went back through it"
    )
    assert report.director_share < 0.05
    assert report.reduction > 0.95


def test_the_health_check_takes_a_stopped_server_out_and_back_in(dsr: tuple[labmod.Lab, Roles]) -> None:
    _, roles = dsr
    rs1 = next(h for h in roles.realservers if h.name == "rs1")
    result = failover(roles, VIP, rs1, down_s=12, settle_s=10)
    # The lab checks every 2 s with a 1 s timeout and one retry (group_vars).
    grace = 6.0
    while_down = result.served_by(result.stopped_at + grace, result.started_at)
    after = result.served_by(result.started_at + grace, float("inf"))
    print(
        f"\nfailover: {result.failed()} of {len(result.timeline)} client requests failed; "
        f"after {grace:.0f} s down: {dict(while_down)}; {grace:.0f} s after restart: {dict(after)}"
    )
    assert while_down and set(while_down) == {"rs2"}, while_down
    assert {"rs1", "rs2"} <= set(after), after


def test_negative_control_a_real_server_without_the_sysctls_takes_the_vip(dsr: tuple[labmod.Lab, Roles]) -> None:
    the_lab, roles = dsr
    rs2 = next(h for h in roles.realservers if h.name == "rs2")
    undo = [f"net.ipv4.conf.{scope}.{key}=0" for scope in ("all", "eth0") for key in ("arp_ignore", "arp_announce")]
    labmod.lab_exec(rs2, "sysctl", "-q", "-w", *undo)
    try:
        stolen = arp_replies(roles.client, VIP)
        assert rs2.mac in stolen and roles.director.mac in stolen, stolen
        # The client's kernel keeps whichever ARP reply came first. When that
        # is rs2's, its requests skip the director altogether.
        labmod.lab_exec(roles.client, "ip", "neigh", "flush", "dev", "eth0")
        report, bodies = path_report(the_lab, roles, VIP, 80, "/", 6)
        cached = labmod.lab_exec(roles.client, "ip", "neigh", "show", VIP)
        print(f"\nnegative control: ARP replies from {stolen}; client cache: {cached.strip()}; answers {bodies}")
        if rs2.mac in cached:
            assert set(bodies) == {"rs2"}
            # The capture shows it: none of the connections reached the director.
            assert len(report.connections) == 6
            assert all(c.step1 == 0 and c.step2 == 0 for c in report.connections.values())
    finally:
        # The role repairs live drift: the same site.yml puts the values back.
        repaired = run_playbook("site.yml", "--limit", "rs2")
        assert repaired.returncode == 0
        assert recaps(repaired.stdout)["rs2"]["changed"] >= 1
    assert arp_replies(roles.client, VIP) == [roles.director.mac]
    labmod.lab_exec(roles.client, "ip", "neigh", "flush", "dev", "eth0")
    assert set(http_get(roles.client, f"http://{VIP}/", 6)) == {"rs1", "rs2"}


def test_the_director_skips_files_in_place_and_repairs_those_changed_behind_its_back(
    dsr: tuple[labmod.Lab, Roles],
) -> None:
    # A no-op run skips the copy/template tasks whose result the facts show in
    # place (seconds each on the TCG director); a file changed by hand, a mode
    # changed, a stopped probe service are still put right by the next run.
    _, roles = dsr
    director = roles.director
    noop = run_playbook("site.yml", "--limit", director.name)
    assert noop.returncode == 0 and recaps(noop.stdout)[director.name]["changed"] == 0, noop.stdout[-3000:]
    for task in ("Install the DSR-path probe", "Write the probe namespace's configuration",
                 "Install the probe namespace's boot unit", "Render keepalived.conf"):  # fmt: skip
        assert re.search(rf"TASK \[[^\]]*{re.escape(task)}[^\]]*\][^\n]*\nskipping: ", noop.stdout), task
    paths = ("/etc/dsrprov/dsr-path.json", "/etc/systemd/system/dsrprov-dsr-path.service",
             "/etc/keepalived/keepalived.conf", "/usr/local/libexec/dsrprov/dsr-path")  # fmt: skip

    def snapshot() -> str:
        return labmod.lab_exec(director, "sh", "-c", 'stat -c \'%n %a %U\' "$@"; sha1sum "$@"', "sh", *paths)

    before = snapshot()
    labmod.lab_exec(director, "sh", "-c", "chmod 0600 /etc/dsrprov/dsr-path.json"
                    " && echo '# by hand' >> /etc/systemd/system/dsrprov-dsr-path.service"
                    " && echo '# by hand' >> /etc/keepalived/keepalived.conf"
                    " && echo '# by hand' >> /usr/local/libexec/dsrprov/dsr-path"
                    " && systemctl stop dsrprov-dsr-path.service")  # fmt: skip
    assert snapshot() != before
    repaired = run_playbook("site.yml", "--limit", director.name)
    assert repaired.returncode == 0 and recaps(repaired.stdout)[director.name]["changed"] >= 5, repaired.stdout[-3000:]
    assert snapshot() == before
    state = labmod.lab_exec(director, "systemctl", "is-active", "dsrprov-dsr-path.service", check=False)
    assert state.strip() == "active"
    again = run_playbook("site.yml", "--limit", director.name)
    assert again.returncode == 0 and recaps(again.stdout)[director.name]["changed"] == 0, again.stdout[-3000:]
