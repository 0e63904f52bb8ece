"""The wheel's package list, as setuptools finds it from pyproject.toml: the
CLI and the collection, not the lab (test and demo equipment). The wheel
itself is built and installed by tests/integration/test_install_lab.py, which
checks the same on the installed files."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tomllib

import pytest
from setuptools import find_namespace_packages

from tests.support import ROOT


def test_the_wheel_holds_the_cli_and_the_collection_and_no_lab_code() -> None:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = find_namespace_packages(where=str(ROOT / find["where"][0]), include=find["include"])
    assert "dsrprov" in packages and "dsrprov.doctor" in packages
    assert "ansible_collections.dsrprov.dsr.plugins.module_utils" in packages
    assert not [p for p in packages if p.startswith("dsrprov_lab")], packages
    # Negative control: the pattern the wheel had before (dsrprov*) takes the lab in.
    before = find_namespace_packages(where=str(ROOT / "src"), include=["dsrprov*", "ansible_collections*"])
    assert "dsrprov_lab" in before


def test_unit_tests_run_without_podman_or_the_network() -> None:
    # tests/unit/conftest.py's guards, seen from a test: podman is the failing
    # stand-in, and an address off this machine cannot be reached.
    podman = shutil.which("podman")
    assert podman is not None and "no-lab-tools" in podman
    assert subprocess.run([podman, "ps"], capture_output=True, check=False).returncode == 127
    with socket.socket() as s, pytest.raises(OSError, match="stay off the network"):
        s.connect(("10.250.0.11", 22))
