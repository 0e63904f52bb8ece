"""Unit tests of the CLI's pure parts: parsers on recorded output, inventory
edits, preflight, argument errors. No lab needed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dsrprov import cli
from dsrprov.checks.verify import NeighbourProbe, linux_checks, neighbour_check, parse_arping, parse_ndisc6
from dsrprov.connect.linux_facts import Listener, parse_probe
from dsrprov.enroll import parse_hosts_file, preflight
from dsrprov.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, UsageError, worst
from dsrprov.model.inventory import Inventory
from dsrprov.run.playbook import Scrubber, hosts_of, message
from dsrprov_lab.paths import checkout_root as project_root

DATA = Path(__file__).parents[1] / "data" / "linux"
SERVICES = [{"name": "web", "vip": "10.250.2.200", "port": 80, "protocol": "tcp"}]


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def test_linux_probe_parses_recorded_unconfigured_host() -> None:
    facts = parse_probe(recorded("probe_unconfigured.txt"))
    assert facts.hostname == "rs1"
    assert facts.systemd and facts.os.startswith("Debian GNU/Linux 12")
    assert facts.macs == {"lo": "00:00:00:00:00:00", "eth0": "02:d5:a2:00:00:11"}
    assert facts.own_addresses == ["10.250.2.11", "fd42:d5a:0:3::11", "fe80::d5:a2ff:fe00:11"]
    assert facts.loopback_vips() == []
    assert facts.effective_arp("eth0") == (0, 0)
    assert Listener("tcp", "0.0.0.0", 80) in facts.listeners
    assert (facts.ssh_client, facts.ssh_server) == ("10.250.2.1", "10.250.2.11")
    assert facts.unit_enabled == "" and not facts.sysctl_file
    checks = {c.name: c.ok for c in linux_checks(facts, ["10.250.2.200"], SERVICES)}
    assert checks == {
        "vips on loopback": False,
        "arp sysctls": False,
        "persisted": False,
        "listen 10.250.2.200:80/tcp": True,
    }


def test_linux_probe_parses_recorded_configured_host() -> None:
    facts = parse_probe(recorded("probe_configured.txt"))
    assert facts.loopback_vips() == ["10.250.2.200"]
    assert [a.label for a in facts.addresses if a.address == "10.250.2.200"] == ["lo:1"]
    assert facts.effective_arp("eth0") == (1, 2)
    assert facts.unit_enabled == "enabled" and facts.sysctl_file
    assert all(c.ok for c in linux_checks(facts, ["10.250.2.200"], SERVICES))
    # An IPv6 service nobody listens on (the lab web server binds 0.0.0.0 only).
    six = [{"vip": "fd42:d5a:0:3::200", "port": 80, "protocol": "tcp"}]
    checks = linux_checks(facts, ["10.250.2.200", "fd42:d5a:0:3::200"], six)
    assert [c.name for c in checks if c.ok is False] == ["vips on loopback", "listen [fd42:d5a:0:3::200]:80/tcp"]


def test_arping_and_ndisc6_parse_recorded_replies() -> None:
    assert parse_arping(recorded("arping_reply.txt")) == ["02:d5:a2:00:00:11"]
    assert parse_arping(recorded("arping_no_reply.txt")) == []
    assert parse_ndisc6(recorded("ndisc6_reply.txt")) == ["02:d5:a2:00:00:12"]
    assert parse_ndisc6(recorded("ndisc6_no_reply.txt")) == []
    iputils = "ARPING 10.0.0.1 from 10.0.0.2 eth0\nUnicast reply from 10.0.0.1 [AA:BB:CC:DD:EE:01]  0.6ms\n"
    assert parse_arping(iputils) == ["aa:bb:cc:dd:ee:01"]


def _check(macs: list[str], directors: dict[str, str]) -> tuple[bool | None, str]:
    c = neighbour_check(
        "rs1",
        ["02:00:00:00:00:11"],
        ["10.0.0.200"],
        {"10.0.0.200": NeighbourProbe("10.0.0.200", "eth0", macs)},
        vantage="client",
        director_macs=directors,
        realserver_macs={"02:00:00:00:00:11": "rs1", "02:00:00:00:00:12": "rs2"},
    )
    return c.ok, c.detail


def test_neighbour_check_criteria() -> None:
    ok, detail = _check([], {})
    assert ok and "no director in the inventory: checked only that no real server answers" in detail
    assert _check(["02:00:00:00:00:11"], {}) == (
        False,
        "rs1 answers ARP for 10.0.0.200 (02:00:00:00:00:11) (probed from client)",
    )
    assert _check(["02:00:00:00:00:12"], {})[0] is False
    director = {"02:00:00:00:00:01": "lb1"}
    assert _check(["02:00:00:00:00:01"], director)[0] is True
    assert _check(["02:00:00:00:00:99"], director)[0] is False
    assert _check(["02:00:00:00:00:99"], {})[0] is True  # maybe the director, not known: noted only


@pytest.mark.parametrize(
    ("vip", "reason"),
    [
        ("10.250.2.11", "management address"),
        ("10.250.2.1", "controller's own address"),
        ("fd42:d5a:0:3::11", "one of the host's own addresses"),
    ],
)
def test_preflight_refuses_what_would_cut_the_connection(vip: str, reason: str) -> None:
    facts = parse_probe(recorded("probe_unconfigured.txt"))
    with pytest.raises(UsageError, match=reason):
        preflight("rs1", [vip], facts, "10.250.2.11")
    preflight("rs1", ["10.250.2.200"], facts, "10.250.2.11")


def test_preflight_refuses_the_gateway() -> None:
    facts = parse_probe(recorded("probe_unconfigured.txt"))
    facts.gateways = ["10.250.2.254"]
    with pytest.raises(UsageError, match="default gateway"):
        preflight("rs1", ["10.250.2.254"], facts, "10.250.2.11")


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    src = project_root() / "inventories" / "lab"
    shutil.copy(src / "hosts.yml", tmp_path / "hosts.yml")
    shutil.copytree(src / "group_vars", tmp_path / "group_vars")
    return tmp_path / "hosts.yml"


def test_inventory_round_trip_is_byte_identical(inventory: Path) -> None:
    inv = Inventory(inventory)
    assert inv.dump() == inventory.read_text()
    assert not inv.changed()


def test_inventory_reads_merged_variables(inventory: Path) -> None:
    inv = Inventory(inventory)
    rs1 = inv.host("rs1")
    assert rs1.os == "linux" and rs1.is_realserver
    assert rs1.known_hosts() == inventory.parent / ".state" / "known_hosts"
    assert rs1.private_key() == inventory.parent / ".state" / "id_ed25519"
    # The group default is a Jinja template over dsr_services, rendered.
    assert rs1.vips == [s["vip"] for s in inv.services()]
    assert inv.vantage_host() == "client"
    assert inv.find(rs1.address) == "rs1"


def test_inventory_edit_keeps_comments_and_order(inventory: Path) -> None:
    inv = Inventory(inventory)
    original = inventory.read_text()
    inv.set_realserver("rs2", "linux", ["192.0.2.10", "2001:db8::10"])
    inv.set_realserver("192.0.2.50", "linux", ["192.0.2.10"], address="192.0.2.50")
    inv.set_realserver("win1", "windows", ["192.0.2.10"], address="192.0.2.60")
    inv.save()
    text = inventory.read_text()
    for line in original.splitlines():
        if line.strip().startswith("#"):
            assert line in text
    assert text.index("rs1:") < text.index("rs2:") < text.index("192.0.2.50:") < text.index("# No Windows")
    assert text.index("# No Windows") < text.index("win1:")
    again = Inventory(inventory)
    assert again.host("rs2").vips == ["192.0.2.10", "2001:db8::10"]
    assert again.host("win1").os == "windows" and again.host("win1").address == "192.0.2.60"
    with pytest.raises(UsageError, match="dsr_realservers_windows"):
        again.set_realserver("win1", "linux", ["192.0.2.10"])
    for name in ("win1", "192.0.2.50"):
        assert again.remove_realserver(name)
    again.set_realserver("rs2", "linux", again.host("rs2").vips)
    assert not again.remove_realserver("client")
    # Back to the original, except rs2's explicit VIP list.
    again.save()
    assert Inventory(inventory).host("rs1").vars.get("lab_mac") == "02:d5:a0:00:00:11"
    assert "win1" not in inventory.read_text()
    assert "dsr_realservers_windows: {}" in inventory.read_text()


def test_hosts_file(tmp_path: Path) -> None:
    f = tmp_path / "hosts.txt"
    f.write_text("# fleet\nrs1\nrs2 10.0.0.201 10.0.0.202  # two VIPs\n\n")
    reqs = parse_hosts_file(f, ["10.0.0.200"])
    assert [(r.host, r.vips) for r in reqs] == [("rs1", ["10.0.0.200"]), ("rs2", ["10.0.0.201", "10.0.0.202"])]


def test_results_are_read_from_the_events_of_the_run() -> None:
    failed = {"event": "result", "status": "failed", "host": "rs1", "task": "dsr_realserver_linux : Check",
              "changed": False, "msg": "dsrprov: duplicate VIP 10.0.0.1\nmore", "result": {}}  # fmt: skip
    events = [
        {"event": "task_start", "task": "x"},
        {"event": "result", "status": "ok", "host": "rs2", "task": "Put the VIPs", "changed": True, "result": {}},
        failed,
        {"event": "recap", "host": "rs1", "ok": 7, "changed": 0, "unreachable": 0, "failures": 1, "skipped": 2},
        {"event": "recap", "host": "rs2", "ok": 7, "changed": 3, "unreachable": 0, "failures": 0, "skipped": 2},
    ]
    hosts = hosts_of(events)
    assert hosts["rs1"].failed == 1 and hosts["rs1"].skipped == 2 and not hosts["rs1"].success
    assert hosts["rs1"].error == "dsr_realserver_linux : Check: dsrprov: duplicate VIP 10.0.0.1"
    assert hosts["rs2"].changed == 3 and hosts["rs2"].changed_tasks == ["Put the VIPs"] and hosts["rs2"].success
    assert message(failed) == "dsrprov: duplicate VIP 10.0.0.1"
    assert Scrubber(["s3cret", ""])("pw=s3cret!") == "pw=********!"


def test_exit_code_precedence() -> None:
    assert worst([]) == EXIT_OK
    assert worst([EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE]) == EXIT_UNREACHABLE
    assert worst([EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE]) == EXIT_USAGE


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["enroll", "rs1", "--vip", "10.0.0.1", "--os", "solaris"])
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dsrprov: argument --os: invalid choice: 'solaris'")


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for line in ("0  ok", "1  a verification", "2  bad input", "3  a host is unreachable"):
        assert line in out


def test_ipv6_real_address_is_the_global_one_beside_the_management_address() -> None:
    from dsrprov.connect.linux_facts import LinuxFacts, parse_ip_addr

    facts = LinuxFacts(
        addresses=parse_ip_addr(
            "1: lo    inet6 ::1/128 scope host lo\n"
            "2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\n"
            "2: eth0    inet6 fe80::1/64 scope link\n"
            "2: eth0    inet6 2001:db8::5/64 scope global\n"
            "3: eth1    inet 10.9.0.5/24 brd 10.9.0.255 scope global eth1\n"
        )
    )
    assert facts.ipv6_beside("10.0.0.5") == "2001:db8::5"
    assert facts.ipv6_beside("10.9.0.5") is None
