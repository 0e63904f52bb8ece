"""Issue 22: a real server with VLAN-style and dashed interface names converges, keeps idempotence and
check mode, and ``state=absent`` puts every ARP sysctl back; a VIP put on lo by hand as VIP/24 is
replaced by VIP/32 (shown in check mode and --diff first).

Its own lab (inventories/lab-linux: network dsrprov-linux, 10.240.2.0/24),
one systemd container. This machine's kernel has no 8021q (nor bonding or
dummy) support, so ``ip link add link eth0 name eth0.100 type vlan`` fails
here; the container gets a veth pair named ``eth0.100`` and ``vlan-web``
instead. What the role deals with is the name (the kernel's
/proc/sys/net/ipv4/conf/eth0.100/, the sysctl.d key's spelling), which is
the same for a veth as for a VLAN.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import dsrprov_lab as labmod
from dsrprov.run.playbook import PlaybookRun
from tests.integration.test_realserver_linux_lab import recap
from tests.support import ROOT, run_playbook

# In `make integration-extended`, not in `make test`: CI has 90 minutes on 2 cores.
pytestmark = [pytest.mark.lab, pytest.mark.extended]

INVENTORY = ROOT / "inventories" / "lab-linux"
HOST = "rsvlan2"
SYSCTL_FILE = "/etc/sysctl.d/90-dsrprov-arp.conf"
ODD = ("eth0.100", "vlan-web")


def sh(host: labmod.LabHost, script: str, check: bool = True) -> str:
    return labmod.lab_exec(host, "sh", "-c", script, check=check)


def arp_sysctls(host: labmod.LabHost) -> str:
    return sh(host, "sysctl -a 2>/dev/null | grep -E 'arp_(ignore|announce)' | sort")


def play(*args: str, host: str = HOST) -> tuple[PlaybookRun, dict[str, int]]:
    run = run_playbook("site.yml", "--limit", host, *args, inventory=INVENTORY)
    return run, recap(run.stdout + run.stderr, host)


@contextmanager
def linux_lab() -> Iterator[labmod.Lab]:
    """inventories/lab-linux, up for the module; taken down after when it was not running before."""
    the_lab = labmod.load_lab(INVENTORY / "hosts.yml")
    was_running = all(labmod.status(the_lab).values())
    labmod.up(the_lab)
    try:
        yield the_lab
    finally:
        if not was_running and not os.environ.get("DSRPROV_KEEP_LAB"):
            labmod.down(the_lab)


@pytest.fixture(scope="module")
def vlan_host() -> Iterator[labmod.LabHost]:
    with linux_lab() as the_lab:
        host = the_lab.host(HOST)
        sh(host, "ip link show eth0.100 >/dev/null 2>&1 || ip link add eth0.100 type veth peer name vlan-web")
        sh(host, "ip link set eth0.100 up && ip link set vlan-web up")
        try:
            yield host
        finally:
            play("-e", "dsr_state=absent")
            sh(host, "ip link del eth0.100", check=False)


def test_vlan_and_dashed_names_converge_idempotently_and_absent_restores(vlan_host: labmod.LabHost) -> None:
    before = arp_sysctls(vlan_host)
    print("before:\n" + before)
    # sysctl -a spells a dot inside a name as "/".
    assert "net.ipv4.conf.eth0/100.arp_ignore = 0" in before
    assert "net.ipv4.conf.vlan-web.arp_ignore = 0" in before

    run, counts = play()
    assert run.returncode == 0 and counts["changed"] >= 1, run.stdout[-3000:]
    after = arp_sysctls(vlan_host)
    print("after:\n" + after)
    for name in ODD:
        shown = name.replace(".", "/")
        assert f"net.ipv4.conf.{shown}.arp_ignore = 1" in after
        assert f"net.ipv4.conf.{shown}.arp_announce = 2" in after
    # The boot unit, new on this host: enabled and started by one systemctl call.
    unit = "dsrprov-loopback-vips.service"
    assert sh(vlan_host, f"systemctl is-enabled {unit}; systemctl is-active {unit}").split() == ["enabled", "active"]
    text = sh(vlan_host, f"cat {SYSCTL_FILE}")
    assert "net/ipv4/conf/eth0.100/arp_ignore = 1\n" in text
    assert "net.ipv4.conf.vlan-web.arp_announce = 2\n" in text
    # Both readers of sysctl.d apply the file as written, without a complaint.
    for reader in (f"sysctl -p {SYSCTL_FILE}", f"/lib/systemd/systemd-sysctl {SYSCTL_FILE}"):
        out = sh(vlan_host, f"echo 0 > /proc/sys/net/ipv4/conf/eth0.100/arp_ignore; {reader} 2>&1; echo rc=$?")
        assert out.strip().endswith("rc=0") and "cannot" not in out and "Couldn't" not in out, out
        assert sh(vlan_host, "cat /proc/sys/net/ipv4/conf/eth0.100/arp_ignore").strip() == "1", reader

    run, counts = play()
    assert run.returncode == 0 and counts["changed"] == 0, run.stdout[-3000:]
    run, counts = play("--check", "--diff")
    assert run.returncode == 0 and counts["changed"] == 0, run.stdout[-3000:]

    run, counts = play("-e", "dsr_state=absent")
    assert run.returncode == 0 and counts["changed"] >= 1, run.stdout[-3000:]
    assert arp_sysctls(vlan_host) == before
    assert sh(vlan_host, f"test -e {SYSCTL_FILE} && echo present || echo gone").strip() == "gone"


def lo_addresses(host: labmod.LabHost) -> str:
    return sh(host, "ip -o addr show dev lo | awk '{print $4}' | sort")


def test_a_vip_on_lo_with_a_wide_prefix_is_replaced_by_the_host_prefix(vlan_host: labmod.LabHost) -> None:
    v4 = "10.240.2.200"
    play("-e", "dsr_state=absent")
    # The classic hand-made mistake: the whole prefix becomes local to this host.
    # /28 (10.240.2.192-207), not /24: a /24 would take in the lab bridge's own
    # address and cut the host off from the controller (tried: the run cannot
    # even reach it; doctor's part, see issue 22).
    sh(vlan_host, f"ip addr add {v4}/28 dev lo")
    try:
        assert f"{v4}/28" in lo_addresses(vlan_host)
        assert " dev lo " in sh(vlan_host, "ip route get 10.240.2.199")
        run, counts = play("--check", "--diff")
        assert run.returncode == 0 and counts["changed"] >= 1, run.stdout[-3000:]
        assert f"-{v4}/28\n+{v4}" in run.stdout, run.stdout[-3000:]
        assert f"{v4}/28" in lo_addresses(vlan_host)  # check mode changed nothing
        run, counts = play()
        assert run.returncode == 0, run.stdout[-3000:]
        after = lo_addresses(vlan_host)
        assert f"{v4}/32" in after and f"{v4}/28" not in after, after
        # The rest of the /28 is no longer local: the host reaches it over eth0
        # again (the route lookup says so without sending anything).
        assert " dev lo " not in sh(vlan_host, "ip route get 10.240.2.199")
        run, counts = play()
        assert run.returncode == 0 and counts["changed"] == 0, run.stdout[-3000:]
    finally:
        play("-e", "dsr_state=absent")
        sh(vlan_host, f"ip addr del {v4}/28 dev lo 2>/dev/null; true")
