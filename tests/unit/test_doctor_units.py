"""doctor's judges on recorded probe output (no host needed): the director's
IPVS table, the boot order of sysctl files, Windows facts (recordings made
by hand in the shapes PowerShell 5.1 prints: no Windows runs here)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from dsrprov.connect.winrm import parse_windows_facts
from dsrprov.doctor import director, drpath, linux, run, windows
from dsrprov.doctor.findings import CATALOGUE, Finding, readme_table

DATA = Path(__file__).parents[1] / "data"
MODEL = [
    {"name": "web", "vip": "10.250.0.200", "port": 80, "protocol": "tcp",
     "real_servers": [{"name": "rs1", "address": "10.250.0.11"}, {"name": "rs2", "address": "10.250.0.12"}]},
    {"name": "web6", "vip": "fd42:d5a:0:1::200", "port": 80, "protocol": "tcp",
     "real_servers": [{"name": "rs1", "address": "fd42:d5a:0:1::11"}, {"name": "rs2", "address": "fd42:d5a:0:1::12"}]},
]  # fmt: skip


def ids(found: list[Finding]) -> list[str]:
    return sorted(f.id for f in found)


def test_a_healthy_director_gives_no_finding() -> None:
    facts = director.parse((DATA / "doctor" / "director_ok.txt").read_text())
    assert [len(s.real_servers) for s in facts.services] == [2, 2]
    assert director.findings("director", facts, MODEL) == []


def test_director_faults_are_named() -> None:
    text = (DATA / "doctor" / "director_ok.txt").read_text()
    down = director.parse(text.replace("\nactive\n", "\ninactive\n").split("TCP  10.250")[0] + "@@dsrprov:end@@\n")
    assert ids(director.findings("director", down, MODEL)) == [
        "dir-keepalived-down",
        "dir-vs-missing",
        "dir-vs-missing",
    ]
    masq = director.parse(text.replace("10.250.0.12:80               Route", "10.250.0.12:80               Masq"))
    assert ids(director.findings("director", masq, MODEL)) == ["dir-not-route"]
    missing = director.parse(
        text.replace("  -> 10.250.0.12:80               Route   1      0          0         \n", "")
    )
    (f,) = director.findings("director", missing, MODEL)
    assert f.id == "dir-rs-missing" and "rs2 (10.250.0.12)" in f.line
    extra = copy.deepcopy(MODEL)
    extra[0]["real_servers"] = extra[0]["real_servers"][:1]
    (f,) = director.findings("director", director.parse(text), extra)
    assert f.id == "dir-rs-extra" and "10.250.0.12" in f.line


def test_the_last_sysctl_file_at_boot_wins_and_is_named() -> None:
    grep = (
        "/usr/lib/sysctl.d/50-default.conf:net.ipv4.conf.all.rp_filter = 2\n"
        "/etc/sysctl.d/90-dsrprov-arp.conf:net.ipv4.conf.all.arp_ignore = 1\n"
        "/etc/sysctl.d/90-dsrprov-arp.conf:net.ipv4.conf.all.arp_announce = 2\n"
        "/usr/lib/sysctl.d/99-zz-vendor.conf:net.ipv4.conf.all.arp_ignore = 0\n"
        "/etc/sysctl.d/99-zz-vendor.conf:net.ipv4.conf.all.arp_ignore = 1\n"  # masks the /usr/lib file
        "/etc/sysctl.conf:net/ipv4/conf/all/arp_announce = 0\n"
    )
    order = [(s.file, s.key, s.value) for s in linux._parse_sysctl_lines(grep)]
    assert order[-1] == ("/etc/sysctl.conf", "net.ipv4.conf.all.arp_announce", 0)
    assert ("/usr/lib/sysctl.d/99-zz-vendor.conf", "net.ipv4.conf.all.arp_ignore", 0) not in order
    facts = linux.DoctorFacts(base=linux.parse_probe(""), boot_settings=linux._parse_sysctl_lines(grep))
    (late,) = linux._weak_at_boot(facts)
    assert late.file == "/etc/sysctl.conf" and late.key == "net.ipv4.conf.all.arp_announce"


def test_firewall_evidence_names_the_rule() -> None:
    ruleset = (
        "table inet f {\n chain in {\n  type filter hook input priority 0;\n"
        "  ip daddr 10.250.0.200 tcp dport 80 drop\n }\n}"
    )
    assert linux.firewall_evidence(ruleset, "10.250.0.200", 80) == ["ip daddr 10.250.0.200 tcp dport 80 drop"]
    assert linux.firewall_evidence("table inet f {\n chain in {\n  tcp dport 22 accept\n }\n}", "10.0.0.1", 80) == []


def test_dr_probe_results_are_read_in_target_order() -> None:
    targets = [
        drpath.Target("rs1", "10.250.0.11", "10.250.0.200", 80),
        drpath.Target("rs2", "10.250.0.12", "10.250.0.200", 80),
    ]
    out = json.dumps({"error": "", "results": [
        {"host": "rs2", "vip": "10.250.0.200", "port": 80, "status": "timeout", "detail": "timed out"},
        {"host": "rs1", "vip": "10.250.0.200", "port": 80, "status": "ok", "reply_mac": "02:d5:a0:00:00:11",
         "captured": True}]})  # fmt: skip
    results, error = drpath.parse("noise\n" + out, targets)
    assert error == "" and [(r.target.host, r.status) for r in results] == [("rs1", "ok"), ("rs2", "timeout")]
    assert drpath.parse("", targets)[1].startswith("the DR-path probe printed no result")


def _windows(**changes: object) -> dict[str, object]:
    data = json.loads((DATA / "winrm" / "configured_ps51.json").read_text(encoding="utf-8-sig"))
    loop = next(a for a in data["adapters"] if "KM-TEST" in a["description"])
    data.update(
        profiles=[{"ifindex": loop["ifindex"], "category": "Private"}],
        dns=[{"ifindex": loop["ifindex"], "register": False}],
        public_firewall="True",
        firewall_rules=[{"name": "dsrprov-tcp-80", "profile": "Any"}],
    )
    data.update(changes)
    return data


def test_windows_findings_on_recorded_probe_output() -> None:
    healthy = _windows()
    vips = [a["address"] for a in healthy["addresses"] if a["prefix"] in (32, 128) and a["ifindex"] == next(
        x["ifindex"] for x in healthy["adapters"] if "KM-TEST" in x["description"])]  # fmt: skip
    facts = parse_windows_facts(json.dumps(healthy))
    assert windows.findings("win1", facts, vips) == []
    loop = next(a for a in healthy["adapters"] if "KM-TEST" in a["description"])["ifindex"]
    public = _windows(profiles=[{"ifindex": loop, "category": "Public"}], firewall_rules=[])
    assert ids(windows.findings("win1", parse_windows_facts(json.dumps(public)), vips)) == ["win-firewall-public"]
    dns = _windows(dns=[{"ifindex": loop, "register": True}])
    assert ids(windows.findings("win1", parse_windows_facts(json.dumps(dns)), vips)) == ["win-dns-register"]
    no_loop = _windows(adapters=[a for a in healthy["adapters"] if "KM-TEST" not in a["description"]])
    assert ids(windows.findings("win1", parse_windows_facts(json.dumps(no_loop)), vips)) == ["win-loopback-missing"]
    bad = copy.deepcopy(healthy)
    for i in bad["interfaces"]:
        if i["ifindex"] == loop:
            i["metric"], i["weak_host_send"] = 25, "Disabled"
    assert ids(windows.findings("win1", parse_windows_facts(json.dumps(bad)), vips)) == sorted(
        ["win-metric", "win-weakhost"] * len({i["family"] for i in bad["interfaces"] if i["ifindex"] == loop})
    )


def test_every_finding_has_a_fix_and_the_readme_table_lists_them_all() -> None:
    table = readme_table()
    for kind in CATALOGUE.values():
        assert kind.fix and kind.what and f"`{kind.id}`" in table
    readme = (Path(__file__).parents[2] / "docs" / "troubleshooting.md").read_text()
    assert table in readme


def test_dr_probe_failures_are_put_on_the_finding_that_explains_them() -> None:
    from dsrprov.doctor.run import _attribute

    t = drpath.Target("rs1", "10.250.0.11", "10.250.0.200", 80)
    base = linux.parse_probe("")
    facts = linux.DoctorFacts(base=base, firewall="")
    # No explanation on the host: a generic finding with the probe as evidence.
    found: list[Finding] = []
    _attribute(drpath.Result(t, "timeout", "timed out"), found, facts)
    assert ids(found) == ["rs-dr-path-fails"] and "via 10.250.0.11: timeout" in found[0].evidence[0]
    # A missing VIP explains it: evidence goes there, no second finding.
    missing = [Finding("rs-vip-missing", "rs1", "rs1: IPv4 VIP 10.250.0.200 is not on lo", [], {"vip": t.vip})]
    _attribute(drpath.Result(t, "timeout", "timed out"), missing, facts)
    assert ids(missing) == ["rs-vip-missing"] and len(missing[0].evidence) == 1
    # Refused: nothing listens on the VIP.
    refused: list[Finding] = []
    _attribute(drpath.Result(t, "refused"), refused, facts)
    assert ids(refused) == ["rs-service-not-on-vip"]
    # A reply from another MAC than the host's.
    base.macs = {"eth0": "02:d5:a0:00:00:11"}
    wrong: list[Finding] = []
    _attribute(drpath.Result(t, "ok", reply_mac="02:00:00:00:00:99", captured=True), wrong, facts)
    assert ids(wrong) == ["rs-dr-reply-wrong-mac"]
    right: list[Finding] = []
    _attribute(drpath.Result(t, "ok", reply_mac="02:d5:a0:00:00:11", captured=True), right, facts)
    assert right == []


def test_an_unreachable_host_is_a_probe_failed_finding_and_exit_3(tmp_path: Path) -> None:
    from dsrprov.connect.probe import ConnOptions
    from dsrprov.doctor.run import diagnose
    from dsrprov.errors import EXIT_UNREACHABLE, EXIT_USAGE
    from dsrprov.model.inventory import Inventory

    inv = tmp_path / "hosts.yml"
    # TEST-NET-1 address with a closed port on loopback semantics: nothing answers, fast.
    inv.write_text(
        "all:\n  children:\n    dsr_realservers_linux:\n      hosts:\n"
        "        rs9: {ansible_host: 127.0.0.1, ansible_port: 9, dsr_vips: [192.0.2.200]}\n"
    )
    report = diagnose(Inventory(inv), [], ConnOptions(timeout=2))
    assert {f.id for f in report.findings} == {"probe-failed", "doctor-no-vantage"}
    assert report.exit_code == EXIT_UNREACHABLE
    unknown = diagnose(Inventory(inv), ["nope"], ConnOptions(timeout=2))
    assert unknown.exit_code == EXIT_USAGE and unknown.unknown == ["nope"]


def test_every_proof_names_a_test_that_exists() -> None:
    import re

    tests = Path(__file__).parents[1]
    for kind in CATALOGUE.values():
        assert kind.proof, kind.id
        for ref in re.findall(r"((?:unit|integration)/test_\w+\.py)::(test_\w+)", kind.proof):
            assert f"def {ref[1]}(" in (tests / ref[0]).read_text(), (kind.id, ref)
        for param in re.findall(r"\[([\w-]+)\]", kind.proof):
            assert f'"{param}"' in (tests / "integration" / "test_doctor_lab.py").read_text(), (kind.id, param)


def _lo_findings(recording: str) -> list[Finding]:
    """doctor's findings on a host whose only recorded section is who manages lo."""
    from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lomgr

    base = linux.parse_probe("")
    base.lo = lomgr.parse((DATA / "lo" / f"{recording}.txt").read_text())
    facts = linux.DoctorFacts(base=base, keep_addr_on_down=1)
    vips = ["10.252.0.200", "fd42:d5a:0:4::200"]  # the nm lab's, as recorded
    return [f for f in linux.findings("rs1", facts, vips, [], client="10.252.0.2") if f.id == "rs-lo-manager"]


def test_a_network_manager_is_a_finding_only_where_it_could_remove_the_vips() -> None:
    # As found (recorded on the lab's kinds of host): NetworkManager or
    # systemd-networkd would remove VIPs put on lo by hand.
    for found in ("nm12-found", "nm13-found", "nd13-found"):
        (f,) = _lo_findings(found)
        assert "could remove the VIPs" in f.line and f.evidence, found
    # Once the role has put the VIPs into the manager's configuration, the
    # same manager is no finding (doctor judged every lo profile before).
    for configured in ("nm12p-configured", "nm13-configured", "nd11-configured"):
        assert _lo_findings(configured) == [], configured
    # Nothing manages lo: nothing to say.
    assert _lo_findings("plain12-found") == []


def _route_facts(rp_all: int, rp_eth0: int, verdict: str, back: str) -> linux.DoctorFacts:
    return linux.DoctorFacts(
        base=linux.parse_probe(""),
        rp_filter={"all": rp_all, "eth0": rp_eth0},
        iface="eth0",
        route_back=back,
        dr_route={"10.250.0.200": verdict},
    )


NO_ROUTE = "RTNETLINK answers: No route to host"
EXDEV = "RTNETLINK answers: Invalid cross-device link"
EINVAL = "RTNETLINK answers: Invalid argument"  # recorded on rs2 with strict rp_filter, the VIP on lo
BACK_ETH0 = "10.250.0.100 dev eth0 src 10.250.0.11 uid 0"
BACK_OTHER = "10.250.0.100 via 10.249.0.2 dev dsrx0 src 10.249.0.1 uid 0"


def test_a_missing_vip_on_a_host_that_does_not_forward_is_not_blamed_on_rp_filter() -> None:
    # Recorded on a lab real server with ip_forward=0, rp_filter 0, the VIP deleted:
    # the route lookup fails with "No route to host". The cause is the missing VIP.
    facts = _route_facts(0, 0, NO_ROUTE, BACK_ETH0)
    found = linux.findings("rs1", facts, ["10.250.0.200"], [], client="10.250.0.100")
    assert ids(found) == ["rs-vip-missing"]
    assert any("No route to host" in e for e in found[0].evidence)


def test_rp_filter_is_named_only_when_its_values_and_the_route_back_make_it_the_cause() -> None:
    def judged(rp_all: int, rp_eth0: int, verdict: str, back: str) -> list[str]:
        facts = _route_facts(rp_all, rp_eth0, verdict, back)
        return ids(linux.findings("rs1", facts, [], [], client="10.250.0.100"))

    # Strict on either all or eth0, route back by another interface: rp_filter.
    assert judged(1, 1, EINVAL, BACK_OTHER) == ["rs-rp-filter-drops"]
    assert judged(1, 0, EXDEV, BACK_OTHER) == ["rs-rp-filter-drops"]
    assert judged(0, 1, EXDEV, BACK_OTHER) == ["rs-rp-filter-drops"]
    # Loose rp_filter with no route back at all.
    assert judged(2, 0, EXDEV, "RTNETLINK answers: Network is unreachable") == ["rs-rp-filter-drops"]
    # rp_filter off: never its fault, whatever the kernel says.
    assert judged(0, 0, EXDEV, BACK_OTHER) == ["rs-dr-path-fails"]
    assert judged(0, 0, EINVAL, BACK_OTHER) == ["rs-dr-path-fails"]
    # Strict, but the route back leaves by the interface the packet came in on.
    assert judged(1, 1, EXDEV, BACK_ETH0) == ["rs-dr-path-fails"]
    # Another error (the VIP held, so not a missing VIP): not rp_filter.
    assert judged(1, 1, NO_ROUTE, BACK_OTHER) == ["rs-dr-path-fails"]
    # A route lookup that worked says nothing.
    assert judged(1, 1, "local 10.250.0.200 from 10.250.0.100 dev lo table local", BACK_OTHER) == []


def test_a_failed_dr_probe_joins_the_route_finding_of_its_host() -> None:
    facts = _route_facts(0, 0, NO_ROUTE, BACK_ETH0)
    found = linux.findings("rs1", facts, [], [], client="10.250.0.100")
    target = drpath.Target("rs1", "10.250.0.11", "10.250.0.200", 80)
    run._attribute(drpath.Result(target, "timeout", "timed out"), found, facts)
    assert ids(found) == ["rs-dr-path-fails"] and any("DR probe" in e for e in found[0].evidence)


def test_a_director_dropping_a_real_server_that_cannot_answer_is_evidence_not_a_second_finding() -> None:
    # With the DSR-path health check the director takes a real server without
    # its VIP out of that VIP's pool: the cause stays, the consequence joins it.
    cause = Finding(
        "rs-vip-missing", "rs1", "rs1: IPv6 VIP fd42:d5a:0:1::200 is not on lo", [], {"vip": "fd42:d5a:0:1::200"}
    )
    dropped = Finding("dir-rs-missing", "director", "director: real server rs1 is not in [fd42:d5a:0:1::200]:80/tcp",
                      [], {"rs": "rs1", "vip": "fd42:d5a:0:1:0:0:0:200"})  # fmt: skip
    other = Finding("dir-rs-missing", "director", "director: real server rs1 is not in 10.250.0.200:80/tcp", [],
                    {"rs": "rs1", "vip": "10.250.0.200"})  # fmt: skip
    out = run.fold_pool_consequences([cause, dropped, other])
    assert [f.id for f in out] == ["rs-vip-missing", "dir-rs-missing"] and out[1] is other
    assert "took it out of the pool" in cause.evidence[-1]


LOOP = "\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00"
LO_UP = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT" + LOOP
LO_DOWN = "1: lo: <LOOPBACK> mtu 65536 qdisc noqueue state DOWN mode DEFAULT" + LOOP
ETH0 = "2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP\\    link/ether 02:d5:a0:00:00:11"


ARP_OK = "\n".join(f"/proc/sys/net/ipv4/conf/{i}/{k}:{v}" for i in ("all", "eth0")
                   for k, v in (("arp_ignore", 1), ("arp_announce", 2)))  # fmt: skip


def _lo_facts(link: str, lo_addr: str) -> linux.DoctorFacts:
    text = (f"@@dsrprov:addr@@\n1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n{lo_addr}\n"
            f"@@dsrprov:link@@\n{link}\n{ETH0}\n@@dsrprov:sysctl@@\n{ARP_OK}\n@@dsrprov:end@@\n")  # fmt: skip
    return linux.DoctorFacts(base=linux.parse_probe(text), keep_addr_on_down=1)


def test_lo_down_and_a_wide_vip_prefix_are_named_as_the_causes() -> None:
    vip = "10.250.0.200"
    host_addr = f"1: lo    inet {vip}/32 scope global lo:1\\       valid_lft forever preferred_lft forever"
    wide_addr = f"1: lo    inet {vip}/30 scope global lo:1\\       valid_lft forever preferred_lft forever"
    from dsrprov.connect.linux_facts import parse_link_up

    assert parse_link_up(f"{LO_DOWN}\n{ETH0}") == {"lo": False, "eth0": True}
    assert ids(linux.findings("rs1", _lo_facts(LO_UP, host_addr), [vip], [], client="")) == []
    # lo down: the address is still listed, the cause is lo.
    down = linux.findings("rs1", _lo_facts(LO_DOWN, host_addr), [vip], [], client="")
    assert ids(down) == ["rs-lo-down"] and "ip link set lo up" in down[0].fix
    # A /30: the VIP is there, but not as a host address; not "missing" too.
    wide = linux.findings("rs1", _lo_facts(LO_UP, wide_addr), [vip], [], client="")
    assert ids(wide) == ["rs-vip-wide-prefix"] and "ip addr del 10.250.0.200/30 dev lo" in wide[0].fix
    # The DR probe's failure and the director's dropping of the host join the cause.
    target = drpath.Target("rs1", "10.250.0.11", vip, 80)
    run._attribute(drpath.Result(target, "timeout", "timed out"), down, None)
    dropped = Finding("dir-rs-missing", "director", "director: real server rs1 is not in 10.250.0.200:80/tcp", [],
                      {"rs": "rs1", "vip": vip})  # fmt: skip
    assert ids(run.fold_pool_consequences([*down, dropped])) == ["rs-lo-down"]
    assert any("DR probe" in e for e in down[0].evidence) and "took it out" in down[0].evidence[-1]
    # A host with lo down that forwards sends the probe on, and another host answers: lo is still the cause.
    target6 = drpath.Target("rs1", "fd42:d5a:0:1::11", "fd42:d5a:0:1::200", 80)
    facts = _lo_facts(LO_DOWN, host_addr)
    run._attribute(drpath.Result(target6, "ok", reply_mac="02:d5:a0:00:00:12", captured=True), down, facts)
    assert ids(down) == ["rs-lo-down"] and "the reply came from 02:d5:a0:00:00:12" in down[0].evidence[-1]


def test_a_linux_host_that_does_not_answer_at_all_gets_a_hint_of_what_that_points_to() -> None:
    hint = linux.unreachable_hint("unreachable: no answer from 10.250.0.11:22 within 5 s")
    assert len(hint) == 1 and "wide prefix" in hint[0] and "ip -o addr show dev lo" in hint[0]
    assert linux.unreachable_hint("unreachable: 10.250.0.11:22: Connection refused") == []
