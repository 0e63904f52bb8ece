"""Issue 26 review points on the Windows real servers, tested without Windows.

As in tests/unit/test_windows_modules.py, no PowerShell runs here: the modules
are read as parse trees (tree-sitter-powershell) and each rule is shown to
catch the fault the review found on a small script that has it. What only
Windows can prove is a step of the molecule ``windows`` scenario (skipped
without a host, tests/unit/test_windows_role.py::test_molecule_windows_acceptance);
the tests below check that those steps are there. The SetupAPI side
(reboot after DIF_REMOVE, "no driver") runs against the fake setupapi.dll in
tests/unit/test_windows_csharp.py.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tree_sitter
import yaml  # type: ignore[import-untyped,unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import powershell_syntax

from tests.unit.test_windows_modules import (
    LIBRARY,
    MOLECULE,
    REPO,
    ROLE,
    _commands,
    _function,
    _module,
    _runs_before,
    _state_branches,
    _text,
    _tree,
    _walk,
)

MODULES = sorted(p.name for p in LIBRARY.glob("dsr_win_*.ps1"))


def _params(command: tree_sitter.Node) -> list[str]:
    """The -Parameter names given to a command, lower case."""
    return [_text(n).lower() for n in _walk(command) if n.type == "command_parameter"]


def _elements(command: tree_sitter.Node) -> list[tree_sitter.Node]:
    found = [c for c in command.children if c.type == "command_elements"]
    if not found:
        return []
    return [c for c in found[0].children if c.type != "command_argument_sep"]


def _splatted(command: tree_sitter.Node) -> bool:
    return any(n.type == "variable" and _text(n).startswith("@") for n in _walk(command))


def _piped_into(command: tree_sitter.Node) -> bool:
    previous = command.prev_sibling
    return previous is not None and previous.type == "|"


def _task_files() -> Iterator[tuple[str, tree_sitter.Node]]:
    """Every PowerShell text of the modules and the molecule scenario."""
    for name in MODULES:
        yield name, _module(name)
    for path in sorted(MOLECULE.rglob("*")):
        for snippet in powershell_syntax.extract(path):
            yield f"{path.name}:{snippet.first_line}", _tree(powershell_syntax.neutralise_jinja(snippet.text))


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------
# Point 7: no wildcard lookups (-Name takes wildcards)
# --------------------------------------------------------------------------

WILDCARD_NAME_CMDLETS = (
    "Get-NetAdapter",
    "Rename-NetAdapter",
    "Get-NetFirewallRule",
    "Set-NetFirewallRule",
    "Remove-NetFirewallRule",
)


def _wildcard_lookups(root: tree_sitter.Node) -> list[str]:
    found = []
    for cmdlet in WILDCARD_NAME_CMDLETS:
        for command in _commands(root, cmdlet):
            elements = _elements(command)
            positional = bool(elements) and elements[0].type != "command_parameter"
            if "-name" in _params(command) or positional:
                found.append(f"line {command.start_point[0] + 1}: {_text(command)}")
    return found


@pytest.mark.parametrize("where", [w for w, _ in _task_files()])
def test_static_no_adapter_or_rule_is_looked_up_by_a_wildcard_name(where: str) -> None:
    root = dict(_task_files())[where]
    assert _wildcard_lookups(root) == []
    # Renames go through the pipeline (the adapter object), never a name.
    for rename in _commands(root, "Rename-NetAdapter"):
        assert _piped_into(rename), f"{where} line {rename.start_point[0] + 1}: {_text(rename)}"


def test_static_wildcard_rule_catches_the_reviewed_fault() -> None:
    faulty = _tree(
        "Get-NetAdapter -Name $n -IncludeHidden\n"
        "Get-NetAdapter $n\n"
        "Rename-NetAdapter -Name $a.Name -NewName $b\n"
        "Remove-NetFirewallRule -Name $r\n"
        "Get-NetAdapter -IncludeHidden | Where-Object { $_.Name -eq $n }\n"
    )
    assert [line.split(":")[0] for line in _wildcard_lookups(faulty)] == ["line 1", "line 2", "line 3", "line 4"]


def test_static_firewall_refuses_a_wildcard_group_before_reading_rules() -> None:
    source = (LIBRARY / "dsr_win_firewall.ps1").read_text(encoding="utf-8")
    assert "if ($group -match '[\\[\\]\\*\\?]') {" in source
    assert "group '$group' holds a wildcard character" in source
    assert source.index("holds a wildcard character") < source.index("@(Get-NetFirewallRule -Group $group")


# --------------------------------------------------------------------------
# Point 1: the loopback found by identity, so check mode matches a real run
# --------------------------------------------------------------------------


def test_static_netconfig_finds_the_loopback_by_interface_guid() -> None:
    root = _module("dsr_win_netconfig.ps1")
    present, absent = _state_branches(root)
    lookups = [c for c in _commands(present, "Get-AdapterByGuid") if "$lbGuid" in _text(c)]
    assert len(lookups) == 1, "the loopback must be found by its interface GUID"
    assert "$module.Params.loopback_interface_guid" in _text(present)
    # No lookup of the loopback by name in the present branch.
    assert _commands(present, "Get-AdapterByName", skip_functions=True) == [] or all(
        "$loopbackName" not in _text(c) for c in _commands(present, "Get-AdapterByName")
    )
    # absent: the preflight's choice (GUID) first, the name only as fallback.
    source = _text(absent)
    assert source.index("Get-AdapterByGuid") < source.index("Get-AdapterByName -AdapterName $loopbackName")


def test_static_loopback_actions_name_the_loopback_the_same_in_both_modes() -> None:
    """Check mode has not renamed a taken-over loopback: actions use the wanted name."""
    root = _module("dsr_win_netconfig.ps1")
    for call in _commands(root, "Set-IfValue", skip_functions=True):
        if "-Adapter $lb " in _text(call):
            assert "-Label $loopbackName" in _text(call), _text(call)
    assert "$Label $Family ${Setting}" in _text(_function(root, "Set-IfValue"))


def test_static_loopback_module_reports_the_new_name_in_check_mode() -> None:
    source = (LIBRARY / "dsr_win_loopback.ps1").read_text(encoding="utf-8")
    assert "if ($renameTo -and $module.CheckMode) {\n    # What a real run would return" in source
    assert "$module.Result.name = $renameTo" in source


def test_static_role_passes_the_loopback_by_guid() -> None:
    tasks = _yaml(ROLE / "tasks" / "present.yml")
    netconfig = next(t for t in tasks if "dsrprov.dsr.dsr_win_netconfig" in t)["dsrprov.dsr.dsr_win_netconfig"]
    assert "_dsr_realserver_windows_loopback.interface_guid" in netconfig["loopback_interface_guid"]
    assert "interface_guid is none" in netconfig["loopback_pending"]
    loopback = next(t for t in tasks if "dsrprov.dsr.dsr_win_loopback" in t)["dsrprov.dsr.dsr_win_loopback"]
    assert "_dsr_realserver_windows_facts.loopback" in loopback["interface_guid"]
    absent = _yaml(ROLE / "tasks" / "absent.yml")
    netconfig_absent = next(t for t in absent if "dsrprov.dsr.dsr_win_netconfig" in t)
    assert (
        "_dsr_realserver_windows_facts.loopback"
        in netconfig_absent["dsrprov.dsr.dsr_win_netconfig"]["loopback_interface_guid"]
    )


def test_static_molecule_checks_check_mode_on_the_takeover() -> None:
    """On a host: check mode on the misnamed hand-made loopback, then the same actions for real."""
    plays = _yaml(MOLECULE / "takeover.yml")
    names = [t["name"] for t in plays[0]["tasks"]]
    check = names.index("Enrol the host in check mode first")
    real = names.index("Enrol the host")
    same = names.index("The real run made exactly the changes check mode reported")
    assert check < real < same
    text = (MOLECULE / "takeover.yml").read_text(encoding="utf-8")
    assert "_dsr_realserver_windows_netconfig.actions == check_netconfig.actions" in text
    assert "after_check.output[0] == before.output[0]" in text


# --------------------------------------------------------------------------
# Point 2: VIPs removed from both policy stores
# --------------------------------------------------------------------------


def _unscoped_removals(root: tree_sitter.Node) -> list[str]:
    """Remove-NetIPAddress calls not made store by store over both stores."""
    bad = []
    for call in _commands(root, "Remove-NetIPAddress"):
        loop = call.parent
        while loop is not None and loop.type != "foreach_statement":
            loop = loop.parent
        over_both = loop is not None and "@('ActiveStore', 'PersistentStore')" in _text(loop).split("{")[0]
        if "-policystore" not in _params(call) or not over_both:
            bad.append(f"line {call.start_point[0] + 1}: {_text(call)}")
    return bad


def test_static_vips_are_removed_from_both_policy_stores() -> None:
    root = _module("dsr_win_netconfig.ps1")
    assert _unscoped_removals(root) == []
    # The only Remove-NetIPAddress is Remove-Vip's; every VIP removal calls it.
    removals = _commands(root, "Remove-NetIPAddress")
    assert len(removals) == 1
    assert "function Remove-Vip" in _text(_function(root, "Remove-Vip"))
    present, absent = _state_branches(root)
    assert len(_commands(present, "Remove-Vip")) == 2  # wrong prefix, left the list
    assert len(_commands(absent, "Remove-Vip")) == 1
    # A VIP still in the persistent store alone is found too.
    for branch in (present, absent):
        assert _commands(branch, "Get-AddressStores"), "removal must read both stores"


def test_static_store_rule_catches_the_reviewed_fault() -> None:
    faulty = _tree(
        "Remove-NetIPAddress -InterfaceIndex 3 -IPAddress $v -Confirm:$false -ErrorAction Stop\n"
        "foreach ($s in @('ActiveStore')) { Remove-NetIPAddress -IPAddress $v -PolicyStore $s }\n"
    )
    assert len(_unscoped_removals(faulty)) == 2


def test_static_molecule_reads_both_stores_after_absent_and_after_a_vip_leaves() -> None:
    reader = (MOLECULE / "files" / "read_vip_stores.ps1").read_text(encoding="utf-8")
    assert "foreach ($store in @('ActiveStore', 'PersistentStore'))" in reader
    cleanup = (MOLECULE / "cleanup.yml").read_text(encoding="utf-8")
    assert "read_vip_stores.ps1" in cleanup and "map(attribute='PersistentStore') | sum == 0" in cleanup
    takeover = _yaml(MOLECULE / "takeover.yml")
    leaving = next(p for p in takeover if p["name"] == "A VIP leaving the list is removed from both policy stores")
    asserts = leaving["tasks"][-1]["ansible.builtin.assert"]["that"]
    assert "without_extra.output[0].PersistentStore == 0" in asserts
    assert "with_extra.output[0].PersistentStore > 0" in asserts


# --------------------------------------------------------------------------
# Point 3: bounded wait for the IP interface, the cause named
# --------------------------------------------------------------------------


def test_static_netconfig_waits_for_the_loopback_ip_interface() -> None:
    root = _module("dsr_win_netconfig.ps1")
    wait = _text(_function(root, "Wait-IpInterface"))
    assert "AddSeconds($module.Params.wait_seconds)" in wait
    assert "Start-Sleep" in wait
    assert "has no $family interface after $($module.Params.wait_seconds) s: $cause" in wait
    assert "is not bound to the adapter" in wait and "TCP/IP has not created it" in wait
    present, _ = _state_branches(root)
    reads = [c for c in _commands(present, "Get-IfState", skip_functions=True) if "$lbIndex" in _text(c)]
    assert reads
    for read in reads:
        assert _runs_before(read, "Wait-IpInterface"), f"line {read.start_point[0] + 1} reads before waiting"


def test_static_wait_rule_catches_the_reviewed_fault() -> None:
    """Negative test: on the reviewed code (no wait) the rule fails."""
    faulty = _tree("function Wait-IpInterface { }\n$x = Get-IfState -Index $lbIndex -Family IPv4\n")
    read = _commands(faulty, "Get-IfState", skip_functions=True)[0]
    assert not _runs_before(read, "Wait-IpInterface")


# --------------------------------------------------------------------------
# Point 4: reboot_required after DIF_REMOVE reaches the role
# --------------------------------------------------------------------------


def test_static_absent_reports_the_reboot_windows_asks_for() -> None:
    source = (LIBRARY / "dsr_win_loopback.ps1").read_text(encoding="utf-8")
    assert source.count("[Dsrprov.LoopbackDevice]::Remove($marker.instance_id, [ref]$removeReboot)") == 1
    assert "$module.Result.reboot_required = [bool]$removeReboot" in source
    tasks = _yaml(ROLE / "tasks" / "absent.yml")
    remove = next(t for t in tasks if "dsrprov.dsr.dsr_win_loopback" in t)
    debug = tasks[tasks.index(remove) + 1]
    assert debug["when"] == f"{remove['register']}.reboot_required | default(false) | bool"


# --------------------------------------------------------------------------
# Point 5: reads fail on error; a driver install only where none is bound
# --------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_static_no_read_swallows_its_error(module: str) -> None:
    source = (LIBRARY / module).read_text(encoding="utf-8")
    assert "SilentlyContinue" not in source


def test_static_driver_repair_only_for_the_one_driverless_device() -> None:
    source = (LIBRARY / "dsr_win_loopback.ps1").read_text(encoding="utf-8")
    script = source[source.index("\n'@\n") :]
    assert script.count("::UpdateDriver(") == 1
    repair = script.index("::UpdateDriver(")
    # Decided on SetupAPI's answer (no driver key), after refusing when
    # other KM-TEST devices exist (the forced update would restart them).
    assert script.index("[Dsrprov.LoopbackDevice]::HasDriver($id)") < repair
    assert script.index("elseif ($current.instance_ids.Count -gt 1)") < repair
    assert "reinstalling the driver would restart all of them" in script
    # A failed adapter read stops the module instead of meaning "none".
    reads = _text(_function(_module("dsr_win_loopback.ps1"), "Get-AllAdapters"))
    assert "-ErrorAction Stop" in reads and "FailJson" in reads


# --------------------------------------------------------------------------
# Point 6: several KM-TEST adapters
# --------------------------------------------------------------------------


def test_static_facts_excludes_only_the_chosen_loopback() -> None:
    source = (LIBRARY / "dsr_win_facts.ps1").read_text(encoding="utf-8")
    assert "[int]$ip.InterfaceIndex -ne $chosen.interface_index" in source
    assert "loopbackIndexes" not in source
    order = [source.index(f"how = '{how}'") for how in ("name", "marker", "vip", "first")]
    assert order == sorted(order)
    assert "$module.Result.loopback = $chosen" in source


def test_static_loopback_module_chooses_in_the_same_order() -> None:
    select = _text(_function(_module("dsr_win_loopback.ps1"), "Select-Loopback"))
    order = [select.index(mark) for mark in ("$wantedGuid", "$byName", "$byMarker", "$byVip", "$Adapters[0]")]
    assert order == sorted(order)
    adapters = _text(_function(_module("dsr_win_loopback.ps1"), "Get-LoopbackAdapter"))
    assert "Sort-Object -Property ifIndex" in adapters


def test_static_marker_records_the_interface_guid_and_absent_compares_it() -> None:
    root = _module("dsr_win_loopback.ps1")
    assert "'LoopbackInterfaceGuid'" in _text(_function(root, "Set-Marker"))
    assert "LoopbackInterfaceGuid" in _text(_function(root, "Get-Marker"))
    match = _text(_function(root, "Test-MarkerMatch"))
    assert "[string]$Adapter.InterfaceGuid -eq [string]$Marker.interface_guid" in match
    _, absent = _state_branches(root)
    source = _text(absent)
    assert source.index("$markerMatches = Test-MarkerMatch") < source.index("::Remove($marker.instance_id")
    assert "if ($marker.created -and $markerMatches)" in source
    # dsr_win_netconfig's "created by the role" (no prior values recorded)
    # compares the GUID too.
    created = _text(_function(_module("dsr_win_netconfig.ps1"), "Test-CreatedLoopback"))
    assert "[string]$Adapter.InterfaceGuid -eq [string]$p.LoopbackInterfaceGuid" in created


# --------------------------------------------------------------------------
# Point 8: one parameter set per firewall cmdlet; DHCP off before an address
# --------------------------------------------------------------------------


def test_static_firewall_calls_each_cmdlet_with_its_own_parameters() -> None:
    root = _module("dsr_win_firewall.ps1")
    new = _commands(root, "New-NetFirewallRule")
    update = _commands(root, "Set-NetFirewallRule")
    assert len(new) == 1 and len(update) == 1
    assert not _splatted(new[0]) and not _splatted(update[0])
    assert {"-displayname", "-group", "-name"} <= set(_params(new[0]))
    assert "-newdisplayname" not in _params(new[0])
    assert "-newdisplayname" in _params(update[0])
    assert not {"-displayname", "-group", "-name"} & set(_params(update[0]))
    assert _piped_into(update[0])
    assert all(_piped_into(c) for c in _commands(root, "Remove-NetFirewallRule"))


def test_static_firewall_rule_catches_the_reviewed_fault() -> None:
    faulty = _tree("$p = @{ Name = 'x' }\nSet-NetFirewallRule @p\nNew-NetFirewallRule @p\n")
    assert all(
        _splatted(c) for c in _commands(faulty, "Set-NetFirewallRule") + _commands(faulty, "New-NetFirewallRule")
    )


def test_static_takeover_turns_dhcp_off_before_the_static_address() -> None:
    plays = _yaml(MOLECULE / "takeover.yml")
    task = next(t for t in plays[0]["tasks"] if t["name"].startswith("Configure it as the manual does"))
    root = _tree(task["ansible.windows.win_powershell"]["script"])
    dhcp = [c for c in _commands(root, "Set-NetIPInterface") if "-dhcp" in _params(c)]
    address = _commands(root, "New-NetIPAddress")
    assert dhcp and address
    assert "Disabled" in _text(dhcp[0])
    assert _runs_before(address[0], "Set-NetIPInterface")


# --------------------------------------------------------------------------
# Point 9: verify.yml and the stale comment
# --------------------------------------------------------------------------


def test_static_verify_uses_component_id_the_facts_choice_and_address_state() -> None:
    text = (MOLECULE / "verify.yml").read_text(encoding="utf-8")
    plays = _yaml(MOLECULE / "verify.yml")
    tasks = plays[0]["tasks"]
    assert "dsrprov.dsr.dsr_win_facts" in tasks[0]
    read = tasks[1]["ansible.windows.win_powershell"]
    assert read["parameters"]["NetIndex"] == "{{ facts.network_adapter.interface_index }}"
    # No rule of its own for the network adapter, none that needs IPv4.
    assert "0.0.0.0/0'" not in read["script"].split("$gateways")[0]
    assert "ComponentID -eq '*msloop'" in read["script"]
    assert "KM-TEST" not in text
    that = tasks[2]["ansible.builtin.assert"]["that"]
    assert "s.component_id == '*msloop'" in that
    assert "s.addresses | dict2items | map(attribute='value.address_state') | unique == ['Preferred']" in that


def test_static_no_comment_names_the_removed_library_folder() -> None:
    for path in [*MOLECULE.rglob("*.yml"), *MOLECULE.rglob("*.ps1"), REPO / "tests" / "powershell_syntax.py"]:
        assert not re.search(r"\blibrary/", path.read_text(encoding="utf-8")), path


# --------------------------------------------------------------------------
# A PowerShell pitfall the new readers must avoid: a function that returns
# its array with the unary comma (``return , @(...)``) writes ONE object, so
# ``f | Where-Object`` would filter the whole array as a single item.
# --------------------------------------------------------------------------


def _piped_array_functions(root: tree_sitter.Node) -> list[str]:
    array_functions = set()
    for node in _walk(root):
        if node.type == "function_statement" and re.search(r"return\s*,", _text(node)):
            names = [c for c in node.children if c.type == "function_name"]
            array_functions.add(_text(names[0]).lower())
    bad = []
    for node in _walk(root):
        if node.type != "command" or powershell_syntax._command_name(node).lower() not in array_functions:
            continue
        following = node.next_sibling
        if following is not None and following.type == "|":
            bad.append(f"line {node.start_point[0] + 1}: {_text(node.parent or node)}")
    return bad


@pytest.mark.parametrize("module", MODULES)
def test_static_no_array_returning_function_is_piped(module: str) -> None:
    assert _piped_array_functions(_module(module)) == []


def test_static_array_pipe_rule_catches_the_fault() -> None:
    faulty = _tree(
        "function Get-All { return , @(Get-NetAdapter) }\n$x = @(Get-All | Where-Object { $_.Name -eq 'a' })\n"
    )
    assert len(_piped_array_functions(faulty)) == 1
