"""Issue 13 review points, tested without Windows.

No PowerShell runs here, so the modules' logic is checked on their parse
trees (tree-sitter-powershell, as tests/powershell_syntax.py): which call
must come before which, which branch a statement sits in, which registry
value one module writes and another reads. Each rule is also run on a
small script with the fault the review found, to show that it catches it.
The controller-side checks (firewall profile, Windows build) run for real,
with ansible-playbook on localhost.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import tree_sitter
import yaml  # type: ignore[import-untyped,unused-ignore]

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "src" / "ansible_collections" / "dsrprov" / "dsr"
ROLE = COLLECTION / "roles" / "dsr_realserver_windows"
LIBRARY = COLLECTION / "plugins" / "modules"
MOLECULE = REPO / "molecule" / "windows"

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import powershell_syntax  # noqa: E402

# --------------------------------------------------------------------------
# Parse-tree helpers
# --------------------------------------------------------------------------


def _tree(text: str) -> tree_sitter.Node:
    tree = powershell_syntax._parser().parse(text.encode("utf-8"))
    assert not tree.root_node.has_error, powershell_syntax.check_text(text)
    return tree.root_node


def _module(name: str) -> tree_sitter.Node:
    return _tree((LIBRARY / name).read_text(encoding="utf-8"))


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def _walk(node: tree_sitter.Node, skip_functions: bool = False) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        if skip_functions and child.type == "function_statement":
            continue
        yield from _walk(child, skip_functions)


def _commands(node: tree_sitter.Node, name: str, skip_functions: bool = False) -> list[tree_sitter.Node]:
    return [
        n
        for n in _walk(node, skip_functions)
        if n.type == "command" and powershell_syntax._command_name(n).lower() == name.lower()
    ]


def _function(root: tree_sitter.Node, name: str) -> tree_sitter.Node:
    for node in _walk(root):
        if node.type == "function_statement":
            names = [c for c in node.children if c.type == "function_name"]
            if names and _text(names[0]).lower() == name.lower():
                return node
    raise AssertionError(f"no function {name}")


def _enclosing_conditions(node: tree_sitter.Node) -> list[str]:
    """Conditions of the ``if`` statements whose then-block holds ``node``."""
    found = []
    while node.parent is not None:
        parent = node.parent
        if parent.type == "if_statement" and node.type == "statement_block":
            found.append(_condition(parent))
        node = parent
    return found


def _state_branches(root: tree_sitter.Node) -> tuple[tree_sitter.Node, tree_sitter.Node]:
    """(present block, absent else-clause) of ``if ($state -eq 'present')``."""
    for node in _walk(root, skip_functions=True):
        if node.type == "if_statement" and _condition(node) == "$state -eq 'present'":
            blocks = [c for c in node.children if c.type == "statement_block"]
            elses = [c for c in node.children if c.type == "else_clause"]
            return blocks[0], elses[0]
    raise AssertionError("no if ($state -eq 'present') { } else { }")


def _line(node: tree_sitter.Node) -> int:
    return node.start_point[0] + 1


def _runs_before(target: tree_sitter.Node, required: str) -> bool:
    """Whether a call of ``required`` runs before ``target`` on every path to it.

    True when, in ``target``'s block or a block enclosing it, a statement
    before it calls ``required`` (function definitions do not count)."""
    child = target
    node = target.parent
    while node is not None:
        if node.type == "statement_list":
            for sibling in node.children:
                if sibling.start_byte >= child.start_byte:
                    break
                if sibling.type == "function_statement":
                    continue
                if _commands(sibling, required, skip_functions=True):
                    return True
        child, node = node, node.parent
    return False


def _condition(node: tree_sitter.Node) -> str:
    pipelines = [c for c in node.children if c.type == "pipeline"]
    return re.sub(r"\s+", " ", _text(pipelines[0])).strip().lower() if pipelines else ""


CHECK_MODE = ("$check", "$module.checkmode")
NOT_CHECK_MODE = tuple(f"{neg}{c}" for c in CHECK_MODE for neg in ("-not ", "!"))


def _check_dependent_blocks(root: tree_sitter.Node) -> Iterator[tuple[str, tree_sitter.Node]]:
    """("check" | "real", block) for every branch taken only in that mode."""
    for node in _walk(root):
        if node.type != "if_statement":
            continue
        condition = _condition(node)
        if condition in CHECK_MODE:
            then_mode, else_mode = "check", "real"
        elif condition in NOT_CHECK_MODE:
            then_mode, else_mode = "real", "check"
        else:
            continue
        for child in node.children:
            if child.type == "statement_block":
                yield then_mode, child
            elif child.type in ("else_clause", "elseif_clauses"):
                yield else_mode, child


def _reports_a_change(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    """Statements that add to ``changed`` or ``actions``."""
    found = []
    for n in _walk(node):
        text = re.sub(r"\s+", "", _text(n)).lower()
        is_action = n.type == "command" and powershell_syntax._command_name(n).lower() == "add-action"
        is_append = n.type == "invokation_expression" and text.startswith("$module.result.actions.add(")
        is_changed = n.type == "assignment_expression" and text.startswith("$module.result.changed=$true")
        if is_action or is_append or is_changed:
            found.append(n)
    return found


def _mode_only_reports(root: tree_sitter.Node) -> list[str]:
    return [
        f"line {_line(report)}: reported only in {mode} mode: {_text(report)[:70]!r}"
        for mode, block in _check_dependent_blocks(root)
        for report in _reports_a_change(block)
    ]


# --------------------------------------------------------------------------
# Point 5: check mode reports exactly what a real run does
# --------------------------------------------------------------------------


@pytest.mark.parametrize("module", sorted(p.name for p in LIBRARY.glob("*.ps1")))
def test_static_no_action_is_reported_in_one_mode_only(module: str) -> None:
    """An action or ``changed`` set inside a branch that runs only in check
    mode (or only for real) makes --check lie about the run."""
    assert _mode_only_reports(_module(module)) == []


def test_static_mode_rule_catches_the_reviewed_fault() -> None:
    """Negative test: dsr_win_netconfig.ps1's old lines 338-344."""
    old = (
        "if (-not $check) {\n"
        "    $cur.automatic_metric = (Get-IfState -Index $lbIndex -Family $family).automatic_metric\n"
        "}\n"
        "else {\n"
        "    if ($cur.automatic_metric -ne 'Disabled') { Add-Action \"automatic_metric -> Disabled\" }\n"
        "    $cur.automatic_metric = 'Disabled'\n"
        "}\n"
        "if ($module.CheckMode) { $module.Result.changed = $true }\n"
        'if (-not $check) { [void]$module.Result.actions.Add("x") }\n'
    )
    problems = _mode_only_reports(_tree(old))
    assert [p.split(":")[0] for p in problems] == ["line 5", "line 8", "line 9"], problems


def test_static_metric_sets_automatic_metric_off_without_a_separate_action() -> None:
    root = _module("dsr_win_netconfig.ps1")
    actions = [_text(a) for a in _commands(root, "Add-Action")]
    assert not [a for a in actions if "automatic_metric" in a], actions


# --------------------------------------------------------------------------
# Point 1: taking over a loopback made by hand is undone by state=absent
# --------------------------------------------------------------------------


def test_static_takeover_records_the_name_before_the_rename() -> None:
    root = _module("dsr_win_loopback.ps1")
    renames = _commands(root, "Rename-NetAdapter")
    assert renames
    for rename in renames:
        assert _runs_before(rename, "Save-PriorName"), f"line {_line(rename)}: renamed without recording the name"
    # The record is the one dsr_win_netconfig's absent reads back.
    save = _text(_function(root, "Save-PriorName"))
    assert '"$regKey\\prior\\$Guid"' in save and "-Name 'name'" in save
    # ... and only for a loopback the role did not create.
    for call in _commands(root, "Save-PriorName", skip_functions=True):
        assert "$module.result.taken_over" in _enclosing_conditions(call)
    taken_over = _text(_function(root, "Test-CreatedByRole"))
    assert "Test-MarkerMatch -Marker $Current.marker" in taken_over
    marker_match = _text(_function(root, "Test-MarkerMatch"))
    assert "$Marker.instance_id" in marker_match and "$Marker.interface_guid" in marker_match


def test_static_takeover_records_default_routes_before_removing_them() -> None:
    root = _module("dsr_win_netconfig.ps1")
    removals = _commands(root, "Remove-NetRoute")
    assert removals
    for removal in removals:
        assert _runs_before(removal, "Add-PriorRoute"), f"line {_line(removal)}: route removed unrecorded"
    # Every policy store is removed (a persistent gateway comes back at boot otherwise).
    assert all("-PolicyStore" in _text(r) for r in removals)


def test_static_absent_puts_back_names_and_routes() -> None:
    root = _module("dsr_win_netconfig.ps1")
    _, absent = _state_branches(root)
    assert _commands(absent, "New-NetRoute"), "state=absent never puts a route back"
    assert _commands(absent, "Rename-NetAdapter"), "state=absent never puts a name back"
    text = _text(absent)
    # The value names read back are the ones written.
    assert "'DefaultRoutes'" in text and "-eq 'name'" in text
    assert "-Name 'DefaultRoutes'" in _text(_function(root, "Add-PriorRoute"))


def test_static_record_rule_catches_the_reviewed_fault() -> None:
    """Negative test: the old code removed routes and renamed unrecorded."""
    old = (
        "foreach ($route in @(Get-NetRoute -InterfaceIndex $i)) {\n"
        "    if (-not $check) { $route | Remove-NetRoute -Confirm:$false }\n"
        "}\n"
        "if (-not $check) { Rename-NetAdapter -Name $a -NewName $b }\n"
        "function Add-PriorRoute { Add-PriorRoute }\n"
        "Add-PriorRoute\n"
    )
    root = _tree(old)
    assert not _runs_before(_commands(root, "Remove-NetRoute")[0], "Add-PriorRoute")
    assert not _runs_before(_commands(root, "Rename-NetAdapter")[0], "Save-PriorName")


# --------------------------------------------------------------------------
# Point 2: firewall profile validated, compared as flags, rule kept working
# --------------------------------------------------------------------------


def test_static_firewall_validates_the_profile_before_any_change() -> None:
    root = _module("dsr_win_firewall.ps1")
    changes = [
        c
        for name in ("New-NetFirewallRule", "Set-NetFirewallRule", "Remove-NetFirewallRule")
        for c in _commands(root, name, skip_functions=True)
    ]
    assert changes
    failures = [
        n
        for n in _walk(root, skip_functions=True)
        if n.type == "invokation_expression" and "profile" in _text(n) and _text(n).startswith("$module.FailJson")
    ]
    assert failures, "no refusal of a bad profile"
    assert max(_line(f) for f in failures) < min(_line(c) for c in changes)


def test_static_firewall_never_removes_a_wanted_rule() -> None:
    root = _module("dsr_win_firewall.ps1")
    loops = [n for n in _walk(root) if n.type == "foreach_statement"]
    wanted_loop = [loop for loop in loops if "@($wanted.Keys)" in _text(loop)]
    assert len(wanted_loop) == 1
    assert not _commands(wanted_loop[0], "Remove-NetFirewallRule"), "a rule is removed before its replacement exists"
    assert _commands(wanted_loop[0], "Set-NetFirewallRule"), "a differing rule must be updated in place"
    removes = _commands(root, "Remove-NetFirewallRule", skip_functions=True)
    creates = _commands(root, "New-NetFirewallRule", skip_functions=True) + _commands(
        root, "Set-NetFirewallRule", skip_functions=True
    )
    assert min(_line(r) for r in removes) > max(_line(c) for c in creates), "unwanted rules go last"


def test_static_firewall_compares_profiles_as_flags() -> None:
    root = _module("dsr_win_firewall.ps1")
    state = _text(_function(root, "Get-RuleState"))
    assert "profile = ConvertTo-ProfileFlag -Text ([string]$Rule.Profile)" in state
    assert "[string]$Rule.Profile\n" not in state
    same = _text(_function(root, "Test-Same"))
    assert "$Have.profile -eq $Want.profile" in same


def test_static_firewall_rules_catch_the_reviewed_fault() -> None:
    """Negative test: the old module's structure fails the rules above."""
    old = (
        "foreach ($name in @($existing.Keys)) { Remove-NetFirewallRule -Name $name }\n"
        "foreach ($name in @($wanted.Keys)) {\n"
        "    if ($have) { Remove-NetFirewallRule -Name $name -ErrorAction Stop }\n"
        "    New-NetFirewallRule @ruleParams | Out-Null\n"
        "}\n"
    )
    root = _tree(old)
    loop = next(n for n in _walk(root) if n.type == "foreach_statement" and "@($wanted.Keys)" in _text(n))
    assert _commands(loop, "Remove-NetFirewallRule")
    removes = _commands(root, "Remove-NetFirewallRule")
    assert min(_line(r) for r in removes) < _line(_commands(root, "New-NetFirewallRule")[0])


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fw() -> ModuleType:
    return _load(COLLECTION / "plugins" / "filter" / "windows.py", "dsr_windows_filter_profile")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Any", "Any"),
        ("any", "Any"),
        ("Domain,Private", "Domain,Private"),
        ("Domain, Private", "Domain,Private"),
        ("private,DOMAIN", "Domain,Private"),
        (["Public", "Domain"], "Domain,Public"),
        ("Public,Public", "Public"),
    ],
)
def test_static_firewall_profile_is_normalised(fw: ModuleType, value: Any, expected: str) -> None:
    assert fw.firewall_profile(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Pubic", "'Pubic' is not a firewall profile (did you mean Public?)"),
        ("Domain,Work", "'Work' is not a firewall profile"),
        ("Any,Public", "'Any' already means every profile"),
        ("", "is empty"),
        (" , ", "is empty"),
        (7, "must be a string"),
        ({"Public": True}, "must be a string"),
    ],
)
def test_static_firewall_profile_errors(fw: ModuleType, value: Any, message: str) -> None:
    with pytest.raises(fw.FirewallSpecError, match=re.escape(message)):
        fw.firewall_profile(value)


# --------------------------------------------------------------------------
# Controller-side tasks run for real (ansible-playbook on localhost)
# --------------------------------------------------------------------------


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def _playbook(
    tmp_path: Path,
    tasks: list[dict[str, Any]],
    variables: dict[str, Any],
    hosts: dict[str, dict[str, Any]] | None = None,
) -> subprocess.CompletedProcess[str]:
    """TASKS on localhost, or on HOSTS (inventory name: its variables), each a local connection, in one run."""
    playbook = tmp_path / "play.yml"
    inventory = "localhost,"
    if hosts is not None:
        inventory = str(tmp_path / "hosts.yml")
        local = {"ansible_connection": "local"}
        Path(inventory).write_text(yaml.safe_dump({"all": {"hosts": {h: {**local, **v} for h, v in hosts.items()}}}))
    play = {
        "name": "Controller-side tasks of the Windows role",
        "hosts": "all" if hosts is not None else "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": tasks,
    }
    playbook.write_text(yaml.safe_dump([play], sort_keys=False), encoding="utf-8")
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(variables), encoding="utf-8")
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(REPO / "src"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    return subprocess.run(
        [
            _tool("ansible-playbook"),
            "-i",
            inventory,
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            f"@{vars_file}",
            str(playbook),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _validate_tasks(results: Path) -> list[dict[str, Any]]:
    """The role's validation, then each host's checked profile written to RESULTS/HOST.json."""
    return [
        {
            "name": "Validate",
            "ansible.builtin.import_role": {"name": "dsrprov.dsr.dsr_realserver_windows", "tasks_from": "validate"},
        },
        {
            "name": "Write the result",
            "ansible.builtin.copy": {
                "content": "{{ _dsr_realserver_windows_firewall_profile | to_json }}",
                "dest": f"{results}/{{{{ inventory_hostname }}}}.json",
                "mode": "0600",
            },
        },
    ]


@pytest.fixture(scope="module")
def validation_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The validation on host "typo" (profile Pubic) and host "pair" (Private, Domain), in one run:
    its output, and the directory of the results the hosts that passed wrote."""
    tmp_path = tmp_path_factory.mktemp("windows-profile")
    profiles = {"typo": "Pubic", "pair": "Private, Domain"}
    hosts = {h: {"dsr_realserver_windows_firewall_profile": p} for h, p in profiles.items()}
    proc = _playbook(tmp_path, _validate_tasks(tmp_path), {"dsr_vips": ["192.0.2.1"]}, hosts)
    return proc.stdout + proc.stderr, tmp_path


def test_static_validation_refuses_a_profile_typo_before_any_change(validation_run: tuple[str, Path]) -> None:
    out, results = validation_run
    assert re.search(r"^typo\s+: .*failed=1", out, re.MULTILINE), out
    assert "dsrprov: dsr_realserver_windows_firewall_profile: 'Pubic' is not a firewall profile" in out, out
    assert not (results / "typo.json").exists()


def test_static_validation_normalises_the_profile(validation_run: tuple[str, Path]) -> None:
    out, results = validation_run
    assert re.search(r"^pair\s+: .*failed=0", out, re.MULTILINE), out
    assert json.loads((results / "pair.json").read_text(encoding="utf-8")) == "Domain,Private"


def test_static_present_passes_the_checked_profile_to_the_module() -> None:
    tasks = yaml.safe_load((ROLE / "tasks" / "present.yml").read_text(encoding="utf-8"))
    firewall = [t for t in tasks if "dsrprov.dsr.dsr_win_firewall" in t]
    assert firewall[0]["dsrprov.dsr.dsr_win_firewall"]["profile"] == "{{ _dsr_realserver_windows_firewall_profile }}"


# --------------------------------------------------------------------------
# Point 6: Windows Server 2016 (build 14393) or later, one line saying why
# --------------------------------------------------------------------------


def _build_assert() -> dict[str, Any]:
    tasks = yaml.safe_load((ROLE / "tasks" / "preflight.yml").read_text(encoding="utf-8"))
    found = [t for t in tasks if "os_build" in json.dumps(t.get("ansible.builtin.assert", {}))]
    assert len(found) == 1, "one build check in tasks/preflight.yml"
    task: dict[str, Any] = found[0]
    return task


WINDOWS = [
    (7601, "6.1.7601", True),  # 2008 R2
    (9200, "6.2.9200", True),  # 2012
    (9600, "6.3.9600", True),  # 2012 R2
    (14393, "10.0.14393", False),  # 2016
    (17763, "10.0.17763", False),  # 2019
    (26100, "10.0.26100", False),  # 2025
]


@pytest.fixture(scope="module")
def preflight_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """The build check on one host per Windows version (host wBUILD, its facts), all in one
    ansible-playbook run: the output, and each host's recap line."""
    hosts = {
        f"w{build}": {"_dsr_realserver_windows_facts":
                      {"os_build": build, "os_version": version, "is_admin": True, "minimum_build": 14393}}
        for build, version, _ in WINDOWS
    }  # fmt: skip
    proc = _playbook(tmp_path_factory.mktemp("preflight"), [_build_assert()], {}, hosts)
    out = proc.stdout + proc.stderr
    recap = {m.group(1): m.group(2) for m in re.finditer(r"^(w\d+)\s+: (ok=.*)$", out, re.MULTILINE)}
    assert set(recap) == set(hosts), out
    return out, recap


@pytest.mark.parametrize(("build", "version", "refused"), WINDOWS)
def test_static_preflight_refuses_windows_older_than_2016(
    preflight_run: tuple[str, dict[str, str]], build: int, version: str, refused: bool
) -> None:
    out, recap = preflight_run
    assert ("failed=1" in recap[f"w{build}"]) == refused, out
    line = (
        f"dsrprov: w{build} runs Windows {version} (build {build}); dsrprov needs Windows Server 2016"
        " (build 14393) or later, the oldest Windows that Ansible supports. Nothing was changed."
    )
    assert (line in out) == refused, out


def test_static_facts_module_stops_at_the_same_build() -> None:
    """dsr_win_facts reads nothing more below the build the preflight refuses."""
    text = (LIBRARY / "dsr_win_facts.ps1").read_text(encoding="utf-8")
    assert "$module.Result.minimum_build = 14393" in text
    assert ">= 14393" in json.dumps(_build_assert())
    meta = yaml.safe_load((ROLE / "meta" / "main.yml").read_text(encoding="utf-8"))
    versions = meta["galaxy_info"]["platforms"][0]["versions"]
    assert "2012" not in versions and "2012R2" not in versions


# --------------------------------------------------------------------------
# Molecule: the takeover case is part of the acceptance scenario
# --------------------------------------------------------------------------


def test_static_molecule_windows_covers_the_takeover() -> None:
    scenario = yaml.safe_load((MOLECULE / "molecule.yml").read_text(encoding="utf-8"))
    sequence = scenario["scenario"]["test_sequence"]
    assert "side_effect" in sequence and sequence.index("side_effect") > sequence.index("verify")
    assert scenario["provisioner"]["playbooks"]["side_effect"] == "takeover.yml"
    text = (MOLECULE / "takeover.yml").read_text(encoding="utf-8")
    for needle in (
        "New-NetRoute",
        "dsrprov.dsr.dsr_win_loopback:",
        "taken_over",
        "dsr_realserver_windows_state: absent",
    ):
        assert needle in text, needle
