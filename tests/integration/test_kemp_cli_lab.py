"""dsrprov enroll/status/unenroll --loadmaster against the lab's real servers
and the Kemp API SIMULATOR (tests/kemp_simulator.py, modern firmware) standing
in for the LoadMaster: the real server is configured and verified for real,
then registered (a Virtual Service forced to layer 4 with the service's health
check, then a "route" real server); unenroll drains and removes it at the
LoadMaster before the host is unconfigured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import dsrprov_lab as labmod
from ansible_collections.dsrprov.dsr.plugins.module_utils import kemp_api as kemp
from tests.kemp_simulator import KempApiSimulator, make_pki

pytestmark = pytest.mark.lab

DSRPROV = str(Path(sys.executable).parent / "dsrprov")
VIP = "10.250.0.200"


def run(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DSRPROV_KEMP_", "DSRPROV_SSH", "DSRPROV_WINRM"))}
    env.pop("DSRPROV_INVENTORY", None)
    cmd = [DSRPROV, args[0], "-i", str(inventory), *args[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=600)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KempApiSimulator]:
    s = KempApiSimulator(make_pki(tmp_path_factory.mktemp("pki"))).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def inv(lab: labmod.Lab, sim: KempApiSimulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the lab's inventory with lm1 (the simulator) in dsr_loadmasters and no real server left."""
    src = lab.state_dir.parent
    dst = tmp_path_factory.mktemp("inventory")
    doc = yaml.safe_load((src / "hosts.yml").read_text())
    doc["all"]["children"]["dsr_loadmasters"] = {
        "hosts": {
            "lm1": {
                "ansible_host": sim.address,
                "dsr_loadmaster_kemp_api_key": sim.api_key,
                "dsr_loadmaster_kemp_fingerprint": sim.pki.fingerprint,
                "dsr_loadmaster_kemp_drain_seconds": 1,
            }
        }
    }
    (dst / "hosts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (dst / "group_vars").mkdir()
    for f in (src / "group_vars").iterdir():
        # Every service may be empty: the fixture takes every real server out.
        gv = yaml.safe_load(f.read_text())
        for svc in gv.get("dsr_services") or []:
            svc["allow_empty"] = True
        (dst / "group_vars" / f.name).write_text(yaml.safe_dump(gv, sort_keys=False))
    (dst / ".state").symlink_to(lab.state_dir)
    # Start from a clean lab (another test may have left VIPs), then keep rs1 known (its address)
    # but not configured, and rs2 out of the inventory: rs1 is the only real server.
    out = run(dst / "hosts.yml", "unenroll", "-q", "rs1", "rs2")
    assert out.returncode == 0, out.stdout + out.stderr
    del doc["all"]["children"]["dsr_realservers"]["children"]["dsr_realservers_linux"]["hosts"]["rs2"]
    (dst / "hosts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst / "hosts.yml"


def rs_of(sim: KempApiSimulator) -> dict[str, tuple[str, str, str]]:
    vs = sim.find(VIP, 80)
    assert vs is not None
    return {r.addr: (r.settings["forward"], r.settings["weight"], r.settings["enable"]) for r in vs.rs}


def test_enroll_registers_unenroll_drains_and_removes(lab: labmod.Lab, inv: Path, sim: KempApiSimulator) -> None:
    rs1 = lab.host("rs1").ip
    proc = run(inv, "enroll", "rs1", "--vip", VIP, "--port", "80", "--loadmaster", "lm1", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    host = json.loads(proc.stdout)["hosts"][0]
    checks = {c["check"]: c for c in host["checks"]}
    assert checks["registered at the LoadMaster"]["ok"] is True, checks
    vs = sim.find(VIP, 80)
    assert vs is not None and vs.settings["forcel4"] == "Y" and vs.settings["forcel7"] == "N"
    assert sim.layer(vs) == 4  # forced to layer 4 before rs1 was added with route
    # The lab service's health check (http, path /) is the LoadMaster's too, not its defaults.
    assert vs.settings["checktype"] == "http" and vs.settings["checkurl"] == "/"
    assert rs_of(sim) == {rs1: ("route", "1", "Y")}
    assert sim.find("fd42:d5a:0:1::200", 80) is None  # web6 has no real server: no Virtual Service

    # Again: nothing changes, at the host or at the LoadMaster.
    writes = sim.commands()
    again = run(inv, "enroll", "rs1", "--vip", VIP, "--port", "80", "--loadmaster", "lm1", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["hosts"][0]["action"] == "unchanged"
    assert sim.commands() == writes

    # status: what the LoadMaster says about rs1.
    status = run(inv, "status", "rs1")
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith("lm1"))
    assert row.split() == ["lm1", "web", f"{VIP}:80/tcp", "rs1", f"{rs1}:80", "route", "1", "Y", "Up"], row
    data = json.loads(run(inv, "status", "rs1", "--json").stdout)
    assert data["hosts"][0]["state"]["loadmaster"][0]["forward"] == "route"

    # Bad input changes nothing.
    bad = run(inv, "enroll", "rs1", "--vip", VIP, "--port", "81")
    assert bad.returncode == 2 and "no service 10.250.0.200 port 81 in dsr_services" in bad.stderr
    bad = run(inv, "enroll", "rs1", "--vip", VIP, "--loadmaster", "lm9")
    assert bad.returncode == 2 and "--loadmaster lm9: no such host in group dsr_loadmasters" in bad.stderr
    assert sim.commands() == writes

    # unenroll: drained (disabled, drain time) and deleted at the LoadMaster, then the host unconfigured.
    proc = run(inv, "unenroll", "rs1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    err = proc.stderr
    assert err.index("updating the directors: director, lm1") < err.index("running the roles on rs1"), err
    assert sim.commands()[len(writes) :] == ["modrs", "delrs"]
    drain = [p for c, p in sim.log if c == "modrs"][-1]
    assert drain["rs"] == rs1 and drain["enable"] == "N"
    assert rs_of(sim) == {}
    # Unenrolled: a second unenroll is refused and the LoadMaster sees no write.
    again = run(inv, "unenroll", "rs1")
    assert again.returncode == 2 and "not enrolled" in again.stderr
    assert sim.commands()[len(writes) :] == ["modrs", "delrs"]
    assert kemp.force_l4(kemp.Client(sim.address, api_key=sim.api_key, fingerprint=sim.pki.fingerprint)
                         .show_vs(VIP, 80, "tcp"))  # fmt: skip
