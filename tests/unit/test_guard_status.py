"""The controller's view of the guard (connect/guard_facts.py, doctor/guard.py): the probe's section
as recorded on the lab's g12 (inventories/lab-guard, heal mode, after a restore), and states made
with the guard's own metric renderer, so the parser and the renderer cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from dsrprov.checks.verify import linux_checks
from dsrprov.connect import guard_facts
from dsrprov.connect.linux_facts import MARK, PROBE_SCRIPT, parse_probe
from dsrprov.doctor import guard as guard_doctor
from dsrprov.doctor.findings import CATALOGUE
from dsrprov.report import HostReport, status_table
from tests.unit.test_realserver_guard import g

RECORDED = (Path(__file__).parents[1] / "data" / "guard" / "heal-g12.txt").read_text()
V4, V6 = "10.240.12.200", "fd42:d5a:0:412::200"


def section(mode: str, present: dict[str, bool], flapping: set[str], active: str = "active") -> str:
    metrics = g.render_metrics(mode, present, True, {("vip", V4): 3}, flapping, 1796633848.0)
    lines = [f"active={active}", "enabled=enabled", f"mode={mode}", "textfile_dir=/var/lib/prometheus/node-exporter"]
    lines += ["metric " + line for line in metrics.splitlines() if not line.startswith("#")]
    return "\n".join([*lines, "restores_day=0"]) + "\n"


def test_recorded_heal_mode() -> None:
    state = guard_facts.parse(RECORDED)
    assert state.installed and state.running and state.mode == "heal" and state.enabled == "enabled"
    assert state.vip_present == {V4: True, V6: True}
    assert state.flapping == [] and state.sysctls_ok is True and state.last_check == 1796633848.248
    assert state.restores_day == 18
    assert state.summary() == "heal, running, 18 restores in 24 h"


def test_not_installed_and_dead() -> None:
    off = guard_facts.parse("active=inactive\nenabled=\n")
    assert not off.installed and off.summary() == "off"
    dead = guard_facts.parse("active=failed\nenabled=enabled\nmode=report\nrestores_day=0\n")
    assert dead.installed and not dead.running and dead.summary() == "report, failed"


def test_the_section_is_in_the_linux_probe() -> None:
    assert f"echo {MARK}guard@@\n{guard_facts.PROBE}" in PROBE_SCRIPT
    facts = parse_probe(f"{MARK}pid1@@\nsystemd\n{MARK}guard@@\n{RECORDED}{MARK}end@@\n")
    assert facts.guard.mode == "heal" and facts.guard.running


def test_status_and_verify_show_the_guard() -> None:
    facts = parse_probe(f"{MARK}guard@@\n{section('heal', {V4: True, V6: True}, {V6})}{MARK}end@@\n")
    (check,) = [c for c in linux_checks(facts, [V4, V6], []) if c.name == "guard"]
    assert check.ok is True and check.detail == f"heal, running, flapping: {V6}"
    dead = parse_probe(f"{MARK}guard@@\nactive=failed\nmode=heal\n{MARK}end@@\n")
    (check,) = [c for c in linux_checks(dead, [V4, V6], []) if c.name == "guard"]
    assert check.ok is None and check.detail == "heal, failed"  # shown, never a failure
    assert not [c for c in linux_checks(parse_probe(""), [V4, V6], []) if c.name == "guard"]  # off: not shown
    report = HostReport("g12", os="linux", vips=[V4, V6], state={"guard": facts.guard.to_json()})
    header, row = status_table([report]).splitlines()[:2]
    assert "GUARD" in header and f"heal, running, flapping: {V6}" in row
    assert facts.guard.to_json()["flapping"] == [V6]


def ids(state: guard_facts.GuardState, wanted: str = "heal") -> list[str]:
    return [f.id for f in guard_doctor.findings("g12", state, [V4, V6], wanted=wanted)]


def test_doctor_names_a_guard_that_is_down() -> None:
    dead = guard_facts.parse("active=failed\nenabled=enabled\nmode=heal\n")
    (finding,) = guard_doctor.findings("g12", dead, [V4, V6])
    assert finding.id == "rs-guard-down" and finding.line == (
        "g12: the guard is failed (heal mode); nothing puts a VIP back between runs"
    )
    assert "dsrprov enroll g12" in finding.fix
    missing = guard_facts.parse("active=inactive\nenabled=\n")
    assert ids(missing) == ["rs-guard-down"] and ids(missing, wanted="report") == ["rs-guard-down"]
    # Off because the inventory says so (dsr_realserver_linux_guard_mode: off): no finding.
    assert ids(missing, wanted="off") == []
    assert ids(guard_facts.parse(RECORDED)) == []


def test_doctor_names_flapping_and_report_mode() -> None:
    flapping = guard_facts.parse(section("heal", {V4: True, V6: False}, {V6}))
    (finding,) = guard_doctor.findings("g12", flapping, [V4, V6])
    assert finding.id == "rs-guard-flapping" and V6 in finding.line and CATALOGUE[finding.id].severity == "error"
    assert f"find what removes {V6}" in finding.fix
    report = guard_facts.parse(section("report", {V4: False, V6: True}, set()))
    (finding,) = guard_doctor.findings("g12", report, [V4, V6])
    assert finding.id == "rs-guard-report-vip-missing"
    assert finding.line == f"g12: the guard saw VIP {V4} leave lo and, in report mode, did not put it back"
    # Heal mode with a VIP missing is rs-vip-missing's (doctor/linux.py), not the guard's.
    assert ids(guard_facts.parse(section("heal", {V4: False, V6: True}, set()))) == []
