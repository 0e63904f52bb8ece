"""Crash safety of the network-manager part (module_utils/dsr_lo_persist.py), issue 22: write-ahead record.

A run is killed (or a step raises) between every pair of steps; the next run
must finish the change, and ``state=absent`` must then leave the host byte
for byte as found. NetworkManager and systemd-networkd cannot run in a unit
test: a stand-in nmcli (``SimulatedNM``) edits the loopback keyfile as
NetworkManager would (it rewrites the whole file in its own layout), and
networkctl is a no-op. The lab tests (tests/test_lo_managers.py) run the real ones.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lm
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_persist as persist
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import ChangePlan
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_plan_inputs import Desired, Found

VIPS = ["10.240.2.200", "fd42:d5a:0:42::200"]
UUID = "5f3c1b2a-0000-4000-8000-00000000aaaa"
# As an admin wrote it (comment, own order): NetworkManager's rewrite differs,
# so only a byte-for-byte restore gives this text back.
KEYFILE = (
    f"# lo, by hand\n[connection]\nid=lo\nuuid={UUID}\ntype=loopback\ninterface-name=lo\n\n[ipv4]\nmethod=manual\n"
)


class Killed(BaseException):
    """The module died here (a kill, not an exception it could roll back from)."""


class SimulatedNM:
    """A stand-in for nmcli, networkctl and the module object (see the docstring)."""

    def __init__(self, root: Path, kind: str) -> None:
        self.root, self.kind = root, kind
        self.keyfile = root / "etc/NetworkManager/system-connections/lo.nmconnection"
        self.network = root / "usr/lib/systemd/network/05-lo.network"
        self.fail_inverse = False
        self.calls: list[list[str]] = []

    def addresses(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {4: [], 6: []}
        section = ""
        for line in self.keyfile.read_text().splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif line.startswith("address") and section in ("ipv4", "ipv6"):
                out[4 if section == "ipv4" else 6].append(line.split("=", 1)[1])
        return out

    def write_keyfile(self, addresses: dict[int, list[str]]) -> None:
        lines = ["[connection]", "id=lo", "uuid=" + UUID, "type=loopback", "interface-name=lo", ""]
        for family in (4, 6):
            lines.append(f"[ipv{family}]")
            lines += [f"address{i}={a}" for i, a in enumerate(addresses[family], 1)]
            lines += ["method=manual" if family == 4 or addresses[6] else "method=auto", ""]
        self.keyfile.write_text("\n".join(lines))

    def state(self) -> lm.LoState:
        if self.kind == "nm":
            profile = lm.NmProfile(uuid=UUID, name="lo", filename=str(self.keyfile), active=True, device="lo")
            profile.methods = {4: "manual", 6: "auto"}
            profile.addresses = self.addresses()
            return lm.LoState(nm_active=True, nm_nmcli=True, nm_lo_state="connected", nm_profiles=[profile],
                              nm_dispatcher="enabled")  # fmt: skip
        return lm.LoState(networkd_active=True, networkd_version=257, networkd_file=str(self.network),
                          networkd_config=self.network.read_text())  # fmt: skip

    # The module object's part.
    def warn(self, msg: str) -> None:
        raise AssertionError("unexpected warning: " + msg)

    def run_command(self, cmd: list[str], check_rc: bool = False) -> tuple[int, str, str]:
        self.calls.append(cmd)
        if cmd[:3] == ["nmcli", "connection", "modify"]:
            addresses = self.addresses()
            changes = list(zip(cmd[5::2], cmd[6::2], strict=True))
            if self.fail_inverse and changes[0][0].startswith("-"):
                return 1, "", "Error: simulated failure"
            for prop, value in changes:
                family = 4 if "ipv4" in prop else 6
                if prop.startswith("+") and value not in addresses[family]:
                    addresses[family].append(value)
                elif prop.startswith("-") and value in addresses[family]:
                    addresses[family].remove(value)
            self.write_keyfile(addresses)
        return 0, "", ""


@pytest.fixture(params=["nm", "networkd"])
def host(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimulatedNM:
    sim = SimulatedNM(tmp_path, request.param)
    # /etc/dsrprov holds the VIP record too (dsr_loopback_vips removes it last).
    (tmp_path / "etc/dsrprov").mkdir(parents=True)
    if sim.kind == "nm":
        (tmp_path / "etc/NetworkManager/dispatcher.d").mkdir(parents=True)
        sim.keyfile.parent.mkdir(parents=True)
        sim.keyfile.write_text(KEYFILE)
        sim.keyfile.chmod(0o600)
    else:
        sim.network.parent.mkdir(parents=True)
        sim.network.write_text("[Match]\nName=lo\n")
        (tmp_path / "etc/systemd/network").mkdir(parents=True)
    monkeypatch.setattr(persist, "NM_HOOK", str(tmp_path / "etc/NetworkManager/dispatcher.d/90-dsrprov"))
    monkeypatch.setattr(lm, "NETWORKD_DIRS", (str(tmp_path / "etc/systemd/network"),))
    return sim


def record(sim: SimulatedNM) -> str:
    return str(sim.root / "etc/dsrprov/loopback-manager.json")


def planned(sim: SimulatedNM, present: bool) -> ChangePlan:
    change = ChangePlan()
    desired = Desired(present, VIPS if present else [], manager_record=record(sim))
    persist.plan(change, sim, desired, Found("/usr/sbin/ip", lo_state=sim.state()))
    return change


def converge(sim: SimulatedNM, present: bool) -> ChangePlan:
    change = planned(sim, present)
    assert change.apply() is None
    return change


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def dirs(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir())


def kill_at(change: ChangePlan, index: int, half: bool) -> None:
    """Run the steps up to INDEX; then die, before step INDEX (or, HALF, right after it)."""
    for number, step in enumerate(change.steps):
        if number == index and not half:
            raise Killed
        step.action()
        if number == index:
            raise Killed


def reference(host: SimulatedNM) -> tuple[dict[str, bytes], list[str], dict[str, bytes], int]:
    """The host as found, as a clean run leaves it, and the number of steps of that run."""
    found, found_dirs = snapshot(host.root), dirs(host.root)
    steps = len(planned(host, True).steps)
    converge(host, True)
    done = snapshot(host.root)
    converge(host, False)
    assert snapshot(host.root) == found and dirs(host.root) == found_dirs
    return found, found_dirs, done, steps


def test_the_record_is_written_ahead_of_the_first_change(host: SimulatedNM) -> None:
    change = planned(host, True)
    descriptions = [step.description for step in change.steps]
    assert descriptions[0].startswith("note in ") and descriptions[-1].startswith("write ")
    # Nothing but the note is done before the change it announces.
    kill_step = 1
    with pytest.raises(Killed):
        kill_at(change, kill_step, half=False)
    note = json.loads(Path(record(host)).read_text())
    if host.kind == "nm":
        entry = note["nm_profiles"][UUID]
        assert entry["original"] == KEYFILE
        assert entry["pending"] == {"add": ["10.240.2.200/32", "fd42:d5a:0:42::200/128"], "remove": []}
        assert entry["added"] == ["10.240.2.200/32", "fd42:d5a:0:42::200/128"]
    else:
        assert note["networkd_dropins"] == [lm.networkd_dropin_path(str(host.network))]
    assert not change.changed or [s for s in change.steps if s.quiet and s.description.startswith("note in ")]


@pytest.mark.parametrize("half", [False, True], ids=["before-step", "after-step"])
def test_a_kill_at_every_step_heals_on_the_next_run_and_absent_restores(host: SimulatedNM, half: bool) -> None:
    found, found_dirs, done, steps = reference(host)
    for index in range(steps):
        with pytest.raises(Killed):
            kill_at(planned(host, True), index, half)
        converge(host, True)
        assert snapshot(host.root) == done, (
            f"killed {'after' if half else 'before'} step {index}: the next run did not finish"
        )
        assert not planned(host, True).changed
        converge(host, False)
        assert snapshot(host.root) == found and dirs(host.root) == found_dirs, f"killed at step {index}"


@pytest.mark.parametrize("half", [False, True], ids=["before-step", "after-step"])
def test_a_kill_at_every_step_of_absent_heals_on_the_next_absent(host: SimulatedNM, half: bool) -> None:
    found, found_dirs, _, _ = reference(host)
    converge(host, True)
    for index in range(len(planned(host, False).steps)):
        with pytest.raises(Killed):
            kill_at(planned(host, False), index, half)
        converge(host, False)
        assert snapshot(host.root) == found and dirs(host.root) == found_dirs, f"killed at step {index}"
        converge(host, True)


def test_a_kill_straight_after_nmcli_modify_is_absent_byte_for_byte(host: SimulatedNM) -> None:
    """The issue's case: the profile holds the VIPs, the record was never written after."""
    if host.kind != "nm":
        pytest.skip("NetworkManager only")
    found, _, _, _ = reference(host)
    change = planned(host, True)
    index = next(i for i, s in enumerate(change.steps) if s.description.startswith("add the VIPs"))
    with pytest.raises(Killed):
        kill_at(change, index, half=True)
    assert host.addresses()[4] == ["10.240.2.200/32"]
    converge(host, False)
    assert snapshot(host.root) == found


def raising(change: ChangePlan, index: int) -> None:
    action = change.steps[index].action

    def boom() -> None:
        action()  # half happened, then failed
        raise RuntimeError("simulated failure")

    change.steps[index] = dataclasses.replace(change.steps[index], action=boom)


def test_a_step_that_raises_rolls_back_and_the_next_runs_converge_and_restore(host: SimulatedNM) -> None:
    found, found_dirs, done, steps = reference(host)
    for index in range(steps):
        change = planned(host, True)
        raising(change, index)
        assert change.apply() is not None
        assert snapshot(host.root) == found, f"rollback after step {index} left traces"
        converge(host, True)
        assert snapshot(host.root) == done
        converge(host, False)
        assert snapshot(host.root) == found and dirs(host.root) == found_dirs


def test_when_the_undo_of_nmcli_modify_fails_the_record_keeps_the_vips_and_absent_removes_them(
    host: SimulatedNM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's second case: the profile's undo fails, the record's would succeed."""
    if host.kind != "nm":
        pytest.skip("NetworkManager only")
    found, _, _, _ = reference(host)
    change = planned(host, True)
    raising(change, len(change.steps) - 1)  # the last step fails: everything is undone

    def cannot(*_: object) -> None:
        raise RuntimeError("simulated failure of the put-back")

    with monkeypatch.context() as patch:
        patch.setattr(persist, "put_back_profile", cannot)
        host.fail_inverse = True
        failure = change.apply()
    assert failure is not None and "cannot undo 'add the VIPs" in failure
    assert host.addresses()[4] == ["10.240.2.200/32"]  # nmcli could not take it back
    assert "10.240.2.200/32" in json.loads(Path(record(host)).read_text())["nm_profiles"][UUID]["added"]
    host.fail_inverse = False
    converge(host, False)
    assert snapshot(host.root) == found
