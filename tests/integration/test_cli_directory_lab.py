"""enroll / unenroll on a *directory* inventory in the lab: the lab's
inventory split into hosts.yml, dc2.yml and group_vars/, as a team keeps it.
After each step the director's IPVS table holds exactly the real servers that
Ansible itself lists (and renders) for the VIP, and site.yml on the same
directory changes nothing.

Built from the current lab's inventory (DSRPROV_LAB_INVENTORY or the default),
so it runs on whichever lab is up."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

import dsrprov_lab as labmod
from dsrprov.model.inventory import Inventory
from tests.integration.test_cli_lab import copy_lab_inventory, ipvs_pool, run
from tests.support import run_playbook
from tests.unit.test_inventory_corpus import _env, ansible_groups, ansible_values

# In `make integration-extended`, not in `make test`: CI has 90 minutes on 2 cores.
pytestmark = [pytest.mark.lab, pytest.mark.extended]


def split_inventory(lab: labmod.Lab, dst: Path) -> tuple[Path, str, str]:
    """The lab's inventory as a directory: every real server but the first moves
    to dc2.yml. Returns it, the first real server and the first moved."""
    hosts = copy_lab_inventory(lab, dst, allow_empty=True)
    doc = yaml.safe_load(hosts.read_text())
    linux = doc["all"]["children"]["dsr_realservers"]["children"]["dsr_realservers_linux"]["hosts"]
    moved = {name: linux.pop(name) for name in list(linux)[1:]}
    hosts.write_text(yaml.safe_dump(doc, sort_keys=False))
    (dst / "dc2.yml").write_text(
        "# The second datacentre's real servers.\n"
        + yaml.safe_dump({"dsr_realservers_linux": {"hosts": moved}}, sort_keys=False)
    )
    return dst, next(iter(linux)), next(iter(moved))


def ansible_pool(src: Path, vip: str) -> set[str]:
    """The real servers Ansible gives the VIP: hosts of dsr_realservers_linux holding it in dsr_vips."""
    env = _env(False)
    members = ansible_groups(src, env).get("dsr_realservers_linux", set())
    values = ansible_values(src, env)
    return {
        str(values[h]["ansible_host"])
        for h in members
        if isinstance(values[h]["dsr_vips"], list) and vip in values[h]["dsr_vips"]
    }


def test_directory_inventory_enroll_then_unenroll_follow_ansible(lab: labmod.Lab, tmp_path: Path) -> None:
    src, first, second = split_inventory(lab, tmp_path)
    inv = Inventory(src)
    assert {first, second} <= set(inv.group_hosts("dsr_realservers_linux"))
    vip = next(s["vip"] for s in inv.services() if ipaddress.ip_address(s["vip"]).version == 4)
    ip = {h: str(inv.host(h).address) for h in (first, second)}
    # Start: the first enrolled with its inventory VIPs, the second not.
    out = run("unenroll", "-q", second, inventory=src)
    assert out.returncode == 0, out.stdout + out.stderr
    out = run("enroll", "-q", first, inventory=src)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ipvs_pool(lab, vip) == ansible_pool(src, vip) == {ip[first]}

    out = run("enroll", "-q", second, "--address", ip[second], "--vip", vip, inventory=src)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ipvs_pool(lab, vip) == ansible_pool(src, vip) == {ip[first], ip[second]}
    assert f"{second}:" in (src / "dc2.yml").read_text() and f"{second}:" not in (src / "hosts.yml").read_text()

    out = run("unenroll", "-q", first, inventory=src)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ipvs_pool(lab, vip) == ansible_pool(src, vip) == {ip[second]}

    again = run_playbook(inventory=src)
    assert again.returncode == 0, again.stdout[-3000:]
    changed = {h: r.changed for h, r in again.hosts.items() if r.changed}
    assert not changed, changed
    assert ipvs_pool(lab, vip) == {ip[second]}
