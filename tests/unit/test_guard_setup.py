"""The guard's part of the Linux module's change plan (issue 23, rule 4).

Its configuration is written (or the guard stopped) as the plan's first step,
only after every check passed: a refused host gets nothing, check mode writes
nothing, a later failure puts the old guard.json back, and hostile paths are
refused with one line before the host is read. The host's other parts are
stand-ins here (each plans one step); the lab test runs the real module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dsrprov.dsr.plugins.filter.linux_names import FilterModule as NameFilters
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_boot_unit as boot_unit
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_guard_setup as guard_setup
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import ChangePlan
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_linux_names import BadName, check_path
from ansible_collections.dsrprov.dsr.plugins.modules import dsr_realserver_linux_apply as apply_module


class Exited(Exception):
    def __init__(self, failed: bool, result: dict[str, Any]) -> None:
        super().__init__(result.get("msg", ""))
        self.failed = failed
        self.result = result


class FakeAnsibleModule:
    """AnsibleModule as main() uses it: params from the spec's defaults and the test's, systemctl recorded."""

    params_given: ClassVar[dict[str, Any]] = {}
    check_mode = False
    active = "active"
    calls: ClassVar[list[list[str]]] = []

    def __init__(self, argument_spec: dict[str, Any], supports_check_mode: bool) -> None:
        self.params = {key: spec.get("default") for key, spec in argument_spec.items()}
        self.params.update(self.params_given)

    def run_command(self, cmd: list[str], check_rc: bool = False) -> tuple[int, str, str]:
        FakeAnsibleModule.calls.append(cmd)
        if cmd[1] == "show":
            return 0, f"UnitFileState=enabled\nActiveState={self.active}\n", ""
        return 0, "", ""

    def warn(self, _msg: str) -> None:
        pass

    def fail_json(self, msg: str, **result: Any) -> None:
        raise Exited(True, {"msg": msg, **result})

    def exit_json(self, **result: Any) -> None:
        raise Exited(False, result)


def guard_option(tmp_path: Path, **over: Any) -> dict[str, Any]:
    return {
        "mode": "heal",
        "config": str(tmp_path / "etc-dsrprov" / "guard.json"),
        "program": str(tmp_path / "sbin" / "dsrprov-guard"),
        "unit_name": "dsrprov-guard.service",
        "textfile_dir": str(tmp_path / "prometheus" / "node-exporter"),
        "period": 30,
        "flap_limit": 10,
        "flap_window": 300,
        **over,
    }


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The module with its host-reading parts replaced: each other part plans one step, which can be made to fail."""
    state: dict[str, Any] = {"problems": [], "fail": None, "done": []}
    monkeypatch.setattr(apply_module, "AnsibleModule", FakeAnsibleModule)
    FakeAnsibleModule.check_mode = False
    FakeAnsibleModule.active = "active"
    FakeAnsibleModule.calls = []
    monkeypatch.setattr(boot_unit, "UNIT_DIR", str(tmp_path / "systemd"))

    def read_and_check(module: Any) -> dict[str, Any]:
        return {
            "ip_command": "/usr/sbin/ip",
            "lo_read": "",
            "vips": ["192.0.2.10"],
            "lo_state": None,
            "lo": {},
            "arp_interfaces": ["eth0"],
            "problems": list(state["problems"]),
        }

    def part(name: str) -> Any:
        def plan(change: ChangePlan, *_args: Any, **_kw: Any) -> dict[str, Any]:
            def act() -> None:
                if state["fail"] == name:
                    raise OSError(f"{name} failed")
                state["done"].append(name)

            change.step(name, act)
            return {}

        return plan

    monkeypatch.setattr(apply_module, "read_and_check", read_and_check)
    monkeypatch.setattr(apply_module.arp, "plan", part("sysctls"))
    monkeypatch.setattr(apply_module.persist, "plan", part("manager"))
    monkeypatch.setattr(apply_module.lo_vips, "plan", part("vips"))
    monkeypatch.setattr(apply_module.unit, "plan", part("boot unit"))
    return state


def run_module(**params: Any) -> Exited:
    FakeAnsibleModule.params_given = params
    with pytest.raises(Exited) as done:
        apply_module.main()
    return done.value


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def install_guard(tmp_path: Path, option: dict[str, Any]) -> None:
    """The program and the unit, as the module installs them with program_source (omitted in these tests)."""
    for path, text in ((Path(option["program"]), "#!/usr/bin/python3\n"), (tmp_path / "systemd" / UNIT, "[Unit]\n")):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)


UNIT = "dsrprov-guard.service"
GONE = [
    "stop dsrprov-guard.service",
    "disable dsrprov-guard.service",
    "remove {systemd}/dsrprov-guard.service and reload systemd",
    "remove {program}",
]


def gone(tmp_path: Path, option: dict[str, Any]) -> list[str]:
    return [g.format(systemd=tmp_path / "systemd", program=option["program"]) for g in GONE]


def test_a_refused_host_gets_nothing_of_the_guard(tmp_path: Path, host: dict[str, Any]) -> None:
    host["problems"] = ["dsrprov: lo is managed by NetworkManager under netplan"]
    for state in ("present", "absent"):
        before = listing(tmp_path)
        result = run_module(state=state, vips=["192.0.2.10"], guard=guard_option(tmp_path))
        assert result.failed and result.result["msg"] == "dsrprov: lo is managed by NetworkManager under netplan"
        assert listing(tmp_path) == before == []
        assert FakeAnsibleModule.calls == []  # not even the guard's unit was looked at


def test_the_guard_configuration_is_the_first_step_and_notes_the_directory_it_made(
    tmp_path: Path, host: dict[str, Any]
) -> None:
    option = guard_option(tmp_path)
    result = run_module(vips=["192.0.2.10"], guard=option)
    assert not result.failed
    assert result.result["changes"] == [
        "write {}".format(option["config"]),
        "create {}".format(option["textfile_dir"]),
        "sysctls",
        "manager",
        "vips",
        "boot unit",
    ]
    written = json.loads(Path(option["config"]).read_text())
    assert written["mode"] == "heal" and written["vips"] == ["192.0.2.10"] and written["textfile_dir_created"]
    assert Path(option["textfile_dir"]).is_dir()
    # The next run: the directory exists now, and is still known as dsrprov's.
    again = run_module(vips=["192.0.2.10"], guard=option)
    assert again.result["changes"][:1] == ["sysctls"]
    assert json.loads(Path(option["config"]).read_text())["textfile_dir_created"]


def test_a_directory_that_was_there_is_not_dsrprovs(tmp_path: Path, host: dict[str, Any]) -> None:
    option = guard_option(tmp_path)
    Path(option["textfile_dir"]).mkdir(parents=True)
    run_module(vips=["192.0.2.10"], guard=option)
    assert not json.loads(Path(option["config"]).read_text())["textfile_dir_created"]
    install_guard(tmp_path, option)
    (Path(option["textfile_dir"]) / "dsrprov_guard.prom").write_text("x 1\n")
    result = run_module(state="absent", guard=option)
    assert result.result["changes"][:6] == [
        *gone(tmp_path, option),
        "remove {}/dsrprov_guard.prom".format(option["textfile_dir"]),
        "remove {}".format(option["config"]),
    ]
    assert listing(Path(option["textfile_dir"])) == []  # kept, empty, as found
    assert not Path(option["config"]).parent.exists()
    assert listing(tmp_path / "systemd") == [] and not Path(option["program"]).exists()
    assert ["systemctl", "daemon-reload"] in FakeAnsibleModule.calls


def test_absent_removes_the_directory_dsrprov_made_only_when_empty(tmp_path: Path, host: dict[str, Any]) -> None:
    option = guard_option(tmp_path)
    run_module(vips=["192.0.2.10"], guard=option)
    install_guard(tmp_path, option)
    textfile = Path(option["textfile_dir"])
    (textfile / "dsrprov_guard.prom").write_text("x 1\n")
    result = run_module(state="absent", guard=option)
    assert result.result["changes"][:4] == gone(tmp_path, option)
    # Its parent was missing too: dsrprov made both, and removes both.
    assert f"remove {textfile} and {textfile.parent}" in result.result["changes"]
    assert not textfile.parent.exists() and tmp_path.is_dir()
    assert ["systemctl", "stop", "dsrprov-guard.service"] in FakeAnsibleModule.calls
    # Made by dsrprov, but someone else's file is in it now: it stays.
    run_module(vips=["192.0.2.10"], guard=option)
    (textfile / "node.prom").write_text("y 1\n")
    run_module(state="absent", guard=option)
    assert listing(textfile) == ["node.prom"]


def test_a_parent_that_was_there_stays_with_its_files(tmp_path: Path, host: dict[str, Any]) -> None:
    option = guard_option(tmp_path)
    textfile = Path(option["textfile_dir"])
    textfile.parent.mkdir()
    (textfile.parent / "foreign").write_text("kept\n")
    run_module(vips=["192.0.2.10"], guard=option)
    assert json.loads(Path(option["config"]).read_text())["textfile_dir_created"] == str(textfile)
    run_module(state="absent", guard=option)
    assert listing(textfile.parent) == ["foreign"]


def test_a_later_failure_puts_the_old_guard_configuration_back(tmp_path: Path, host: dict[str, Any]) -> None:
    option = guard_option(tmp_path)
    config = Path(option["config"])
    config.parent.mkdir()
    config.write_text('{"mode": "report"}\n')
    config.chmod(0o640)
    host["fail"] = "vips"
    result = run_module(vips=["192.0.2.10"], guard=option)
    # The stand-in parts' steps have no undo: counted as such, not as rolled back.
    assert result.failed and result.result["msg"].endswith(
        "rolled back 2 of the 4 change(s) made before it ('manager' has no undo; 'sysctls' has no undo)"
    )
    assert config.read_text() == '{"mode": "report"}\n' and config.stat().st_mode & 0o777 == 0o640
    assert not Path(option["textfile_dir"]).exists()  # the directory this run made is gone again
    # Absent: the guard stopped, disabled, its unit and program removed, then all put back and started again.
    install_guard(tmp_path, option)
    before = {p: p.read_text() for p in (Path(option["program"]), tmp_path / "systemd" / UNIT)}
    FakeAnsibleModule.calls = []
    result = run_module(state="absent", guard=option)
    assert result.failed and result.result["msg"].endswith(
        "rolled back 5 of the 6 change(s) made before it ('manager' has no undo)"
    )
    assert FakeAnsibleModule.calls[-2:] == [
        ["systemctl", "enable", "--quiet", UNIT],
        ["systemctl", "start", UNIT],
    ]
    assert {p: p.read_text() for p in before} == before
    assert config.read_text() == '{"mode": "report"}\n'


def test_check_mode_writes_nothing_and_shows_the_guard_in_the_diff(tmp_path: Path, host: dict[str, Any]) -> None:
    FakeAnsibleModule.check_mode = True
    option = guard_option(tmp_path)
    result = run_module(vips=["192.0.2.10"], guard=option)
    assert result.result["changed"] and result.result["changes"][0] == "write {}".format(option["config"])
    assert {d["before_header"] for d in result.result["diff"]} >= {
        option["config"],
        "{} (directory)".format(option["textfile_dir"]),
    }
    assert listing(tmp_path) == [] and host["done"] == []


def test_mode_off_stops_the_guard_first_and_without_the_option_the_guard_is_left_alone(
    tmp_path: Path, host: dict[str, Any]
) -> None:
    option = guard_option(tmp_path, mode="off")
    install_guard(tmp_path, option)
    result = run_module(vips=["192.0.2.10"], guard=option)
    assert result.result["changes"] == [*gone(tmp_path, option), "sysctls", "manager", "vips", "boot unit"]
    FakeAnsibleModule.calls = []
    assert run_module(vips=["192.0.2.10"]).result["changes"] == ["sysctls", "manager", "vips", "boot unit"]
    assert FakeAnsibleModule.calls == []
    FakeAnsibleModule.active = "inactive"
    assert run_module(state="absent", guard=guard_option(tmp_path)).result["changes"] == [
        "manager",
        "vips",
        "boot unit",
        "sysctls",
    ]


HOSTILE_PATHS = [
    "etc/guard.json",
    "/etc/dsr prov/guard.json",
    "/etc/dsrprov/guard.json\nExecStartPre=/x",
    "/etc/%n.json",
    "/etc/$HOME.json",
    "/etc/`id`.json",
    "/etc/a;reboot",
    "/etc/'x'",
    '/etc/"x"',
    "/etc/../root/x",
    "/etc/a\\b",
    "",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
@pytest.mark.parametrize("key", ["config", "textfile_dir", "program"])
def test_a_hostile_guard_path_is_refused_with_one_line_before_the_host_is_read(
    tmp_path: Path, host: dict[str, Any], key: str, path: str
) -> None:
    host["problems"] = ["read_and_check must not run"]
    result = run_module(vips=["192.0.2.10"], guard=guard_option(tmp_path, **{key: path}))
    assert result.failed and result.result["msg"].startswith("dsrprov: invalid guard ")
    assert "\n" not in result.result["msg"]
    assert listing(tmp_path) == []


@pytest.mark.parametrize("name", ["x;reboot.service", "a b.service", "guard", "$x.service", "x.service\n"])
def test_a_hostile_guard_unit_name_is_refused(tmp_path: Path, host: dict[str, Any], name: str) -> None:
    result = run_module(vips=["192.0.2.10"], guard=guard_option(tmp_path, unit_name=name))
    assert result.failed and result.result["msg"].startswith("dsrprov: invalid guard unit name")


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_the_role_filter_refuses_the_same_paths(path: str) -> None:
    filters = NameFilters().filters()
    with pytest.raises(Exception, match=r"^dsrprov: invalid dsr_realserver_linux_guard_program") as err:
        filters["dsr_check_path"](path, "dsr_realserver_linux_guard_program")
    assert "\n" not in str(err.value)


def test_plain_paths_pass_and_stay_bare_in_execstart() -> None:
    filters = NameFilters().filters()
    for path in ("/usr/local/sbin/dsrprov-guard", "/etc/dsrprov/guard.json", "/var/lib/prometheus/node-exporter"):
        assert check_path(path) == path
        assert filters["dsr_check_path"](path) == path
    assert (
        guard_setup.render_unit("/usr/local/sbin/dsrprov-guard", "/etc/dsrprov/guard.json", "x.service").count(
            "ExecStart=/usr/bin/python3 -I -S /usr/local/sbin/dsrprov-guard /etc/dsrprov/guard.json\n"
        )
        == 1
    )
    for good in (1, "30", 300, 86400):
        assert filters["dsr_check_count"](good, "period") == int(good)
    for bad in (0, -1, "x", None, True, 1.5, 86401, 10**12):
        with pytest.raises(AnsibleFilterError, match="period must be a whole number from 1 to 86400"):
            filters["dsr_check_count"](bad, "period")
    with pytest.raises(BadName):
        check_path(["/etc"])
    # The module checks the same bound (a task that skips the role's filter).
    guard = {"config": "/etc/dsrprov/guard.json", "program": "/usr/local/sbin/dsrprov-guard",
             "textfile_dir": "/var/lib/prometheus/node-exporter", "unit_name": "dsrprov-guard.service",
             "period": 30, "flap_limit": 10, "flap_window": 300}  # fmt: skip
    guard_setup.check(guard)
    for key in ("period", "flap_limit", "flap_window"):
        with pytest.raises(BadName, match=f"guard {key} must be a whole number from 1 to 86400"):
            guard_setup.check({**guard, key: 86401})
    assert guard_setup.render({"b": 1, "a": [1]}) == '{\n    "a": [\n        1\n    ],\n    "b": 1\n}\n'


PROGRAM = "#!/usr/bin/python3\nprint('guard')\n"


def test_with_its_program_the_whole_guard_is_installed_last_and_started_at_once(
    tmp_path: Path, host: dict[str, Any]
) -> None:
    """One call per host: the program and the unit are the plan's last steps, once the VIPs are in place."""
    option = guard_option(tmp_path, program_source=PROGRAM)
    unit_path = tmp_path / "systemd" / UNIT
    result = run_module(vips=["192.0.2.10"], guard=option)
    assert not result.failed, result.result
    assert result.result["changes"][2:] == [
        "sysctls",
        "manager",
        "vips",
        "boot unit",
        "write {}".format(option["program"]),
        f"write {unit_path}",
        f"enable and start {UNIT}",
    ]
    assert Path(option["program"]).read_text() == PROGRAM
    assert Path(option["program"]).stat().st_mode & 0o777 == 0o755
    unit = unit_path.read_text()
    assert "ExecStart=/usr/bin/python3 -I -S {} {}\n".format(option["program"], option["config"]) in unit
    assert "After=network.target NetworkManager.service systemd-networkd.service dsrprov-loopback-vips.service" in unit
    assert FakeAnsibleModule.calls[-1] == ["systemctl", "enable", "--now", "--quiet", UNIT]
    # A re-run changes nothing of it, and restarts nothing.
    FakeAnsibleModule.calls = []
    again = run_module(vips=["192.0.2.10"], guard=option)
    assert again.result["changes"] == ["sysctls", "manager", "vips", "boot unit"]
    assert all(call[1] == "show" for call in FakeAnsibleModule.calls)


def test_a_new_program_restarts_a_running_guard_and_a_new_configuration_does_not(
    tmp_path: Path, host: dict[str, Any]
) -> None:
    option = guard_option(tmp_path, program_source=PROGRAM)
    run_module(vips=["192.0.2.10"], guard=option)
    option = guard_option(tmp_path, program_source=PROGRAM, period=10)
    changed = run_module(vips=["192.0.2.10"], guard=option)
    assert f"restart {UNIT}" not in changed.result["changes"]
    assert changed.result["changes"][0] == "write {}".format(option["config"])
    newer = run_module(vips=["192.0.2.10"], guard=guard_option(tmp_path, program_source=PROGRAM + "#\n", period=10))
    assert newer.result["changes"][-2:] == ["write {}".format(option["program"]), f"restart {UNIT}"]
    assert ["systemctl", "restart", UNIT] in FakeAnsibleModule.calls
    # The diff names the versions, not the program's text.
    assert "print('guard')" not in json.dumps(newer.result["diff"])
    # A program that lost its mode is written again (and the guard restarted), its text unchanged.
    Path(option["program"]).chmod(0o644)
    moded = run_module(vips=["192.0.2.10"], guard=guard_option(tmp_path, program_source=PROGRAM + "#\n", period=10))
    assert moded.result["changes"][-2:] == ["write {}".format(option["program"]), f"restart {UNIT}"]
    assert Path(option["program"]).stat().st_mode & 0o777 == 0o755


def test_a_stopped_guard_is_started_and_check_mode_installs_nothing(tmp_path: Path, host: dict[str, Any]) -> None:
    option = guard_option(tmp_path, program_source=PROGRAM)
    FakeAnsibleModule.check_mode = True
    planned = run_module(vips=["192.0.2.10"], guard=option)
    assert planned.result["changed"] and planned.result["changes"][-1] == f"enable and start {UNIT}"
    assert listing(tmp_path) == []
    FakeAnsibleModule.check_mode = False
    run_module(vips=["192.0.2.10"], guard=option)
    FakeAnsibleModule.active = "inactive"
    result = run_module(vips=["192.0.2.10"], guard=option)
    assert result.result["changes"][-1] == f"start {UNIT}"


def test_a_later_failure_of_the_install_undoes_it_and_the_rest(tmp_path: Path, host: dict[str, Any]) -> None:
    option = guard_option(tmp_path, program_source=PROGRAM)
    host["fail"] = "boot unit"
    result = run_module(vips=["192.0.2.10"], guard=option)
    assert result.failed
    # Nothing of the guard is left: its configuration is undone, its program never written.
    assert not Path(option["program"]).exists() and not Path(option["config"]).exists()
