"""Tests of roles/dsr_realserver_windows.

``test_static_*`` need no Windows host: PowerShell syntax (tree-sitter),
``--syntax-check``, the controller-side validation run against
localhost, the module documentation, and the Python filter.
``test_molecule_windows_acceptance`` is the acceptance test on a real Windows
Server; it skips, saying why, unless DSRPROV_WIN_* variables are set.
ansible-lint (production profile) of the role is ``make lint``'s.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "src" / "ansible_collections" / "dsrprov" / "dsr"
ROLE = COLLECTION / "roles" / "dsr_realserver_windows"
LIBRARY = COLLECTION / "plugins" / "modules"
MOLECULE = REPO / "molecule" / "windows"
ACCEPTANCE_ENV = (
    "DSRPROV_WIN_HOST",
    "DSRPROV_WIN_USER",
    "DSRPROV_WIN_PASSWORD",
    "DSRPROV_WIN_CA",
    "DSRPROV_WIN_VIPS",
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import powershell_syntax  # noqa: E402

from tests.support import host_failures, run_playbook  # noqa: E402


def _tool(name: str) -> str | None:
    """A console script next to this interpreter, else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ansible_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(REPO / "src"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    return env


# --------------------------------------------------------------------------
# PowerShell syntax (tree-sitter-powershell)
# --------------------------------------------------------------------------


def test_static_powershell_parses_everywhere() -> None:
    snippets, problems = powershell_syntax.check_paths([ROLE, LIBRARY, MOLECULE])
    files = {Path(s.path).name for s in snippets if s.origin == "file"}
    assert {
        "dsr_win_facts.ps1",
        "dsr_win_loopback.ps1",
        "dsr_win_netconfig.ps1",
        "dsr_win_firewall.ps1",
    } <= files
    embedded = [s for s in snippets if s.origin != "file"]
    assert embedded, "the molecule playbooks' win_powershell scripts were not found"
    assert problems == [], "\n".join(str(p) for p in problems)


def test_static_powershell_checker_catches_a_broken_script(tmp_path: Path) -> None:
    """Negative test: a checker that finds nothing proves nothing."""
    good = "if ($a) {\n    Write-Output 'x'\n}\n"
    assert powershell_syntax.check_text(good) == []

    broken_file = tmp_path / "broken.ps1"
    broken_file.write_text("$ok = 1\nif ($a {\n    Write-Output 'x'\n}\n", encoding="utf-8")
    _, problems = powershell_syntax.check_paths([broken_file])
    assert problems, "an unclosed parenthesis went unnoticed"
    assert problems[0].path == str(broken_file)
    assert problems[0].line == 2

    # A real module with one character removed must fail too.
    source = (LIBRARY / "dsr_win_loopback.ps1").read_text(encoding="utf-8")
    damaged = source.replace("if ($state -eq 'present') {", "if ($state -eq 'present' {", 1)
    assert damaged != source
    assert powershell_syntax.check_text(damaged)


def test_static_powershell_checker_reads_embedded_yaml(tmp_path: Path) -> None:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: all\n"  # line 1
        "  tasks:\n"
        "    - name: fine, with Jinja\n"
        "      ansible.windows.win_powershell:\n"
        "        script: |\n"  # line 5
        "          $x = '{{ some_var }}'\n"  # line 6
        "          foreach ($i in {{ a_list | to_json }}) { $i }\n"
        "    - name: broken\n"
        "      ansible.windows.win_powershell:\n"
        "        script: |\n"  # line 10
        "          $y = 1\n"  # line 11
        "          function f( { }\n"  # line 12
        "    - name: broken shell\n"
        "      ansible.windows.win_shell: Get-Item (x\n",  # line 14
        encoding="utf-8",
    )
    snippets, problems = powershell_syntax.check_paths([playbook])
    assert len(snippets) == 3
    assert snippets[0].first_line == 6
    lines = sorted({p.line for p in problems})
    assert 12 in lines and 14 in lines, problems
    assert all(p.line not in (6, 7) for p in problems), problems


def test_static_powershell_checker_cli_exit_status(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ps1"
    bad.write_text("function {\n", encoding="utf-8")
    assert powershell_syntax.main([str(bad)]) == 1
    assert powershell_syntax.main([str(LIBRARY / "dsr_win_facts.ps1")]) == 0


# --------------------------------------------------------------------------
# Role structure, lint, syntax check
# --------------------------------------------------------------------------


def test_static_vip_filters_wrap_the_shared_vip_rules() -> None:
    from ansible_collections.dsrprov.dsr.plugins.filter import vips as vip_filters
    from ansible_collections.dsrprov.dsr.plugins.plugin_utils import vips

    assert vip_filters.check_vips is vips.check_vips
    assert not (ROLE / "filter_plugins").exists()


def _ps_option_names(ps1: Path) -> set[str]:
    """Top-level option names of an Ansible.Basic $spec (8-space indent)."""
    text = ps1.read_text(encoding="utf-8")
    block = text.split("options = @{", 1)[1].split("\n    }\n", 1)[0]
    return set(re.findall(r"^ {8}(\w+) = @\{", block, flags=re.MULTILINE))


@pytest.mark.parametrize("module", sorted(p.stem for p in LIBRARY.glob("*.ps1")))
def test_static_module_documentation_matches_spec(module: str) -> None:
    doc_stub = _load(LIBRARY / f"{module}.py", f"doc_{module}")
    doc = yaml.safe_load(doc_stub.DOCUMENTATION)
    yaml.safe_load(doc_stub.EXAMPLES)
    yaml.safe_load(doc_stub.RETURN)
    assert doc["module"] == module
    assert set(doc["options"]) == _ps_option_names(LIBRARY / f"{module}.ps1")
    text = (LIBRARY / f"{module}.ps1").read_text(encoding="utf-8")
    assert "#AnsibleRequires -CSharpUtil Ansible.Basic" in text
    assert "supports_check_mode = $true" in text


def test_static_argument_specs_describe_every_default() -> None:
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    for entry in ("main", "validate"):
        options = specs["argument_specs"][entry]["options"]
        assert set(defaults) == set(options), entry
        for name, option in options.items():
            assert name.startswith("dsr_realserver_windows_")
            assert option.get("description"), name


def test_static_playbook_syntax_check(tmp_path: Path) -> None:
    playbook = tmp_path / "site_windows.yml"
    playbook.write_text(
        "- name: Windows real servers\n"
        "  hosts: dsr_realservers_windows\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Windows real server\n"
        "      ansible.builtin.import_role:\n"
        "        name: dsrprov.dsr.dsr_realserver_windows\n",
        encoding="utf-8",
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    dsr_realservers_windows:\n      hosts:\n        win1:\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [_tool("ansible-playbook") or "ansible-playbook", "--syntax-check", "-i", str(inventory), str(playbook)],
        env=_ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------
# Validation on the controller (no Windows: localhost, connection local)
# --------------------------------------------------------------------------


# Every case is an inventory host of its own (localhost, connection local) with the case's
# variables as host variables, and one ansible-playbook run validates them all: a run costs
# 2-3 s of Ansible start-up, the validation milliseconds. Each test reads its own host's
# outcome: the failure messages from the run's events, or the result file it wrote.

BAD_INPUT = [
    ("invalid", {"dsr_vips": ["not-an-ip"]}, "invalid VIP 'not-an-ip'"),
    ("prefix24", {"dsr_vips": ["192.0.2.0/24"]}, "must be a host address (/32), not /24"),
    ("prefix64", {"dsr_vips": ["2001:db8::1/64"]}, "must be a host address (/128), not /64"),
    ("duplicate", {"dsr_vips": ["192.0.2.1", "192.0.2.1/32"]}, "duplicate VIP 192.0.2.1"),
    ("loopback", {"dsr_vips": ["127.0.0.1"]}, "cannot be a VIP"),
    ("empty", {"dsr_vips": []}, "no VIP given"),
    ("string", {"dsr_vips": "192.0.2.1"}, "not a single string"),
    ("state", {"dsr_vips": ["192.0.2.1"], "dsr_realserver_windows_state": "gone"}, "must be one of: present, absent"),
    (
        "metric-type",
        {"dsr_vips": ["192.0.2.1"], "dsr_realserver_windows_metric": "many"},
        "dsr_realserver_windows_metric",
    ),
    ("metric-range", {"dsr_vips": ["192.0.2.1"], "dsr_realserver_windows_metric": 0}, "between 1 and 9999"),
    (
        "protocol",
        {"dsr_vips": ["192.0.2.1"], "dsr_realserver_windows_firewall_ports": [{"port": 80, "protocol": "icmp"}]},
        "protocol",
    ),
    (
        "port-range",
        {"dsr_vips": ["192.0.2.1"], "dsr_services": [{"name": "web", "vip": "192.0.2.1", "port": 70000}]},
        "outside 1-65535",
    ),
]

GOOD_INPUT: dict[str, dict[str, Any]] = {
    "normalises": {
        "dsr_vips": ["192.0.2.10/32", "2001:DB8:0::10"],
        "dsr_services": [
            {"name": "web", "vip": "192.0.2.10", "port": 80, "protocol": "tcp"},
            {"name": "dns", "vip": "2001:db8::10/128", "port": "53", "protocol": "UDP"},
            {"name": "elsewhere", "vip": "198.51.100.7", "port": 443, "protocol": "tcp"},
        ],
    },
    "explicit-ports": {
        "dsr_realserver_windows_vips": ["192.0.2.10", "192.0.2.11"],
        "dsr_realserver_windows_firewall_ports": [{"port": 443}],
        "dsr_services": [{"name": "web", "vip": "192.0.2.10", "port": 80}],
    },
    "absent": {"dsr_realserver_windows_state": "absent"},
}


class Validation:
    """One run of the role's controller-side validation over every case."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        cases = {f"bad-{case}": variables for case, variables, _ in BAD_INPUT}
        cases |= {f"good-{case}": variables for case, variables in GOOD_INPUT.items()}
        hosts = {
            host: {
                **variables,
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "dsr_test_result_file": str(self.result_file(host)),
            }
            for host, variables in cases.items()
        }
        inventory = directory / "hosts.yml"
        inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}), encoding="utf-8")
        playbook = directory / "validate.yml"
        playbook.write_text(
            "- name: Only the controller-side validation of the Windows role\n"
            "  hosts: all\n"
            "  gather_facts: false\n"
            "  tasks:\n"
            "    - name: Validate\n"
            "      ansible.builtin.import_role:\n"
            "        name: dsrprov.dsr.dsr_realserver_windows\n"
            "        tasks_from: validate\n"
            "    - name: Write the result\n"
            "      ansible.builtin.copy:\n"
            "        content: \"{{ {'vips': _dsr_realserver_windows_vips,"
            " 'rules': _dsr_realserver_windows_firewall_rules} | to_json }}\"\n"
            '        dest: "{{ dsr_test_result_file }}"\n'
            "        mode: '0600'\n",
            encoding="utf-8",
        )
        self.run = run_playbook(str(playbook), inventory=inventory)

    def result_file(self, host: str) -> Path:
        return self.directory / f"{host}.json"

    def result(self, host: str) -> dict[str, Any]:
        outcome = self.run.hosts.get(host)
        assert outcome is not None and outcome.success, (host, self.run.stdout)
        data: dict[str, Any] = json.loads(self.result_file(host).read_text(encoding="utf-8"))
        return data


@pytest.fixture(scope="module")
def validation(tmp_path_factory: pytest.TempPathFactory) -> Validation:
    return Validation(tmp_path_factory.mktemp("windows-validation"))


@pytest.mark.parametrize(("case", "message"), [(c, m) for c, _, m in BAD_INPUT], ids=[c for c, _, _ in BAD_INPUT])
def test_static_validation_rejects_bad_input(validation: Validation, case: str, message: str) -> None:
    host = f"bad-{case}"
    outcome = validation.run.hosts.get(host)
    assert outcome is not None and outcome.failed, (host, validation.run.stdout)
    said = host_failures(validation.run, host)
    assert message in said, said
    assert not validation.result_file(host).exists()


def test_static_validation_accepts_and_normalises(validation: Validation) -> None:
    result = validation.result("good-normalises")
    assert result["vips"] == ["192.0.2.10", "2001:db8::10"]
    assert [(r["vip"], r["protocol"], r["port"]) for r in result["rules"]] == [
        ("192.0.2.10", "tcp", 80),
        ("2001:db8::10", "udp", 53),
    ]


def test_static_validation_explicit_ports_win(validation: Validation) -> None:
    names = [r["name"] for r in validation.result("good-explicit-ports")["rules"]]
    assert names == ["dsrprov-tcp-443-192.0.2.10", "dsrprov-tcp-443-192.0.2.11"]


def test_static_validation_absent_allows_no_vip(validation: Validation) -> None:
    assert validation.result("good-absent") == {"vips": [], "rules": []}


# --------------------------------------------------------------------------
# Python filter (unit)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fw() -> ModuleType:
    return _load(COLLECTION / "plugins" / "filter" / "windows.py", "dsr_windows_filter")


def test_static_firewall_rules_from_services(fw: ModuleType) -> None:
    rules = fw.firewall_rules(
        ["192.0.2.10"],
        [
            {"name": "a", "vip": "192.0.2.10/32", "port": 80},
            {"name": "b", "vip": "192.0.2.10", "port": 80, "protocol": "TCP"},
            {"name": "c", "vip": "192.0.2.99", "port": 81},
        ],
    )
    assert rules == [
        {
            "name": "dsrprov-tcp-80-192.0.2.10",
            "vip": "192.0.2.10",
            "protocol": "tcp",
            "port": 80,
            "services": ["a", "b"],
        }
    ]


def test_static_firewall_rules_none_without_services(fw: ModuleType) -> None:
    assert fw.firewall_rules(["192.0.2.10"]) == []
    assert fw.firewall_rules([], [{"name": "a", "vip": "192.0.2.10", "port": 80}]) == []


@pytest.mark.parametrize(
    ("services", "ports", "message"),
    [
        ([{"vip": "x", "port": 80}], None, "is not an address"),
        ([{"vip": "192.0.2.10"}], None, "no port"),
        ([{"vip": "192.0.2.10", "port": True}], None, "is not a number"),
        (None, [{"port": 0}], "outside 1-65535"),
        (None, [{"port": "http"}], "is not a number"),
        (None, [{"port": 80, "protocol": "sctp"}], "must be tcp or udp"),
        (None, [80], "expected a mapping"),
        ("web", None, "must be a list"),
    ],
)
def test_static_firewall_rules_errors(fw: ModuleType, services: Any, ports: Any, message: str) -> None:
    with pytest.raises(fw.FirewallSpecError, match=re.escape(message)):
        fw.firewall_rules(["192.0.2.10"], services, ports)


# --------------------------------------------------------------------------
# Example inventory
# --------------------------------------------------------------------------


def test_static_example_inventory_is_secure() -> None:
    group_vars = REPO / "inventories" / "example" / "group_vars" / "dsr_realservers_windows.yml"
    data = yaml.safe_load(group_vars.read_text())
    assert data["ansible_connection"] == "winrm"
    assert int(data["ansible_port"]) == 5986
    assert data["ansible_winrm_scheme"] == "https"
    assert data["ansible_winrm_server_cert_validation"] == "validate"
    assert data["ansible_winrm_ca_trust_path"]
    assert re.fullmatch(r"\{\{\s*vault_\w+\s*\}\}", data["ansible_password"])


# --------------------------------------------------------------------------
# Acceptance: a real Windows Server (molecule scenario "windows")
# --------------------------------------------------------------------------


def test_molecule_windows_acceptance() -> None:
    missing = [name for name in ACCEPTANCE_ENV if not os.environ.get(name)]
    if missing:
        pytest.skip(
            "acceptance test on a real Windows Server skipped: set "
            + ", ".join(missing)
            + " (see docs/windows.md, 'Acceptance test')"
        )
    if not Path(os.environ["DSRPROV_WIN_CA"]).is_file():
        pytest.fail(f"DSRPROV_WIN_CA={os.environ['DSRPROV_WIN_CA']} is not a file")
    molecule = _tool("molecule")
    if molecule is None:
        pytest.fail("molecule is not installed (make setup)")
    # molecule runs ansible-config and ansible-playbook from PATH: put this
    # interpreter's scripts first.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "src"), PATH=path)
    result = subprocess.run([molecule, "test", "-s", "windows"], cwd=REPO, env=env, timeout=3600, check=False)
    assert result.returncode == 0, "molecule test -s windows failed (output above)"
