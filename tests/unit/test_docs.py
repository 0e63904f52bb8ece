"""The README's claims about variables stay true."""

from __future__ import annotations

import subprocess
import sys

from dsrprov_lab.paths import checkout_root as project_root
from tests.support import venv_bin


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


COLLECTION = project_root() / "src" / "ansible_collections" / "dsrprov" / "dsr"


def _doc_env() -> dict[str, str]:
    import os

    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(project_root() / "src"))


def test_ansible_doc_lists_every_module_of_the_collection() -> None:
    import json

    proc = subprocess.run(
        [venv_bin("ansible-doc"), "-t", "module", "-l", "dsrprov.dsr", "--json"],
        capture_output=True, text=True, env=_doc_env(), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    listed = set(json.loads(proc.stdout))
    on_disk = {f"dsrprov.dsr.{p.stem}" for p in (COLLECTION / "plugins" / "modules").glob("*.py")}
    # The Linux real server is one module (issue 14), the others one per job.
    assert len(on_disk) >= 8 and listed == on_disk, listed ^ on_disk


def test_every_module_has_documentation_that_ansible_doc_renders() -> None:
    """One ansible-doc run for every module (each run costs a second of start-up): each must be in
    its answer, whole, and nothing may be said about an error."""
    import json

    names = [f"dsrprov.dsr.{m.stem}" for m in sorted((COLLECTION / "plugins" / "modules").glob("*.py"))]
    proc = subprocess.run(
        [venv_bin("ansible-doc"), "-t", "module", "--json", *names],
        capture_output=True, text=True, env=_doc_env(), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.strip()
    # ansible-doc may go on after a YAML error in one block: say so loudly.
    assert "error" not in proc.stderr.lower(), proc.stderr.strip()
    docs = json.loads(proc.stdout)
    assert len(names) >= 8 and set(docs) == set(names), set(docs) ^ set(names)
    for name, doc in docs.items():
        assert doc["doc"].get("short_description") and doc["doc"].get("description"), name
        assert doc.get("examples"), f"{name}: no EXAMPLES"
        assert doc.get("return") is not None, f"{name}: no RETURN"


def test_no_symlink_in_the_repository() -> None:
    """Roles and modules are installed and copied elsewhere: a symlink breaks there."""
    proc = subprocess.run(["git", "ls-files", "-s"], cwd=project_root(), capture_output=True, text=True, check=True)
    links = [line.split("\t", 1)[1] for line in proc.stdout.splitlines() if line.startswith("120000 ")]
    assert links == []


def test_every_relative_link_in_the_docs_resolves() -> None:
    import re

    root = project_root()
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted(COLLECTION.glob("roles/*/README.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(root)}: {target}")
    assert not broken, broken


def test_the_readme_is_a_front_page() -> None:
    readme = (project_root() / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for role in ("dsr_realserver_linux", "dsr_realserver_windows", "dsr_director", "dsr_loadmaster_kemp"):
        assert (COLLECTION / "roles" / role / "README.md").is_file(), role
