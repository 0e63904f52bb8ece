"""The Kemp API client and the reconciler (the collection's
plugins/module_utils/kemp_api.py, which the CLI imports too) against the Kemp API
SIMULATOR (tests/kemp_simulator.py), in both of its firmware generations
(``simulator-modern``: Layer, ForceL4 and ForceL7 reported; ``simulator-legacy``:
only ForceL7), and the simulator's own strictness, without Ansible. No real
LoadMaster is involved here: tests/unit/test_kemp_module.py has the ones that also
run against a real LoadMaster."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.dsrprov.dsr.plugins.module_utils import kemp_api as kemp
from dsrprov import loadmaster
from dsrprov.model.inventory import Inventory
from tests.kemp_simulator import FIRMWARES, KempApiSimulator, SimPki, make_pki

VIP = "10.0.0.200"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=FIRMWARES, ids=[f"simulator-{f}" for f in FIRMWARES])
def sim(request: pytest.FixtureRequest, pki: SimPki) -> Iterator[KempApiSimulator]:
    s = KempApiSimulator(pki, firmware=request.param).start()
    yield s
    s.stop()


def start(pki: SimPki, **kwargs: Any) -> KempApiSimulator:
    return KempApiSimulator(pki, **kwargs).start()


def client(sim: KempApiSimulator, **kwargs: Any) -> kemp.Client:
    if "user" not in kwargs:
        kwargs["api_key"] = sim.api_key
    return kemp.Client(sim.address, fingerprint=sim.pki.fingerprint, **kwargs)


def service(*addresses: str, weight: int = 1, vip: str = VIP, **extra: Any) -> dict[str, Any]:
    return {"name": "web", "vip": vip, "port": 80, "protocol": "tcp", "lb_algo": "wlc",
            "real_servers": [{"name": a, "address": a, "weight": weight} for a in addresses], **extra}  # fmt: skip


def owner_file(sim: KempApiSimulator) -> str:
    """The ownership file of this simulated LoadMaster (one per simulator, as the role keeps one per LoadMaster)."""
    return str(sim.pki.cert_file.parent / f"owned-{sim.port}.json")


def reconciler(sim: KempApiSimulator, c: kemp.Client | None = None, **kwargs: Any) -> kemp.Reconciler:
    kwargs.setdefault("owner_file", owner_file(sim))
    return kemp.Reconciler(c or client(sim), **kwargs)


def rec(sim: KempApiSimulator, **kwargs: Any) -> kemp.Reconciler:
    kwargs.setdefault("drain_seconds", 0)
    return reconciler(sim, **kwargs)


def modvs_params(sim: KempApiSimulator) -> list[dict[str, str]]:
    return [p for c, p in sim.log if c == "modvs"]


# --------------------------------------------------------------------------
# plain client functions
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("lm", "lm", 443), ("10.0.0.5:8443", "10.0.0.5", 8443), ("[2001:db8::5]:8443", "2001:db8::5", 8443),
     ("2001:db8::5", "2001:db8::5", 443), ("[2001:db8::5]", "2001:db8::5", 443)],
)  # fmt: skip
def test_split_address(text: str, host: str, port: int) -> None:
    assert kemp.split_address(text) == (host, port)


@pytest.mark.parametrize("bad", ["", "lm:0", "lm:x", "[::1"])
def test_split_address_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        kemp.split_address(bad)


def test_fingerprints() -> None:
    digest = "ab" * 32
    assert kemp.normalize_fingerprint(":".join(["AB"] * 32)) == digest
    assert kemp.normalize_fingerprint("sha256:" + digest.upper()) == digest
    assert kemp.format_fingerprint(digest).startswith("AB:AB:")
    with pytest.raises(ValueError, match="not a SHA-256 fingerprint"):
        kemp.normalize_fingerprint("ab" * 20)  # a SHA-1 one


def test_l7_problems() -> None:
    assert kemp.l7_problems({"SSLAcceleration": "N", "Persist": "src", "ForceL7": "N"}) == []
    found = kemp.l7_problems({"SSLAcceleration": "Y", "Persist": "cookie", "RequestRules": ["a"], "Compress": "Y"})
    assert len(found) == 4 and "SSL acceleration (offload) (SSLAcceleration=Y)" in found


def _vs(xml: str) -> dict[str, Any]:
    return kemp._element_dict(ET.fromstring(f"<Data>{xml}</Data>"))


# Element values as in answers recorded from real firmware (mathlu/loadmaster-go-client
# test_data/addvs.xml and showvs.xml) and the Programmer Guide's older answers.
@pytest.mark.parametrize(
    ("xml", "layer"),
    [
        ("<VSPort>6443</VSPort><Layer>4</Layer><ForceL4>Y</ForceL4><ForceL7>N</ForceL7>", "4"),  # recorded addvs
        ("<VSPort>80</VSPort><Layer>7</Layer><ForceL4>N</ForceL4><ForceL7>Y</ForceL7>", "7"),  # recorded showvs
        ("<Layer>4</Layer><ForceL4>N</ForceL4><ForceL7>N</ForceL7>", "4"),  # layer 4 reached by ForceL7=N alone
        ("<Layer>7</Layer><ForceL4>Y</ForceL4><ForceL7>Y</ForceL7>", "7"),  # ForceL4=Y is not enough: Layer decides
        ("<ForceL4>Y</ForceL4><ForceL7>N</ForceL7>", "4"),  # both flags, no Layer
        ("<ForceL7>N</ForceL7>", "4"),  # Programmer Guide generation: only ForceL7
        ("<ForceL7>Y</ForceL7>", "7"),
    ],
)
def test_layer_is_the_layer_field_where_the_firmware_reports_it(xml: str, layer: str) -> None:
    vs = _vs(xml)
    assert kemp.layer(vs) == layer and kemp.force_l4(vs) is (layer == "4")


def test_credentials_are_required() -> None:
    with pytest.raises(kemp.KempError, match="no LoadMaster credentials"):
        kemp.Client("lm", user="bal")


# --------------------------------------------------------------------------
# point 5: authentication on the wire, secrets nowhere else
# --------------------------------------------------------------------------


def test_api_key_in_the_v2_json_body_parameters_beside_it_on_the_simulator(sim: KempApiSimulator) -> None:
    """A key alone: every command a POST to /accessv2, its parameters in the same JSON body (Kemp's v2 form)."""
    rec(sim).run([service("10.0.0.11")])
    assert sim.requests and all(r.method == "POST" and r.query == [] and not r.basic_auth for r in sim.requests)
    addrs = next(r for r in sim.requests if r.command == "addrs")
    assert {"vs", "port", "prot", "rs", "rsport", "forward"} <= set(addrs.body)
    assert all(line.startswith("POST /accessv2 ") for line in (r.splitlines()[0] for r in sim.received))


def test_basic_auth_puts_nothing_in_the_url_on_the_simulator(sim: KempApiSimulator) -> None:
    c = client(sim, user=sim.user, password=sim.password)
    kemp.Reconciler(c, drain_seconds=0).run([service("10.0.0.11")])
    assert sim.requests and all(r.query == [] and r.basic_auth for r in sim.requests)


def test_a_key_in_a_v1_form_body_is_not_the_documented_form(sim: KempApiSimulator) -> None:
    """The simulator takes no key from a v1 form body: no source shows one there."""
    c = client(sim, user=sim.user, password="not-it")
    with pytest.raises(kemp.KempAuthError):
        c.call("listvs", apikey=sim.api_key)


def test_secrets_never_in_error_messages_on_the_simulator(sim: KempApiSimulator, pki: SimPki) -> None:
    wrong = "wrong-key-0c1e77"
    with pytest.raises(kemp.KempAuthError) as denied:
        kemp.Client(sim.address, api_key=wrong, fingerprint=pki.fingerprint).list_vs()
    with pytest.raises(kemp.KempError) as refused:
        client(sim).show_vs(VIP, 80, "tcp")  # Unknown VS
    address = sim.address
    sim.stop()
    with pytest.raises(kemp.KempError) as unreachable:
        kemp.Client(address, api_key=wrong, fingerprint=pki.fingerprint, timeout=2).list_vs()
    for exc in (denied.value, refused.value, unreachable.value):
        assert wrong not in str(exc) and sim.api_key not in str(exc) and "apikey" not in str(exc), exc


# --------------------------------------------------------------------------
# points 1 and 2: layer 4 first, judged by Layer, before any real server
# --------------------------------------------------------------------------


@pytest.mark.parametrize("force_param", ["auto", "ForceL7"])
def test_layer4_is_reached_and_recognised_on_both_firmware_generations(sim: KempApiSimulator, force_param: str) -> None:
    """auto: ForceL4=Y with ForceL7=N where both are reported, ForceL7=N alone on legacy
    firmware; the ForceL7 override works on both. Success is the read-back (Layer)."""
    r = rec(sim, force_param=force_param)
    assert r.run([service("10.0.0.11")]) is True
    vs = sim.find(VIP, 80)
    assert vs is not None and sim.layer(vs) == 4
    assert [x.settings["forward"] for x in vs.rs] == ["route"]
    sent = modvs_params(sim)[0]
    if force_param == "auto" and sim.firmware == "modern":
        assert sent["forcel4"] == "Y" and sent["forcel7"] == "N"
    else:
        assert "forcel4" not in sent and sent["forcel7"] == "N"
    again = rec(sim, force_param=force_param)
    assert again.run([service("10.0.0.11")]) is False and again.actions == []


def test_force_l4_alone_is_not_taken_for_layer4_on_the_modern_simulator(pki: SimPki) -> None:
    """ForceL4=Y by itself leaves ForceL7=Y (the simulator's reading of Kemp's SDK): the
    read-back right after modvs says layer 7, so no real server is added and the new
    service is deleted again."""
    sim = start(pki, firmware="modern")
    try:
        with pytest.raises(
            kemp.KempError, match=r"is at layer 7 \(Layer=7 ForceL4=Y ForceL7=Y\) after modvs ForceL4=Y"
        ):
            rec(sim, force_param="ForceL4").run([service("10.0.0.11")])
        assert sim.commands() == ["addvs", "modvs", "delvs"] and sim.vs == []
    finally:
        sim.stop()


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_firmware_ignoring_the_force_parameters_leaves_nothing_half_made(pki: SimPki, firmware: str) -> None:
    """Firmware that ignores ForceL4/ForceL7 (unknown parameters are ignored): the run stops
    right after modvs, before any addrs, and deletes the Virtual Service it created."""
    sim = start(pki, firmware=firmware, ignore=("forcel4", "forcel7"))
    try:
        with pytest.raises(kemp.KempError) as err:
            rec(sim).run([service("10.0.0.11")])
        assert "is at layer 7" in str(err.value) and "the firmware did not take it" in str(err.value)
        assert "no real server was added" in str(err.value) and "deleted again" in str(err.value)
        assert sim.commands() == ["addvs", "modvs", "delvs"] and sim.vs == []
        # An existing layer-7 service, handed over: not ours to delete, but no real server is added to it.
        client(sim).add_vs(VIP, 80, "tcp", nickname="web")
        writes = len(sim.commands())
        with pytest.raises(kemp.KempError, match="no real server was changed"):
            rec(sim).run([service("10.0.0.11", adopt=True)])
        assert sim.commands()[writes:] == ["modvs"]
        vs = sim.find(VIP, 80)
        assert vs is not None and vs.rs == []
    finally:
        sim.stop()


# --------------------------------------------------------------------------
# point 3: health checks
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ({}, {"checktype": "tcp", "checkport": "80"}),  # the model's default: tcp on the service port
        ({"health_check": {"type": "tcp", "port": 8080}}, {"checktype": "tcp", "checkport": "8080"}),
        ({"health_check": {"type": "http", "path": "/healthz", "status": 200, "port": 80}},
         {"checktype": "http", "checkurl": "/healthz", "checkport": "80"}),
        ({"health_check": {"type": "http", "path": "/", "status": 503, "port": 8080}},
         {"checktype": "http", "checkurl": "/", "checkcodes": "503", "checkport": "8080"}),
        ({"protocol": "udp", "port": 53, "health_check": {"type": "udp", "port": 53}}, {"checktype": "icmp"}),
    ],
)  # fmt: skip
def test_health_check_is_mapped_and_read_back(
    sim: KempApiSimulator, extra: dict[str, Any], want: dict[str, str]
) -> None:
    svc = service("10.0.0.11", **extra)
    rec(sim).run([svc])
    vs = sim.find(VIP, svc["port"], svc["protocol"])
    assert vs is not None
    got = {k: vs.settings.get(k, "") for k in want}
    if got.get("checkport") == "0":  # 0: the real server's port, the service port under DSR (not rewritten)
        got["checkport"] = str(svc["port"])
    assert got == want
    assert "checkcodes" in want or "checkcodes" not in vs.settings
    again = rec(sim)
    assert again.run([svc]) is False, again.actions
    # Drift behind our back is corrected, and read back.
    client(sim).mod_vs(VIP, svc["port"], svc["protocol"], checktype="smtp")
    assert rec(sim).run([svc]) is True
    assert vs.settings["checktype"] == want["checktype"]


def test_a_check_setting_the_firmware_ignored_fails_before_real_servers(pki: SimPki) -> None:
    sim = start(pki, ignore=("checktype",))
    try:
        with pytest.raises(kemp.KempError, match="reports CheckType='http' after the change, expected 'tcp'"):
            rec(sim).run([service("10.0.0.11")])
        assert "addrs" not in sim.commands() and sim.vs == []
    finally:
        sim.stop()


# --------------------------------------------------------------------------
# point 4: weights
# --------------------------------------------------------------------------


def test_weights_the_loadmaster_refuses_are_refused_before_any_request(sim: KempApiSimulator) -> None:
    with pytest.raises(kemp.KempError, match="has dsr_weight 65531; the LoadMaster takes weights 1-65530"):
        rec(sim).run([service("10.0.0.11", weight=65531)])
    assert sim.requests == []
    rec(sim).run([service("10.0.0.11", weight=65530)])
    vs = sim.find(VIP, 80)
    assert vs is not None and vs.rs[0].settings["weight"] == "65530"


def test_weight_zero_registers_disabled(sim: KempApiSimulator) -> None:
    rec(sim).run([service("10.0.0.11", weight=0)])
    vs = sim.find(VIP, 80)
    assert vs is not None and vs.rs[0].settings["enable"] == "N" and vs.rs[0].settings["forward"] == "route"


# --------------------------------------------------------------------------
# point 6: DSR's constraints (persistence, networks)
# --------------------------------------------------------------------------


def test_persistence_timeout_becomes_source_ip_persistence(sim: KempApiSimulator) -> None:
    rec(sim).run([service("10.0.0.11", persistence_timeout=300)])
    vs = sim.find(VIP, 80)
    assert vs is not None and vs.settings["persist"] == "src" and vs.settings["persisttimeout"] == "300"
    assert rec(sim).run([service("10.0.0.11", persistence_timeout=300)]) is False
    rec(sim).run([service("10.0.0.11")])  # no persistence_timeout: no persistence
    assert vs.settings["persist"] == "none"
    assert "<Persist>" not in sim._vs_xml(vs)


def test_persistence_longer_than_the_loadmaster_keeps_is_refused_before_any_request(sim: KempApiSimulator) -> None:
    with pytest.raises(kemp.KempError, match="persistence_timeout 604801 is longer than the LoadMaster's longest"):
        rec(sim).run([service("10.0.0.11", persistence_timeout=604801)])
    assert sim.requests == []


def test_real_servers_off_the_loadmaster_networks_are_refused_before_any_change(sim: KempApiSimulator) -> None:
    with pytest.raises(kemp.KempError, match=r"real server 192\.0\.2\.11 \(192\.0\.2\.11\) is on no network of"):
        rec(sim).run([service("192.0.2.11")])
    assert sim.commands() == [] and [c for c, _ in sim.log] == ["listvs", "showiface"]
    # The check can be turned off.
    rec(sim, check_networks=False).run([service("192.0.2.11")])
    assert "showiface" not in [c for c, _ in sim.log[2:]]


def test_ipv6_service_on_the_loadmaster_subnet(sim: KempApiSimulator) -> None:
    svc = service("fd42:d5a:0:1::11", vip="fd42:d5a:0:1::200")
    assert rec(sim).run([svc]) is True
    vs = sim.find("fd42:d5a:0:1::200", 80)
    assert vs is not None and vs.rs[0].addr == "fd42:d5a:0:1::11"


# --------------------------------------------------------------------------
# the reconciler's other duties
# --------------------------------------------------------------------------


def test_reconciler_create_idempotent_drain_remove(sim: KempApiSimulator) -> None:
    slept: list[float] = []
    run = lambda: reconciler(sim, drain_seconds=5, sleep=slept.append)  # noqa: E731
    assert run().run([service("10.0.0.11")]) is True
    assert sim.commands() == ["addvs", "modvs", "addrs"]
    r = run()
    assert r.run([service("10.0.0.11")]) is False and r.actions == []
    r = run()
    assert r.run([service("10.0.0.12")]) is True
    assert r.actions[0].startswith("add web") and r.actions[1].startswith("drain web")
    assert r.actions[2] == "wait 5s for connections to drain" and r.actions[3].startswith("delete web")
    assert slept == [5]
    vs = sim.find(VIP, 80)
    assert vs is not None and [x.addr for x in vs.rs] == ["10.0.0.12"]


def test_reconciler_drain_only_removes_leavers_and_adds_nothing(sim: KempApiSimulator) -> None:
    """site.yml's first play: the one that leaves is drained and deleted, the one that joins is not added yet."""
    rec(sim).run([service("10.0.0.11", "10.0.0.12")])
    slept: list[float] = []
    r = reconciler(sim, drain_seconds=5, sleep=slept.append, add=False)
    assert r.run([service("10.0.0.12", "10.0.0.13", weight=7)]) is True
    assert [a.split(" ")[0] for a in r.actions] == ["drain", "wait", "delete"]
    assert "10.0.0.11" in r.actions[0] and "10.0.0.11" in r.actions[2]
    assert slept == [5]
    vs = sim.find(VIP, 80)
    assert vs is not None and [(x.addr, x.settings.get("weight")) for x in vs.rs] == [("10.0.0.12", "1")]
    # Nothing leaves: nothing happens; a service that does not exist yet is not created.
    r = reconciler(sim, drain_seconds=5, sleep=slept.append, add=False)
    assert r.run([service("10.0.0.12", "10.0.0.13"), service("10.0.0.21", vip="10.0.0.201", name="web2")]) is False
    assert r.actions == [] and sim.find("10.0.0.201", 80) is None


def test_reconciler_check_mode_writes_and_waits_nothing(sim: KempApiSimulator) -> None:
    rec(sim).run([service("10.0.0.11")])
    writes = sim.commands()
    slept: list[float] = []
    r = reconciler(sim, check=True, drain_seconds=9, sleep=slept.append)
    assert r.run([service("10.0.0.12", weight=0, health_check={"type": "http", "path": "/x"})]) is True
    assert sim.commands() == writes and slept == []
    assert "CheckType=http" in r.after[0] and "CheckUrl=/x" in r.after[0]
    assert r.after[1] == "  real server 10.0.0.12:80: Forward=route Weight= Enable=N"


def test_reconciler_refuses_models_the_loadmaster_cannot_do(sim: KempApiSimulator) -> None:
    svc = service("10.0.0.11")
    svc["lb_algo"] = "mh"
    with pytest.raises(kemp.KempError, match="lb_algo 'mh' has no LoadMaster equivalent"):
        kemp.Reconciler(client(sim)).run([svc])
    assert sim.log == []


def test_reconciler_catches_a_parameter_the_firmware_ignored(
    sim: KempApiSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = client(sim)
    real_add = c.add_rs
    monkeypatch.setattr(c, "add_rs", lambda *a, forward, **kw: real_add(*a, **kw))  # the firmware drops "forward"
    with pytest.raises(kemp.KempError, match="reports Forward='nat' after the change, expected 'route'"):
        kemp.Reconciler(c, drain_seconds=0).run([service("10.0.0.11")])


def test_cli_read_back_wants_route_at_layer4_on_the_simulator(sim: KempApiSimulator, tmp_path: Path) -> None:
    """dsrprov's "registered at the LoadMaster" check (after enroll) reads the layer too."""
    inv = {"all": {"vars": {"dsr_services": [{"name": "web", "vip": VIP, "port": 80, "protocol": "tcp"}]},
                   "children": {"dsr_realservers_linux": {"hosts": {"rs1": {"ansible_host": "10.0.0.11",
                                                                            "dsr_vips": [VIP]}}},
                                "dsr_loadmasters": {"hosts": {"lm1": {
                                    "ansible_host": sim.address, "dsr_loadmaster_kemp_api_key": sim.api_key,
                                    "dsr_loadmaster_kemp_fingerprint": sim.pki.fingerprint}}}}}}  # fmt: skip
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inv))
    rec(sim).run([service("10.0.0.11")])
    check = loadmaster.registered(Inventory(tmp_path / "hosts.yml"), ["lm1"], ["rs1"])["rs1"]
    assert check.ok is True, check
    rows, _ = loadmaster.read(Inventory(tmp_path / "hosts.yml"), ["lm1"])
    assert rows[0]["layer"] == "4"
    client(sim).mod_vs(VIP, 80, "tcp", ForceL7="Y")  # someone turns it into a layer-7 service
    check = loadmaster.registered(Inventory(tmp_path / "hosts.yml"), ["lm1"], ["rs1"])["rs1"]
    assert check.ok is False and "layer=7 forward=route" in check.detail, check


# --------------------------------------------------------------------------
# point 7: the simulator's own rules
# --------------------------------------------------------------------------


def test_simulator_reports_layer_and_checktype_as_the_recorded_firmware(sim: KempApiSimulator) -> None:
    c = client(sim)
    c.add_vs(VIP, 80, "tcp")
    vs = c.show_vs(VIP, 80, "tcp")
    assert vs["ForceL7"] == "Y" and vs["CheckType"] == "http" and vs["CheckPort"] == "0" and "Persist" not in vs
    if sim.firmware == "modern":
        assert vs["Layer"] == "7" and vs["ForceL4"] == "N"  # recorded showvs.xml; PowerShell doc's addvs answer
        c.mod_vs(VIP, 80, "tcp", ForceL4="Y", ForceL7="N")
        assert c.show_vs(VIP, 80, "tcp")["Layer"] == "4"  # recorded addvs.xml
    else:
        assert "Layer" not in vs and "ForceL4" not in vs  # the Programmer Guide's answers
        with pytest.raises(kemp.KempError, match="Unknown parameter: forcel4"):
            c.mod_vs(VIP, 80, "tcp", ForceL4="Y")
    c.add_vs(VIP, 53, "udp")
    assert c.show_vs(VIP, 53, "udp")["CheckType"] == "icmp"


def test_simulator_refuses_route_on_layer7_and_weights_above_65530(sim: KempApiSimulator) -> None:
    c = client(sim)
    c.add_vs(VIP, 80, "tcp")
    with pytest.raises(kemp.KempError, match="route \\(Direct return\\) needs a layer 4 service"):
        c.add_rs(VIP, 80, "tcp", "10.0.0.11", 80, forward="route")
    c.mod_vs(VIP, 80, "tcp", ForceL7="N")
    for bad in ("0", "65531"):
        with pytest.raises(kemp.KempError, match=f"weight: Invalid value {bad} \\(1-65530\\)"):
            c.add_rs(VIP, 80, "tcp", "10.0.0.11", 80, forward="route", weight=bad)
    c.add_rs(VIP, 80, "tcp", "10.0.0.11", 80, forward="route", weight=65530)


def test_simulator_accepts_documented_parameters(sim: KempApiSimulator) -> None:
    """Parameters of Kemp's PowerShell module the old simulator refused."""
    c = client(sim)
    c.add_vs(VIP, 80, "tcp", subnetoriginating="N", checkurl="/h", chkinterval=10, checkuseget=1)
    c.add_rs(VIP, 80, "tcp", "10.0.0.11", 80, ratelimit=100, limit=50)
    c.mod_rs(VIP, 80, "tcp", "10.0.0.11", 80, newport=8080)
    vs = sim.find(VIP, 80)
    assert vs is not None and vs.rs[0].port == 8080 and vs.rs[0].settings["ratelimit"] == "100"
    assert vs.settings["subnetoriginating"] == "N" and vs.settings["checkurl"] == "/h"
    with pytest.raises(kemp.KempError, match="checkcodes: Invalid value 200"):
        c.mod_vs(VIP, 80, "tcp", checkcodes="200")
    with pytest.raises(kemp.KempError, match="persisttimeout: Invalid value 604801"):
        c.mod_vs(VIP, 80, "tcp", persist="src", persisttimeout=604801)


def test_simulator_refuses_unknown_parameters_and_commands(sim: KempApiSimulator) -> None:
    c = client(sim)
    with pytest.raises(kemp.KempError, match=r"addvs failed \(400\): Unknown parameter: colour"):
        c.add_vs(VIP, 80, "tcp", colour="blue")
    with pytest.raises(kemp.KempError, match="Unknown command"):
        c.call("rebootnow")
    with pytest.raises(kemp.KempError, match="Unknown VS"):
        c.show_vs(VIP, 80, "tcp")
    assert c.find_vs(VIP, 80, "tcp") is None


def test_simulator_lists_its_interfaces(sim: KempApiSimulator) -> None:
    nets = client(sim).interfaces()
    assert [str(n) for n in nets] == sim.interfaces


def test_pki_files(pki: SimPki) -> None:
    assert Path(pki.ca_file).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert len(kemp.normalize_fingerprint(pki.fingerprint)) == 64
