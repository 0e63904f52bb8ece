"""Unit tests of dsrprov/model.py: the service model and its derivation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ansible_collections.dsrprov.dsr.plugins.plugin_utils import service_model as model
from ansible_collections.dsrprov.dsr.plugins.plugin_utils.service_model import ModelError

GROUPS = {
    "dsr_realservers_linux": ["rs1", "rs2"],
    "dsr_realservers_windows": ["win1"],
    "dsr_directors": ["dir1"],
}


def hostvars() -> dict[str, dict[str, Any]]:
    return {
        "rs1": {
            "ansible_host": "10.0.0.11",
            "dsr_vips": ["10.0.0.200", "fd00::200/128"],
            "dsr_real_address6": "fd00::11",
        },
        "rs2": {"ansible_host": "10.0.0.12", "dsr_vips": ["10.0.0.200/32"], "dsr_weight": 3},
        "win1": {"ansible_host": "win1.example", "dsr_real_address": "10.0.0.21", "dsr_vips": ["10.0.0.201"]},
        "dir1": {"ansible_host": "10.0.0.2"},
    }


SERVICES: list[dict[str, Any]] = [
    {"name": "web", "vip": "10.0.0.200", "port": 80},
    {
        "name": "web6",
        "vip": "fd00:0::200",
        "port": 443,
        "lb_algo": "sh",
        "persistence_timeout": 300,
        "health_check": {"type": "http", "path": "/health", "status": 204, "port": 8080},
    },
    {"name": "dns", "vip": "10.0.0.201", "port": "53", "protocol": "UDP", "health_check": {"type": "udp"}},
]


def derive(services: Any = None, hv: Any = None, groups: Any = None) -> list[dict[str, Any]]:
    return model.director_model(
        copy.deepcopy(SERVICES) if services is None else services,
        GROUPS if groups is None else groups,
        hostvars() if hv is None else hv,
    )


def test_derivation_defaults_and_real_servers() -> None:
    web, web6, dns = derive()
    assert web == {
        "name": "web",
        "vip": "10.0.0.200",
        "family": 4,
        "port": 80,
        "protocol": "tcp",
        "lb_algo": "wlc",
        "persistence_timeout": None,
        "health_check": {
            "type": "tcp",
            "port": 80,
            "delay_loop": 5,
            "connect_timeout": 3,
            "retries": 2,
            "delay_before_retry": 1,
        },
        "allow_empty": False,
        "real_servers": [
            {"name": "rs1", "address": "10.0.0.11", "weight": 1},
            {"name": "rs2", "address": "10.0.0.12", "weight": 3},
        ],
    }
    # IPv6 VIP normalised; only rs1 holds it, at its IPv6 real address.
    assert web6["vip"] == "fd00::200"
    assert web6["family"] == 6
    assert web6["persistence_timeout"] == 300
    assert web6["health_check"] == {
        "type": "http",
        "port": 8080,
        "path": "/health",
        "status": 204,
        "delay_loop": 5,
        "connect_timeout": 3,
        "retries": 2,
        "delay_before_retry": 1,
    }
    assert web6["real_servers"] == [{"name": "rs1", "address": "fd00::11", "weight": 1}]
    # Windows real server: dsr_real_address wins over a DNS-name ansible_host.
    assert dns["protocol"] == "udp" and dns["port"] == 53
    assert dns["real_servers"] == [{"name": "win1", "address": "10.0.0.21", "weight": 1}]


def test_realserver_groups_are_configurable_and_hosts_counted_once() -> None:
    groups = {"a": ["rs1", "rs2"], "b": ["rs2"]}
    (web,) = model.director_model([SERVICES[0]], groups, hostvars(), ["a", "b"])
    assert [rs["name"] for rs in web["real_servers"]] == ["rs1", "rs2"]


def test_lab_style_templated_dsr_vips_are_read_as_given() -> None:
    hv = hostvars()
    hv["rs2"]["dsr_vips"] = []
    (web,) = derive([SERVICES[0]], hv)
    assert [rs["name"] for rs in web["real_servers"]] == ["rs1"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": 0}, "service web: port 0 is out of range (1-65535)"),
        ({"port": 65536}, "service web: port 65536 is out of range (1-65535)"),
        ({"port": "http"}, "service web: port must be a whole number from 1 to 65535, not 'http'"),
        ({"port": True}, "service web: port must be a whole number"),
        ({"lb_algo": "fastest"}, "service web: unknown lb_algo 'fastest' (known: rr, wrr, lc, wlc, sh, mh)"),
        ({"protocol": "sctp"}, "service web: unknown protocol 'sctp'"),
        ({"vip": "10.0.0.300"}, "service web: invalid VIP '10.0.0.300'"),
        ({"vip": "10.0.0.0/24"}, "service web: invalid VIP '10.0.0.0/24': a VIP must be a host address (/32)"),
        ({"vip": "127.0.0.1"}, "service web: invalid VIP '127.0.0.1'"),
        ({"persistence_timeout": 0}, "service web: persistence_timeout 0 is out of range"),
        ({"lbalgo": "rr"}, "service web: unknown key 'lbalgo'"),
        ({"health_check": {"type": "icmp"}}, "service web: unknown health_check type 'icmp'"),
        ({"health_check": {"port": 70000}}, "service web: health_check port 70000 is out of range"),
        ({"health_check": {"type": "http", "path": "health"}}, "service web: health_check path 'health' must start"),
        ({"health_check": {"type": "http", "status": 999}}, "service web: health_check status 999 is out of range"),
        ({"health_check": {"path": "/x"}}, "service web: health_check path and status need type http"),
        ({"health_check": {"retries": -1}}, "service web: health_check retries -1 is out of range"),
        ({"health_check": {"connect_timeout": 0}}, "service web: health_check connect_timeout 0 is out of range"),
        ({"protocol": "udp", "health_check": {"type": "http"}}, "an http health check needs a tcp service"),
        ({"name": "bad name"}, "dsr_services[0]: name 'bad name' must be"),
    ],
)
def test_service_errors(change: dict[str, Any], message: str) -> None:
    svc = {**SERVICES[0], **change}
    with pytest.raises(ModelError) as err:
        derive([svc])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_vip_and_port() -> None:
    with pytest.raises(ModelError, match="service web: no vip given"):
        derive([{"name": "web", "port": 80}])
    with pytest.raises(ModelError, match="service web: no port given"):
        derive([{"name": "web", "vip": "10.0.0.200"}])


def test_services_must_be_a_list() -> None:
    with pytest.raises(ModelError, match="dsr_services must be a list"):
        derive({"name": "web"})


def test_duplicate_service() -> None:
    services = [SERVICES[0], {"name": "web-again", "vip": "10.0.0.200/32", "port": 80, "protocol": "TCP"}]
    with pytest.raises(ModelError) as err:
        derive(services)
    assert str(err.value) == "services web and web-again are the same virtual server (10.0.0.200 port 80/tcp)"
    # Same VIP and port over UDP is another virtual server.
    ok = derive([SERVICES[0], {"name": "web-udp", "vip": "10.0.0.200", "port": 80, "protocol": "udp"}])
    assert len(ok) == 2
    with pytest.raises(ModelError, match="two services are named web"):
        derive([SERVICES[0], {**SERVICES[0], "port": 81}])


def test_vip_no_real_server_holds() -> None:
    with pytest.raises(ModelError) as err:
        derive([{"name": "mail", "vip": "10.0.0.250", "port": 25}])
    assert str(err.value) == (
        "service mail: no real server holds its VIP 10.0.0.250 "
        "(no host of dsr_realservers_linux, dsr_realservers_windows has it in dsr_vips); add the VIP to a real "
        "server, or set allow_empty: true on the service to keep it empty on purpose"
    )


def test_an_empty_service_is_allowed_only_when_the_service_says_so() -> None:
    # One rule for site.yml and the CLI: recorded in the inventory.
    (svc,) = derive([{"name": "mail", "vip": "10.0.0.250", "port": 25, "allow_empty": True}])
    assert svc["name"] == "mail" and svc["real_servers"] == [] and svc["allow_empty"] is True
    with pytest.raises(ModelError, match="service mail: allow_empty must be true or false, not 'yes'"):
        derive([{"name": "mail", "vip": "10.0.0.250", "port": 25, "allow_empty": "yes"}])


def test_real_server_without_real_address() -> None:
    hv = hostvars()
    del hv["rs2"]["ansible_host"]
    with pytest.raises(ModelError) as err:
        derive([SERVICES[0]], hv)
    assert str(err.value) == "real server rs2 holds an IPv4 VIP but has no IPv4 real address: set dsr_real_address"


def test_real_server_without_address_of_the_vip_family() -> None:
    hv = hostvars()
    del hv["rs1"]["dsr_real_address6"]
    with pytest.raises(ModelError) as err:
        derive([SERVICES[1]], hv)
    assert str(err.value) == (
        "real server rs1 holds an IPv6 VIP but has no IPv6 real address (has ansible_host=10.0.0.11): "
        "set dsr_real_address6"
    )


def test_real_server_with_dns_name_only() -> None:
    hv = hostvars()
    del hv["win1"]["dsr_real_address"]
    with pytest.raises(ModelError, match="real server win1 holds an IPv4 VIP but has no IPv4 real address"):
        derive([SERVICES[2]], hv)


def test_real_server_bad_real_address_and_weight() -> None:
    hv = hostvars()
    hv["rs2"]["dsr_real_address"] = "not-an-ip"
    with pytest.raises(ModelError, match="real server rs2: dsr_real_address 'not-an-ip' is not an IP address"):
        derive([SERVICES[0]], hv)
    hv = hostvars()
    hv["rs2"]["dsr_weight"] = 70000
    with pytest.raises(ModelError, match="real server rs2: dsr_weight 70000 is out of range"):
        derive([SERVICES[0]], hv)
    hv = hostvars()
    hv["rs2"]["dsr_real_address"] = "10.0.0.11"
    with pytest.raises(ModelError, match=r"real servers rs1 and rs2 have the same real address 10\.0\.0\.11"):
        derive([SERVICES[0]], hv)
    hv = hostvars()
    hv["rs2"]["dsr_vips"] = ["10.0.0.200", "bogus"]
    with pytest.raises(ModelError, match="real server rs2: invalid VIP 'bogus'"):
        derive([SERVICES[0]], hv)


# --------------------------------------------------------------------------
# VRRP
# --------------------------------------------------------------------------


def vrrp(**change: Any) -> dict[str, Any]:
    base = {
        "name": "VI_1",
        "interface": "eth0",
        "state": "MASTER",
        "priority": 150,
        "virtual_router_id": 51,
        "auth_pass": "s3cret",
        "unicast_src_ip": "10.0.0.2",
        "unicast_peers": ["10.0.0.3"],
    }
    base.update(change)
    return base


def test_vrrp_defaults_split_families_and_hide_secret() -> None:
    m = derive()
    (inst,) = model.check_vrrp([vrrp()], m)
    assert inst == {
        "name": "VI_1",
        "interface": "eth0",
        "state": "MASTER",
        "priority": 150,
        "virtual_router_id": 51,
        "advert_int": 1,
        "nopreempt": False,
        "preempt_delay": 0,
        "unicast_src_ip": "10.0.0.2",
        "unicast_peers": ["10.0.0.3"],
        "auth": True,
        "addresses": ["10.0.0.200/32", "10.0.0.201/32"],
        "excluded": ["fd00::200/128"],
    }
    assert "auth_pass" not in inst
    assert model.check_vrrp([], m) == []


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        (
            [
                vrrp(virtual_ipaddresses=["10.0.0.200"]),
                vrrp(name="VI_2", virtual_ipaddresses=["10.0.0.201", "fd00::200"]),
            ],
            "VRRP instances VI_1 and VI_2 both use virtual_router_id 51",
        ),
        ([vrrp(virtual_router_id=0)], "VRRP instance VI_1: virtual_router_id 0 is out of range (1-255)"),
        ([vrrp(virtual_router_id=256)], "VRRP instance VI_1: virtual_router_id 256 is out of range (1-255)"),
        ([vrrp(state="primary")], "VRRP instance VI_1: state 'primary' must be MASTER or BACKUP"),
        ([vrrp(priority=0)], "VRRP instance VI_1: priority 0 is out of range"),
        ([vrrp(auth_pass="much-too-long")], "VRRP instance VI_1: auth_pass must be 1-8 characters"),
        ([vrrp(unicast_peers=["peer"])], "VRRP instance VI_1: unicast peer 'peer' is not an IP address"),
        ([vrrp(unicast_peers=["fd00::3"])], "unicast_src_ip and unicast_peers must be of one address family"),
        ([vrrp(virtual_ipaddresses=["10.0.0.200"])], "VIP fd00::200 is in no VRRP instance"),
        ([vrrp(), vrrp(name="VI_2", virtual_router_id=52)], "VIP 10.0.0.200 is in two VRRP instances: VI_1 and VI_2"),
        ([vrrp(), vrrp(virtual_router_id=52)], "two VRRP instances are named VI_1"),
        ([vrrp(interface="eth0; rm")], "VRRP instance VI_1: interface 'eth0; rm' is not an interface name"),
        ([vrrp(preempt=True)], "VRRP instance VI_1: unknown key 'preempt'"),
        ([vrrp(nopreempt=True)], "VRRP instance VI_1: nopreempt needs state BACKUP"),
        ([vrrp(state="BACKUP", preempt_delay=1001)], "VRRP instance VI_1: preempt_delay 1001 is out of range"),
        ([vrrp(state="BACKUP", nopreempt="yes")], "VRRP instance VI_1: nopreempt must be true or false"),
        ([{"name": "VI_1", "interface": "eth0"}], "VRRP instance VI_1: no virtual_router_id given"),
    ],
)
def test_vrrp_errors(instances: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ModelError) as err:
        model.check_vrrp(instances, derive())
    assert message in str(err.value)
    assert "s3cret" not in str(err.value)


def test_vrrp_two_instances_one_vip_each() -> None:
    m = derive()
    insts = model.check_vrrp(
        [
            vrrp(virtual_ipaddresses=["10.0.0.200", "fd00::200"]),
            vrrp(
                name="VI_2",
                virtual_router_id=52,
                unicast_src_ip=None,
                unicast_peers=[],
                virtual_ipaddresses=["10.0.0.201"],
            ),
        ],
        m,
    )
    assert [i["addresses"] for i in insts] == [["10.0.0.200/32"], ["10.0.0.201/32"]]
    assert insts[1]["auth"] is True and insts[1]["unicast_peers"] == []


# --------------------------------------------------------------------------
# against the director host
# --------------------------------------------------------------------------

DIRECTOR_ADDRS = [
    {"address": "10.0.0.2", "prefixlen": 24, "interface": "eth0"},
    {"address": "fd00::2", "prefixlen": 64, "interface": "eth0"},
]


def test_director_checks_pass_and_ignore_vips_it_holds() -> None:
    m = derive()
    held = [
        {"address": "10.0.0.200", "prefixlen": 32, "interface": "eth0"},
        {"address": "fd00::200", "prefixlen": 128, "interface": "eth0"},
    ]
    model.check_director(m, "dir1", DIRECTOR_ADDRS + held)


@pytest.mark.parametrize(
    ("addresses", "message"),
    [
        (
            [{"address": "10.0.0.200", "prefixlen": 24, "interface": "eth0"}, *DIRECTOR_ADDRS],
            "service web: VIP 10.0.0.200 is one of director dir1's own addresses",
        ),
        (
            [{"address": "10.0.0.2", "prefixlen": 24, "interface": "eth0"}],
            "service web6: real server rs1 (fd00::11) is on no network of director dir1",
        ),
        (
            [{"address": "10.0.0.11", "prefixlen": 24, "interface": "eth0"}, *DIRECTOR_ADDRS],
            "service web: real server rs1 has director dir1's address 10.0.0.11",
        ),
    ],
)
def test_director_errors(addresses: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ModelError) as err:
        model.check_director(derive(), "dir1", addresses)
    assert message in str(err.value)


def test_director_cannot_be_its_own_real_server() -> None:
    groups = {"dsr_realservers_linux": ["rs1", "dir1"]}
    hv = hostvars()
    hv["dir1"]["dsr_vips"] = ["10.0.0.200"]
    m = model.director_model([SERVICES[0]], groups, hv)
    with pytest.raises(ModelError, match="director dir1 cannot be its own real server"):
        model.check_director(m, "dir1", DIRECTOR_ADDRS)


def test_filters_return_problem_lines() -> None:
    from ansible_collections.dsrprov.dsr.plugins.filter.service_model import FilterModule

    f = FilterModule().filters()
    assert f["dsr_director_model_problem"](SERVICES, GROUPS, hostvars()) == ""
    assert f["dsr_director_model_problem"]([{**SERVICES[0], "port": 0}], GROUPS, hostvars()) == (
        "dsrprov: service web: port 0 is out of range (1-65535)"
    )
    m = f["dsr_director_model"](SERVICES, GROUPS, hostvars())
    assert f["dsr_director_vrrp_problem"]([vrrp()], m) == ""
    assert f["dsr_director_vrrp_problem"]([vrrp(virtual_router_id=300)], m).startswith("dsrprov: VRRP instance VI_1")
    assert f["dsr_director_host_problem"](m, "dir1", DIRECTOR_ADDRS) == ""
    assert f["dsr_service_vips"](m) == ["10.0.0.200", "fd00::200", "10.0.0.201"]


def test_the_roles_filters_and_the_cli_share_one_copy_of_the_rules() -> None:
    """The collection's filter plugin wraps the very module the CLI imports: no copy, no symlink."""
    from ansible_collections.dsrprov.dsr.plugins.filter import service_model as filters

    assert filters.director_model is model.director_model
    assert sorted(filters.FilterModule().filters())[0] == "dsr_director_host_problem"


def test_vrrp_nopreempt_and_preempt_delay_on_a_backup() -> None:
    (inst,) = model.check_vrrp([vrrp(state="BACKUP", nopreempt=True, preempt_delay=30)], derive())
    assert (inst["state"], inst["nopreempt"], inst["preempt_delay"]) == ("BACKUP", True, 30)


# --------------------------------------------------------------------------
# a change of pool
# --------------------------------------------------------------------------


def live(*servers: tuple[str, str, int, str]) -> list[dict[str, Any]]:
    return [{"protocol": p, "vip": v, "port": port, "address": a, "name": a} for p, v, port, a in servers]


def test_pool_plan_quiesces_leaving_real_servers_and_requires_joining_ones() -> None:
    m = derive()  # web: rs1, rs2; web6: rs1; dns: win1
    current = live(
        ("tcp", "10.0.0.200", 80, "10.0.0.11"),
        ("tcp", "10.0.0.200", 80, "10.0.0.99"),  # leaves
        ("tcp", "fd00::200", 443, "fd00:0::11"),  # the same address, written another way
        ("udp", "10.0.0.201", 53, "10.0.0.21"),
    )
    plan = model.pool_plan(m, current)
    assert plan["leaving"] == [
        {"protocol": "tcp", "vip": "10.0.0.200", "port": 80, "name": "10.0.0.99", "address": "10.0.0.99", "weight": 0}
    ]
    assert [(j["name"], j["address"]) for j in plan["joining"]] == [("rs2", "10.0.0.12")]
    web_q, web_f = plan["quiesce"][0], plan["final"][0]
    assert [(r["address"], r["weight"], r.get("leaving", False)) for r in web_q["real_servers"]] == [
        ("10.0.0.11", 1, False),
        ("10.0.0.12", 3, False),
        ("10.0.0.99", 0, True),
    ]
    assert [r["address"] for r in web_f["real_servers"]] == ["10.0.0.11", "10.0.0.12"]
    assert plan["expect"][0]["real_servers"] == [
        {"name": "rs1", "address": "10.0.0.11", "weight": 1, "required": False},
        {"name": "rs2", "address": "10.0.0.12", "weight": 3, "required": True},
    ]
    assert [len(s["real_servers"]) for s in plan["final"]] == [2, 1, 1]
    # Before the real servers are configured, a joining one is left out.
    early = model.pool_plan(m, current, add_joining=False)
    assert [r["address"] for r in early["final"][0]["real_servers"]] == ["10.0.0.11"]
    assert [r["address"] for r in early["quiesce"][0]["real_servers"]] == ["10.0.0.11", "10.0.0.99"]
    assert early["leaving"] == plan["leaving"]


def test_pool_plan_a_service_left_empty_is_not_quiesced() -> None:
    """keepalived's config test refuses a virtual server whose weights add up
    to 0 (seen on the lab: unenroll of every real server of allow_empty
    services): the last real servers of a service go at the quiesce step."""
    m = derive()
    m[2] = {**m[2], "real_servers": []}  # dns: no real server holds its VIP any more (allow_empty)
    current = live(
        ("tcp", "10.0.0.200", 80, "10.0.0.11"),
        ("tcp", "10.0.0.200", 80, "10.0.0.12"),
        ("tcp", "fd00::200", 443, "fd00::11"),
        ("udp", "10.0.0.201", 53, "10.0.0.21"),
    )
    plan = model.pool_plan(m, current)
    assert [(r["vip"], r["address"]) for r in plan["leaving"]] == [("10.0.0.201", "10.0.0.21")]
    assert plan["quiesce"][2]["real_servers"] == plan["final"][2]["real_servers"] == []
    assert all(r["weight"] for s in plan["quiesce"] for r in s["real_servers"])


def test_pool_plan_no_change_and_unknown_current() -> None:
    m = derive()
    same = live(
        ("tcp", "10.0.0.200", 80, "10.0.0.11"),
        ("tcp", "10.0.0.200", 80, "10.0.0.12"),
        ("tcp", "fd00::200", 443, "fd00::11"),
        ("udp", "10.0.0.201", 53, "10.0.0.21"),
    )
    plan = model.pool_plan(m, same)
    assert plan["leaving"] == plan["joining"] == []
    assert plan["quiesce"] == plan["final"] == m
    # A configuration of an older dsrprov lists no real servers: nothing is
    # known to leave, and nothing is required to come in.
    unknown = model.pool_plan(m, None, add_joining=False)
    assert unknown["leaving"] == unknown["joining"] == []
    assert unknown["final"] == m
    assert not any(r["required"] for s in unknown["expect"] for r in s["real_servers"])
    # A new director: every real server joins.
    fresh = model.pool_plan(m, [])
    assert len(fresh["joining"]) == 4 and fresh["leaving"] == []
