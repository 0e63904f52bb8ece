"""`make lab-up` is idempotent and recovers from the half states an
interrupted run leaves: a VM killed with its known_hosts gone, a container
stopped. Runs on the shared lab; the director comes back clean (no
keepalived config), so later tests configure it again."""

from __future__ import annotations

import os
import signal

import pytest

import dsrprov_lab as labmod

pytestmark = pytest.mark.lab


def _container_id(host: labmod.LabHost) -> str:
    return labmod.podman("container", "inspect", "--format", "{{.Id}}", host.container).stdout.strip()


def test_lab_up_twice_changes_nothing_and_recovers_a_killed_vm_and_a_stopped_container(lab: labmod.Lab) -> None:
    vm = next(h for h in lab.hosts if h.is_vm and not h.is_spare)
    rs2 = lab.host("rs2")
    pid_file = labmod.vm_state_dir(vm) / "qemu.pid"
    pid = int(pid_file.read_text())
    ids = {h.name: _container_id(h) for h in lab.hosts if not h.is_vm}

    labmod.up(labmod.load_lab(), say=print)  # a second up: nothing restarts
    assert int(pid_file.read_text()) == pid
    assert {h.name: _container_id(h) for h in lab.hosts if not h.is_vm} == ids

    # The half states of an interrupted run.
    os.kill(pid, signal.SIGKILL)
    (labmod.vm_state_dir(vm) / "known_hosts").unlink()
    labmod.podman("stop", "-t", "0", rs2.container)
    assert not labmod.is_running(vm) and not labmod.is_running(rs2)

    labmod.up(labmod.load_lab(), say=print)
    assert all(labmod.status().values())
    assert int(pid_file.read_text()) != pid
    assert _container_id(rs2) == ids["rs2"]  # started again, not made afresh
    # Reachable with strict host key checking: known_hosts was made again.
    assert labmod.ssh_exec(vm, "hostname").strip() == vm.name
    known = (lab.state_dir / "known_hosts").read_text()
    for host in lab.hosts:
        if not host.is_spare:  # a spare director runs only while a pair test needs it
            assert f"{host.name},{host.ip} " in known, host.name
