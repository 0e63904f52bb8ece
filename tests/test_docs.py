"""The README's claims about variables stay true."""

from __future__ import annotations

import subprocess
import sys

from dsrprov.paths import project_root
from tests.conftest import venv_bin


def test_readme_variable_tables_match_the_argument_specs() -> None:
    proc = subprocess.run(
        [sys.executable, "lab/role_docs.py", "--check"], cwd=project_root(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_readme_names_the_two_commands() -> None:
    readme = (project_root() / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (project_root() / ".ci" / "run").read_text()


def test_example_inventory_parses_and_names_every_group() -> None:
    import json

    proc = subprocess.run(
        [venv_bin("ansible-inventory"), "-i", "inventories/example", "--list"],
        cwd=project_root(),
        capture_output=True,
        text=True,
        check=True,
    )
    inventory = json.loads(proc.stdout)
    for group in ("dsr_realservers_linux", "dsr_realservers_windows", "dsr_directors", "dsr_loadmasters"):
        assert inventory[group]["hosts"], group
    web2 = inventory["_meta"]["hostvars"]["web2.example.net"]
    assert web2["dsr_vips"] == ["192.0.2.100"]
