"""The Linux real-server role against the lab's systemd containers, over SSH.

Bad input must fail with one readable line before anything on the host
changes; check mode must change nothing; a second run must change nothing."""

from __future__ import annotations

import json
import re

import pytest

import dsrprov_lab as labmod
from tests.support import run_playbook

pytestmark = pytest.mark.lab

HOST = "rs1"


def snapshot(lab: labmod.Lab) -> str:
    """Everything the role could touch on the host, as text."""
    return labmod.lab_exec(
        lab.host(HOST),
        "sh",
        "-c",
        "ip -o addr show; sysctl -a 2>/dev/null | grep -E 'arp_(ignore|announce)';"
        " ls -l --time-style=+%s.%N /etc/sysctl.d /etc/systemd/system /etc/dsrprov 2>&1;"
        " cat /etc/sysctl.d/90-dsrprov-arp.conf /etc/dsrprov/loopback-vips 2>&1;"
        " systemctl is-enabled dsrprov-loopback-vips.service 2>&1 || true",
    )


def recap(output: str, host: str = HOST) -> dict[str, int]:
    match = re.search(rf"^{host}\s+:\s+(.*)$", output, re.M)
    assert match, output
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def apply(*extra: str) -> dict[str, int]:
    proc = run_playbook("site.yml", "--limit", HOST, *extra)
    return recap(proc.stdout + proc.stderr)


@pytest.fixture
def configured(lab: labmod.Lab) -> labmod.Lab:
    result = apply()
    assert result["failed"] == 0 and result["unreachable"] == 0
    return lab


_RS = labmod.load_lab().host(HOST)  # the lab's own addresses (DSRPROV_LAB_INVENTORY names another lab)

BAD_INPUT = [
    pytest.param(["10.250.0.300"], "dsrprov: invalid VIP '10.250.0.300': not an IPv4 or IPv6 address", id="invalid"),
    pytest.param(
        ["10.250.0.200/24"],
        "dsrprov: invalid VIP '10.250.0.200/24': a VIP must be a host address (/32), not /24",
        id="non-host-prefix",
    ),
    pytest.param(
        ["fd42:d5a:0:1::200/64"],
        "dsrprov: invalid VIP 'fd42:d5a:0:1::200/64': a VIP must be a host address (/128), not /64",
        id="non-host-prefix-v6",
    ),
    pytest.param(
        ["10.250.0.200", "10.250.0.200/32"],
        "dsrprov: duplicate VIP 10.250.0.200 (given as '10.250.0.200' and '10.250.0.200/32')",
        id="duplicate",
    ),
    pytest.param(
        [_RS.ip],
        f"dsrprov: VIP {_RS.ip} is one of the host's own addresses: a VIP must be an address the host does "
        "not already use",
        id="host-address",
    ),
    pytest.param(
        [_RS.ip6],
        f"dsrprov: VIP {_RS.ip6} is one of the host's own addresses",
        id="host-address-v6",
    ),
    pytest.param([], "dsrprov: no VIP given: state 'present' needs at least one VIP", id="empty"),
]


@pytest.mark.parametrize(("vips", "message"), BAD_INPUT)
def test_bad_input_fails_with_one_line_and_changes_nothing(
    configured: labmod.Lab, vips: list[str], message: str
) -> None:
    before = snapshot(configured)
    proc = run_playbook("site.yml", "--limit", HOST, "-e", json.dumps({"dsr_vips": vips}))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out, out
    assert recap(out)["failed"] == 1
    # Nothing ran after the failed check: the host is as it was.
    assert snapshot(configured) == before


def test_a_sysctl_file_that_would_undo_the_arp_keys_at_boot_is_named(configured: labmod.Lab) -> None:
    host = configured.host(HOST)
    labmod.lab_exec(host, "sh", "-c", "echo 'net.ipv4.conf.all.arp_ignore = 0' > /etc/sysctl.d/99-zz-site.conf")
    try:
        before = snapshot(configured)
        proc = run_playbook("site.yml", "--limit", HOST)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "dsrprov: /etc/sysctl.d/99-zz-site.conf would weaken arp_ignore/arp_announce at boot" in out, out
        assert snapshot(configured) == before
        # With consent, it only warns, naming the file.
        warned = run_playbook("site.yml", "--limit", HOST, "-e", "dsr_realserver_linux_sysctl_override_action=warn")
        assert warned.returncode == 0
        assert "/etc/sysctl.d/99-zz-site.conf sets net.ipv4.conf.all.arp_ignore = 0" in warned.stdout + warned.stderr
    finally:
        labmod.lab_exec(host, "rm", "-f", "/etc/sysctl.d/99-zz-site.conf")


def test_check_mode_tells_the_truth_and_changes_nothing(lab: labmod.Lab) -> None:
    assert apply("-e", "dsr_state=absent")["failed"] == 0
    clean = snapshot(lab)
    # One task (one module call) does it all: check mode announces its change.
    proc = run_playbook("site.yml", "--limit", HOST, "--check", "--diff")
    checked = recap(proc.stdout + proc.stderr)
    assert checked["failed"] == 0 and checked["changed"] == 1
    for what in (
        "/etc/sysctl.d/90-dsrprov-arp.conf",
        "+10.250.0.200",
        "+fd42:d5a:0:1::200",
        "/etc/systemd/system/dsrprov-loopback-vips.service",
        "dsrprov-loopback-vips.service enabled",
    ):
        assert what in proc.stdout, (what, proc.stdout[-3000:])
    assert snapshot(lab) == clean
    # The real run changes what check mode announced; a second run nothing.
    first = apply()
    assert first["changed"] == 1 and first["failed"] == 0
    assert apply()["changed"] == 0
    assert apply("--check")["changed"] == 0


def test_a_changed_vip_list_adds_and_removes_only_the_difference(configured: labmod.Lab) -> None:
    host = configured.host(HOST)
    vips = ["10.250.0.200", "fd42:d5a:0:1::200", "10.250.0.201"]
    assert apply("-e", json.dumps({"dsr_vips": vips}))["changed"] >= 1
    lo = labmod.lab_exec(host, "ip", "-o", "addr", "show", "dev", "lo")
    assert "10.250.0.201/32" in lo and "10.250.0.200/32" in lo
    # Back to the inventory's list: the extra VIP goes, live and at boot.
    assert apply()["changed"] >= 1
    lo = labmod.lab_exec(host, "ip", "-o", "addr", "show", "dev", "lo")
    unit = labmod.lab_exec(host, "cat", "/etc/systemd/system/dsrprov-loopback-vips.service")
    assert "10.250.0.201" not in lo and "10.250.0.201" not in unit
    assert "10.250.0.200/32" in lo


def test_a_hardening_file_with_the_same_values_coexists_without_a_change_loop(configured: labmod.Lab) -> None:
    host = configured.host(HOST)
    # As dev-sec's os_hardening writes it: same keys, same (or stricter) values, applied after ours.
    labmod.lab_exec(
        host, "sh", "-c",
        "printf 'net.ipv4.conf.all.arp_ignore = 2\\nnet.ipv4.conf.all.arp_announce = 2\\n'"
        " > /etc/sysctl.d/99-hardening.conf && sysctl -q -p /etc/sysctl.d/99-hardening.conf",
    )  # fmt: skip
    try:
        proc = run_playbook("site.yml", "--limit", HOST)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "would weaken" not in proc.stdout + proc.stderr
        assert apply()["changed"] == 0
    finally:
        labmod.lab_exec(host, "rm", "-f", "/etc/sysctl.d/99-hardening.conf")
        labmod.lab_exec(host, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1")


def test_a_multi_homed_host_gets_a_warning(configured: labmod.Lab) -> None:
    host = configured.host(HOST)
    labmod.lab_exec(
        host, "sh", "-c", "ip link add dsrtest0 type veth peer name dsrtest1 && ip addr add 192.0.2.1/24 dev dsrtest0"
    )  # fmt: skip
    try:
        proc = run_playbook("site.yml", "--limit", HOST)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert "this host has IPv4 addresses on several interfaces (dsrtest0, eth0)" in out, out
    finally:
        labmod.lab_exec(host, "ip", "link", "del", "dsrtest0")
    # Without the extra interface, no warning, and its key leaves the file.
    proc = run_playbook("site.yml", "--limit", HOST)
    assert "several interfaces" not in proc.stdout + proc.stderr
    assert "dsrtest" not in labmod.lab_exec(host, "cat", "/etc/sysctl.d/90-dsrprov-arp.conf")


def test_absent_removes_the_inventorys_vips_even_when_the_record_is_lost(configured: labmod.Lab) -> None:
    host = configured.host(HOST)
    labmod.lab_exec(host, "rm", "-f", "/etc/dsrprov/loopback-vips")
    assert apply("-e", "dsr_state=absent")["failed"] == 0
    lo = labmod.lab_exec(host, "ip", "-o", "addr", "show", "dev", "lo")
    assert "10.250.0.200" not in lo and "fd42:d5a:0:1::200" not in lo, lo
    assert apply()["failed"] == 0


def test_a_change_that_fails_is_rolled_back_and_the_host_is_as_before(lab: labmod.Lab) -> None:
    assert apply("-e", "dsr_state=absent")["failed"] == 0
    host = lab.host(HOST)
    # A directory where the record of the VIPs goes: writing it fails once the
    # ARP keys are set and the VIPs are on lo, and the module undoes them.
    labmod.lab_exec(host, "mkdir", "-p", "/etc/dsrprov/loopback-vips")
    try:
        before = snapshot(lab)
        proc = run_playbook("site.yml", "--limit", HOST)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and recap(out)["failed"] == 1
        assert "dsrprov: write /etc/dsrprov/loopback-vips: " in out, out[-3000:]
        assert "rolled back the 3 change(s) made before it" in out, out[-3000:]
        assert snapshot(lab) == before
    finally:
        labmod.lab_exec(host, "sh", "-c", "rmdir /etc/dsrprov/loopback-vips; rmdir /etc/dsrprov; true")
    assert apply()["failed"] == 0
