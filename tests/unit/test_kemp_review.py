"""Issue 25, the second review of the Kemp LoadMaster support against Kemp's own
material: each point below against the Kemp API SIMULATOR (tests/kemp_simulator.py,
both firmware generations where it matters). No real LoadMaster is involved.

The helpers pass the reconciler's ownership file only where the reconciler
takes one, so that these tests also run against the code before the issue
(the negative control: they fail there for the behaviour, not for a name)."""

from __future__ import annotations

import inspect
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.dsrprov.dsr.plugins.module_utils import kemp_api as kemp
from dsrprov import loadmaster
from dsrprov.model.inventory import Inventory
from tests.kemp_simulator import KempApiSimulator, SimPki
from tests.unit.test_kemp_client import VIP, owner_file, pki, service, sim, start

__all__ = ["pki", "sim"]  # the fixtures, shared with test_kemp_client
ROOT = Path(__file__).resolve().parents[2]


def client(sim: KempApiSimulator, **kwargs: Any) -> kemp.Client:
    kwargs.setdefault("user", sim.user)
    kwargs.setdefault("password", sim.password)
    return kemp.Client(sim.address, fingerprint=sim.pki.fingerprint, **kwargs)


def rec(sim: KempApiSimulator, c: kemp.Client | None = None, **kwargs: Any) -> kemp.Reconciler:
    kwargs.setdefault("drain_seconds", 0)
    if "owner_file" in inspect.signature(kemp.Reconciler).parameters:
        kwargs.setdefault("owner_file", owner_file(sim))
    else:
        kwargs.pop("owner_file", None)
    return kemp.Reconciler(c or client(sim), **kwargs)


def by_hand(sim: KempApiSimulator, vip: str = VIP, nickname: str = "shop", rs: tuple[str, ...] = ()) -> None:
    """An administrator's own Virtual Service, made through the API as the WUI would."""
    c = client(sim)
    c.add_vs(vip, 80, "tcp", nickname=nickname)
    c.mod_vs(vip, 80, "tcp", forcel7="N")
    for addr in rs:
        c.add_rs(vip, 80, "tcp", addr, 80, forward="route")


# --------------------------------------------------------------------------
# 1. credentials never in a URL: basic auth by default, a key only in the v2 JSON body
# --------------------------------------------------------------------------


def test_basic_auth_is_the_default_and_no_url_carries_a_secret_on_the_simulator(sim: KempApiSimulator) -> None:
    """Given both, the client uses basic auth (v1, form body); nothing secret in any request line."""
    c = client(sim, api_key=sim.api_key)
    rec(sim, c).run([service("10.0.0.11")])
    assert sim.requests and all(r.basic_auth and r.query == [] for r in sim.requests)
    lines = [r.splitlines()[0] for r in sim.received]
    assert all(re.fullmatch(r"POST /access/[a-z]+ HTTP/1\.1", line) for line in lines), lines
    for raw in sim.received:
        assert sim.api_key not in raw and sim.password not in raw


def test_api_key_only_in_the_v2_json_body_on_the_simulator(sim: KempApiSimulator) -> None:
    """An API key alone: POST /accessv2, the key as "apikey" in the JSON body (Kemp's documented form),
    never in the request line nor a header."""
    c = client(sim, api_key=sim.api_key, user=None, password=None)
    rec(sim, c).run([service("10.0.0.11")])
    vs = sim.find(VIP, 80)
    assert vs is not None and [r.addr for r in vs.rs] == ["10.0.0.11"]
    assert sim.received
    for raw in sim.received:
        line, _, rest = raw.partition("\n")
        headers, _, body = rest.rpartition("\n")
        assert line == "POST /accessv2 HTTP/1.1", line
        assert sim.api_key not in line and sim.api_key not in headers
        assert json.loads(body)["apikey"] == sim.api_key
    assert all(not r.query and not r.basic_auth for r in sim.requests)


def test_secrets_never_in_exceptions_or_the_clis_json_output_on_the_simulator(
    sim: KempApiSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-0c1e77"
    failures = []
    for kwargs in ({"api_key": wrong, "user": None, "password": None}, {"user": "bal", "password": wrong}):
        with pytest.raises(kemp.KempAuthError) as denied:
            client(sim, **kwargs).list_vs()
        failures.append(str(denied.value))
    with pytest.raises(kemp.KempError) as refused:
        client(sim).show_vs(VIP, 80, "tcp")  # Unknown VS
    failures.append(str(refused.value))
    # The CLI's read (status --json, the read-back after enroll), right and wrong credentials.
    for key in (sim.api_key, wrong):
        inv = tmp_path / f"inv-{len(failures)}.yml"
        inv.write_text(yaml.safe_dump({"all": {
            "vars": {"dsr_services": [{"name": "web", "vip": VIP, "port": 80, "protocol": "tcp"}]},
            "children": {"dsr_loadmasters": {"hosts": {"lm1": {
                "ansible_host": sim.address, "dsr_loadmaster_kemp_api_key": key,
                "dsr_loadmaster_kemp_fingerprint": sim.pki.fingerprint}}}}}}))  # fmt: skip
        rows, errors = loadmaster.read(Inventory(inv), ["lm1"])
        failures.append(json.dumps({"rows": rows, "errors": errors}))
    address = sim.address
    sim.stop()
    with pytest.raises(kemp.KempError) as unreachable:
        kemp.Client(address, api_key=wrong, fingerprint=sim.pki.fingerprint, timeout=2).list_vs()
    failures.append(str(unreachable.value))
    failures += [caplog.text, repr(sim.log)]  # anything logged here, and what the simulator logs per command
    assert "access denied (HTTP 401)" in failures[0] and "access denied (HTTP 401)" in failures[1]
    for text in failures:
        for secret in (wrong, sim.api_key, sim.password):
            assert secret not in text, text
        assert "apikey" not in text


# --------------------------------------------------------------------------
# 2. health checks: a default per protocol, GET for HTTP, read back
# --------------------------------------------------------------------------


def test_udp_service_without_a_check_gets_the_loadmasters_udp_check_not_tcp(sim: KempApiSimulator) -> None:
    svc = service("10.0.0.11", protocol="udp", port=53)
    rec(sim).run([svc])
    vs = sim.find(VIP, 53, "udp")
    assert vs is not None and vs.settings["checktype"] == "icmp", vs.settings
    assert all(p.get("checktype") != "tcp" for c, p in sim.log if c in ("addvs", "modvs"))


def test_http_check_uses_get_and_is_read_back(pki: SimPki) -> None:
    svc = service("10.0.0.11", health_check={"type": "http", "path": "/healthz"})
    sim = start(pki)
    try:
        rec(sim).run([svc])
        vs = sim.find(VIP, 80)
        assert vs is not None and vs.settings["checktype"] == "http" and vs.settings["checkuseget"] == "1"
        assert rec(sim).run([svc]) is False  # read back as sent: nothing to change
    finally:
        sim.stop()
    # A firmware that drops checkuseget: the read-back says so, before any real server.
    sim = start(pki, ignore=("checkuseget",))
    try:
        with pytest.raises(kemp.KempError, match=r"reports CheckUseGet='0' after the change, expected '1'"):
            rec(sim).run([svc])
        assert "addrs" not in sim.commands()
    finally:
        sim.stop()


# --------------------------------------------------------------------------
# 3. networks: the real server on a LoadMaster subnet (required), the VIP a warning at most
# --------------------------------------------------------------------------


def test_vip_off_the_real_servers_subnet_is_only_a_warning(sim: KempApiSimulator) -> None:
    """A two-armed LoadMaster: VIP 10.0.0.200 on one interface, the real server 10.250.0.11 on another."""
    r = rec(sim)
    assert r.run([service("10.250.0.11")]) is True
    assert any("VIP 10.0.0.200 is not on the network of real server 10.250.0.11" in w for w in r.warnings)
    vs = sim.find(VIP, 80)
    assert vs is not None and [(x.addr, x.settings["forward"]) for x in vs.rs] == [("10.250.0.11", "route")]


def test_real_server_on_an_additional_address_is_on_a_loadmaster_subnet(pki: SimPki) -> None:
    sim = start(pki, additional={1: ["10.9.0.5/24"]})
    try:
        rec(sim).run([service("10.9.0.11")])
        vs = sim.find(VIP, 80)
        assert vs is not None and [x.addr for x in vs.rs] == ["10.9.0.11"]
        with pytest.raises(kemp.KempError, match=r"real server 10\.8\.0\.11 \(10\.8\.0\.11\) is on no network of"):
            rec(sim).run([service("10.8.0.11")])
    finally:
        sim.stop()


# --------------------------------------------------------------------------
# 4. layer 7 seen from the counters and flags firmware reports
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "value", "phrase"),
    [
        ("NRules", "1", "content switching rules (NRules=1)"),
        ("NRequestRules", "2", "content rules on requests (NRequestRules=2)"),
        ("NResponseRules", "1", "content rules on responses (NResponseRules=1)"),
        ("NMatchBodyRules", "1", "body modification rules (NMatchBodyRules=1)"),
        ("NPreProcessRules", "3", "pre-processing content rules (NPreProcessRules=3)"),
        ("SSLReverse", "Y", "reverse SSL"),
        ("InterceptMode", "1", "the web application firewall (InterceptMode=1)"),
        ("Rs/Nrules", "1", "content rules on real server 10.0.0.11:80 (Nrules=1)"),
    ],
)
def test_layer7_features_are_seen_from_counters_and_flags(
    sim: KempApiSimulator, element: str, value: str, phrase: str
) -> None:
    rec(sim).run([service("10.0.0.11")])
    vs = sim.find(VIP, 80)
    assert vs is not None
    if element == "Rs/Nrules":
        vs.rs[0].nrules = int(value)
    elif element.lower() in vs.settings:
        vs.settings[element.lower()] = value
    else:
        vs.extra[element] = value
    writes = sim.commands()
    with pytest.raises(kemp.KempError) as err:
        rec(sim).run([service("10.0.0.11")])
    assert phrase in str(err.value) and "which Direct Server Return cannot honour" in str(err.value)
    assert sim.commands() == writes


# --------------------------------------------------------------------------
# 5. ownership: change and purge only what dsrprov made or was handed
# --------------------------------------------------------------------------


def test_a_preexisting_virtual_service_is_refused_naming_adopt(sim: KempApiSimulator) -> None:
    by_hand(sim, rs=("10.0.0.50",))
    writes = sim.commands()
    for state in ("present", "absent"):
        with pytest.raises(kemp.KempError) as err:
            rec(sim).run([service("10.0.0.11")], state)
        text = str(err.value)
        assert "was not created by dsrprov" in text and "adopt: true" in text and "\n" not in text
    assert sim.commands() == writes
    vs = sim.find(VIP, 80)
    assert vs is not None and vs.settings["nickname"] == "shop" and [r.addr for r in vs.rs] == ["10.0.0.50"]


def test_adopt_hands_a_virtual_service_over_with_its_real_servers(sim: KempApiSimulator) -> None:
    by_hand(sim, rs=("10.0.0.50",))
    rec(sim).run([service("10.0.0.11", adopt=True)])
    vs = sim.find(VIP, 80)
    assert vs is not None and vs.settings["nickname"] == "dsrprov-web"
    assert [r.addr for r in vs.rs] == ["10.0.0.11"]  # the handed-over 10.0.0.50 was not in the inventory
    # Ours from now on, without adopt.
    assert rec(sim).run([service("10.0.0.11")]) is False


def test_purge_deletes_only_real_servers_dsrprov_registered(sim: KempApiSimulator) -> None:
    rec(sim).run([service("10.0.0.11")])
    client(sim).add_rs(VIP, 80, "tcp", "10.0.0.50", 80, forward="route")  # a backup, added by hand
    r = rec(sim)
    r.run([service("10.0.0.12")])
    vs = sim.find(VIP, 80)
    assert vs is not None and sorted(x.addr for x in vs.rs) == ["10.0.0.12", "10.0.0.50"]
    assert any("10.0.0.50:80 is not in the inventory and was not registered by dsrprov" in w for w in r.warnings)
    # state absent: dsrprov's real servers go, the Virtual Service stays for the one it did not register.
    r = rec(sim)
    r.run([service("10.0.0.12")], "absent")
    vs = sim.find(VIP, 80)
    assert vs is not None and [x.addr for x in vs.rs] == ["10.0.0.50"]
    assert any("kept: it holds real servers dsrprov did not register (10.0.0.50:80)" in w for w in r.warnings)


def test_ownership_is_kept_where_a_new_controller_finds_it(sim: KempApiSimulator, tmp_path: Path) -> None:
    """The Virtual Service's owner is on the LoadMaster (NickName); its real servers' in the ownership
    file, which moves with the inventory: a copy of it is all another controller needs."""
    rec(sim).run([service("10.0.0.11")])
    moved = tmp_path / "other-controller" / "lm1.json"
    moved.parent.mkdir()
    moved.write_text(Path(owner_file(sim)).read_text())
    assert json.loads(moved.read_text())["real_servers"] == {"10.0.0.200:80/tcp": ["10.0.0.11:80"]}
    rec(sim, owner_file=str(moved)).run([service("10.0.0.12")])
    vs = sim.find(VIP, 80)
    assert vs is not None and [x.addr for x in vs.rs] == ["10.0.0.12"]
    assert json.loads(moved.read_text())["real_servers"] == {"10.0.0.200:80/tcp": ["10.0.0.12:80"]}
    # Without the record, nothing it cannot prove its own is deleted.
    r = rec(sim, owner_file=str(tmp_path / "missing.json"))
    r.run([service("10.0.0.13")])
    vs = sim.find(VIP, 80)
    assert vs is not None and sorted(x.addr for x in vs.rs) == ["10.0.0.12", "10.0.0.13"]


def test_a_service_with_no_real_server_is_refused_without_allow_empty(sim: KempApiSimulator) -> None:
    rec(sim).run([service("10.0.0.11", "10.0.0.12")])
    writes = sim.commands()
    for add in (True, False):
        with pytest.raises(kemp.KempError, match=r"no real server holds its VIP; refused.*allow_empty"):
            rec(sim, add=add).run([service()])
    assert sim.commands() == writes
    rec(sim).run([service(allow_empty=True)])
    vs = sim.find(VIP, 80)
    assert vs is not None and vs.rs == []


# --------------------------------------------------------------------------
# 7. dsr_weight 0 read back as what it is
# --------------------------------------------------------------------------


def test_weight_zero_is_read_back_as_disabled_not_as_a_failure(sim: KempApiSimulator, tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {
        "vars": {"dsr_services": [{"name": "web", "vip": VIP, "port": 80, "protocol": "tcp"}]},
        "children": {
            "dsr_realservers_linux": {"hosts": {
                "rs1": {"ansible_host": "10.0.0.11", "dsr_vips": [VIP], "dsr_weight": 0},
                "rs2": {"ansible_host": "10.0.0.12", "dsr_vips": [VIP]}}},
            "dsr_loadmasters": {"hosts": {"lm1": {
                "ansible_host": sim.address, "dsr_loadmaster_kemp_user": sim.user,
                "dsr_loadmaster_kemp_password": sim.password,
                "dsr_loadmaster_kemp_fingerprint": sim.pki.fingerprint}}}}}}))  # fmt: skip
    svc = service()
    svc["real_servers"] = [{"name": "rs1", "address": "10.0.0.11", "weight": 0},
                           {"name": "rs2", "address": "10.0.0.12", "weight": 1}]  # fmt: skip
    rec(sim).run([svc])
    checks = loadmaster.registered(Inventory(inv), ["lm1"], ["rs1", "rs2"])
    assert checks["rs1"].ok is True and "disabled (dsr_weight 0: drained)" in checks["rs1"].detail, checks["rs1"]
    assert checks["rs2"].ok is True and "route weight 1" in checks["rs2"].detail
    # An administrator disabling rs2 behind dsrprov's back is still a failure.
    client(sim).mod_rs(VIP, 80, "tcp", "10.0.0.12", 80, enable="N")
    assert loadmaster.registered(Inventory(inv), ["lm1"], ["rs2"])["rs2"].ok is False


# --------------------------------------------------------------------------
# 8. SubVS-shaped answers: a line, never a traceback
# --------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["SubVS", "Rs"])
@pytest.mark.parametrize("state", ["present", "absent"])
def test_subvs_shaped_answers_are_refused_with_a_line(sim: KempApiSimulator, tag: str, state: str) -> None:
    rec(sim).run([service("10.0.0.11")])
    vs = sim.find(VIP, 80)
    assert vs is not None
    # [RECPY]/[V2]: a SubVS as its parent lists it, no Addr.
    vs.subvs_tag = tag
    vs.subvs = [{"Status": "Down", "VSIndex": "2", "RsIndex": "1", "Name": "-", "Forward": "nat",
                 "Weight": "1000", "Limit": "0", "Enable": "Y", "Critical": "N"}]  # fmt: skip
    writes = sim.commands()
    with pytest.raises(kemp.KempError, match="SubVS") as err:
        rec(sim).run([service("10.0.0.11")], state)
    assert "\n" not in str(err.value)
    assert sim.commands() == writes and sim.find(VIP, 80) is not None


# --------------------------------------------------------------------------
# 9. the documentation says what is true
# --------------------------------------------------------------------------


def test_docs_name_only_modules_and_files_that_exist() -> None:
    files = [
        ROOT / "src/ansible_collections/dsrprov/dsr/plugins/module_utils/kemp_api.py",
        ROOT / "src/dsrprov/loadmaster.py",
        ROOT / "tests/unit/test_kemp_client.py",
        ROOT / "docs/kemp.md",
    ]
    for path in files:
        text = path.read_text()
        for name in set(re.findall(r"\bdsrprov\.([a-z_]+)\b", text)):
            if name == "dsr":  # the collection
                continue
            assert (ROOT / "src/dsrprov" / f"{name}.py").exists() or (ROOT / "src/dsrprov" / name).is_dir(), (
                f"{path.name} names dsrprov.{name}, which does not exist"
            )
        assert "symlink" not in text, f"{path.name} still speaks of a symlink"
    doc = (ROOT / "docs/kemp.md").read_text()
    assert "Session Management" in doc and "must be enabled" in doc
    assert "API interface is off by default" in doc
    assert "whether v2 needs session management is not confirmed" not in doc
