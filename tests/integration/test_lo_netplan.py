"""Issue 24: real servers whose network netplan describes keep their VIPs.

One lab of its own (inventories/lab-netplan: network dsrprov-netplan,
10.240.3.0/24, fd42:d5a:0:43::/64): Debian 13 with netplan.io 1.1 and Debian
12 with netplan.io 0.106, both rendering for systemd-networkd, eth0 in
/etc/netplan/50-cloud-init.yaml as cloud-init writes it; np13 and np12 as
found (lo not in netplan), np13lo and np12lo with lo in the admin's own netplan file
(127.0.0.1/8 and ::1/128, as netplan's documentation shows); and a client
that asks the segment who answers ARP and ND for the VIPs.

In the style of test_lo_managers.py, every scenario sharing the hosts: the
role refuses, before any change, where netplan cannot carry the VIPs; check
mode changes nothing and shows the netplan file; converge, idempotence,
check mode; after each disruption both VIPs are on lo within DEADLINE
seconds and nobody answers ARP or ND for them; state=absent leaves
/etc/netplan, /run/systemd/network and lo as found; then the negative
control, the same disruptions with the VIPs put on lo by hand.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pytest

import dsrprov_lab as labmod
from dsrprov.run.playbook import PlaybookRun
from tests.integration.test_lo_managers import Outcome, poll, reboot, recap, sh
from tests.integration.test_lo_managers import lo_vips as lo_vips_of
from tests.integration.test_lo_managers import neighbours as neighbours_of
from tests.support import ROOT, dsrprov_cli, run_playbook

pytestmark = pytest.mark.lab

INVENTORY = ROOT / "inventories" / "lab-netplan"
V4, V6 = "10.240.3.200", "fd42:d5a:0:43::200"
DEADLINE = 5.0  # as test_lo_managers.py's poll() waits
# Shell: networkd settled (no link pending or configuring, 5 s at most),
# half a second after a command whose reconfiguration may start once it
# returned (netplan apply 1.1); a VIP networkd is about to drop is not
# counted as kept, nor a host snapshot taken halfway.
SETTLE = (
    "sleep 0.5; for i in $(seq 50); do networkctl list --no-legend | grep -qE 'pending|configuring' || break;"
    " sleep 0.1; done"
)
POLL = f"{SETTLE}\n{poll(V4, V6)}"
T = TypeVar("T")
OURS = "/etc/netplan/90-dsrprov-loopback-vips.yaml"
ADMIN_LO = "/etc/netplan/60-loopback.yaml"
ADMIN_ETH0 = "/etc/netplan/70-admin-eth0.yaml"
# Once lo leaves netplan's configuration networkd deletes 127.0.0.1 and ::1
# too: the kernel puts them back on a down/up of lo.
LOCALHOST_BACK = (
    "sleep 1; ip -o addr show dev lo | grep -q ' 127.0.0.1/8 ' || { ip link set lo down; ip link set lo up; }"
)
REGENERATE = "netplan generate && networkctl reload"
# lo as netplan's documentation configures it.
LO_YAML = "printf 'network:\\n  version: 2\\n  ethernets:\\n    lo:\\n      addresses: [127.0.0.1/8, \"::1/128\"]\\n'"


@dataclass(frozen=True)
class Disruption:
    name: str
    command: str  # shell, on the real server; "reboot" restarts the container
    reset: str = ""


DISRUPTIONS = {
    d.name: d
    for d in [
        Disruption("netplan-apply", "netplan apply 2>/dev/null"),
        Disruption("netplan-generate-reload", REGENERATE),
        Disruption("restart-networkd", "systemctl restart systemd-networkd"),
        Disruption("networkctl-reconfigure", "networkctl reconfigure lo"),
        Disruption("lo-down-up", "ip link set lo down && ip link set lo up"),
        Disruption("reboot", "reboot"),
        Disruption(
            "admin-eth0-file",
            "umask 077; printf 'network:\\n  version: 2\\n  ethernets:\\n    eth0:\\n      mtu: 1500\\n'"
            f" > {ADMIN_ETH0} && netplan apply 2>/dev/null",
            f"rm -f {ADMIN_ETH0} && {REGENERATE}",
        ),
        # What makes the VIPs of a netplan host without lo in netplan go: an
        # admin (or cloud-init) gives lo a netplan configuration.
        Disruption(
            "admin-lo-file",
            f"umask 077; {LO_YAML} > {ADMIN_LO} && netplan apply 2>/dev/null",
            f"rm -f {ADMIN_LO} && {REGENERATE} && {LOCALHOST_BACK}",
        ),
    ]
}
COMMON = tuple(d for d in DISRUPTIONS if d != "admin-lo-file")


@dataclass(frozen=True)
class Kind:
    host: str
    setup: str
    disruptions: tuple[str, ...]
    by_hand: tuple[tuple[str, str], ...]  # the negative control's outcome where it is not "lost"


# lo not in netplan: networkd leaves it alone; only a down/up (IPv6) and the
# admin's lo file take hand-made VIPs away.
UNMANAGED_BY_HAND = (
    *((d, "kept") for d in ("netplan-apply", "netplan-generate-reload", "restart-networkd", "networkctl-reconfigure")),
    ("lo-down-up", "v6 lost"),
    ("admin-eth0-file", "kept"),
)
LO_SETUP = f"umask 077; {LO_YAML} > {ADMIN_LO} && {REGENERATE}"
KINDS = [
    Kind("np13", "", (*COMMON, "admin-lo-file"), UNMANAGED_BY_HAND),
    Kind(
        "np13lo",
        LO_SETUP,
        COMMON,
        # networkd does not configure lo again after a down/up: IPv6 goes, as without a manager.
        (("lo-down-up", "v6 lost"),),
    ),
    # netplan 0.106's apply leaves hand-made VIPs on a lo that just entered its configuration.
    Kind("np12", "", (*COMMON, "admin-lo-file"), (*UNMANAGED_BY_HAND, ("admin-lo-file", "kept"))),
    # networkd 252 leaves addresses it did not configure on a lo it manages:
    # only a down/up (IPv6) and a reboot take hand-made VIPs away.
    Kind("np12lo", LO_SETUP, COMMON, UNMANAGED_BY_HAND),
]
BY_HOST = {k.host: k for k in KINDS}
CELLS = [(k.host, d) for d in DISRUPTIONS for k in KINDS if d in k.disruptions]


def snapshot(host: labmod.LabHost) -> str:
    """/etc/netplan, what netplan rendered, lo and eth0, the role's files."""
    return sh(
        host,
        SETTLE + ";"
        # networkd 252 gives the 127.0.0.1 it configured a broadcast address (as
        # 247 does, test_lo_managers.py), which the kernel's has not: left out.
        "export LC_ALL=C; ip -o addr show | sed 's/\\\\.*//; s/ brd 127.255.255.255//' | sort;"
        " sysctl net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce net.ipv6.conf.lo.keep_addr_on_down;"
        " for f in $(find /etc/netplan /run/systemd/network /etc/systemd/network /etc/dsrprov /etc/sysctl.d"
        ' -type f 2>/dev/null | sort); do echo "== $f"; stat -c %a "$f"; cat "$f"; done;'
        # The admin's files keep their modification times (netplan rewrites /run's at every generate).
        " stat -c '%n %Y' /etc/netplan/*; find /etc/systemd/system /etc/dsrprov 2>/dev/null | sort;"
        " networkctl list --no-legend; true",
    )


def lo_vips(host: labmod.LabHost) -> set[str]:
    return lo_vips_of(host, (V4, V6))


def neighbours(client: labmod.LabHost) -> tuple[list[str], list[str]]:
    return neighbours_of(client, V4, V6)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return dsrprov_cli(INVENTORY / "hosts.yml", *args)


def doctor_lo(host: labmod.LabHost) -> list[str]:
    """doctor's rs-lo-manager finding for HOST (title, then reasons), from doctor's own probe run on it."""
    from dsrprov.doctor import linux as doctor_linux

    facts = doctor_linux.parse(sh(host, doctor_linux.script("10.240.3.2", host.ip, [V4, V6])))
    return [
        line
        for f in doctor_linux.findings(host.name, facts, [V4, V6], [], client="10.240.3.2")
        if f.id == "rs-lo-manager"
        for line in [f.line, *f.evidence]
    ]


def each(the_lab: labmod.Lab, fn: Callable[[labmod.LabHost], T], hosts: list[str] | None = None) -> dict[str, T]:
    names = hosts or list(BY_HOST)
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(names, pool.map(lambda h: fn(the_lab.host(h)), names), strict=True))


@pytest.fixture(scope="module")
def nplab() -> Iterator[labmod.Lab]:
    the_lab = labmod.load_lab(INVENTORY / "hosts.yml")
    was_running = all(labmod.status(the_lab).values())
    labmod.up(the_lab)
    if was_running:
        assert run_playbook("site.yml", "-e", "dsr_state=absent", inventory=INVENTORY).returncode == 0
    # udev in a container may leave links "pending" for networkd until the
    # next trigger (netplan apply makes one): the coldplug a boot does, first,
    # so that the host as found is settled.
    coldplug = f"udevadm trigger --action=add --subsystem-match=net; udevadm settle -t 10; {SETTLE}"
    each(the_lab, lambda h: sh(h, coldplug))
    each(the_lab, lambda h: BY_HOST[h.name].setup and sh(h, BY_HOST[h.name].setup))
    yield the_lab
    if not was_running and not os.environ.get("DSRPROV_KEEP_LAB"):
        labmod.down(the_lab)


@pytest.fixture(scope="module")
def found(nplab: labmod.Lab) -> dict[str, str]:
    return each(nplab, snapshot)


# -- 1. refused before any change (one host each, one run) -----------------------
REFUSALS = {
    "np13": (
        "printf 'network: [\\n' > /etc/netplan/99-broken.yaml && chmod 600 /etc/netplan/99-broken.yaml",
        "rm /etc/netplan/99-broken.yaml",
        "netplan cannot read its configuration (",
    ),
    "np13lo": (
        "umask 077; printf 'network:\\n  version: 2\\n  renderer: NetworkManager\\n' > /etc/netplan/99-nm.yaml",
        "rm /etc/netplan/99-nm.yaml",
        "netplan renders lo for NetworkManager here: dsrprov keeps VIPs in netplan with the networkd renderer only",
    ),
    "np12": (
        f"umask 077; printf 'network:\\n  version: 2\\n' > {OURS}",
        f"rm {OURS}",
        f"{OURS} exists and is not dsrprov's: move it away, dsrprov keeps the VIPs there",
    ),
}


def test_refused_before_any_change(nplab: labmod.Lab, found: dict[str, str]) -> None:
    each(nplab, lambda h: sh(h, REFUSALS[h.name][0]), list(REFUSALS))
    try:
        before = each(nplab, snapshot, list(REFUSALS))
        run = run_playbook("site.yml", "--limit", ",".join(REFUSALS), inventory=INVENTORY)
        for host, (_make, _undo, message) in REFUSALS.items():
            assert run.hosts[host].failed == 1
            assert f"dsrprov: {message}" in run.stdout, (host, run.stdout[-3000:])
        assert each(nplab, snapshot, list(REFUSALS)) == before
    finally:
        each(nplab, lambda h: sh(h, REFUSALS[h.name][1]), list(REFUSALS))


# -- 2. check mode, converge, idempotence ----------------------------------------
@pytest.fixture(scope="module")
def dry(nplab: labmod.Lab, found: dict[str, str]) -> tuple[PlaybookRun, dict[str, str]]:
    run = run_playbook("site.yml", "--check", "--diff", inventory=INVENTORY)
    return run, each(nplab, snapshot)


@pytest.fixture(scope="module")
def converged(nplab: labmod.Lab, dry: object) -> dict[str, PlaybookRun]:
    runs = {"converge": run_playbook("site.yml", inventory=INVENTORY)}
    runs["idempotence"] = run_playbook("site.yml", inventory=INVENTORY)
    runs["check"] = run_playbook("site.yml", "--check", "--diff", inventory=INVENTORY)
    return runs


def test_check_mode_changes_nothing_and_shows_the_netplan_file(
    found: dict[str, str], dry: tuple[PlaybookRun, dict[str, str]], converged: dict[str, PlaybookRun]
) -> None:
    run, after = dry
    for host in BY_HOST:
        assert after[host] == found[host], "".join(
            difflib.unified_diff(found[host].splitlines(True), after[host].splitlines(True))
        )
        assert run.hosts[host].changed_tasks == converged["converge"].hosts[host].changed_tasks
    assert f"+++ after: what manages lo\n@@ -1,2 +1,11 @@\n # {OURS}" in run.stdout
    assert f'+        - "{V4}/32":\n+            label: "lo:1"\n+        - "{V6}/128"' in run.stdout


def test_converge_then_idempotence_then_check_mode(nplab: labmod.Lab, converged: dict[str, PlaybookRun]) -> None:
    for host in BY_HOST:
        changed, failed, unreachable = recap(converged["converge"], host)
        assert (changed, failed, unreachable) == (1, 0, 0), converged["converge"].stdout[-3000:]
        assert recap(converged["idempotence"], host) == (0, 0, 0)
        assert recap(converged["check"], host) == (0, 0, 0)
        text = sh(
            nplab.host(host),
            f"stat -c %a {OURS}; grep -h renderer /etc/netplan/*.yaml; netplan get ethernets.lo;"
            " cat /run/systemd/network/10-netplan-lo.network; true",
        )
        assert text.startswith("600\n") and "renderer" not in text.split("addresses")[0], text
        assert f"Address={V4}/32\nLabel=lo:1" in text and f"Address={V6}/128" in text, text


def test_status_and_doctor_name_netplan_and_warn_of_nothing(nplab: labmod.Lab, converged: object) -> None:
    proc = cli("status", "--json")
    assert proc.returncode == 0, proc.stderr
    hosts = {h["host"]: h for h in json.loads(proc.stdout)["hosts"]}
    for host in BY_HOST:
        state = hosts[host]["state"]
        assert state["lo_manager"]["manager"] == "netplan", state
        assert state["summary"] == "configured"
        assert "warnings" not in hosts[host], hosts[host]["warnings"]
    table = cli("status")
    assert re.search(r"np13lo .*netplan", table.stdout), table.stdout
    # doctor judges lo as the role does: netplan holding the VIPs is no finding.
    assert each(nplab, doctor_lo) == {host: [] for host in BY_HOST}


# -- 3. the disruptions ----------------------------------------------------------
class Rounds:
    def __init__(self, the_lab: labmod.Lab) -> None:
        self.lab = the_lab
        self.done: dict[tuple[str, str], dict[str, Outcome]] = {}

    def run(self, phase: str, name: str) -> dict[str, Outcome]:
        if (phase, name) in self.done:
            return self.done[(phase, name)]
        disruption = DISRUPTIONS[name]
        hosts = [self.lab.host(k.host) for k in KINDS if name in k.disruptions]

        def one(host: labmod.LabHost) -> tuple[set[str], float]:
            if phase == "by hand":
                sh(host, f"ip addr add {V4}/32 dev lo label lo:1; ip -6 addr add {V6}/128 dev lo nodad; true")
            if disruption.command == "reboot":
                reboot(host)
                out = sh(host, POLL)
            else:
                out = sh(host, f"{disruption.command}\n{POLL}")
            seconds = int(out.split()[1]) / 1000 if out.startswith("back ") else DEADLINE
            return lo_vips(host), seconds

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, hosts))
            arp, nd = neighbours(self.lab.host("client"))
            if disruption.reset:
                list(pool.map(lambda h: sh(h, disruption.reset), hosts))
            if phase == "by hand":
                list(pool.map(lambda h: sh(h, f"ip addr del {V4}/32 dev lo; ip addr del {V6}/128 dev lo; true"), hosts))
        self.done[(phase, name)] = {
            h.name: Outcome(v, s, arp, nd) for h, (v, s) in zip(hosts, results, strict=True)
        }  # fmt: skip
        return self.done[(phase, name)]


@pytest.fixture(scope="module")
def rounds(nplab: labmod.Lab) -> Iterator[Rounds]:
    r = Rounds(nplab)
    yield r
    figures = {
        f"{phase} | {name} | {host}": {"vips": sorted(o.vips), "seconds": round(o.seconds, 2)}
        for (phase, name), by_host in r.done.items()
        for host, o in by_host.items()
    }
    (nplab.state_dir / "lo-netplan-matrix.json").write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize(("host", "disruption"), CELLS, ids=[f"{h}-{d}" for h, d in CELLS])
def test_vips_stay_and_arp_stays_silent(
    nplab: labmod.Lab, converged: object, rounds: Rounds, host: str, disruption: str
) -> None:
    outcome = rounds.run("dsrprov", disruption)[host]
    assert outcome.vips == {V4, V6}, f"{host}: after {disruption} lo holds {outcome.vips or 'no VIP'}"
    mac = nplab.host(host).mac
    assert mac not in outcome.arp and mac not in outcome.nd, f"{host} answers ARP/ND after {disruption}"


# -- 4. absent -------------------------------------------------------------------
@pytest.fixture(scope="module")
def removed(nplab: labmod.Lab, converged: object, rounds: Rounds) -> PlaybookRun:
    run = run_playbook("site.yml", "-e", "dsr_state=absent", inventory=INVENTORY)
    assert run.returncode == 0, run.stdout[-3000:]
    return run


def test_absent_leaves_netplan_and_lo_as_found(nplab: labmod.Lab, found: dict[str, str], removed: PlaybookRun) -> None:
    now = each(nplab, snapshot)
    for host in BY_HOST:
        assert removed.hosts[host].changed == 1
        assert now[host] == found[host], "".join(
            difflib.unified_diff(found[host].splitlines(True), now[host].splitlines(True))
        )


# -- 5. the negative control: VIPs by hand ---------------------------------------
def test_status_warns_where_netplan_could_remove_hand_made_vips(nplab: labmod.Lab, removed: PlaybookRun) -> None:
    each(nplab, lambda h: sh(h, f"ip addr add {V4}/32 dev lo label lo:1 && ip -6 addr add {V6}/128 dev lo nodad"))
    try:
        proc = cli("status", "--json")
        doctor = each(nplab, doctor_lo)
    finally:
        each(nplab, lambda h: sh(h, f"ip addr del {V4}/32 dev lo; ip addr del {V6}/128 dev lo; true"))
    reports = {h["host"]: h for h in json.loads(proc.stdout)["hosts"]}
    for host in BY_HOST:
        warnings = " | ".join(reports[host].get("warnings", []))
        assert reports[host]["state"]["lo_manager"]["manager"] == "netplan"
        if host.endswith("lo"):
            assert f"netplan apply, networkctl reload or reconfigure lo removes {V4}, {V6}" in warnings, warnings
        else:
            assert f"then netplan apply), {V4}, {V6} are removed: they are not in it" in warnings, warnings
        assert doctor[host][0].startswith(f"{host}: netplan "), doctor[host]
        assert doctor[host][0].endswith("could remove the VIPs"), doctor[host]


@pytest.mark.parametrize(("host", "disruption"), CELLS, ids=[f"{h}-{d}" for h, d in CELLS])
def test_hand_made_vips_are_lost(
    nplab: labmod.Lab, removed: PlaybookRun, rounds: Rounds, host: str, disruption: str
) -> None:
    outcome = rounds.run("by hand", disruption)[host]
    expected = dict(BY_HOST[host].by_hand).get(disruption, "lost")
    seen = {frozenset(): "lost", frozenset({V4}): "v6 lost", frozenset({V4, V6}): "kept"}.get(
        frozenset(outcome.vips), f"left {outcome.vips}"
    )
    assert seen == expected, f"{host}, VIPs by hand, {disruption}: {seen} (expected {expected})"
