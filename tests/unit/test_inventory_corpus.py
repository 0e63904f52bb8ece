"""Differential test: the CLI sees each inventory of tests/data/inventories/
exactly as Ansible does (hosts, groups, and the variables the CLI uses,
rendered), compared against ``ansible-inventory --list`` and ``ansible``'s
own rendering of the same variables."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dsrprov.model.inventory import Inventory

CORPUS = Path(__file__).parents[1] / "data" / "inventories"
KEYS = ("ansible_host", "ansible_user", "ansible_port", "dsr_vips", "dsr_weight", "dsr_real_address6", "dsr_services")
# Each case: its source as a user gives it to ansible-playbook -i.
CASES = {
    "directory": "directory",
    "children": "children/hosts.yml",
    "priority": "priority/hosts.yml",
    "anchors": "anchors/hosts.yml",
    "vault": "vault/hosts.yml",
    "unsafe": "unsafe/hosts.yml",
    "ini": "ini/hosts.ini",
    "constructed": "constructed",
    "script": "script/inventory.py",
}
VAULT_PASSWORD = CORPUS / "vault" / "vault-password.txt"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _env(vault: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_VAULT")}
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "1"
    if vault:
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(VAULT_PASSWORD)
    return env


def ansible_groups(source: Path, env: dict[str, str]) -> dict[str, set[str]]:
    """Every group's hosts (descendants included), from ansible-inventory --list."""
    out = subprocess.run(
        [_bin("ansible-inventory"), "-i", str(source), "--list", "--export"],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    data: dict[str, Any] = json.loads(out)

    def closure(group: str) -> set[str]:
        node = data.get(group) or {}
        hosts = set(node.get("hosts") or [])
        for child in node.get("children") or []:
            hosts |= closure(child)
        return hosts

    return {g: closure(g) for g in data if g != "_meta"}


def ansible_values(source: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The CLI's variables of every host as Ansible renders them (ad-hoc debug, no connection)."""
    fields = ", ".join(f"'{k}': {k} | default('UNDEF')" for k in KEYS)
    msg = f"msg={{{{ {{{fields}}} }}}}"
    cmd = [_bin("ansible"), "-i", str(source), "all", "-o", "-m", "ansible.builtin.debug", "-a", msg]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    values = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\S+) \| SUCCESS => (\{.*\})$", line)
        if m:
            values[m.group(1)] = json.loads(m.group(2))["msg"]
    assert values, proc.stdout + proc.stderr
    return values


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_sees_the_inventory_as_ansible_does(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    source = CORPUS / CASES[case]
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    assert any("Models:" in p.read_text() for p in files), f"{source} must say what it models"
    vault = case == "vault"
    env = _env(vault)
    for k in list(os.environ):
        if k.startswith("ANSIBLE_VAULT"):
            monkeypatch.delenv(k)
    if vault:
        monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(VAULT_PASSWORD))
        monkeypatch.setattr("ansible.constants.DEFAULT_VAULT_PASSWORD_FILE", str(VAULT_PASSWORD))
    inv = Inventory(source)
    groups = ansible_groups(source, env)
    for group, hosts in groups.items():
        assert set(inv.group_hosts(group)) == hosts, group
    assert set(inv.hostnames()) == groups["all"]
    expected = ansible_values(source, env)
    assert set(expected) == set(inv.hostnames())
    for name, values in expected.items():
        host = inv.host(name)
        seen = {k: host.vars.get(k, "UNDEF") for k in KEYS}
        # Ansible connects to the inventory name when ansible_host is not set; so does the CLI.
        seen["ansible_host"] = host.address
        if values["ansible_host"] == "UNDEF":
            values["ansible_host"] = name
        assert seen == values, name


def test_vault_value_is_unknown_without_its_password() -> None:
    # A process of its own: Ansible keeps vault secrets process-wide.
    code = (
        "from dsrprov.model.inventory import Inventory; import sys; "
        "rs1 = Inventory(sys.argv[1]).host('rs1'); "
        "print(repr(rs1.vars.get('ansible_user')), rs1.str_var('ansible_user', 'root'), rs1.address, rs1.vips)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(CORPUS / CASES["vault"])], capture_output=True, text=True, env=_env(False)
    )
    assert out.stdout.strip() == "None root 127.0.0.11 ['10.9.0.100']", out.stderr


def test_unsafe_is_never_rendered() -> None:
    inv = Inventory(CORPUS / CASES["unsafe"])
    assert inv.host("rs2").vars["ansible_user"] == "{{ not_rendered }}"
    assert inv.host("rs1").vars["ansible_user"] == "rs1-admin"
