"""Role dsr_loadmaster_kemp through ansible-playbook site.yml, against the Kemp
API SIMULATOR (tests/kemp_simulator.py) in both of its firmware generations
at once: the role's wiring. What the module does with its arguments (create,
re-run, drain, absent, drift, L7 refusals, credentials and certificates,
legacy firmware, health checks, networks, adoption, empty services) is proved
in tests/unit/test_kemp_module.py, by its main() in this process against the
same simulators and, when DSRPROV_KEMP_HOST is set, a real LoadMaster; a
playbook run costs about 3 s of Ansible start-up, a module run milliseconds.

Here: the role's checks refuse bad settings before any request; the role
calls the module with the inventory's model (real servers, weights, health
checks, explicit checks, persistence) and with each LoadMaster's variables
(address, API key or user/password, fingerprint or CA file, drain time,
force parameter, adopt, state, ownership file next to the inventory);
check mode and --diff reach it; a re-run changes nothing; site.yml's first
play drains a leaving real server before the real servers change, the last
adds the joining one; no secret shows even with -vvv.

Backend ``simulators`` is two stand-in LoadMasters in one inventory: ``lm1``
runs the modern firmware (Layer, ForceL4 and ForceL7 reported), ``lm2`` the
legacy one (only ForceL7). One ansible-playbook run drives both. Each
assertion is made per LoadMaster: its recap and its error come from the
run's events for that host, and a line of --diff output must appear once per
LoadMaster."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.dsrprov.dsr.plugins.module_utils import kemp_api as kemp
from dsrprov.run.playbook import PlaybookRun
from tests.kemp_simulator import FIRMWARES, KempApiSimulator, SimPki, make_pki
from tests.support import ansible_env, run_playbook, venv_bin
from tests.unit.kemp_backends import Lm, check_view, rs_view, simulated


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def lms(pki: SimPki) -> Iterator[list[Lm]]:
    """The LoadMasters one run drives: lm1 (modern firmware), lm2 (legacy)."""
    sims = [KempApiSimulator(pki, firmware=f).start() for f in FIRMWARES]
    yield [simulated(f"lm{i + 1}", sim, pki) for i, sim in enumerate(sims)]
    for sim in sims:
        sim.stop()


def lm_host(lm: Lm, **lm_vars: Any) -> dict[str, Any]:
    """The inventory variables of a LoadMaster host (LM_VARS override its address, credentials and TLS)."""
    return {"ansible_host": lm.address, "dsr_loadmaster_kemp_drain_seconds": 1, **lm.auth, **lm.tls, **lm_vars}


def write_inventory(
    path: Path,
    lms: list[Lm],
    hosts: list[str],
    *,
    services: list[dict[str, Any]] | None = None,
    rs_vars: dict[str, dict[str, Any]] | None = None,
    loadmasters: dict[str, dict[str, Any]] | None = None,
    more_rs: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A throw-away inventory: real servers rs1, rs2 (never contacted: --limit dsr_loadmasters; RS_VARS:
    more variables by name) of which HOSTS are in the group, and one host per LoadMaster (LOADMASTERS: the
    LoadMaster hosts' variables by name, instead; MORE_RS: more real servers' variables by name)."""
    vip = lms[0].vip
    rs_hosts = {f"rs{i + 1}": {"ansible_host": a, "dsr_vips": [vip], **(rs_vars or {}).get(f"rs{i + 1}", {})}
                for i, a in enumerate(lms[0].rs)} | (more_rs or {})  # fmt: skip
    svcs = services or [{"name": "web", "vip": vip, "port": 80, "protocol": "tcp", "lb_algo": "rr"}]
    inv = {
        "all": {
            "vars": {"dsr_services": svcs},
            "children": {
                "dsr_realservers_linux": {"hosts": {h: v for h, v in rs_hosts.items() if h in hosts}},
                "dsr_loadmasters": {"hosts": loadmasters or {lm.name: lm_host(lm) for lm in lms}},
            },
        }
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "hosts.yml").write_text(yaml.safe_dump(inv, sort_keys=False))
    return path / "hosts.yml"


def play(inventory: Path, *args: str) -> PlaybookRun:
    """site.yml on the LoadMasters (the run's stdout holds its stderr too)."""
    return run_playbook("site.yml", "--limit", "dsr_loadmasters", *args, inventory=inventory)


def changed(run: PlaybookRun, lm: Lm | str) -> int:
    """How many tasks changed on this LoadMaster (its recap; it must have one)."""
    name = lm if isinstance(lm, str) else lm.name
    assert name in run.hosts and run.hosts[name].in_recap, run.stdout
    return run.hosts[name].changed


def changed_tasks(run: PlaybookRun, lm: Lm) -> list[str]:
    """The tasks that changed on this LoadMaster, by their names without the role's."""
    assert lm.name in run.hosts and run.hosts[lm.name].in_recap, run.stdout
    return [t.rpartition(" : ")[2] for t in run.hosts[lm.name].changed_tasks]


def failure(run: PlaybookRun, lm: Lm | str) -> str:
    """This LoadMaster's first failed task and its message ('' if none failed)."""
    name = lm if isinstance(lm, str) else lm.name
    host = run.hosts.get(name)
    assert host is not None and host.in_recap, run.stdout
    return host.error if host.failed or host.unreachable else ""


def once_each(run: PlaybookRun, line: str, lms: list[Lm]) -> bool:
    """A line of --diff output appears once per LoadMaster (the diff names no host)."""
    return run.stdout.count(line) == len(lms)


DRAIN = "Drain and delete the real servers that leave"
REGISTER = "Register the services at the LoadMaster"


def test_the_role_passes_the_inventory_to_the_module(lms: list[Lm], tmp_path: Path, pki: SimPki) -> None:
    """Check mode, a real run with --diff -vvv, a re-run, a real server swapped (drained by site.yml's
    first play, the new one added by the last), then dsr_state=absent: each LoadMaster's own
    variables and the inventory's model reach the module."""
    lm1, lm2 = lms
    vip = lm1.vip
    services = [
        {"name": "web", "vip": vip, "port": 80, "protocol": "tcp", "lb_algo": "rr", "persistence_timeout": 300,
         "health_check": {"type": "http", "path": "/healthz", "port": 8080}},
        {"name": "dns", "vip": vip, "port": 53, "protocol": "udp"},  # the model fills in a tcp check
    ]  # fmt: skip
    assert lm2.sim is not None
    loadmasters = {
        # API key and fingerprint; only ForceL7 sent; the administrator's Virtual Service at web is handed over.
        "lm1": lm_host(lm1, dsr_loadmaster_kemp_force_parameter="ForceL7", dsr_loadmaster_kemp_adopt=["web"]),
        # User and password (the v1 API, HTTP basic authentication) and a CA file.
        "lm2": lm_host(lm2, dsr_loadmaster_kemp_api_key="", dsr_loadmaster_kemp_user=lm2.sim.user,
                       dsr_loadmaster_kemp_password=lm2.sim.password, dsr_loadmaster_kemp_fingerprint="",
                       dsr_loadmaster_kemp_ca_file=str(pki.ca_file)),
    }  # fmt: skip
    rs_vars = {"rs1": {"dsr_weight": 3}}

    def inventory(hosts: list[str]) -> Path:
        return write_inventory(tmp_path, lms, hosts, services=services, rs_vars=rs_vars, loadmasters=loadmasters)

    lm1.client().add_vs(vip, 80, "tcp", nickname="shop")  # an administrator's, not dsrprov's
    before = {lm.name: lm.writes() for lm in lms}
    inv = inventory(["rs1"])

    run = play(inv, "--check", "--diff")
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed_tasks(run, lm) == [REGISTER], run.stdout
        assert lm.writes() == before[lm.name]
    assert lm2.vs() is None and lm1.vs() is not None
    assert once_each(run, f"+  real server {lm1.rs[0]}:80: Forward=route Weight=3 Enable=Y", lms), run.stdout

    sent = len(lm2.sim.requests)
    run = play(inv, "--diff", "-vvv")
    assert run.returncode == 0, run.stdout
    assert all(r.basic_auth for r in lm2.sim.requests[sent:]), lm2.sim.requests[sent:]  # the v1 API
    for lm in lms:
        assert changed_tasks(run, lm) == [REGISTER], run.stdout
        vs = lm.vs()
        assert vs is not None and kemp.force_l4(vs) and vs["NickName"] == "dsrprov-web", vs
        assert vs["Schedule"] == "rr" and rs_view(vs) == {lm.rs[0]: ("route", "3", "Y")}
        assert check_view(vs) == {"CheckType": "http", "CheckPort": "8080", "CheckUrl": "/healthz", "CheckCodes": ""}
        assert vs["Persist"] == "src" and vs["PersistTimeout"] == "300"
        dns = lm.vs(53, "udp")  # not in explicit_checks: the LoadMaster's UDP default, not the model's tcp
        assert dns is not None and dns["CheckType"] == "icmp", dns
        owned = json.loads((tmp_path / "dsrprov_kemp" / f"{lm.name}.json").read_text())
        assert owned["real_servers"] == {f"{vip}:80/tcp": [f"{lm.rs[0]}:80"], f"{vip}:53/udp": [f"{lm.rs[0]}:53"]}
        for secret in lm.secrets:
            assert secret not in run.stdout
        assert lm.sim is not None
        modvs = [p for c, p in lm.sim.log if c == "modvs"]
        assert modvs and all("forcel4" not in p for p in modvs), modvs  # lm1: ForceL7 only, as asked
    assert once_each(run, f"-virtual service dns ({vip}:53/udp): absent", lms), run.stdout
    assert once_each(run, f"+  real server {lm1.rs[0]}:80: Forward=route Weight=3 Enable=Y", lms), run.stdout
    assert run.stdout.count("CheckUseGet=1 CheckUrl=/healthz Persist=src PersistTimeout=300") >= len(lms)

    before = {lm.name: lm.writes() for lm in lms}
    run = play(inv)
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed(run, lm) == 0 and lm.writes() == before[lm.name]

    # rs1 leaves, rs2 joins: site.yml's first play drains and deletes rs1 (a drain time), the last adds rs2.
    start = {lm.name: len(lm.writes()) for lm in lms}
    t0 = time.monotonic()
    run = play(inventory(["rs2"]))
    assert run.returncode == 0, run.stdout
    # dsr_loadmaster_kemp_drain_seconds (1) reached the module: not the role's default of 30 s.
    assert 1 <= time.monotonic() - t0 < 30
    for lm in lms:
        assert changed_tasks(run, lm) == [DRAIN, REGISTER], run.stdout
        vs = lm.vs()
        assert vs is not None and rs_view(vs) == {lm.rs[1]: ("route", "1", "Y")}
        assert lm.writes()[start[lm.name] :] == ["modrs", "modrs", "delrs", "delrs", "addrs", "addrs"]

    run = play(inventory(["rs2"]), "-e", "dsr_state=absent")
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed_tasks(run, lm) == [REGISTER], run.stdout
        assert lm.vs() is None and lm.vs(53, "udp") is None
        assert lm.writes()[-6:] == ["modrs", "modrs", "delrs", "delrs", "delvs", "delvs"], lm.writes()


def test_bad_settings_refused_before_contact(lms: list[Lm], tmp_path: Path) -> None:
    """Each bad setting on a LoadMaster host of its own (its own dsr_services where the model is
    the bad part), all in one run with -vvv: none of them may send a request that gets past
    authentication, and a wrong key is never shown."""
    lm = lms[0]
    wrong = "not-the-key-5b1d"
    weighty = {"name": "web", "vip": "10.250.0.201", "port": 80, "protocol": "tcp"}
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "services": (
            {"dsr_loadmaster_kemp_services": ["nope"]},
            "names services that dsr_services does not have: nope",
        ),
        "creds": ({"dsr_loadmaster_kemp_api_key": ""}, "no credentials for LoadMaster {host}"),
        "fingerprint": ({"dsr_loadmaster_kemp_fingerprint": "12:34"}, "is not a SHA-256 fingerprint"),
        "key": ({"dsr_loadmaster_kemp_api_key": wrong}, "access denied (HTTP 401): wrong API key or user/password"),
        "algo": (
            {"dsr_services": [{"name": "web", "vip": lm.vip, "port": 80, "protocol": "tcp", "lb_algo": "mh"}]},
            "lb_algo 'mh' has no LoadMaster equivalent",
        ),
        # What the model allows and the LoadMaster would refuse: refused before any request.
        "weight": (
            {"dsr_services": [weighty]},
            "real server rs3 has dsr_weight 65531; the LoadMaster takes weights 1-65530",
        ),
        "persistence": (
            {"dsr_services": [{"name": "web", "vip": lm.vip, "port": 80, "protocol": "tcp",
                               "persistence_timeout": 604801}]},
            "persistence_timeout 604801 is longer than the LoadMaster's longest",
        ),
    }  # fmt: skip
    hosts = {f"{lm.name}-{case}": (lm, case) for lm in lms for case in cases}
    # rs3 holds only the "weight" case's VIP, with a weight the LoadMaster would refuse.
    rs3 = {"ansible_host": "10.250.0.13", "dsr_vips": [weighty["vip"]], "dsr_weight": 65531}
    loadmasters = {h: lm_host(lm, **cases[c][0]) for h, (lm, c) in hosts.items()}
    inv = write_inventory(tmp_path, lms, ["rs1", "rs3"], loadmasters=loadmasters, more_rs={"rs3": rs3})
    run = play(inv, "-vvv")
    assert run.returncode != 0
    assert wrong not in run.stdout
    for host, (_lm, case) in hosts.items():
        assert cases[case][1].format(host=host) in failure(run, host), (host, run.stdout)
    for lm in lms:
        assert lm.writes() == []
        if lm.sim:
            assert lm.sim.log == []


def test_module_documentation_renders_with_ansible_doc() -> None:
    """DOCUMENTATION, EXAMPLES and RETURN of dsr_kemp_services are valid YAML that ansible-doc renders."""
    env = {**ansible_env(), "ANSIBLE_COLLECTIONS_PATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.run(
        [venv_bin("ansible-doc"), "--json", "dsrprov.dsr.dsr_kemp_services"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["dsrprov.dsr.dsr_kemp_services"]
    assert doc["doc"]["options"]["services"]["required"] is True
    assert yaml.safe_load(doc["examples"])[0]["dsrprov.dsr.dsr_kemp_services"]["address"]
    assert set(doc["return"]) == {"actions", "services", "warnings_seen"}
