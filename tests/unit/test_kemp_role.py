"""Role dsr_loadmaster_kemp through ansible-playbook site.yml, against the Kemp
API SIMULATOR (tests/kemp_simulator.py) in both of its firmware generations
(backend ``simulator``: Layer, ForceL4 and ForceL7 reported; ``simulator-legacy``:
only ForceL7) and, when DSRPROV_KEMP_HOST is set, a real LoadMaster
(backend ``real``; docs/kemp.md, "Against a real LoadMaster").

Every assertion reads the LoadMaster back through its API (dsrprov.kemp), so
the same tests run against all of them; what only the simulator can show
(the exact command sequence) is asserted for the simulator only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.dsrprov.dsr.plugins.module_utils import kemp_api as kemp
from tests.kemp_simulator import KempApiSimulator, SimPki, make_pki
from tests.support import ansible_env, run_playbook, venv_bin


@dataclass
class Lm:
    """One LoadMaster under test: where, how to log in, and which addresses to use."""

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


REAL = os.environ.get("DSRPROV_KEMP_HOST")
NO_REAL = (
    "no real LoadMaster: set DSRPROV_KEMP_HOST, DSRPROV_KEMP_API_KEY (or _USER/_PASSWORD), "
    "DSRPROV_KEMP_CA or DSRPROV_KEMP_FINGERPRINT, DSRPROV_KEMP_TEST_VIP, DSRPROV_KEMP_TEST_RS (docs/kemp.md)"
)
BACKENDS = [
    "simulator",
    "simulator-legacy",
    pytest.param("real", marks=pytest.mark.skipif(not REAL, reason=NO_REAL)),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    """Another CA and certificate: what an impostor would present."""
    return make_pki(tmp_path_factory.mktemp("other-pki"), "Impostor")


@pytest.fixture(params=BACKENDS)
def lm(request: pytest.FixtureRequest, pki: SimPki) -> Iterator[Lm]:
    if request.param.startswith("simulator"):
        sim = KempApiSimulator(pki, firmware="legacy" if request.param.endswith("legacy") else "modern").start()
        yield Lm(
            "simulator",
            sim.address,
            {"dsr_loadmaster_kemp_api_key": sim.api_key},
            {"dsr_loadmaster_kemp_fingerprint": pki.fingerprint},
            "10.250.0.200",
            ["10.250.0.11", "10.250.0.12"],
            sim,
            [sim.api_key, sim.password],
        )
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
    real = Lm("real", env["DSRPROV_KEMP_HOST"], auth, tls, env["DSRPROV_KEMP_TEST_VIP"], rs[:2],
              secrets=[v for k, v in auth.items() if k != "dsr_loadmaster_kemp_user"])  # fmt: skip
    yield real
    # Leave nothing behind on the real LoadMaster.
    client = real.client()
    if client.find_vs(real.vip, 80, "tcp"):
        client.del_vs(real.vip, 80, "tcp")


def write_inventory(
    path: Path,
    lm: Lm,
    hosts: list[str],
    *,
    lm_vars: dict[str, Any] | None = None,
    lb_algo: str = "rr",
    service: dict[str, Any] | None = None,
    rs_vars: dict[str, Any] | None = None,
) -> Path:
    """A throw-away inventory: real servers rs1.. (never contacted: --limit lm1) and lm1."""
    rs_hosts = {f"rs{i + 1}": {"ansible_host": lm.rs[i], "dsr_vips": [lm.vip], **(rs_vars or {})}
                for i in range(len(lm.rs))}  # fmt: skip
    svc = {"name": "web", "vip": lm.vip, "port": 80, "protocol": "tcp", "lb_algo": lb_algo, **(service or {})}
    inv = {
        "all": {
            "vars": {"dsr_services": [svc]},
            "children": {
                "dsr_realservers_linux": {"hosts": {h: v for h, v in rs_hosts.items() if h in hosts}},
                "dsr_loadmasters": {
                    "hosts": {
                        "lm1": {
                            "ansible_host": lm.address,
                            "dsr_loadmaster_kemp_drain_seconds": 1,
                            **lm.auth,
                            **lm.tls,
                            **(lm_vars or {}),
                        }
                    }
                },
            },
        }
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "hosts.yml").write_text(yaml.safe_dump(inv, sort_keys=False))
    return path / "hosts.yml"


def play(inventory: Path, *args: str) -> tuple[int, str]:
    proc = run_playbook("site.yml", "--limit", "lm1", *args, inventory=inventory)
    return proc.returncode, proc.stdout + proc.stderr


def recap(out: str) -> dict[str, int]:
    m = re.search(r"lm1\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    assert m, out
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()), strict=True))


def rs_view(vs: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {r["Addr"]: (r["Forward"], r["Weight"], r["Enable"]) for r in kemp.real_servers(vs)}


def check_view(vs: dict[str, Any], port: int = 80) -> dict[str, str]:
    """The health-check settings as the LoadMaster reports them (CheckPort 0: the real server's port)."""
    out = {k: str(vs.get(k, "")) for k in ("CheckType", "CheckPort", "CheckUrl", "CheckCodes")}
    if out["CheckPort"] == "0":
        out["CheckPort"] = str(port)
    return out


def test_create_then_rerun_changes_nothing(lm: Lm, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lm, ["rs1"])
    code, out = play(inv, "--diff")
    assert code == 0, out
    assert recap(out)["changed"] == 1
    vs = lm.vs()
    assert vs is not None and kemp.force_l4(vs), vs
    if "Layer" in vs:  # the firmware's own word, where it reports it
        assert vs["Layer"] == "4", vs
    assert vs["Enable"] == "Y" and vs["Schedule"] == "rr" and vs["NickName"] == "dsrprov-web"
    # The real servers it registered, recorded next to the inventory (docs/kemp.md, "Ownership").
    owned = json.loads((tmp_path / "dsrprov_kemp" / "lm1.json").read_text())
    assert owned["real_servers"] == {f"{lm.vip}:80/tcp": [f"{lm.rs[0]}:80"]}
    # No health_check in the model: its default, TCP on the service port (not the LoadMaster's HTTP default).
    checks = check_view(vs)
    assert (checks["CheckType"], checks["CheckPort"]) == ("tcp", "80"), vs
    assert str(vs.get("Persist") or "none") == "none"
    assert rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}
    # --diff shows the settings that matter, before and after.
    assert f"-virtual service web ({lm.vip}:80/tcp): absent" in out
    assert f"+  real server {lm.rs[0]}:80: Forward=route Weight=1 Enable=Y" in out
    if lm.sim:
        assert lm.writes() == ["addvs", "modvs", "addrs"]
    before = lm.writes()
    code, out = play(inv, "--diff")
    assert code == 0, out
    assert recap(out)["changed"] == 0
    assert lm.writes() == before


def test_check_mode_reads_and_writes_nothing(lm: Lm, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lm, ["rs1", "rs2"])
    code, out = play(inv, "--check", "--diff")
    assert code == 0, out
    assert recap(out)["changed"] == 1
    assert lm.vs() is None
    assert lm.writes() == []
    assert f"+  real server {lm.rs[1]}:80: Forward=route Weight=1 Enable=Y" in out


def test_second_server_added_then_one_drained_and_removed(lm: Lm, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lm, ["rs1"])
    assert play(inv)[0] == 0
    inv = write_inventory(tmp_path, lm, ["rs1", "rs2"])
    start = len(lm.writes())
    code, out = play(inv)
    assert code == 0 and recap(out)["changed"] == 1, out
    vs = lm.vs()
    assert vs is not None
    assert rs_view(vs) == {lm.rs[0]: ("route", "1", "Y"), lm.rs[1]: ("route", "1", "Y")}
    if lm.sim:
        assert lm.writes()[start:] == ["addrs"]
    # rs1 leaves the inventory: drained (disabled) first, deleted a drain time later.
    inv = write_inventory(tmp_path, lm, ["rs2"])
    start = len(lm.writes())
    t0 = time.monotonic()
    code, out = play(inv, "--diff")
    assert code == 0 and recap(out)["changed"] == 1, out
    assert time.monotonic() - t0 >= 1
    vs = lm.vs()
    assert vs is not None and rs_view(vs) == {lm.rs[1]: ("route", "1", "Y")}
    if lm.sim:
        log = [(c, p) for c, p in lm.sim.log if c in ("modrs", "delrs")][-2:]
        assert [c for c, _ in log] == ["modrs", "delrs"] and log[0][1]["enable"] == "N", log
        assert log[0][1]["rs"] == log[1][1]["rs"] == lm.rs[0]
        assert lm.writes()[start:] == ["modrs", "delrs"]
    assert play(inv)[1].count("changed=0") == 1


def test_absent_drains_and_removes_everything(lm: Lm, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lm, ["rs1", "rs2"])
    assert play(inv)[0] == 0
    code, out = play(inv, "-e", "dsr_state=absent", "--check")
    assert code == 0 and recap(out)["changed"] == 1 and lm.vs() is not None, out
    code, out = play(inv, "-e", "dsr_state=absent")
    assert code == 0 and recap(out)["changed"] == 1, out
    assert lm.vs() is None
    if lm.sim:
        assert lm.writes()[-5:] == ["modrs", "modrs", "delrs", "delrs", "delvs"]
    code, out = play(inv, "-e", "dsr_state=absent")
    assert code == 0 and recap(out)["changed"] == 0, out


def test_weight_and_reenable_follow_the_inventory(lm: Lm, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lm, ["rs1"])
    assert play(inv)[0] == 0
    client = lm.client()
    client.mod_rs(lm.vip, 80, "tcp", lm.rs[0], 80, enable="N", weight=7, forward="nat")  # drift behind our back
    code, out = play(inv, "--diff")
    assert code == 0 and recap(out)["changed"] == 1, out
    vs = lm.vs()
    assert vs is not None and rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}


def test_l7_setting_is_refused_with_a_clear_message(lm: Lm, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, lm, ["rs1"])
    assert play(inv)[0] == 0
    # Someone turned the service into a layer 7 one with cookie persistence.
    lm.client().mod_vs(lm.vip, 80, "tcp", ForceL7="Y", persist="cookie")
    before = lm.writes()
    code, out = play(inv)
    assert code != 0 and recap(out)["failed"] == 1
    assert f"virtual service web ({lm.vip}:80/tcp) on LoadMaster {lm.address} uses persistence 'cookie'" in out
    assert "which Direct Server Return cannot honour" in out
    assert lm.writes() == before  # refused before any change


def test_ssl_offload_and_content_rules_are_refused(lm: Lm, tmp_path: Path) -> None:
    if lm.sim is None:
        pytest.skip("needs a certificate and rules on the LoadMaster; the simulator sets them directly")
    inv = write_inventory(tmp_path, lm, ["rs1"])
    assert play(inv)[0] == 0
    vs = lm.sim.find(lm.vip, 80)
    assert vs is not None
    vs.settings.update(sslacceleration="Y", forcel7="Y", forcel4="N")
    vs.extra["RequestRules"] = ["to-app2"]
    before = lm.writes()
    code, out = play(inv, "--check")
    assert code != 0
    assert "SSL acceleration (offload) (SSLAcceleration=Y)" in out and "content rules on requests" in out
    assert lm.writes() == before


def test_wrong_credentials_refused_and_never_shown(lm: Lm, tmp_path: Path) -> None:
    wrong = "not-the-key-5b1d"
    inv = write_inventory(tmp_path, lm, ["rs1"], lm_vars={"dsr_loadmaster_kemp_api_key": wrong})
    code, out = play(inv, "-vvv", "--diff")
    assert code != 0
    assert "access denied (HTTP 401): wrong API key or user/password" in out
    assert wrong not in out
    assert lm.vs() is None
    code, out = play(write_inventory(tmp_path, lm, ["rs1"]), "-vvv", "--diff")
    assert code == 0, out
    for secret in lm.secrets:
        assert secret not in out
    if lm.sim:
        # The key went in a JSON body only, never in a request line or a header.
        for raw in lm.sim.received:
            line, _, rest = raw.partition("\n")
            headers, _, _body = rest.rpartition("\n")
            assert line.startswith("POST /accessv2 ") and wrong not in line and lm.sim.api_key not in line, line
            assert lm.sim.api_key not in headers and wrong not in headers


def test_unknown_certificate_refused(lm: Lm, tmp_path: Path, other_pki: SimPki) -> None:
    cases = [
        ({"dsr_loadmaster_kemp_fingerprint": other_pki.fingerprint}, "certificate fingerprint mismatch"),
        ({"dsr_loadmaster_kemp_ca_file": str(other_pki.ca_file), "dsr_loadmaster_kemp_fingerprint": ""},
         "certificate not trusted"),
        ({"dsr_loadmaster_kemp_fingerprint": ""}, "certificate not trusted"),  # system trust store
    ]  # fmt: skip
    for lm_vars, reason in cases:
        inv = write_inventory(tmp_path, lm, ["rs1"], lm_vars=lm_vars)
        code, out = play(inv)
        assert code != 0, lm_vars
        assert reason in out, out
    if lm.sim:
        assert lm.sim.log == []  # nothing, not even a read, reached the server with the wrong certificate
    assert lm.vs() is None


def test_ca_file_and_basic_auth(lm: Lm, tmp_path: Path, pki: SimPki) -> None:
    if lm.sim is None:
        pytest.skip("the real LoadMaster runs use the credentials and TLS settings from the environment")
    lm_vars = {
        "dsr_loadmaster_kemp_api_key": "",
        "dsr_loadmaster_kemp_user": lm.sim.user,
        "dsr_loadmaster_kemp_password": lm.sim.password,
        "dsr_loadmaster_kemp_ca_file": str(pki.ca_file),
        "dsr_loadmaster_kemp_fingerprint": "",
    }
    code, out = play(write_inventory(tmp_path, lm, ["rs1"], lm_vars=lm_vars), "-v")
    assert code == 0 and recap(out)["changed"] == 1, out
    assert lm.sim.password not in out


def test_legacy_firmware_forces_layer4_with_forcel7(pki: SimPki, tmp_path: Path) -> None:
    sim = KempApiSimulator(pki, firmware="legacy").start()
    try:
        lm = Lm("simulator", sim.address, {"dsr_loadmaster_kemp_api_key": sim.api_key},
                {"dsr_loadmaster_kemp_fingerprint": pki.fingerprint}, "10.250.0.200", ["10.250.0.11"], sim)  # fmt: skip
        inv = write_inventory(tmp_path, lm, ["rs1"])
        code, out = play(inv)
        assert code == 0, out
        vs = lm.vs()
        assert vs is not None and "ForceL4" not in vs and vs["ForceL7"] == "N"
        assert [p.get("forcel7") for c, p in sim.log if c == "modvs"] == ["N"]
        assert recap(play(inv)[1])["changed"] == 0
        # Asking this firmware for ForceL4 fails with the API's own answer, before any real server is added,
        # and the Virtual Service the run created is deleted again.
        sim.vs.clear()
        writes = len(sim.commands())
        inv = write_inventory(tmp_path, lm, ["rs1"], lm_vars={"dsr_loadmaster_kemp_force_parameter": "ForceL4"})
        code, out = play(inv)
        assert code != 0 and "modvs failed (400): Unknown parameter: forcel4" in out
        assert "the new virtual service was deleted again" in out
        assert sim.commands()[writes:] == ["addvs", "modvs", "delvs"] and sim.vs == []
    finally:
        sim.stop()


def test_bad_settings_refused_before_contact(lm: Lm, tmp_path: Path) -> None:
    cases = [
        ({"dsr_loadmaster_kemp_services": ["nope"]}, "names services that dsr_services does not have: nope"),
        ({"dsr_loadmaster_kemp_api_key": ""}, "no credentials for LoadMaster lm1"),
        ({"dsr_loadmaster_kemp_fingerprint": "12:34"}, "is not a SHA-256 fingerprint"),
    ]
    for lm_vars, reason in cases:
        code, out = play(write_inventory(tmp_path, lm, ["rs1"], lm_vars=lm_vars))
        assert code != 0 and reason in out, out
    code, out = play(write_inventory(tmp_path, lm, ["rs1"], lb_algo="mh"))
    assert code != 0 and "lb_algo 'mh' has no LoadMaster equivalent" in out, out
    # What the model allows and the LoadMaster would refuse: refused before any request.
    code, out = play(write_inventory(tmp_path, lm, ["rs1"], rs_vars={"dsr_weight": 65531}))
    assert code != 0 and "real server rs1 has dsr_weight 65531; the LoadMaster takes weights 1-65530" in out, out
    code, out = play(write_inventory(tmp_path, lm, ["rs1"], service={"persistence_timeout": 604801}))
    assert code != 0 and "persistence_timeout 604801 is longer than the LoadMaster's longest" in out, out
    assert lm.writes() == []
    if lm.sim:
        assert lm.sim.log == []


def test_health_check_and_persistence_follow_the_service_model(lm: Lm, tmp_path: Path) -> None:
    """The LoadMaster checks each real server the way the directors do, and keeps
    source-IP persistence exactly when the service has a persistence_timeout."""
    http = {"health_check": {"type": "http", "path": "/healthz", "port": 8080}, "persistence_timeout": 300}
    inv = write_inventory(tmp_path, lm, ["rs1"], service=http)
    code, out = play(inv, "--diff")
    assert code == 0 and recap(out)["changed"] == 1, out
    vs = lm.vs()
    assert vs is not None and kemp.force_l4(vs)
    assert check_view(vs) == {"CheckType": "http", "CheckPort": "8080", "CheckUrl": "/healthz", "CheckCodes": ""}
    assert vs["Persist"] == "src" and vs["PersistTimeout"] == "300"
    assert "CheckType=http CheckPort=8080 CheckUseGet=1 CheckUrl=/healthz Persist=src PersistTimeout=300" in out
    assert recap(play(inv)[1])["changed"] == 0
    # The model changes: a TCP check on the service port, no persistence.
    inv = write_inventory(tmp_path, lm, ["rs1"], service={"health_check": {"type": "tcp"}})
    code, out = play(inv)
    assert code == 0 and recap(out)["changed"] == 1, out
    vs = lm.vs()
    assert vs is not None and check_view(vs)["CheckType"] == "tcp" and check_view(vs)["CheckPort"] == "80"
    assert str(vs.get("Persist") or "none") == "none"
    if lm.sim:
        assert lm.writes() == ["addvs", "modvs", "addrs", "modvs"]


def test_real_server_off_the_loadmaster_networks_refused(lm: Lm, tmp_path: Path) -> None:
    """Direct return only rewrites the MAC address: a real server on no LoadMaster
    subnet (here TEST-NET-2) is refused after the reads, before any change."""
    off = Lm(lm.kind, lm.address, lm.auth, lm.tls, lm.vip, ["198.51.100.77"], lm.sim, lm.secrets)
    code, out = play(write_inventory(tmp_path, off, ["rs1"]))
    assert code != 0 and "real server rs1 (198.51.100.77) is on no network of LoadMaster" in out, out
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


def test_udp_service_without_a_check_gets_no_tcp_check(lm: Lm, tmp_path: Path) -> None:
    """The service model fills in a tcp check; on the LoadMaster a udp service without one gets the
    LoadMaster's own UDP default (layer 3, ICMP), never a TCP check of a UDP-only daemon."""
    if lm.sim is None:
        pytest.skip("the real LoadMaster runs use port 80/tcp only")
    inv = write_inventory(tmp_path, lm, ["rs1"], service={"protocol": "udp", "port": 53})
    code, out = play(inv)
    assert code == 0, out
    vs = lm.client().find_vs(lm.vip, 53, "udp")
    assert vs is not None and vs["CheckType"] == "icmp", vs
    assert all(p.get("checktype") != "tcp" for c, p in lm.sim.log if c in ("addvs", "modvs"))


def test_a_preexisting_virtual_service_is_refused_until_adopted(lm: Lm, tmp_path: Path) -> None:
    client = lm.client()
    client.add_vs(lm.vip, 80, "tcp", nickname="shop")  # an administrator's, not dsrprov's
    client.mod_vs(lm.vip, 80, "tcp", forcel7="N")
    before = lm.writes()
    code, out = play(write_inventory(tmp_path, lm, ["rs1"]))
    assert code != 0 and "was not created by dsrprov" in out and "dsr_loadmaster_kemp_adopt: [web]" in out, out
    assert lm.writes() == before
    vs = lm.vs()
    assert vs is not None and vs["NickName"] == "shop" and kemp.real_servers(vs) == []
    code, out = play(write_inventory(tmp_path, lm, ["rs1"], lm_vars={"dsr_loadmaster_kemp_adopt": ["web"]}))
    assert code == 0, out
    vs = lm.vs()
    assert vs is not None and vs["NickName"] == "dsrprov-web" and rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}


def test_the_module_refuses_an_empty_service_without_allow_empty(lm: Lm, tmp_path: Path) -> None:
    """The module's own guard, whatever calls it: an empty list would drain every real server."""
    assert play(write_inventory(tmp_path, lm, ["rs1"]))[0] == 0
    settings = {k.replace("dsr_loadmaster_kemp_", ""): v for k, v in {**lm.auth, **lm.tls}.items()}
    empty = {"name": "web", "vip": lm.vip, "port": 80, "protocol": "tcp", "real_servers": []}
    args = {"address": lm.address, **settings, "drain_seconds": 0, "services": [empty],
            "ownership_file": str(tmp_path / "dsrprov_kemp" / "lm1.json")}  # fmt: skip
    task = {"name": "Register", "dsrprov.dsr.dsr_kemp_services": args}
    book = tmp_path / "empty.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Empty",
                    "hosts": "lm1",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [task],
                    "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                }
            ]
        )
    )
    proc = run_playbook(str(book), "--limit", "lm1", inventory=tmp_path / "hosts.yml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "no real server holds its VIP; refused" in out and "allow_empty" in out, out
    vs = lm.vs()
    assert vs is not None and rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}
