"""dsrprov.kemp (the API client and the reconciler) and the simulator's own
strictness, without Ansible."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.dsrprov.dsr.plugins.module_utils import kemp_api as kemp
from tests.kemp_simulator import KempApiSimulator, SimPki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def sim(pki: SimPki) -> Iterator[KempApiSimulator]:
    s = KempApiSimulator(pki).start()
    yield s
    s.stop()


def client(sim: KempApiSimulator) -> kemp.Client:
    return kemp.Client(sim.address, api_key=sim.api_key, fingerprint=sim.pki.fingerprint)


def service(*addresses: str, weight: int = 1) -> dict[str, object]:
    return {"name": "web", "vip": "10.0.0.200", "port": 80, "protocol": "tcp", "lb_algo": "wlc",
            "real_servers": [{"name": a, "address": a, "weight": weight} for a in addresses]}  # fmt: skip


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


def test_l7_problems_and_force_l4() -> None:
    assert kemp.l7_problems({"SSLAcceleration": "N", "Persist": "src", "ForceL7": "N"}) == []
    found = kemp.l7_problems({"SSLAcceleration": "Y", "Persist": "cookie", "RequestRules": ["a"], "Compress": "Y"})
    assert len(found) == 4 and "SSL acceleration (offload) (SSLAcceleration=Y)" in found
    assert kemp.force_l4({"ForceL4": "Y", "ForceL7": "N"}) and not kemp.force_l4({"ForceL4": "N", "ForceL7": "Y"})
    assert kemp.force_l4({"ForceL7": "N"}) and not kemp.force_l4({"ForceL7": "Y"})


def test_credentials_are_required() -> None:
    with pytest.raises(kemp.KempError, match="no LoadMaster credentials"):
        kemp.Client("lm", user="bal")


def test_simulator_refuses_unknown_parameters_and_commands(sim: KempApiSimulator) -> None:
    c = client(sim)
    with pytest.raises(kemp.KempError, match=r"addvs failed \(400\): Unknown parameter: colour"):
        c.add_vs("10.0.0.200", 80, "tcp", colour="blue")
    with pytest.raises(kemp.KempError, match="Unknown command"):
        c.call("rebootnow")
    with pytest.raises(kemp.KempError, match="Unknown VS"):
        c.show_vs("10.0.0.200", 80, "tcp")
    assert c.find_vs("10.0.0.200", 80, "tcp") is None


def test_secrets_are_posted_not_in_the_url(sim: KempApiSimulator, pki: SimPki) -> None:
    seen: list[str] = []
    original = sim._handle

    def spy(req, query):  # type: ignore[no-untyped-def]
        seen.append(req.path)
        original(req, query)

    sim._handle = spy  # type: ignore[method-assign]
    client(sim).list_vs()
    assert seen == ["/access/listvs"]


def test_reconciler_create_idempotent_drain_remove(sim: KempApiSimulator) -> None:
    slept: list[float] = []
    run = lambda svc, **kw: kemp.Reconciler(client(sim), drain_seconds=5, sleep=slept.append, **kw)  # noqa: E731
    r = run(service("10.0.0.11"))
    assert r.run([service("10.0.0.11")]) is True
    r = run(None)
    assert r.run([service("10.0.0.11")]) is False and r.actions == []
    r = run(None)
    assert r.run([service("10.0.0.12")]) is True
    assert r.actions[0].startswith("add web") and r.actions[1].startswith("drain web")
    assert r.actions[2] == "wait 5s for connections to drain" and r.actions[3].startswith("delete web")
    assert slept == [5]
    vs = sim.find("10.0.0.200", 80)
    assert vs is not None and [x.addr for x in vs.rs] == ["10.0.0.12"]


def test_reconciler_check_mode_writes_and_waits_nothing(sim: KempApiSimulator) -> None:
    kemp.Reconciler(client(sim), drain_seconds=0).run([service("10.0.0.11")])
    writes = sim.commands()
    slept: list[float] = []
    r = kemp.Reconciler(client(sim), check=True, drain_seconds=9, sleep=slept.append)
    assert r.run([service("10.0.0.12", weight=0)]) is True
    assert sim.commands() == writes and slept == []
    assert r.after[1] == "  real server 10.0.0.12:80: Forward=route Weight= Enable=N"


def test_reconciler_weight_zero_registers_disabled(sim: KempApiSimulator) -> None:
    kemp.Reconciler(client(sim), drain_seconds=0).run([service("10.0.0.11", weight=0)])
    vs = sim.find("10.0.0.200", 80)
    assert vs is not None and vs.rs[0].settings["enable"] == "N" and vs.rs[0].settings["forward"] == "route"


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


def test_pki_files(pki: SimPki) -> None:
    assert Path(pki.ca_file).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert len(kemp.normalize_fingerprint(pki.fingerprint)) == 64
