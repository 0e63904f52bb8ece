"""Shared fixtures: the local lab, started once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsrprov import lab as labmod
from dsrprov.paths import project_root

ROOT = project_root()


def venv_bin(name: str) -> str:
    """A command of the environment pytest runs in (the project's .venv)."""
    return str(Path(sys.executable).parent / name)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_playbook(*args: str, inventory: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook from the project root; output captured as text."""
    cmd = [venv_bin("ansible-playbook"), "-i", str(inventory or ROOT / "inventories" / "lab"), *args]
    return subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def lab() -> Iterator[labmod.Lab]:
    """The lab from inventories/lab, up for the session.

    A lab that was already running is reused and left running; one started
    here is taken down at the end (DSRPROV_KEEP_LAB=1 keeps it)."""
    was_running = all(labmod.status().values())
    the_lab = labmod.up()
    yield the_lab
    if not was_running and not os.environ.get("DSRPROV_KEEP_LAB"):
        labmod.down(the_lab)
