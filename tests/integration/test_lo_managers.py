"""Issue 11: real servers keep their VIPs whatever manages the network.

One lab of its own (inventories/lab-nm: network dsrprov-nm, 10.252.0.0/24,
fd42:d5a:0:4::/64) with a real server of each kind: Debian 12 with nothing
managing the network, NetworkManager 1.42 (Debian 12) and 1.52 (Debian 13),
each without and with a loopback profile, systemd-networkd 257 (Debian 13)
and 247 (Debian 11) with a .network matching lo, and ifupdown (Debian 11);
and a client that asks the segment who answers ARP and ND for the VIPs.

In order: the role refuses, before any change, hosts where it cannot make
the VIPs safe; it converges every kind, a second run changes nothing, and
check mode reports nothing to change; after each disruption a manager (or
an admin) can inflict, the IPv4 and IPv6 VIPs are on lo again within
DEADLINE seconds and no real server answers ARP or ND for them; state=absent
leaves each host as it was found, profile included. Then the negative
control: the same disruptions on the same hosts with the VIPs put on lo by
hand, as a vendor manual says, lose them (the row beside each cell in the
README). The hosts are shared by every scenario; each disruption runs on
all the hosts it applies to at once.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

import dsrprov_lab as labmod
from dsrprov.checks.verify import parse_arping, parse_ndisc6
from dsrprov.run.playbook import PlaybookRun
from tests.support import ROOT, dsrprov_cli, run_playbook

pytestmark = pytest.mark.lab

INVENTORY = ROOT / "inventories" / "lab-nm"
V4, V6 = "10.252.0.200", "fd42:d5a:0:4::200"
# "Still on lo, or back within a few seconds": the positive cells poll up to
# this long, and the negative control waits this long before it calls a VIP lost.
DEADLINE = 5.0

# The admin's own configuration, made before dsrprov ever runs.
NM_PROFILE = "nmcli -g TYPE,FILENAME connection show | grep -q '^loopback:/etc/' || " + (
    "nmcli connection add type loopback con-name lo ifname lo >/dev/null"
)
LO_NETWORK = "/etc/systemd/network/05-lo.network"
NM_HOOK_PATH = "/etc/NetworkManager/dispatcher.d/90-dsrprov-loopback-vips"
ND_LO = f"printf '[Match]\\nName=lo\\n' > {LO_NETWORK} && networkctl reload"
# networkd 247 drops 127.0.0.1 and ::1 unless lo's .network lists them: the
# role refuses that host until the admin adds them (test_refused_...).
ND_LO_247 = (
    f"printf '[Match]\\nName=lo\\n\\n[Network]\\nAddress=127.0.0.1/8\\nAddress=::1/128\\n' > {LO_NETWORK}"
    " && networkctl reload"
)

# Shell: the UUID of lo's NetworkManager connection, the stored profile when
# there is one, else NetworkManager's generated one.
LO_CONN = (
    "c=$(nmcli -g UUID,TYPE,FILENAME connection show"
    " | awk -F: '$2==\"loopback\" && $3 ~ /^\\/etc\\// {print $1; exit}'); stored=$c;"
    ' [ -n "$c" ] || c=$(nmcli -g UUID,TYPE connection show | awk -F: \'$2=="loopback" {print $1; exit}\');'
)


@dataclass(frozen=True)
class Disruption:
    name: str
    title: str  # as the README table says it
    command: str  # shell, on the real server; "reboot" restarts the container
    reset: str = ""  # shell that puts the manager back as the admin had it


DISRUPTIONS = {
    d.name: d
    for d in [
        Disruption(
            "nmcli-con-up", "nmcli con up (lo's connection)", LO_CONN + ' nmcli connection up uuid "$c" >/dev/null'
        ),
        Disruption(
            "nmcli-con-down",
            "nmcli con down (lo's connection)",
            LO_CONN + ' nmcli connection down uuid "$c" >/dev/null',
            # A profile taken down by hand stays down (autoconnect is blocked).
            LO_CONN + ' [ -z "$stored" ] || nmcli connection up uuid "$stored" >/dev/null',
        ),
        Disruption("nmcli-device-reapply", "nmcli device reapply lo", "nmcli device reapply lo >/dev/null"),
        Disruption("restart-networkmanager", "systemctl restart NetworkManager", "systemctl restart NetworkManager"),
        # A plain reload with unchanged files leaves lo alone (checked by
        # hand); the realistic one follows an edit of lo's configuration.
        Disruption(
            "networkctl-reload",
            "networkctl reload (after lo's .network changed)",
            # Its mtime is put back after: the snapshots compare mtimes.
            f"t=$(stat -c %Y {LO_NETWORK}) && touch {LO_NETWORK} && networkctl reload && touch -d @$t {LO_NETWORK}",
        ),
        Disruption("networkctl-reconfigure", "networkctl reconfigure lo", "networkctl reconfigure lo"),
        Disruption("restart-networkd", "systemctl restart systemd-networkd", "systemctl restart systemd-networkd"),
        Disruption("ifdown-ifup-lo", "ifdown lo; ifup lo", "ifdown lo && ifup lo"),
        Disruption("lo-down-up", "ip link set lo down; ip link set lo up", "ip link set lo down && ip link set lo up"),
        Disruption("reboot", "reboot (container restart)", "reboot"),
    ]
}
NM = ("nmcli-con-up", "nmcli-con-down", "nmcli-device-reapply", "restart-networkmanager")
ND = ("networkctl-reload", "networkctl-reconfigure", "restart-networkd")
EVERY = ("lo-down-up", "reboot")


@dataclass(frozen=True)
class Kind:
    host: str
    title: str
    manager: str  # what dsrprov must find
    setup: str
    disruptions: tuple[str, ...]
    # The negative control's expected outcome per disruption, with the VIPs
    # put on lo by hand: "lost" (both), "v6 lost" (the kernel keeps IPv4 on a
    # down lo), "kept" (this disruption does not touch them here either).
    by_hand: tuple[tuple[str, str], ...]


# Without a loopback profile NetworkManager leaves addresses it does not know
# alone, except when lo's (generated) connection is taken down.
NM_NO_PROFILE_BY_HAND = (
    ("nmcli-con-up", "kept"),
    ("nmcli-device-reapply", "kept"),
    ("restart-networkmanager", "kept"),
    ("lo-down-up", "v6 lost"),
)

KINDS = [
    Kind("plain12", "Debian 12, nothing manages lo", "none", "", EVERY, (("lo-down-up", "v6 lost"),)),
    Kind(
        "nm12",
        "Debian 12, NetworkManager 1.42, no loopback profile",
        "NetworkManager",
        "",
        NM + EVERY,
        NM_NO_PROFILE_BY_HAND,
    ),
    Kind(
        "nm12p",
        "Debian 12, NetworkManager 1.42, loopback profile",
        "NetworkManager",
        NM_PROFILE,
        NM + EVERY,
        (("restart-networkmanager", "kept"),),
    ),
    Kind(
        "nm13",
        "Debian 13, NetworkManager 1.52, no loopback profile",
        "NetworkManager",
        "",
        NM + EVERY,
        NM_NO_PROFILE_BY_HAND,
    ),
    Kind(
        "nm13p",
        "Debian 13, NetworkManager 1.52, loopback profile",
        "NetworkManager",
        NM_PROFILE,
        NM + EVERY,
        (("restart-networkmanager", "kept"),),
    ),
    Kind(
        "nd13",
        "Debian 13, systemd-networkd 257, .network for lo",
        "systemd-networkd",
        ND_LO,
        ND + EVERY,
        (("lo-down-up", "v6 lost"),),
    ),
    Kind(
        "nd11",
        "Debian 11, systemd-networkd 247, .network for lo",
        "systemd-networkd",
        ND_LO_247,
        ND + EVERY,
        (("networkctl-reconfigure", "kept"), ("restart-networkd", "kept")),
    ),
    Kind(
        "if11",
        "Debian 11, ifupdown",
        "ifupdown",
        "",
        ("ifdown-ifup-lo", *EVERY),
        (("ifdown-ifup-lo", "v6 lost"), ("lo-down-up", "v6 lost")),
    ),
]
BY_HOST = {k.host: k for k in KINDS}
CELLS = [(k.host, d) for d in DISRUPTIONS for k in KINDS if d in k.disruptions]


def expected_by_hand(kind: Kind, disruption: str) -> str:
    return dict(kind.by_hand).get(disruption, "lost")


# -- reading and poking the hosts ----------------------------------------------
def sh(host: labmod.LabHost, script: str, check: bool = True) -> str:
    return labmod.lab_exec(host, "sh", "-c", script, check=check)


def lo_vips(host: labmod.LabHost, vips: tuple[str, str] = (V4, V6)) -> set[str]:
    out = sh(host, "ip -o addr show dev lo")
    return {m.group(1) for m in re.finditer(r"inet6? (\S+)/(?:32|128) ", out) if m.group(1) in vips}


def snapshot(host: labmod.LabHost) -> str:
    """Everything the role or a manager could change, as text."""
    return sh(
        host,
        # networkd 247 gives the 127.0.0.1 it configures a broadcast address, the
        # kernel's has none: a reboot alone changes that, so it is left out.
        "export LC_ALL=C; ip -o addr show | sed 's/\\\\.*//; s/ brd 127.255.255.255//' | sort;"
        " sysctl net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce net.ipv4.conf.eth0.arp_ignore"
        " net.ipv4.conf.eth0.arp_announce net.ipv6.conf.lo.keep_addr_on_down;"
        " for f in $(find /etc/NetworkManager /etc/systemd/network /etc/dsrprov /etc/sysctl.d /etc/network"
        ' -type f 2>/dev/null | sort); do echo "== $f"; cat "$f"; done;'
        " find /etc/NetworkManager /etc/systemd/network /etc/systemd/system /etc/dsrprov 2>/dev/null | sort;"
        # The admin's files keep their modification times too.
        " stat -c '%n %s %Y' /etc/NetworkManager/system-connections/* /etc/systemd/network/* 2>/dev/null;"
        " if systemctl -q is-active NetworkManager; then nmcli -g UUID,TYPE,ACTIVE,DEVICE,FILENAME connection show"
        " | grep -v ':/run/'; systemctl is-enabled NetworkManager-dispatcher; fi;"
        " if systemctl -q is-active systemd-networkd; then networkctl list --no-legend lo; fi; true",
    )


def poll(v4: str, v6: str) -> str:
    """Shell, on the real server: wait up to DEADLINE for both VIPs on lo; print
    "back MS" (milliseconds until both were there) or "gone"."""
    return f"""start=$(date +%s%N); end=$((start + {int(DEADLINE * 1000)} * 1000000))
while :; do
  a=$(ip -o addr show dev lo)
  if echo "$a" | grep -q " {v4}/32 " && echo "$a" | grep -q " {v6}/128 "; then
    echo "back $((($(date +%s%N) - start) / 1000000))"; exit 0
  fi
  [ "$(date +%s%N)" -lt "$end" ] || {{ echo gone; exit 0; }}
  sleep 0.05
done"""


POLL = poll(V4, V6)


def reboot(host: labmod.LabHost) -> None:
    labmod.podman("restart", "-t", "10", host.container)
    labmod.wait_for_boot(host, timeout=120)


def neighbours(client: labmod.LabHost, v4: str = V4, v6: str = V6) -> tuple[list[str], list[str]]:
    """MACs that answer ARP for V4 and ND for V6 on the segment, asked from the client."""
    out = sh(
        client,
        "export LC_ALL=C; arping -c 2 -w 2 -i eth0 "
        f"{v4} > /tmp/arp.out 2>&1 & ndisc6 -m -n -r 2 -w 1000 {v6} eth0 > /tmp/nd.out 2>&1; wait;"
        " cat /tmp/arp.out; echo @@nd@@; cat /tmp/nd.out; true",
    )
    arp, _, nd = out.partition("@@nd@@")
    return parse_arping(arp), parse_ndisc6(nd)


def recap(run: PlaybookRun, host: str) -> tuple[int, int, int]:
    r = run.hosts[host]
    return r.changed, r.failed, r.unreachable


# -- the lab -------------------------------------------------------------------
@pytest.fixture(scope="module")
def nmlab() -> Iterator[labmod.Lab]:
    """This module's lab, up for the module: brought up (images built once,
    cached), every host put back as found (state=absent), then the admin's
    own configuration of each kind. Taken down at the end unless it was
    already running or DSRPROV_KEEP_LAB is set."""
    the_lab = labmod.load_lab(INVENTORY / "hosts.yml")
    was_running = all(labmod.status(the_lab).values())
    labmod.up(the_lab)
    if was_running:  # a kept lab may hold an earlier run's state
        assert run_playbook("site.yml", "-e", "dsr_state=absent", inventory=INVENTORY).returncode == 0
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: k.setup and sh(the_lab.host(k.host), k.setup), KINDS))
    yield the_lab
    if not was_running and not os.environ.get("DSRPROV_KEEP_LAB"):
        labmod.down(the_lab)


@pytest.fixture(scope="module")
def found(nmlab: labmod.Lab) -> dict[str, str]:
    """Each real server as found, before dsrprov touched it."""
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(BY_HOST, pool.map(lambda h: snapshot(nmlab.host(h)), BY_HOST), strict=True))


# -- 1. refused before any change -----------------------------------------------
REFUSALS = [
    pytest.param(
        "nd11",
        # The file as an admin first writes it; the original comes back with its mtime.
        f"cp -p {LO_NETWORK} /root/05-lo.network.orig && printf '[Match]\\nName=lo\\n' > {LO_NETWORK}",
        f"mv /root/05-lo.network.orig {LO_NETWORK}",
        f"systemd-networkd 247 deletes every lo address that {LO_NETWORK} does not list, 127.0.0.1/8 and ::1/128 "
        "included, when it reconfigures lo (dsrprov's reload would do that): add Address=127.0.0.1/8 and "
        "Address=::1/128 to it first",
        id="networkd-247-without-localhost",
    ),
    pytest.param(
        "nd13",
        "printf '[Match]\\nName=lo dummy*\\n' > /etc/systemd/network/04-lo-dummy.network && networkctl reload",
        "rm /etc/systemd/network/04-lo-dummy.network && networkctl reload",
        "/etc/systemd/network/04-lo-dummy.network matches lo and other links too ([Match] is not Name=lo or "
        "Type=loopback): VIPs added to it would go onto those links as well; give lo a .network of its own",
        id="networkd-match-broader-than-lo",
    ),
    pytest.param(
        "nm13p",
        "nmcli connection add type loopback con-name lo-run ifname lo autoconnect no save no >/dev/null",
        "nmcli connection delete lo-run >/dev/null",
        "NetworkManager profile 'lo-run' (/run/NetworkManager/system-connections/lo-run.nmconnection) lives in /run",
        id="nm-profile-in-run",
    ),
    pytest.param(
        "nm12",
        "systemctl mask -q NetworkManager-dispatcher.service",
        "systemctl unmask -q NetworkManager-dispatcher.service",
        "NetworkManager-dispatcher.service is masked: after `nmcli con down` of lo's connection nothing could put "
        "the VIPs back; unmask it",
        id="nm-dispatcher-masked",
    ),
]


@pytest.mark.parametrize(("host", "make", "undo", "message"), REFUSALS)
def test_refused_before_any_change(
    nmlab: labmod.Lab, found: dict[str, str], host: str, make: str, undo: str, message: str
) -> None:
    lab_host = nmlab.host(host)
    sh(lab_host, make)
    try:
        before = snapshot(lab_host)
        run = run_playbook("site.yml", "--limit", host, inventory=INVENTORY)
        assert run.returncode != 0
        assert f"dsrprov: {message}" in run.stdout, run.stdout[-3000:]
        assert snapshot(lab_host) == before
    finally:
        sh(lab_host, undo)


# -- 2. converge, idempotence, check mode ----------------------------------------
@pytest.fixture(scope="module")
def dry(nmlab: labmod.Lab, found: dict[str, str]) -> tuple[PlaybookRun, dict[str, str]]:
    """Check mode with --diff on the hosts as found, and the hosts after it."""
    run = run_playbook("site.yml", "--check", "--diff", inventory=INVENTORY)
    with ThreadPoolExecutor(8) as pool:
        after = dict(zip(BY_HOST, pool.map(lambda h: snapshot(nmlab.host(h)), BY_HOST), strict=True))
    return run, after


@pytest.fixture(scope="module")
def converged(nmlab: labmod.Lab, dry: object) -> dict[str, PlaybookRun]:
    runs = {"converge": run_playbook("site.yml", inventory=INVENTORY)}
    runs["idempotence"] = run_playbook("site.yml", inventory=INVENTORY)
    runs["check"] = run_playbook("site.yml", "--check", "--diff", inventory=INVENTORY)
    return runs


@pytest.mark.parametrize("host", list(BY_HOST))
def test_check_mode_first_changes_nothing_and_announces_what_the_run_does(
    found: dict[str, str], dry: tuple[PlaybookRun, dict[str, str]], converged: dict[str, PlaybookRun], host: str
) -> None:
    run, after = dry
    assert after[host] == found[host], "".join(
        difflib.unified_diff(found[host].splitlines(True), after[host].splitlines(True))
    )
    assert run.hosts[host].failed == 0
    # Every task the real run changed, check mode announced (one: the role is
    # one module call, whose --diff names each change, the unit's enabling too).
    real = converged["converge"].hosts[host].changed_tasks
    assert run.hosts[host].changed_tasks == real and len(real) == 1
    assert "dsrprov-loopback-vips.service enabled" in run.stdout
    if BY_HOST[host].manager == "NetworkManager":
        assert f"# {NM_HOOK_PATH}" in run.stdout
    if host.endswith("p"):
        assert f"+ipv4.addresses: {V4}/32" in run.stdout and f"+ipv6.addresses: {V6}/128" in run.stdout
    if host.startswith("nd"):
        assert f"+Address={V4}/32" in run.stdout and f"+Address={V6}/128" in run.stdout


@pytest.mark.parametrize("host", list(BY_HOST))
def test_converge_then_idempotence_then_check_mode(converged: dict[str, PlaybookRun], host: str) -> None:
    changed, failed, unreachable = recap(converged["converge"], host)
    assert failed == 0 and unreachable == 0, converged["converge"].stdout[-3000:]
    assert changed == 1  # the one module call
    assert recap(converged["idempotence"], host) == (0, 0, 0), converged["idempotence"].hosts[host].changed_tasks
    assert recap(converged["check"], host) == (0, 0, 0), converged["check"].hosts[host].changed_tasks


def test_each_manager_holds_the_vips_in_its_own_configuration(
    nmlab: labmod.Lab, converged: dict[str, PlaybookRun]
) -> None:
    for kind in KINDS:
        host = nmlab.host(kind.host)
        text = sh(
            host,
            "cat /etc/NetworkManager/system-connections/lo.nmconnection"
            " /etc/NetworkManager/dispatcher.d/90-dsrprov-loopback-vips"
            f" {LO_NETWORK}.d/90-dsrprov-loopback-vips.conf 2>/dev/null;"
            " sysctl -n net.ipv6.conf.lo.keep_addr_on_down; true",
        )
        assert text.rstrip().endswith("1"), (kind.host, text)  # keep_addr_on_down
        if kind.host.startswith("nm"):
            assert f"addr add {V4}/32 dev lo label lo:1" in text and f"addr add {V6}/128 dev lo nodad" in text
        if kind.host.endswith("p"):  # the admin's profile holds the VIPs: NetworkManager re-adds them itself
            assert f"address1={V4}/32" in text and f"address1={V6}/128" in text, text
        if kind.host.startswith("nd"):
            assert f"Address={V4}/32\nLabel=lo:1" in text and f"Address={V6}/128" in text, text
        if kind.manager in ("none", "ifupdown"):
            assert "addr add" not in text and "Address=" not in text


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return dsrprov_cli(INVENTORY / "hosts.yml", *args)


def doctor_lo(host: labmod.LabHost) -> list[str]:
    """doctor's rs-lo-manager reasons for HOST, from doctor's own probe run on it."""
    from dsrprov.doctor import linux as doctor_linux

    facts = doctor_linux.parse(sh(host, doctor_linux.script("10.252.0.2", host.ip, [V4, V6])))
    return [
        reason
        for f in doctor_linux.findings(host.name, facts, [V4, V6], [], client="10.252.0.2")
        if f.id == "rs-lo-manager"
        for reason in f.evidence
    ]


def test_status_and_verify_name_the_manager_and_warn_of_nothing(nmlab: labmod.Lab, converged: object) -> None:
    proc = cli("status", "--json")
    assert proc.returncode == 0, proc.stderr
    hosts = {h["host"]: h for h in json.loads(proc.stdout)["hosts"]}
    for kind in KINDS:
        state = hosts[kind.host]["state"]
        assert state["lo_manager"]["manager"] == kind.manager, state
        assert state["summary"] == "configured"
        assert "warnings" not in hosts[kind.host], hosts[kind.host]["warnings"]
    verified = cli("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "warning" not in verified.stderr
    # doctor judges lo's manager as the role does: a manager whose
    # configuration holds the VIPs is no finding.
    for kind in KINDS:
        assert doctor_lo(nmlab.host(kind.host)) == [], kind.host


# -- 3. the disruptions, with dsrprov -------------------------------------------
@dataclass
class Outcome:
    vips: set[str]  # on lo at the end
    seconds: float  # until both were there (or the wait)
    arp: list[str]  # MACs answering ARP for V4 (from the client)
    nd: list[str]  # MACs answering ND for V6


class Rounds:
    """Each disruption once per phase, on every host it applies to at once."""

    def __init__(self, the_lab: labmod.Lab) -> None:
        self.lab = the_lab
        self.done: dict[tuple[str, str], dict[str, Outcome]] = {}

    def run(self, phase: str, name: str) -> dict[str, Outcome]:
        if (phase, name) in self.done:
            return self.done[(phase, name)]
        disruption = DISRUPTIONS[name]
        kinds = [k for k in KINDS if name in k.disruptions]
        hosts = [self.lab.host(k.host) for k in kinds]

        def one(host: labmod.LabHost) -> tuple[set[str], float]:
            if phase == "by hand":
                # As a vendor manual does it: on lo, nothing else.
                sh(host, f"ip addr add {V4}/32 dev lo label lo:1; ip -6 addr add {V6}/128 dev lo nodad; true")
                assert lo_vips(host) == {V4, V6}
            if disruption.command == "reboot":
                reboot(host)
                out = sh(host, POLL)
            else:
                # Disruption and watch in one go, timed on the host itself:
                # a busy machine's podman exec latency is not the manager's.
                out = sh(host, f"{disruption.command}\n{POLL}")
            seconds = int(out.split()[1]) / 1000 if out.startswith("back ") else DEADLINE
            return lo_vips(host), seconds

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, hosts))
            arp, nd = neighbours(self.lab.host("client"))
            resets = [h for h in hosts if disruption.reset]
            list(pool.map(lambda h: sh(h, disruption.reset), resets))
            if phase == "by hand":  # the next round starts without them
                list(
                    pool.map(
                        lambda h: sh(h, f"ip addr del {V4}/32 dev lo 2>/dev/null; ip addr del {V6}/128 dev lo; true"),
                        hosts,
                    )
                )
        self.done[(phase, name)] = {
            h.name: Outcome(vips, seconds, arp, nd) for h, (vips, seconds) in zip(hosts, results, strict=True)
        }
        return self.done[(phase, name)]


@pytest.fixture(scope="module")
def rounds(nmlab: labmod.Lab) -> Iterator[Rounds]:
    r = Rounds(nmlab)
    yield r
    # The figures behind the README's table, for the record.
    figures = {
        f"{phase} | {name} | {host}": {"vips": sorted(o.vips), "seconds": round(o.seconds, 1)}
        for (phase, name), by_host in r.done.items()
        for host, o in by_host.items()
    }
    (nmlab.state_dir / "lo-matrix.json").write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize(("host", "disruption"), CELLS, ids=[f"{h}-{d}" for h, d in CELLS])
def test_vips_stay_and_arp_stays_silent(
    nmlab: labmod.Lab, converged: object, rounds: Rounds, host: str, disruption: str
) -> None:
    outcome = rounds.run("dsrprov", disruption)[host]
    assert outcome.vips == {V4, V6}, f"{host}: after {disruption} lo holds {outcome.vips or 'no VIP'}"
    mac = nmlab.host(host).mac
    assert mac not in outcome.arp, f"{host} answers ARP for {V4} after {disruption}"
    assert mac not in outcome.nd, f"{host} answers ND for {V6} after {disruption}"


# -- 4. absent ------------------------------------------------------------------
@pytest.fixture(scope="module")
def removed(nmlab: labmod.Lab, converged: object, rounds: Rounds) -> PlaybookRun:
    first = run_playbook("site.yml", "-e", "dsr_state=absent", inventory=INVENTORY)
    assert first.returncode == 0, first.stdout[-3000:]
    return first


@pytest.mark.parametrize("host", list(BY_HOST))
def test_absent_leaves_the_host_as_found(
    nmlab: labmod.Lab, found: dict[str, str], removed: PlaybookRun, host: str
) -> None:
    assert removed.hosts[host].changed == 1
    lab_host = nmlab.host(host)
    now = snapshot(lab_host)
    assert now == found[host], "".join(difflib.unified_diff(found[host].splitlines(True), now.splitlines(True)))
    # And nothing NetworkManager or networkd still remembers brings a VIP back.
    sh(lab_host, "ip link set lo down && ip link set lo up")
    time.sleep(1)
    assert lo_vips(lab_host) == set()


# -- 5. the negative control: VIPs put on lo by hand -----------------------------
def test_hand_made_vips_without_arp_sysctls_are_answered_for(nmlab: labmod.Lab, removed: PlaybookRun) -> None:
    """The ARP/ND probe can fail: a real server with the VIP on lo and no ARP
    sysctls answers ARP for it; one with the IPv6 VIP on eth0 answers ND (a
    /128 on lo is never answered for, with or without dsrprov)."""
    hosts = [nmlab.host(h) for h in BY_HOST]
    try:
        for host in hosts:
            sh(host, f"ip addr add {V4}/32 dev lo label lo:1 && ip -6 addr add {V6}/128 dev eth0 nodad")
        arp, nd = neighbours(nmlab.host("client"))
        assert {h.mac for h in hosts} <= set(arp)
        assert {h.mac for h in hosts} <= set(nd)
    finally:
        for host in hosts:
            sh(host, f"ip addr del {V4}/32 dev lo; ip addr del {V6}/128 dev eth0; true")


def test_status_warns_where_the_manager_could_remove_hand_made_vips(nmlab: labmod.Lab, removed: PlaybookRun) -> None:
    hosts = [nmlab.host(h) for h in BY_HOST]
    try:
        for host in hosts:
            sh(host, f"ip addr add {V4}/32 dev lo label lo:1 && ip -6 addr add {V6}/128 dev lo nodad")
        proc = cli("status", "--json")
        assert proc.returncode == 0, proc.stderr  # warnings, not failures
        reports = {h["host"]: h for h in json.loads(proc.stdout)["hosts"]}
        doctor = {h: doctor_lo(nmlab.host(h)) for h in BY_HOST}
    finally:
        for host in hosts:
            sh(host, f"ip addr del {V4}/32 dev lo; ip addr del {V6}/128 dev lo; true")
    for kind in KINDS:
        warnings = " | ".join(reports[kind.host].get("warnings", []))
        assert reports[kind.host]["state"]["lo_manager"]["manager"] == kind.manager
        assert f"removes {V6}: net.ipv6.conf.lo.keep_addr_on_down is not set" in warnings, (kind.host, warnings)
        assert ("nmcli con down of lo's connection removes" in warnings) == kind.host.startswith("nm"), warnings
        assert ("(not in the profile)" in warnings) == kind.host.endswith("p"), warnings
        assert ("systemd-networkd removes" in warnings) == kind.host.startswith("nd"), warnings
        assert f"dsrprov: warning: {kind.host}: " in proc.stderr
        # doctor's rs-lo-manager: where NetworkManager or networkd could remove them.
        managed = kind.host.startswith(("nm", "nd"))
        assert bool(doctor[kind.host]) == managed, (kind.host, doctor[kind.host])


@pytest.mark.parametrize(("host", "disruption"), CELLS, ids=[f"{h}-{d}" for h, d in CELLS])
def test_hand_made_vips_are_lost(
    nmlab: labmod.Lab, removed: PlaybookRun, rounds: Rounds, host: str, disruption: str
) -> None:
    outcome = rounds.run("by hand", disruption)[host]
    expected = expected_by_hand(BY_HOST[host], disruption)
    seen = {frozenset(): "lost", frozenset({V4}): "v6 lost", frozenset({V4, V6}): "kept"}.get(
        frozenset(outcome.vips), f"left {outcome.vips}"
    )
    assert seen == expected, f"{host}, VIPs by hand, {disruption}: {seen} (expected {expected})"
