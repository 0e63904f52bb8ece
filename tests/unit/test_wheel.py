"""The wheel's package list, as setuptools finds it from pyproject.toml: the
CLI and the collection, not the lab (test and demo equipment). The wheel
itself is built and installed by tests/integration/test_install_lab.py, which
checks the same on the installed files."""

from __future__ import annotations

import tomllib

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
