"""Role dsr_loadmaster_kemp through ansible-playbook site.yml, against the Kemp
API SIMULATOR (tests/kemp_simulator.py) in both of its firmware generations
at once and, when DSRPROV_KEMP_HOST is set, a real LoadMaster (backend
``real``; docs/kemp.md, "Against a real LoadMaster").

Backend ``simulators`` is two stand-in LoadMasters in one inventory: ``lm1``
runs the modern firmware (Layer, ForceL4 and ForceL7 reported), ``lm2`` the
legacy one (only ForceL7). One ansible-playbook run drives both, so every
test proves its behaviour on both firmware generations for the price of one
run (a run costs 2-3 s of Ansible start-up and module start; the LoadMaster
work is milliseconds). Each assertion is made per LoadMaster: its recap and
its error come from the run's events for that host, and a line of --diff
output must appear once per LoadMaster.

Every assertion reads the LoadMaster back through its API (dsrprov.kemp), so
the same tests run against a real one; what only the simulator can show
(the exact command sequence) is asserted for the simulator only."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.dsrprov.dsr.plugins.module_utils import kemp_api as kemp
from dsrprov.run.playbook import PlaybookRun
from tests.kemp_simulator import FIRMWARES, KempApiSimulator, SimPki, make_pki
from tests.support import ansible_env, run_playbook, venv_bin


@dataclass
class Lm:
    """One LoadMaster under test: its inventory name, where, how to log in, and which addresses to use."""

    name: str
    kind: str
    address: str
    auth: dict[str, str]  # inventory variables: api key or user/password
    tls: dict[str, str]  # inventory variables: ca_file and/or fingerprint
    vip: str
    rs: list[str]
    sim: KempApiSimulator | None = None
    secrets: list[str] = field(default_factory=list)

    def client(self) -> kemp.Client:
        return kemp.Client(
            self.address,
            api_key=self.auth.get("dsr_loadmaster_kemp_api_key"),
            user=self.auth.get("dsr_loadmaster_kemp_user"),
            password=self.auth.get("dsr_loadmaster_kemp_password"),
            ca_file=self.tls.get("dsr_loadmaster_kemp_ca_file"),
            fingerprint=self.tls.get("dsr_loadmaster_kemp_fingerprint"),
        )

    def vs(self, port: int = 80) -> dict[str, Any] | None:
        return self.client().find_vs(self.vip, port, "tcp")

    def writes(self) -> list[str]:
        """Write commands seen so far (simulator only; [] means unknown on a real LoadMaster)."""
        return self.sim.commands() if self.sim else []

    @property
    def legacy(self) -> bool:
        return self.sim is not None and self.sim.firmware == "legacy"


REAL = os.environ.get("DSRPROV_KEMP_HOST")
NO_REAL = (
    "no real LoadMaster: set DSRPROV_KEMP_HOST, DSRPROV_KEMP_API_KEY (or _USER/_PASSWORD), "
    "DSRPROV_KEMP_CA or DSRPROV_KEMP_FINGERPRINT, DSRPROV_KEMP_TEST_VIP, DSRPROV_KEMP_TEST_RS (docs/kemp.md)"
)
BACKENDS = [
    "simulators",
    pytest.param("real", marks=pytest.mark.skipif(not REAL, reason=NO_REAL)),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    """Another CA and certificate: what an impostor would present."""
    return make_pki(tmp_path_factory.mktemp("other-pki"), "Impostor")


def _simulated(name: str, sim: KempApiSimulator, pki: SimPki) -> Lm:
    return Lm(
        name,
        "simulator",
        sim.address,
        {"dsr_loadmaster_kemp_api_key": sim.api_key},
        {"dsr_loadmaster_kemp_fingerprint": pki.fingerprint},
        "10.250.0.200",
        ["10.250.0.11", "10.250.0.12"],
        sim,
        [sim.api_key, sim.password],
    )


@pytest.fixture(params=BACKENDS)
def lms(request: pytest.FixtureRequest, pki: SimPki) -> Iterator[list[Lm]]:
    """The LoadMasters one run drives: lm1 (modern firmware) and lm2 (legacy), or the real one."""
    if request.param == "simulators":
        sims = [KempApiSimulator(pki, firmware=f).start() for f in FIRMWARES]
        yield [_simulated(f"lm{i + 1}", sim, pki) for i, sim in enumerate(sims)]
        for sim in sims:
            sim.stop()
        return
    env = os.environ
    auth = (
        {"dsr_loadmaster_kemp_api_key": env["DSRPROV_KEMP_API_KEY"]}
        if env.get("DSRPROV_KEMP_API_KEY")
        else {"dsr_loadmaster_kemp_user": env.get("DSRPROV_KEMP_USER", "bal"),
              "dsr_loadmaster_kemp_password": env["DSRPROV_KEMP_PASSWORD"]}
    )  # fmt: skip
    tls = {}
    if env.get("DSRPROV_KEMP_CA"):
        tls["dsr_loadmaster_kemp_ca_file"] = env["DSRPROV_KEMP_CA"]
    if env.get("DSRPROV_KEMP_FINGERPRINT"):
        tls["dsr_loadmaster_kemp_fingerprint"] = env["DSRPROV_KEMP_FINGERPRINT"]
    rs = [a.strip() for a in env["DSRPROV_KEMP_TEST_RS"].split(",")]
    real = Lm("lm1", "real", env["DSRPROV_KEMP_HOST"], auth, tls, env["DSRPROV_KEMP_TEST_VIP"], rs[:2],
              secrets=[v for k, v in auth.items() if k != "dsr_loadmaster_kemp_user"])  # fmt: skip
    yield [real]
    # Leave nothing behind on the real LoadMaster.
    client = real.client()
    if client.find_vs(real.vip, 80, "tcp"):
        client.del_vs(real.vip, 80, "tcp")


def lm_host(lm: Lm, **lm_vars: Any) -> dict[str, Any]:
    """The inventory variables of a LoadMaster host (LM_VARS override its address, credentials and TLS)."""
    return {"ansible_host": lm.address, "dsr_loadmaster_kemp_drain_seconds": 1, **lm.auth, **lm.tls, **lm_vars}


def write_inventory(
    path: Path,
    lms: list[Lm],
    hosts: list[str],
    *,
    lm_vars: dict[str, Any] | None = None,
    lb_algo: str = "rr",
    service: dict[str, Any] | None = None,
    rs_vars: dict[str, Any] | None = None,
    rs: list[str] | None = None,
    loadmasters: dict[str, dict[str, Any]] | None = None,
    more_rs: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A throw-away inventory: real servers rs1.. (never contacted: --limit dsr_loadmasters) and
    one host per LoadMaster (LOADMASTERS: the LoadMaster hosts' variables by name, instead;
    MORE_RS: more real servers' variables by name)."""
    vip = lms[0].vip
    addresses = rs or lms[0].rs
    rs_hosts = {f"rs{i + 1}": {"ansible_host": a, "dsr_vips": [vip], **(rs_vars or {})}
                for i, a in enumerate(addresses)} | (more_rs or {})  # fmt: skip
    svc = {"name": "web", "vip": vip, "port": 80, "protocol": "tcp", "lb_algo": lb_algo, **(service or {})}
    inv = {
        "all": {
            "vars": {"dsr_services": [svc]},
            "children": {
                "dsr_realservers_linux": {"hosts": {h: v for h, v in rs_hosts.items() if h in hosts}},
                "dsr_loadmasters": {
                    "hosts": loadmasters or {lm.name: lm_host(lm, **(lm_vars or {})) for lm in lms},
                },
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


def failure(run: PlaybookRun, lm: Lm | str) -> str:
    """This LoadMaster's first failed task and its message ('' if none failed)."""
    name = lm if isinstance(lm, str) else lm.name
    host = run.hosts.get(name)
    assert host is not None and host.in_recap, run.stdout
    return host.error if host.failed or host.unreachable else ""


def once_each(run: PlaybookRun, line: str, lms: list[Lm]) -> bool:
    """A line of --diff output appears once per LoadMaster (the diff names no host)."""
    return run.stdout.count(line) == len(lms)


def rs_view(vs: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {r["Addr"]: (r["Forward"], r["Weight"], r["Enable"]) for r in kemp.real_servers(vs)}


def check_view(vs: dict[str, Any], port: int = 80) -> dict[str, str]:
    """The health-check settings as the LoadMaster reports them (CheckPort 0: the real server's port)."""
    out = {k: str(vs.get(k, "")) for k in ("CheckType", "CheckPort", "CheckUrl", "CheckCodes")}
    if out["CheckPort"] == "0":
        out["CheckPort"] = str(port)
    return out


def only_simulators(lms: list[Lm], why: str) -> None:
    if any(lm.sim is None for lm in lms):
        pytest.skip(why)


def test_create_then_rerun_changes_nothing(lms: list[Lm], tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lms, ["rs1"])
    run = play(inv, "--diff")
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed(run, lm) == 1
        vs = lm.vs()
        assert vs is not None and kemp.force_l4(vs), vs
        if "Layer" in vs:  # the firmware's own word, where it reports it
            assert vs["Layer"] == "4", vs
        assert vs["Enable"] == "Y" and vs["Schedule"] == "rr" and vs["NickName"] == "dsrprov-web"
        # The real servers it registered, recorded next to the inventory (docs/kemp.md, "Ownership").
        owned = json.loads((tmp_path / "dsrprov_kemp" / f"{lm.name}.json").read_text())
        assert owned["real_servers"] == {f"{lm.vip}:80/tcp": [f"{lm.rs[0]}:80"]}
        # No health_check in the model: its default, TCP on the service port (not the LoadMaster's HTTP default).
        checks = check_view(vs)
        assert (checks["CheckType"], checks["CheckPort"]) == ("tcp", "80"), vs
        assert str(vs.get("Persist") or "none") == "none"
        assert rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}
        if lm.sim:
            assert lm.writes() == ["addvs", "modvs", "addrs"]
        if lm.legacy:
            # Legacy firmware knows no ForceL4: layer 4 is ForceL7=N, set once.
            assert "ForceL4" not in vs and vs["ForceL7"] == "N", vs
            assert lm.sim and [p.get("forcel7") for c, p in lm.sim.log if c == "modvs"] == ["N"]
    # --diff shows the settings that matter, before and after.
    lm = lms[0]
    assert once_each(run, f"-virtual service web ({lm.vip}:80/tcp): absent", lms), run.stdout
    assert once_each(run, f"+  real server {lm.rs[0]}:80: Forward=route Weight=1 Enable=Y", lms), run.stdout
    before = {lm.name: lm.writes() for lm in lms}
    run = play(inv, "--diff")
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed(run, lm) == 0
        assert lm.writes() == before[lm.name]


def test_check_mode_reads_and_writes_nothing(lms: list[Lm], tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lms, ["rs1", "rs2"])
    run = play(inv, "--check", "--diff")
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed(run, lm) == 1
        assert lm.vs() is None
        assert lm.writes() == []
    assert once_each(run, f"+  real server {lms[0].rs[1]}:80: Forward=route Weight=1 Enable=Y", lms), run.stdout


def test_second_server_added_then_one_drained_and_removed(lms: list[Lm], tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lms, ["rs1"])
    assert play(inv).returncode == 0
    inv = write_inventory(tmp_path, lms, ["rs1", "rs2"])
    start = {lm.name: len(lm.writes()) for lm in lms}
    run = play(inv)
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed(run, lm) == 1
        vs = lm.vs()
        assert vs is not None
        assert rs_view(vs) == {lm.rs[0]: ("route", "1", "Y"), lm.rs[1]: ("route", "1", "Y")}
        if lm.sim:
            assert lm.writes()[start[lm.name] :] == ["addrs"]
    # rs1 leaves the inventory: drained (disabled) first, deleted a drain time later.
    inv = write_inventory(tmp_path, lms, ["rs2"])
    start = {lm.name: len(lm.writes()) for lm in lms}
    t0 = time.monotonic()
    run = play(inv, "--diff")
    assert run.returncode == 0, run.stdout
    assert time.monotonic() - t0 >= 1
    for lm in lms:
        assert changed(run, lm) == 1
        vs = lm.vs()
        assert vs is not None and rs_view(vs) == {lm.rs[1]: ("route", "1", "Y")}
        if lm.sim:
            log = [(c, p) for c, p in lm.sim.log if c in ("modrs", "delrs")][-2:]
            assert [c for c, _ in log] == ["modrs", "delrs"] and log[0][1]["enable"] == "N", log
            assert log[0][1]["rs"] == log[1][1]["rs"] == lm.rs[0]
            assert lm.writes()[start[lm.name] :] == ["modrs", "delrs"]
    run = play(inv)
    assert all(changed(run, lm) == 0 for lm in lms), run.stdout


def test_absent_drains_and_removes_everything(lms: list[Lm], tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lms, ["rs1", "rs2"])
    assert play(inv).returncode == 0
    run = play(inv, "-e", "dsr_state=absent", "--check")
    assert run.returncode == 0, run.stdout
    assert all(changed(run, lm) == 1 and lm.vs() is not None for lm in lms), run.stdout
    run = play(inv, "-e", "dsr_state=absent")
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed(run, lm) == 1
        assert lm.vs() is None
        if lm.sim:
            assert lm.writes()[-5:] == ["modrs", "modrs", "delrs", "delrs", "delvs"]
    run = play(inv, "-e", "dsr_state=absent")
    assert run.returncode == 0 and all(changed(run, lm) == 0 for lm in lms), run.stdout


def test_weight_and_reenable_follow_the_inventory(lms: list[Lm], tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lms, ["rs1"])
    assert play(inv).returncode == 0
    for lm in lms:  # drift behind our back
        lm.client().mod_rs(lm.vip, 80, "tcp", lm.rs[0], 80, enable="N", weight=7, forward="nat")
    run = play(inv, "--diff")
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed(run, lm) == 1
        vs = lm.vs()
        assert vs is not None and rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}


def test_l7_setting_is_refused_with_a_clear_message(lms: list[Lm], tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lms, ["rs1"])
    assert play(inv).returncode == 0
    # Someone turned the service into a layer 7 one with cookie persistence.
    for lm in lms:
        lm.client().mod_vs(lm.vip, 80, "tcp", ForceL7="Y", persist="cookie")
    before = {lm.name: lm.writes() for lm in lms}
    run = play(inv)
    assert run.returncode != 0
    for lm in lms:
        why = failure(run, lm)
        assert f"virtual service web ({lm.vip}:80/tcp) on LoadMaster {lm.address} uses persistence 'cookie'" in why
        assert "which Direct Server Return cannot honour" in why
        assert lm.writes() == before[lm.name]  # refused before any change


def test_ssl_offload_and_content_rules_are_refused(lms: list[Lm], tmp_path: Path) -> None:
    only_simulators(lms, "needs a certificate and rules on the LoadMaster; the simulator sets them directly")
    inv = write_inventory(tmp_path, lms, ["rs1"])
    assert play(inv).returncode == 0
    before = {}
    for lm in lms:
        assert lm.sim is not None
        vs = lm.sim.find(lm.vip, 80)
        assert vs is not None
        vs.settings.update(sslacceleration="Y", forcel7="Y", forcel4="N")
        vs.extra["RequestRules"] = ["to-app2"]
        before[lm.name] = lm.writes()
    run = play(inv, "--check")
    assert run.returncode != 0
    for lm in lms:
        why = failure(run, lm)
        assert "SSL acceleration (offload) (SSLAcceleration=Y)" in why and "content rules on requests" in why, why
        assert lm.writes() == before[lm.name]


def test_wrong_credentials_refused_and_never_shown(lms: list[Lm], tmp_path: Path) -> None:
    wrong = "not-the-key-5b1d"
    inv = write_inventory(tmp_path, lms, ["rs1"], lm_vars={"dsr_loadmaster_kemp_api_key": wrong})
    run = play(inv, "-vvv", "--diff")
    assert run.returncode != 0
    assert wrong not in run.stdout
    for lm in lms:
        assert "access denied (HTTP 401): wrong API key or user/password" in failure(run, lm)
        assert lm.vs() is None
    run = play(write_inventory(tmp_path, lms, ["rs1"]), "-vvv", "--diff")
    assert run.returncode == 0, run.stdout
    for lm in lms:
        for secret in lm.secrets:
            assert secret not in run.stdout
        if lm.sim:
            # The key went in a JSON body only, never in a request line or a header.
            for raw in lm.sim.received:
                line, _, rest = raw.partition("\n")
                headers, _, _body = rest.rpartition("\n")
                assert line.startswith("POST /accessv2 ") and wrong not in line and lm.sim.api_key not in line, line
                assert lm.sim.api_key not in headers and wrong not in headers


def test_unknown_certificate_refused(lms: list[Lm], tmp_path: Path, other_pki: SimPki) -> None:
    """Each wrong trust setting on a LoadMaster host of its own, all in one run."""
    cases = [
        ({"dsr_loadmaster_kemp_fingerprint": other_pki.fingerprint}, "certificate fingerprint mismatch"),
        ({"dsr_loadmaster_kemp_ca_file": str(other_pki.ca_file), "dsr_loadmaster_kemp_fingerprint": ""},
         "certificate not trusted"),
        ({"dsr_loadmaster_kemp_fingerprint": ""}, "certificate not trusted"),  # system trust store
    ]  # fmt: skip
    hosts = {f"{lm.name}-tls{i}": (lm, lm_vars, reason) for lm in lms for i, (lm_vars, reason) in enumerate(cases)}
    inv = write_inventory(tmp_path, lms, ["rs1"], loadmasters={h: lm_host(lm, **v) for h, (lm, v, _) in hosts.items()})
    run = play(inv)
    assert run.returncode != 0
    for host, (_lm, lm_vars, reason) in hosts.items():
        assert reason in failure(run, host), (lm_vars, run.stdout)
    for lm in lms:
        if lm.sim:
            assert lm.sim.log == []  # nothing, not even a read, reached the server with the wrong certificate
        assert lm.vs() is None


def test_ca_file_and_basic_auth(lms: list[Lm], tmp_path: Path, pki: SimPki) -> None:
    only_simulators(lms, "the real LoadMaster runs use the credentials and TLS settings from the environment")
    sims = [lm.sim for lm in lms if lm.sim]
    lm_vars = {
        "dsr_loadmaster_kemp_api_key": "",
        "dsr_loadmaster_kemp_user": sims[0].user,
        "dsr_loadmaster_kemp_password": sims[0].password,
        "dsr_loadmaster_kemp_ca_file": str(pki.ca_file),
        "dsr_loadmaster_kemp_fingerprint": "",
    }
    run = play(write_inventory(tmp_path, lms, ["rs1"], lm_vars=lm_vars), "-v")
    assert run.returncode == 0, run.stdout
    assert all(changed(run, lm) == 1 for lm in lms)
    assert all(sim.password not in run.stdout for sim in sims)


def test_legacy_firmware_refuses_forcel4_and_the_new_service_is_deleted(lms: list[Lm], tmp_path: Path) -> None:
    """Asking legacy firmware for ForceL4 fails with the API's own answer, before any real server
    is added, and the Virtual Service the run created is deleted again. (That auto-detection sets
    ForceL7=N on it: test_create_then_rerun_changes_nothing, lm2.)"""
    legacy = [lm for lm in lms if lm.legacy]
    if not legacy:
        pytest.skip("needs the legacy-firmware simulator")
    sim = legacy[0].sim
    assert sim is not None
    inv = write_inventory(tmp_path, legacy, ["rs1"], lm_vars={"dsr_loadmaster_kemp_force_parameter": "ForceL4"})
    run = play(inv)
    assert run.returncode != 0
    why = failure(run, legacy[0])
    assert "modvs failed (400): Unknown parameter: forcel4" in why, why
    assert "the new virtual service was deleted again" in why, why
    assert sim.commands() == ["addvs", "modvs", "delvs"] and sim.vs == []


def test_bad_settings_refused_before_contact(lms: list[Lm], tmp_path: Path) -> None:
    """Each bad setting on a LoadMaster host of its own (its own dsr_services where the model is
    the bad part), all in one run: none of them may send a request."""
    lm = lms[0]
    weighty = {"name": "web", "vip": "10.250.0.201", "port": 80, "protocol": "tcp"}
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "services": (
            {"dsr_loadmaster_kemp_services": ["nope"]},
            "names services that dsr_services does not have: nope",
        ),
        "creds": ({"dsr_loadmaster_kemp_api_key": ""}, "no credentials for LoadMaster {host}"),
        "fingerprint": ({"dsr_loadmaster_kemp_fingerprint": "12:34"}, "is not a SHA-256 fingerprint"),
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
    run = play(inv)
    assert run.returncode != 0
    for host, (_lm, case) in hosts.items():
        assert cases[case][1].format(host=host) in failure(run, host), (host, run.stdout)
    for lm in lms:
        assert lm.writes() == []
        if lm.sim:
            assert lm.sim.log == []


def test_health_check_and_persistence_follow_the_service_model(lms: list[Lm], tmp_path: Path) -> None:
    """The LoadMaster checks each real server the way the directors do, and keeps
    source-IP persistence exactly when the service has a persistence_timeout."""
    http = {"health_check": {"type": "http", "path": "/healthz", "port": 8080}, "persistence_timeout": 300}
    inv = write_inventory(tmp_path, lms, ["rs1"], service=http)
    run = play(inv, "--diff")
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed(run, lm) == 1
        vs = lm.vs()
        assert vs is not None and kemp.force_l4(vs)
        assert check_view(vs) == {"CheckType": "http", "CheckPort": "8080", "CheckUrl": "/healthz", "CheckCodes": ""}
        assert vs["Persist"] == "src" and vs["PersistTimeout"] == "300"
    line = "CheckType=http CheckPort=8080 CheckUseGet=1 CheckUrl=/healthz Persist=src PersistTimeout=300"
    assert run.stdout.count(line) >= len(lms), run.stdout
    run = play(inv)
    assert all(changed(run, lm) == 0 for lm in lms), run.stdout
    # The model changes: a TCP check on the service port, no persistence.
    inv = write_inventory(tmp_path, lms, ["rs1"], service={"health_check": {"type": "tcp"}})
    run = play(inv)
    assert run.returncode == 0, run.stdout
    for lm in lms:
        assert changed(run, lm) == 1
        vs = lm.vs()
        assert vs is not None and check_view(vs)["CheckType"] == "tcp" and check_view(vs)["CheckPort"] == "80"
        assert str(vs.get("Persist") or "none") == "none"
        if lm.sim:
            assert lm.writes() == ["addvs", "modvs", "addrs", "modvs"]


def test_real_server_off_the_loadmaster_networks_refused(lms: list[Lm], tmp_path: Path) -> None:
    """Direct return only rewrites the MAC address: a real server on no LoadMaster
    subnet (here TEST-NET-2) is refused after the reads, before any change."""
    run = play(write_inventory(tmp_path, lms, ["rs1"], rs=["198.51.100.77"]))
    assert run.returncode != 0
    for lm in lms:
        assert "real server rs1 (198.51.100.77) is on no network of LoadMaster" in failure(run, lm), run.stdout
        assert lm.vs() is None and lm.writes() == []


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


def test_udp_service_without_a_check_gets_no_tcp_check(lms: list[Lm], tmp_path: Path) -> None:
    """The service model fills in a tcp check; on the LoadMaster a udp service without one gets the
    LoadMaster's own UDP default (layer 3, ICMP), never a TCP check of a UDP-only daemon."""
    only_simulators(lms, "the real LoadMaster runs use port 80/tcp only")
    run = play(write_inventory(tmp_path, lms, ["rs1"], service={"protocol": "udp", "port": 53}))
    assert run.returncode == 0, run.stdout
    for lm in lms:
        vs = lm.client().find_vs(lm.vip, 53, "udp")
        assert vs is not None and vs["CheckType"] == "icmp", vs
        assert lm.sim and all(p.get("checktype") != "tcp" for c, p in lm.sim.log if c in ("addvs", "modvs"))


def test_a_preexisting_virtual_service_is_refused_until_adopted(lms: list[Lm], tmp_path: Path) -> None:
    before = {}
    for lm in lms:
        client = lm.client()
        client.add_vs(lm.vip, 80, "tcp", nickname="shop")  # an administrator's, not dsrprov's
        client.mod_vs(lm.vip, 80, "tcp", forcel7="N")
        before[lm.name] = lm.writes()
    run = play(write_inventory(tmp_path, lms, ["rs1"]))
    assert run.returncode != 0
    for lm in lms:
        why = failure(run, lm)
        assert "was not created by dsrprov" in why and "dsr_loadmaster_kemp_adopt: [web]" in why, why
        assert lm.writes() == before[lm.name]
        vs = lm.vs()
        assert vs is not None and vs["NickName"] == "shop" and kemp.real_servers(vs) == []
    run = play(write_inventory(tmp_path, lms, ["rs1"], lm_vars={"dsr_loadmaster_kemp_adopt": ["web"]}))
    assert run.returncode == 0, run.stdout
    for lm in lms:
        vs = lm.vs()
        assert vs is not None and vs["NickName"] == "dsrprov-web" and rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}


def test_the_module_refuses_an_empty_service_without_allow_empty(lms: list[Lm], tmp_path: Path) -> None:
    """The module's own guard, whatever calls it: an empty list would drain every real server."""
    assert play(write_inventory(tmp_path, lms, ["rs1"])).returncode == 0
    # Each LoadMaster's own address and credentials, from its inventory variables.
    settings = {k.replace("dsr_loadmaster_kemp_", ""): f"{{{{ {k} }}}}" for k in {**lms[0].auth, **lms[0].tls}}
    empty = {"name": "web", "vip": lms[0].vip, "port": 80, "protocol": "tcp", "real_servers": []}
    args = {"address": "{{ ansible_host }}", **settings, "drain_seconds": 0, "services": [empty],
            "ownership_file": "{{ inventory_dir }}/dsrprov_kemp/{{ inventory_hostname }}.json"}  # fmt: skip
    task = {"name": "Register", "dsrprov.dsr.dsr_kemp_services": args}
    book = tmp_path / "empty.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Empty",
                    "hosts": "dsr_loadmasters",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [task],
                    "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                }
            ]
        )
    )
    run = run_playbook(str(book), inventory=tmp_path / "hosts.yml")
    assert run.returncode != 0
    for lm in lms:
        why = failure(run, lm)
        assert "no real server holds its VIP; refused" in why and "allow_empty" in why, why
        vs = lm.vs()
        assert vs is not None and rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}
