"""``dsr_realserver_linux_apply``'s ``main()``, whole, per manager kind (issue 28, point 2).

The real module (the real AnsibleModule, its checks, plan, apply and undo)
on a host double (tests/unit/linux_host_double.py): a temporary root and the
commands' recorded outputs, for lo managed by nothing (ifupdown/none),
NetworkManager (a stored loopback profile), systemd-networkd and netplan
(networkd renderer). Check mode, a real run, the run after it, a failing
step and ``state=absent``. The lab tests (tests/integration/test_lo_*.py)
run the same on real managers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_host_facts as facts
from ansible_collections.dsrprov.dsr.plugins.modules import dsr_realserver_linux_apply as apply_module
from tests.unit.linux_host_double import DATA, IP, KINDS, NM_KEYFILE, LinuxHost, is_read, point_into, snapshot, watching

V4, V6 = "10.252.0.200", "fd42:d5a:0:4::200"
UNIT = "dsrprov-loopback-vips.service"
SYSCTL_FILE = "/etc/sysctl.d/90-dsrprov-arp.conf"
RECORD = "/etc/dsrprov/loopback-vips"
MANAGER_RECORD = "/etc/dsrprov/loopback-manager.json"
UUID = "06b4ea15-7dcd-45a2-938e-4aa10b0ea597"  # of the recorded loopback profile (data/linux_apply/nm)


@pytest.fixture(params=KINDS)
def host(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LinuxHost:
    the_host = LinuxHost(tmp_path / "root", request.param)
    the_host.build()
    point_into(the_host.root, monkeypatch)

    def run_command(module: Any, args: list[str], check_rc: bool = False, **kw: Any) -> tuple[int, str, str]:
        return the_host.run_command(module, args, check_rc, **kw)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    return the_host


def run(host: LinuxHost, capsys: pytest.CaptureFixture[str], check: bool = False, **params: Any) -> dict[str, Any]:
    """main() once; its JSON result. Host paths are the module's options, inside the root."""
    args = {
        "vips": [V4, V6],
        "host_name": "rs1",
        "host_address": "10.250.2.11",
        "sysctl_file": str(host.path(SYSCTL_FILE)),
        "record_file": str(host.path(RECORD)),
        "manager_record": str(host.path(MANAGER_RECORD)),
        "_ansible_check_mode": check,
        "_ansible_diff": True,
        "_ansible_no_log": True,  # no invocation line in this machine's journal
        **params,
    }
    capsys.readouterr()
    with patch_module_args(args), watching(host), pytest.raises(SystemExit):
        apply_module.main()  # type: ignore[no-untyped-call]  # the module is not annotated (Python 3.8 hosts)
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert host.outside == [], f"the module reached the real host: {host.outside}"
    return result


def mutating(host: LinuxHost, since: int = 0) -> list[str]:
    return [" ".join(c) for c in host.calls[since:] if not is_read(c)]


# What a first run does, per kind, in order: (changes reported, commands that change the host).
ARP = "set the ARP sysctls live"
VIPS_ON = "put the VIPs on the loopback"
ENABLE = f"enable and start {UNIT}"
WRITE_UNIT = "write {unit_dir}/" + UNIT
ADD = [f"{IP} -4 addr add {V4}/32 dev lo label lo:1", f"{IP} -6 addr add {V6}/128 dev lo nodad"]
ENABLE_CMD = f"systemctl enable --now --quiet {UNIT}"
FIRST_RUN = {
    "plain": (
        ["write {sysctl}", ARP, VIPS_ON, "write {record}", WRITE_UNIT, ENABLE],
        [*ADD, ENABLE_CMD],
    ),
    "nm": (
        [
            "write {sysctl}",
            ARP,
            "write {hook}",
            "add the VIPs to NetworkManager profile 'lo' ({keyfile})",
            "write {manager}",
            VIPS_ON,
            "write {record}",
            WRITE_UNIT,
            ENABLE,
        ],
        [
            f"nmcli connection modify uuid {UUID} +ipv4.addresses {V4}/32 +ipv6.addresses {V6}/128",
            *ADD,
            ENABLE_CMD,
        ],
    ),
    "networkd": (
        [
            "write {sysctl}",
            ARP,
            "write {dropin}",
            "networkctl reload",
            "write {manager}",
            VIPS_ON,
            "write {record}",
            WRITE_UNIT,
            ENABLE,
        ],
        # networkd puts the VIPs on lo itself: the module's own step finds them there.
        ["networkctl reload", ENABLE_CMD],
    ),
    "netplan": (
        [
            "write {sysctl}",
            ARP,
            "write {netplan}",
            "netplan generate, networkctl reload",
            "write {manager}",
            VIPS_ON,
            "write {record}",
            WRITE_UNIT,
            ENABLE,
        ],
        ["netplan generate", "networkctl reload", ENABLE_CMD],
    ),
}


def expected(host: LinuxHost, lines: list[str]) -> list[str]:
    return [
        line.format(
            sysctl=host.path(SYSCTL_FILE),
            record=host.path(RECORD),
            manager=host.path(MANAGER_RECORD),
            unit_dir=host.path("/etc/systemd/system"),
            hook=host.path("/etc/NetworkManager/dispatcher.d/90-dsrprov-loopback-vips"),
            keyfile=host.path(NM_KEYFILE),
            dropin=host.path("/etc/systemd/network/05-lo.network.d/90-dsrprov-loopback-vips.conf"),
            netplan=host.path("/etc/netplan/90-dsrprov-loopback-vips.yaml"),
        )
        for line in lines
    ]


# The files a first run leaves, per kind, besides the sysctl file, the VIP record and the unit.
PERSISTED = {
    "plain": [],
    "nm": ["etc/NetworkManager/dispatcher.d/90-dsrprov-loopback-vips", "etc/dsrprov/loopback-manager.json"],
    "networkd": [
        "etc/dsrprov/loopback-manager.json",
        "etc/systemd/network/05-lo.network.d/90-dsrprov-loopback-vips.conf",
    ],
    "netplan": [
        "etc/dsrprov/loopback-manager.json",
        "etc/netplan/90-dsrprov-loopback-vips.yaml",
        "run/systemd/network/10-netplan-lo.network",  # netplan generate's
    ],
}
OWN = ["etc/dsrprov/loopback-vips", "etc/sysctl.d/90-dsrprov-arp.conf", "etc/systemd/system/" + UNIT]


def test_check_mode_reports_the_plan_and_changes_nothing(host: LinuxHost, capsys: pytest.CaptureFixture[str]) -> None:
    found, lo = snapshot(host.root), host.lo_addresses()
    result = run(host, capsys, check=True)
    assert result["changed"] is True and not result.get("failed")
    assert result["changes"] == expected(host, FIRST_RUN[host.kind][0])
    assert result["added"] == [V4, V6] and result["interfaces"] == ["eth0"] and result["ip_command"] == IP
    diffs = {d["before_header"]: d for d in result["diff"]}
    assert diffs["loopback VIPs"]["after"] == f"{V4}\n{V6}\n"
    assert diffs[str(host.path(SYSCTL_FILE))]["before"] == ""
    assert "net.ipv4.conf.all.arp_ignore = 1\n" in diffs[str(host.path(SYSCTL_FILE))]["after"]
    assert diffs["live sysctls"]["after"].startswith("net.ipv4.conf.all.arp_announce = 2\n")
    assert diffs[f"{UNIT} enabled"] == {**diffs[f"{UNIT} enabled"], "before": "no\n", "after": "yes\n"}
    # Nothing written, nothing run that changes the host.
    assert snapshot(host.root) == found and host.lo_addresses() == lo and host.units == {}
    assert mutating(host) == []
    assert [c for c in host.calls if c[0] == "sh"], "the probe ran"


def test_a_real_run_writes_the_files_runs_the_commands_in_order_and_the_next_run_is_a_no_op(
    host: LinuxHost, capsys: pytest.CaptureFixture[str]
) -> None:
    found = snapshot(host.root)
    result = run(host, capsys)
    changes, commands = FIRST_RUN[host.kind]
    assert result["changed"] is True and not result.get("failed"), result.get("msg")
    assert result["changes"] == expected(host, changes)
    assert mutating(host) == commands
    after = snapshot(host.root)
    assert sorted(set(after) - set(found)) == sorted(
        [*OWN, *PERSISTED[host.kind], "etc/dsrprov"]
        + (["etc/systemd/network/05-lo.network.d"] if host.kind == "networkd" else [])
    )
    text = host.path(SYSCTL_FILE).read_text()
    assert "net.ipv4.conf.eth0.arp_ignore = 1\n" in text and "# original: net.ipv4.conf.all.arp_ignore=0\n" in text
    assert host.path("/proc/sys/net/ipv4/conf/all/arp_ignore").read_text() == "1\n"
    assert host.path("/proc/sys/net/ipv4/conf/eth0/arp_announce").read_text() == "2\n"
    assert host.path(RECORD).read_text().endswith(f"{V4}\n{V6}\n")
    unit_text = host.path("/etc/systemd/system/" + UNIT).read_text()
    assert f"ExecStart={IP} -4 addr replace {V4}/32 dev lo label lo:1\n" in unit_text
    assert host.running_units() == {UNIT: {"enabled": True, "active": True}}
    assert f"{V4}/32 lo:1" in host.lo_addresses() and f"{V6}/128" in host.lo_addresses()
    if host.kind == "nm":
        assert f"address1={V4}/32" in host.path(NM_KEYFILE).read_text()
        record = json.loads(host.path(MANAGER_RECORD).read_text())
        # The profile as found, for absent.
        assert record["nm_profiles"][UUID]["original"] == (DATA / "nm/root" / NM_KEYFILE.lstrip("/")).read_text()
    assert result["persisted_in"] == {
        "plain": [],
        "nm": [str(host.path("/etc/NetworkManager/dispatcher.d/90-dsrprov-loopback-vips")),
               f"NetworkManager profile 'lo' ({host.path(NM_KEYFILE)})"],
        "networkd": [str(host.path("/etc/systemd/network/05-lo.network.d/90-dsrprov-loopback-vips.conf"))],
        "netplan": [str(host.path("/etc/netplan/90-dsrprov-loopback-vips.yaml"))],
    }[host.kind]  # fmt: skip
    # The next run reads what this one did: nothing to do.
    calls = len(host.calls)
    again = run(host, capsys)
    assert again["changed"] is False and again["changes"] == [] and again["diff"] == []
    assert mutating(host, calls) == [] and snapshot(host.root) == after


def test_a_failing_step_rolls_every_change_back(host: LinuxHost, capsys: pytest.CaptureFixture[str]) -> None:
    """The unit's enable fails, last of all: everything before it is undone, files byte for byte."""
    found, lo = snapshot(host.root), host.lo_addresses()
    host.fail = ["systemctl", "enable", "--now", "--quiet", UNIT]
    result = run(host, capsys)
    assert result["failed"] is True
    done_before = len(FIRST_RUN[host.kind][0]) - 1 + (1 if host.kind != "plain" else 0)  # + the quiet write-ahead note
    # A reload is no change of its own: the undo of the file it re-read reloads again.
    done_before -= {"networkd": 1, "netplan": 1}.get(host.kind, 0)
    assert result["msg"] == (
        f"dsrprov: enable and start {UNIT}: systemctl enable --now --quiet {UNIT} failed (exit 1): "
        f"Job failed (simulated by the test); rolled back the {done_before} change(s) made before it"
    )
    assert snapshot(host.root) == found, "the rollback left traces"
    assert host.lo_addresses() == lo and host.running_units() == {}
    # And the host is as good as new: the next run does the whole job.
    host.fail = None
    assert run(host, capsys)["changes"] == expected(host, FIRST_RUN[host.kind][0])


@pytest.mark.parametrize("host", ["nm"], indirect=True)
def test_a_failing_nmcli_modify_rolls_back_the_hook_and_the_record(
    host: LinuxHost, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure in the manager's part: the sysctls' file and live values, the hook and the note go back."""
    found = snapshot(host.root)
    host.fail = ["nmcli", "connection", "modify", "uuid", UUID, "+ipv4.addresses"]
    result = run(host, capsys)
    assert result["failed"] is True and result["msg"].endswith("rolled back the 4 change(s) made before it")
    assert result["msg"].startswith(f"dsrprov: add the VIPs to NetworkManager profile 'lo' ({host.path(NM_KEYFILE)})")
    assert snapshot(host.root) == found
    # The undo of the failed step itself tried nmcli again (the inverse change).
    assert mutating(host)[-1].startswith(f"nmcli connection modify uuid {UUID} -ipv4")


DEL = [f"{IP} -4 addr del {V4}/32 dev lo", f"{IP} -6 addr del {V6}/128 dev lo"]
UNIT_GONE = [f"systemctl stop {UNIT}", f"systemctl disable --quiet {UNIT}", "systemctl daemon-reload"]
# What absent runs after a first run, per kind: the manager first (nothing may put the VIPs back).
ABSENT_COMMANDS = {
    "plain": [*DEL, *UNIT_GONE],
    # The profile put back byte for byte, NetworkManager told, lo reapplied.
    "nm": ["nmcli connection load {keyfile}", "nmcli device reapply lo", *DEL, *UNIT_GONE],
    # networkd takes its VIPs off lo itself.
    "networkd": ["networkctl reload", *UNIT_GONE],
    # lo leaves netplan's configuration: networkd deletes every address, localhost is put back.
    "netplan": [
        "netplan generate",
        "networkctl reload",
        f"{IP} addr add 127.0.0.1/8 dev lo scope host",
        f"{IP} -6 addr add ::1/128 dev lo proto kernel_lo",
        *UNIT_GONE,
    ],
}


def test_absent_after_present_leaves_the_root_as_found(host: LinuxHost, capsys: pytest.CaptureFixture[str]) -> None:
    found, lo = snapshot(host.root), host.lo_addresses()
    run(host, capsys)
    calls = len(host.calls)
    result = run(host, capsys, state="absent")
    assert result["changed"] is True and not result.get("failed"), result.get("msg")
    assert result["removed"] == [V4, V6]
    assert mutating(host, calls) == expected(host, ABSENT_COMMANDS[host.kind])
    assert snapshot(host.root) == found, "absent left the root otherwise than found"
    assert host.lo_addresses() == lo and host.running_units() == {}
    assert run(host, capsys, state="absent")["changed"] is False


@pytest.mark.parametrize("host", ["plain"], indirect=True)
def test_the_double_refuses_a_write_outside_its_root_and_names_host_paths_read(
    host: LinuxHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard these tests rely on (they may run as root): a path the seam missed never reaches the host."""
    outside = tmp_path / "outside"  # not under the root, and not the real /etc either
    with watching(host), pytest.raises(PermissionError, match="outside its root"):
        outside.write_text("x")
    assert not outside.exists() and host.outside == [f"open {outside}"]
    # A constant the seam left on the host shows in the run's result check.
    monkeypatch.setattr(facts, "SYS_CLASS_NET", str(tmp_path))
    host.outside.clear()
    with watching(host):
        facts.interfaces()
    assert host.outside == [f"os.listdir {tmp_path}"]
