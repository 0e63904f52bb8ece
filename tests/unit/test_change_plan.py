"""The one-step module's change plan: order, undo on failure, truthful check mode (pure, on tmp files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_boot_unit as unit
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import ChangePlan, StepFailed
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_plan_inputs import Desired, Found


def test_steps_run_in_order_and_a_failure_undoes_the_done_ones_newest_first(tmp_path: Path) -> None:
    log: list[str] = []
    change = ChangePlan()
    kept = tmp_path / "kept.conf"
    kept.write_text("old\n")
    change.file(str(kept), "new\n", 0o644)
    change.file(str(tmp_path / "made.conf"), "made\n", 0o644)
    change.file(str(tmp_path / "made.d" / "x.conf"), "x\n", 0o644)
    change.step("one", lambda: log.append("one"), lambda: log.append("undo one"))

    def boom() -> None:
        log.append("two")
        raise StepFailed("two broke")

    change.step("two", boom, lambda: log.append("undo two"))
    change.step("three", lambda: log.append("three"), lambda: log.append("undo three"))
    assert change.changed
    failure = change.apply()
    assert failure is not None
    assert failure.startswith("two: two broke; rolled back the 4 change(s) made before it"), failure
    # The failed step may have half happened: undone too, then the rest in reverse.
    assert log == ["one", "two", "undo two", "undo one"]
    assert kept.read_text() == "old\n"
    assert not (tmp_path / "made.conf").exists()
    # A directory a step made goes with the undo.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.conf"]


def test_an_undo_that_fails_is_named(tmp_path: Path) -> None:
    change = ChangePlan()

    def fail(msg: str) -> None:
        raise StepFailed(msg)

    change.step("one", lambda: None, lambda: fail("cannot undo it"))
    change.step("two", lambda: fail("broke"))
    failure = change.apply()
    # Counted as what was really undone: none of the one change made before it.
    assert failure == "two: broke; rolled back 0 of the 1 change(s) made before it (cannot undo 'one': cannot undo it)"


def test_a_step_with_no_undo_is_not_counted_as_rolled_back() -> None:
    log: list[str] = []
    change = ChangePlan()
    change.step("write a", lambda: log.append("a"), lambda: log.append("undo a"))
    change.step("restart b", lambda: log.append("b"))  # a restart cannot be undone
    change.step("note c", lambda: log.append("c"), lambda: log.append("undo c"), quiet=True)

    def broke() -> None:
        raise StepFailed("broke")

    change.step("d", broke)
    failure = change.apply()
    assert failure == "d: broke; rolled back 2 of the 3 change(s) made before it ('restart b' has no undo)"
    assert log == ["a", "b", "c", "undo c", "undo a"]
    # Typed steps: the bookkeeping one is flagged, not told apart by its description.
    assert change.changes == ["write a", "restart b", "d"]


def test_nothing_to_do_is_no_change_and_bookkeeping_is_not_a_change(tmp_path: Path) -> None:
    path = tmp_path / "same.conf"
    path.write_text("same\n")
    change = ChangePlan()
    assert change.file(str(path), "same\n", 0o644) is None
    assert not change.changed and change.diffs == []
    change.step("rewrite the record", lambda: None, quiet=True)
    assert not change.changed


def test_the_file_diff_shows_before_and_after(tmp_path: Path) -> None:
    change = ChangePlan()
    change.file(str(tmp_path / "new.conf"), "a = 1\n", 0o644)
    assert change.diffs == [
        {"before_header": str(tmp_path / "new.conf"), "after_header": str(tmp_path / "new.conf"),
         "before": "", "after": "a = 1\n"}
    ]  # fmt: skip


@pytest.mark.parametrize("vips", [["192.0.2.10", "2001:db8::10"]])
def test_the_boot_unit_is_the_one_the_role_template_wrote(vips: list[str]) -> None:
    # As templates/loopback-vips.service.j2 rendered it before issue 14: an
    # upgraded host sees no change to its unit.
    text = unit.render(vips, "/usr/sbin/ip", "lo:1", "/etc/dsrprov/loopback-vips")
    assert text == (
        "# Managed by dsrprov (role dsr_realserver_linux); local changes are overwritten.\n"
        "# Restores the Direct Server Return VIPs on the loopback at boot, after the ARP\n"
        "# sysctls are applied and before any network interface comes up.\n"
        "[Unit]\nDescription=dsrprov: DSR VIPs on the loopback\nDocumentation=file:///etc/dsrprov/loopback-vips\n"
        "DefaultDependencies=no\nAfter=systemd-sysctl.service\nBefore=network-pre.target shutdown.target\n"
        "Wants=network-pre.target\nConflicts=shutdown.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        "ExecStart=/usr/sbin/ip -4 addr replace 192.0.2.10/32 dev lo label lo:1\n"
        "ExecStart=/usr/sbin/ip -6 addr replace 2001:db8::10/128 dev lo nodad\n"
        "ExecStop=-/usr/sbin/ip addr del 192.0.2.10/32 dev lo\n"
        "ExecStop=-/usr/sbin/ip addr del 2001:db8::10/128 dev lo\n\n[Install]\nWantedBy=multi-user.target\n"
    )


class Recorder:
    """The module object's run_command, recording every command (systemctl is not run)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run_command(self, cmd: list[str], check_rc: bool = False) -> tuple[int, str, str]:
        self.calls.append(cmd)
        return 0, "UnitFileState=enabled\nActiveState=active\n" if cmd[1] == "show" else "", ""


def test_a_new_unit_is_enabled_and_started_in_one_call_without_a_separate_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unit, "UNIT_DIR", str(tmp_path))
    module = Recorder()
    change = ChangePlan()
    unit.plan(
        change, module, Desired(True, ["192.0.2.10"], record_file="/r", unit_name="x.service"), Found("/usr/sbin/ip")
    )
    assert [s.description for s in change.steps] == [f"write {tmp_path}/x.service", "enable and start x.service"]
    assert change.apply() is None
    # systemctl enable reloads the manager itself before --now starts the unit.
    assert module.calls == [["systemctl", "enable", "--now", "--quiet", "x.service"]]
    # A changed unit that already runs: written, reloaded, never restarted.
    module.calls.clear()
    again = ChangePlan()
    unit.plan(
        again, module, Desired(True, ["192.0.2.11"], record_file="/r", unit_name="x.service"), Found("/usr/sbin/ip")
    )
    assert again.apply() is None
    assert module.calls[1:] == [["systemctl", "daemon-reload"]]


def test_the_undo_of_a_new_unit_removes_it_and_reloads_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its write needed no daemon-reload (enable does it); its undo does, once the file is gone."""
    monkeypatch.setattr(unit, "UNIT_DIR", str(tmp_path))

    class Failing(Recorder):
        def run_command(self, cmd: list[str], check_rc: bool = False) -> tuple[int, str, str]:
            self.calls.append(cmd)
            return (1, "", "Job failed") if cmd[1] == "enable" else (0, "", "")

    module = Failing()
    change = ChangePlan()
    unit.plan(
        change, module, Desired(True, ["192.0.2.10"], record_file="/r", unit_name="x.service"), Found("/usr/sbin/ip")
    )
    failure = change.apply()
    assert failure is not None and failure.endswith("rolled back the 1 change(s) made before it"), failure
    assert module.calls == [
        ["systemctl", "enable", "--now", "--quiet", "x.service"],
        ["systemctl", "disable", "--now", "--quiet", "x.service"],
        ["systemctl", "daemon-reload"],
    ]
    assert list(tmp_path.iterdir()) == []


def test_the_file_step_runs_its_after_undo_once_the_old_file_is_back(tmp_path: Path) -> None:
    """The one file-writing step, as the manager's part uses it: no diff of its own, a reload after its undo."""
    path = tmp_path / "lo.network.d" / "dsrprov.conf"
    seen: list[str | None] = []
    change = ChangePlan()
    step = change.file(
        str(path),
        "[Address]\n",
        0o644,
        diff=False,
        after_undo=lambda: seen.append(path.read_text() if path.exists() else None),
    )
    assert step is not None and step.description == f"write {path}" and change.diffs == []

    def broke() -> None:
        raise StepFailed("broke")

    change.step("reload", broke)
    assert change.apply() == "reload: broke; rolled back the 1 change(s) made before it"
    # The reload saw the file gone (and the directory the step made with it).
    assert seen == [None] and not path.parent.exists()


def test_a_file_write_that_fails_leaves_the_target_and_has_nothing_to_undo(tmp_path: Path) -> None:
    # A directory in the way of the record (the NetworkManager lab test's
    # blocker): the write fails, the target is as it was, and the rollback
    # neither touches it nor reports an undo of its own that failed.
    target = tmp_path / "etc" / "record"
    target.mkdir(parents=True)
    plan = ChangePlan()
    plan.step("one", lambda: None, lambda: None)
    step = plan.file(str(target), "x\n", 0o644)
    assert step is not None
    msg = plan.apply()
    assert msg is not None and msg.startswith(f"write {target}: ") and "rolled back the 1 change(s)" in msg, msg
    assert "cannot undo" not in msg
    assert target.is_dir() and not list(target.iterdir())
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".dsrprov-tmp")]
