"""``dsr_kemp_services``' ``main()``, whole, in this process: the real
AnsibleModule (its argument checks, check mode, diff, no_log masking), the
real client and reconciler, over HTTPS to the Kemp API SIMULATOR
(tests/kemp_simulator.py) in each firmware generation (``modern``: Layer,
ForceL4 and ForceL7 reported; ``legacy``: only ForceL7) and, when
DSRPROV_KEMP_HOST is set, a real LoadMaster (backend ``real``; docs/kemp.md,
"Against a real LoadMaster").

The services come from the service model (``director_model``), as the role's
variables give them to the module; tests/unit/test_kemp_role.py proves that
the role really calls the module so (ansible-playbook site.yml: its
variables, check mode, --diff, idempotence, drain before the real servers
change). A module run here costs milliseconds where a playbook run costs 3 s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dsrprov.dsr.plugins.module_utils import kemp_api as kemp
from ansible_collections.dsrprov.dsr.plugins.modules import dsr_kemp_services as kemp_module
from ansible_collections.dsrprov.dsr.plugins.plugin_utils.service_model import (
    DEFAULT_REALSERVER_GROUPS,
    director_model,
)
from tests.kemp_simulator import FIRMWARES, KempApiSimulator, SimPki, make_pki
from tests.unit.kemp_backends import NO_REAL, REAL, Lm, check_view, clean_up, real_from_env, rs_view, simulated

BACKENDS = [*FIRMWARES, pytest.param("real", marks=pytest.mark.skipif(not REAL, reason=NO_REAL))]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    """Another CA and certificate: what an impostor would present."""
    return make_pki(tmp_path_factory.mktemp("other-pki"), "Impostor")


@pytest.fixture(params=BACKENDS)
def lm(request: pytest.FixtureRequest, pki: SimPki) -> Iterator[Lm]:
    """One LoadMaster: a simulator of one firmware generation, or the real one."""
    if request.param == "real":
        real = real_from_env()
        yield real
        clean_up(real)
        return
    sim = KempApiSimulator(pki, firmware=request.param).start()
    yield simulated("lm1", sim, pki)
    sim.stop()


def model(
    lm: Lm,
    hosts: list[str],
    *,
    rs: list[str] | None = None,
    service: dict[str, Any] | None = None,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """dsr_services' service web (SERVICE overrides) with real servers rs1.. (RS, else the LoadMaster's test
    addresses) of which HOSTS hold its VIP, through the service model as the role's variables do."""
    addresses = rs or lm.rs
    hostvars = {f"rs{i + 1}": {"ansible_host": a, "dsr_vips": [lm.vip]} for i, a in enumerate(addresses)}
    svc = {"name": "web", "vip": lm.vip, "port": 80, "protocol": "tcp", "lb_algo": "rr", **(service or {})}
    groups = {"dsr_realservers_linux": hosts}
    model: list[dict[str, Any]] = director_model([svc], groups, hostvars, DEFAULT_REALSERVER_GROUPS, allow_empty)
    # The role's _dsr_loadmaster_kemp_explicit_checks: the services whose health_check names a type.
    model[0]["_explicit"] = "type" in (svc.get("health_check") or {})
    return model


def owner_file(lm: Lm, tmp_path: Path) -> Path:
    """Where the role keeps this LoadMaster's ownership record (next to the inventory)."""
    return tmp_path / "dsrprov_kemp" / f"{lm.name}.json"


def run(
    lm: Lm,
    services: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    *,
    check: bool = False,
    **params: Any,
) -> dict[str, Any]:
    """main() once with the role's arguments (PARAMS override them); its JSON result, failed or not."""
    explicit = [s["name"] for s in services if s.get("_explicit")]
    args = {
        **lm.module_args(),
        "services": [{k: v for k, v in s.items() if k != "_explicit"} for s in services],
        "state": "present",
        "drain_seconds": 0,
        "ownership_file": str(owner_file(lm, tmp_path)),
        "explicit_checks": explicit,
        "_ansible_check_mode": check,
        "_ansible_diff": True,
        "_ansible_no_log": True,  # no invocation line in this machine's journal
        **params,
    }
    capsys.readouterr()
    with patch_module_args(args), pytest.raises(SystemExit):
        kemp_module.main()  # type: ignore[no-untyped-call]  # the module is not annotated (Python 3.8 hosts)
    out = capsys.readouterr().out
    result: dict[str, Any] = json.loads(out)
    result["_text"] = out
    return result


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("failed"), result.get("msg")
    return result


def failure(result: dict[str, Any]) -> str:
    assert result.get("failed"), result
    return str(result["msg"])


def test_create_then_rerun_changes_nothing(lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svcs = model(lm, ["rs1"])
    result = ok(run(lm, svcs, capsys, tmp_path))
    assert result["changed"] is True
    vs = lm.vs()
    assert vs is not None and kemp.force_l4(vs), vs
    if "Layer" in vs:  # the firmware's own word, where it reports it
        assert vs["Layer"] == "4", vs
    assert vs["Enable"] == "Y" and vs["Schedule"] == "rr" and vs["NickName"] == "dsrprov-web"
    # The real servers it registered, recorded in the ownership file (docs/kemp.md, "Ownership").
    owned = json.loads(owner_file(lm, tmp_path).read_text())
    assert owned["real_servers"] == {f"{lm.vip}:80/tcp": [f"{lm.rs[0]}:80"]}
    # No health_check type in the inventory: TCP on the service port (not the LoadMaster's HTTP default).
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
    # The diff shows the settings that matter, before and after.
    assert result["diff"]["before"] == f"virtual service web ({lm.vip}:80/tcp): absent\n"
    assert f"  real server {lm.rs[0]}:80: Forward=route Weight=1 Enable=Y" in result["diff"]["after"].splitlines()
    before = lm.writes()
    result = ok(run(lm, svcs, capsys, tmp_path))
    assert result["changed"] is False and result["actions"] == []
    assert lm.writes() == before


def test_check_mode_reads_and_writes_nothing(lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = ok(run(lm, model(lm, ["rs1", "rs2"]), capsys, tmp_path, check=True))
    assert result["changed"] is True and result["actions"]
    assert lm.vs() is None
    assert lm.writes() == []
    assert not owner_file(lm, tmp_path).exists()
    assert f"  real server {lm.rs[1]}:80: Forward=route Weight=1 Enable=Y" in result["diff"]["after"].splitlines()


def test_second_server_added_then_one_drained_and_removed(
    lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(run(lm, model(lm, ["rs1"]), capsys, tmp_path))
    start = len(lm.writes())
    result = ok(run(lm, model(lm, ["rs1", "rs2"]), capsys, tmp_path))
    assert result["changed"] is True
    vs = lm.vs()
    assert vs is not None
    assert rs_view(vs) == {lm.rs[0]: ("route", "1", "Y"), lm.rs[1]: ("route", "1", "Y")}
    if lm.sim:
        assert lm.writes()[start:] == ["addrs"]
    # rs1 leaves the inventory: drained (disabled) first, deleted a drain time later.
    start = len(lm.writes())
    t0 = time.monotonic()
    result = ok(run(lm, model(lm, ["rs2"]), capsys, tmp_path, drain_seconds=1))
    assert time.monotonic() - t0 >= 1
    assert result["changed"] is True
    vs = lm.vs()
    assert vs is not None and rs_view(vs) == {lm.rs[1]: ("route", "1", "Y")}
    if lm.sim:
        log = [(c, p) for c, p in lm.sim.log if c in ("modrs", "delrs")][-2:]
        assert [c for c, _ in log] == ["modrs", "delrs"] and log[0][1]["enable"] == "N", log
        assert log[0][1]["rs"] == log[1][1]["rs"] == lm.rs[0]
        assert lm.writes()[start:] == ["modrs", "delrs"]
    assert ok(run(lm, model(lm, ["rs2"]), capsys, tmp_path))["changed"] is False


def test_absent_drains_and_removes_everything(lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svcs = model(lm, ["rs1", "rs2"])
    ok(run(lm, svcs, capsys, tmp_path))
    result = ok(run(lm, svcs, capsys, tmp_path, state="absent", check=True))
    assert result["changed"] is True and lm.vs() is not None
    result = ok(run(lm, svcs, capsys, tmp_path, state="absent"))
    assert result["changed"] is True
    assert lm.vs() is None
    if lm.sim:
        assert lm.writes()[-5:] == ["modrs", "modrs", "delrs", "delrs", "delvs"]
    assert json.loads(owner_file(lm, tmp_path).read_text())["real_servers"] == {}
    assert ok(run(lm, svcs, capsys, tmp_path, state="absent"))["changed"] is False


def test_weight_and_reenable_follow_the_inventory(lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svcs = model(lm, ["rs1"])
    ok(run(lm, svcs, capsys, tmp_path))
    # Drift behind our back.
    lm.client().mod_rs(lm.vip, 80, "tcp", lm.rs[0], 80, enable="N", weight=7, forward="nat")
    result = ok(run(lm, svcs, capsys, tmp_path))
    assert result["changed"] is True
    vs = lm.vs()
    assert vs is not None and rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}


def test_l7_setting_is_refused_with_a_clear_message(lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svcs = model(lm, ["rs1"])
    ok(run(lm, svcs, capsys, tmp_path))
    # Someone turned the service into a layer 7 one with cookie persistence.
    lm.client().mod_vs(lm.vip, 80, "tcp", ForceL7="Y", persist="cookie")
    before = lm.writes()
    why = failure(run(lm, svcs, capsys, tmp_path))
    assert f"virtual service web ({lm.vip}:80/tcp) on LoadMaster {lm.address} uses persistence 'cookie'" in why
    assert "which Direct Server Return cannot honour" in why
    assert lm.writes() == before  # refused before any change


def test_ssl_offload_and_content_rules_are_refused(lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if lm.sim is None:
        pytest.skip("needs a certificate and rules on the LoadMaster; the simulator sets them directly")
    svcs = model(lm, ["rs1"])
    ok(run(lm, svcs, capsys, tmp_path))
    vs = lm.sim.find(lm.vip, 80)
    assert vs is not None
    vs.settings.update(sslacceleration="Y", forcel7="Y", forcel4="N")
    vs.extra["RequestRules"] = ["to-app2"]
    before = lm.writes()
    why = failure(run(lm, svcs, capsys, tmp_path, check=True))
    assert "SSL acceleration (offload) (SSLAcceleration=Y)" in why and "content rules on requests" in why, why
    assert lm.writes() == before


def test_wrong_credentials_refused_and_never_shown(lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The result (what ansible-playbook -vvv prints: msg, invocation, diff) never holds a secret,
    wrong or right. tests/unit/test_kemp_role.py runs the role with -vvv for the same."""
    wrong = "not-the-key-5b1d"
    args = {"api_key": wrong, "user": None, "password": None} if "api_key" in lm.module_args() else {"password": wrong}
    result = run(lm, model(lm, ["rs1"]), capsys, tmp_path, **args)
    assert "access denied (HTTP 401): wrong API key or user/password" in failure(result)
    assert wrong not in result["_text"]
    assert lm.vs() is None
    result = ok(run(lm, model(lm, ["rs1"]), capsys, tmp_path))
    assert result["invocation"]["module_args"]["services"], result  # the invocation is there, masked
    for secret in lm.secrets:
        assert secret not in result["_text"]
    if lm.sim:
        # The key went in a JSON body only, never in a request line or a header.
        for raw in lm.sim.received:
            line, _, rest = raw.partition("\n")
            headers, _, _body = rest.rpartition("\n")
            assert line.startswith("POST /accessv2 ") and wrong not in line and lm.sim.api_key not in line, line
            assert lm.sim.api_key not in headers and wrong not in headers


@pytest.mark.parametrize(
    ("trust", "reason"),
    [
        ("other-fingerprint", "certificate fingerprint mismatch"),
        ("other-ca", "certificate not trusted"),
        ("system", "certificate not trusted"),
    ],
)
def test_unknown_certificate_refused(
    lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str], other_pki: SimPki, trust: str, reason: str
) -> None:
    if lm.sim is None:
        pytest.skip("the impostor's certificate is the simulator's other PKI")
    tls = {
        "other-fingerprint": {"fingerprint": other_pki.fingerprint},
        "other-ca": {"ca_file": str(other_pki.ca_file), "fingerprint": None},
        "system": {"fingerprint": None},  # the system trust store
    }[trust]
    assert reason in failure(run(lm, model(lm, ["rs1"]), capsys, tmp_path, **tls))
    assert lm.sim.log == []  # nothing, not even a read, reached the server with the wrong certificate
    assert lm.vs() is None


def test_ca_file_and_basic_auth(lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str], pki: SimPki) -> None:
    if lm.sim is None:
        pytest.skip("the real LoadMaster runs use the credentials and TLS settings from the environment")
    login = {"api_key": None, "user": lm.sim.user, "password": lm.sim.password}
    result = ok(run(lm, model(lm, ["rs1"]), capsys, tmp_path, ca_file=str(pki.ca_file), fingerprint=None, **login))
    assert result["changed"] is True and lm.writes() == ["addvs", "modvs", "addrs"]
    assert lm.sim.password not in result["_text"]
    assert all(r.basic_auth for r in lm.sim.requests), lm.sim.requests  # the v1 API, HTTP basic authentication


def test_legacy_firmware_refuses_forcel4_and_the_new_service_is_deleted(
    lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asking legacy firmware for ForceL4 fails with the API's own answer, before any real server
    is added, and the Virtual Service the run created is deleted again. (That auto-detection sets
    ForceL7=N on it: test_create_then_rerun_changes_nothing[legacy].)"""
    if not lm.legacy:
        pytest.skip("needs the legacy-firmware simulator")
    assert lm.sim is not None
    why = failure(run(lm, model(lm, ["rs1"]), capsys, tmp_path, force_parameter="ForceL4"))
    assert "modvs failed (400): Unknown parameter: forcel4" in why, why
    assert "the new virtual service was deleted again" in why, why
    assert lm.sim.commands() == ["addvs", "modvs", "delvs"] and lm.sim.vs == []


def test_bad_settings_refused_before_contact(lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The module's own checks, whatever calls it (the role checks these before it too:
    tests/unit/test_kemp_role.py): none of them may send a request."""
    svcs = model(lm, ["rs1"])
    cases: list[tuple[dict[str, Any], str]] = [
        ({"api_key": None, "user": None, "password": None}, "no LoadMaster credentials"),
        ({"fingerprint": "12:34"}, "is not a SHA-256 fingerprint"),
        ({"ca_file": str(tmp_path / "nope.pem")}, f"cannot read the CA file {tmp_path / 'nope.pem'}"),
        ({"drain_seconds": -1}, "drain_seconds must not be negative"),
        ({"lb_algo": "mh"}, "lb_algo 'mh' has no LoadMaster equivalent"),
        ({"real_servers": [{"name": "rs3", "address": "10.250.0.13", "weight": 65531}]},
         "real server rs3 has dsr_weight 65531; the LoadMaster takes weights 1-65530"),
        ({"persistence_timeout": 604801}, "persistence_timeout 604801 is longer than the LoadMaster's longest"),
    ]  # fmt: skip
    module_options = {"api_key", "user", "password", "fingerprint", "ca_file", "drain_seconds"}
    for change, reason in cases:
        if change.keys() <= module_options:
            result = run(lm, svcs, capsys, tmp_path, **change)
        else:  # a change to the service itself
            result = run(lm, [{**svcs[0], **change}], capsys, tmp_path)
        assert reason in failure(result), change
    assert lm.writes() == []
    if lm.sim:
        assert lm.sim.log == []


def test_health_check_and_persistence_follow_the_service_model(
    lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The LoadMaster checks each real server the way the directors do, and keeps
    source-IP persistence exactly when the service has a persistence_timeout."""
    http = {"health_check": {"type": "http", "path": "/healthz", "port": 8080}, "persistence_timeout": 300}
    svcs = model(lm, ["rs1"], service=http)
    result = ok(run(lm, svcs, capsys, tmp_path))
    assert result["changed"] is True
    vs = lm.vs()
    assert vs is not None and kemp.force_l4(vs)
    assert check_view(vs) == {"CheckType": "http", "CheckPort": "8080", "CheckUrl": "/healthz", "CheckCodes": ""}
    assert vs["Persist"] == "src" and vs["PersistTimeout"] == "300"
    line = "CheckType=http CheckPort=8080 CheckUseGet=1 CheckUrl=/healthz Persist=src PersistTimeout=300"
    assert line in result["diff"]["after"], result["diff"]
    assert ok(run(lm, svcs, capsys, tmp_path))["changed"] is False
    # The model changes: a TCP check on the service port, no persistence.
    result = ok(run(lm, model(lm, ["rs1"], service={"health_check": {"type": "tcp"}}), capsys, tmp_path))
    assert result["changed"] is True
    vs = lm.vs()
    assert vs is not None and check_view(vs)["CheckType"] == "tcp" and check_view(vs)["CheckPort"] == "80"
    assert str(vs.get("Persist") or "none") == "none"
    if lm.sim:
        assert lm.writes() == ["addvs", "modvs", "addrs", "modvs"]


def test_real_server_off_the_loadmaster_networks_refused(
    lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Direct return only rewrites the MAC address: a real server on no LoadMaster
    subnet (here TEST-NET-2) is refused after the reads, before any change."""
    why = failure(run(lm, model(lm, ["rs1"], rs=["198.51.100.77"]), capsys, tmp_path))
    assert "real server rs1 (198.51.100.77) is on no network of LoadMaster" in why
    assert lm.vs() is None and lm.writes() == []


def test_udp_service_without_a_check_gets_no_tcp_check(
    lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service model fills in a tcp check; on the LoadMaster a udp service without one gets the
    LoadMaster's own UDP default (layer 3, ICMP), never a TCP check of a UDP-only daemon."""
    if lm.sim is None:
        pytest.skip("the real LoadMaster runs use port 80/tcp only")
    svcs = model(lm, ["rs1"], service={"protocol": "udp", "port": 53})
    assert svcs[0]["health_check"]["type"] == "tcp"  # what the model filled in
    ok(run(lm, svcs, capsys, tmp_path))
    vs = lm.vs(53, "udp")
    assert vs is not None and vs["CheckType"] == "icmp", vs
    assert all(p.get("checktype") != "tcp" for c, p in lm.sim.log if c in ("addvs", "modvs"))


def test_a_preexisting_virtual_service_is_refused_until_adopted(
    lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = lm.client()
    client.add_vs(lm.vip, 80, "tcp", nickname="shop")  # an administrator's, not dsrprov's
    client.mod_vs(lm.vip, 80, "tcp", forcel7="N")
    before = lm.writes()
    why = failure(run(lm, model(lm, ["rs1"]), capsys, tmp_path))
    assert "was not created by dsrprov" in why and "dsr_loadmaster_kemp_adopt: [web]" in why, why
    assert lm.writes() == before
    vs = lm.vs()
    assert vs is not None and vs["NickName"] == "shop" and kemp.real_servers(vs) == []
    ok(run(lm, model(lm, ["rs1"]), capsys, tmp_path, adopt=["web"]))
    vs = lm.vs()
    assert vs is not None and vs["NickName"] == "dsrprov-web" and rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}


def test_the_module_refuses_an_empty_service_without_allow_empty(
    lm: Lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The module's own guard, whatever calls it: an empty list would drain every real server."""
    ok(run(lm, model(lm, ["rs1"]), capsys, tmp_path))
    empty = [{"name": "web", "vip": lm.vip, "port": 80, "protocol": "tcp", "real_servers": []}]
    why = failure(run(lm, empty, capsys, tmp_path))
    assert "no real server holds its VIP; refused" in why and "allow_empty" in why, why
    vs = lm.vs()
    assert vs is not None and rs_view(vs) == {lm.rs[0]: ("route", "1", "Y")}
