"""Who manages lo (module_utils/dsr_lo_manager.py): the probe's output as
recorded on the lab's hosts in, the judgement out; the files dsrprov renders."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lm
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_persist as persist
from dsrprov.connect.linux_facts import MARK, parse_probe

DATA = Path(__file__).parents[1] / "data" / "lo"
V4, V6 = "10.252.0.200", "fd42:d5a:0:4::200"
VIPS = [V4, V6]
PROFILE = "NetworkManager profile 'lo' (/etc/NetworkManager/system-connections/lo.nmconnection)"
KEEP_RISK = (
    f"a down/up of lo (ip link set lo down, ifdown lo) removes {V6}: net.ipv6.conf.lo.keep_addr_on_down is not set"
)
HOOK_RISK = (
    f"nmcli con down of lo's connection removes {V4}, {V6} and nothing puts them back (no dsrprov hook in "
    "/etc/NetworkManager/dispatcher.d/90-dsrprov-loopback-vips)"
)


def recorded(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


def judged(name: str, vips: list[str] = VIPS) -> lm.Assessment:
    return lm.assess(lm.parse(recorded(name)), vips)


@pytest.mark.parametrize(
    ("host", "manager", "detail", "risks"),
    [
        ("plain12", "none", "nothing manages lo", [KEEP_RISK]),
        ("if11", "ifupdown", "ifupdown, lo in /etc/network/interfaces", [KEEP_RISK]),
        (
            "nm12",
            "NetworkManager",
            "NetworkManager 1.42.4, no loopback profile (lo connected (externally))",
            [HOOK_RISK, KEEP_RISK],
        ),
        (
            "nm13",
            "NetworkManager",
            "NetworkManager 1.52.1, no loopback profile (lo connected (externally))",
            [HOOK_RISK, KEEP_RISK],
        ),
        (
            "nm12p",
            "NetworkManager",
            "NetworkManager 1.42.4, loopback profile 'lo' (/etc/NetworkManager/system-connections/lo.nmconnection)",
            [
                f"nmcli con up/down of {PROFILE} or nmcli device reapply lo removes {V4}, {V6} (not in the profile)",
                HOOK_RISK,
                KEEP_RISK,
            ],
        ),
        (
            "nd13",
            "systemd-networkd",
            "systemd-networkd 257, /etc/systemd/network/05-lo.network matches lo",
            [
                f"systemd-networkd removes {V4}, {V6} when it reconfigures lo (networkctl reconfigure lo, a restart, "
                "a reload after a change): not in /etc/systemd/network/05-lo.network",
                KEEP_RISK,
            ],
        ),
        (
            "nd11",
            "systemd-networkd",
            "systemd-networkd 247, /etc/systemd/network/05-lo.network matches lo",
            [
                f"systemd-networkd removes {V4}, {V6} when it reconfigures lo (a reload after a change to its "
                "configuration): not in /etc/systemd/network/05-lo.network",
                KEEP_RISK,
            ],
        ),
    ],
)
def test_who_manages_lo_on_each_kind_of_host_as_found(host: str, manager: str, detail: str, risks: list[str]) -> None:
    found = judged(f"{host}-found")
    assert (found.manager, found.detail, found.problems) == (manager, detail, [])
    assert found.risks == risks


@pytest.mark.parametrize("host", ["nm12p", "nm13", "nd11"])
def test_once_configured_nothing_could_remove_the_vips(host: str) -> None:
    found = judged(f"{host}-configured")
    assert found.problems == [] and found.risks == []


def test_the_profile_parse_keeps_what_nmcli_said() -> None:
    state = lm.parse(recorded("nm12p-configured"))
    (p,) = state.nm_profiles
    assert p.stored and p.active and p.device == "lo" and not p.generated and not p.readonly
    assert p.methods == {4: "auto", 6: "auto"}
    assert p.addresses == {4: [f"{V4}/32"], 6: [f"{V6}/128"]}
    assert lm.hook_addresses(state.nm_hook) == [V4, V6]
    # NetworkManager 1.52's stand-in for an externally configured lo is no profile of the admin's.
    (generated,) = lm.parse(recorded("nm13-found")).nm_profiles
    assert generated.generated and not generated.stored


def edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


ND13 = recorded("nd13-found")
NETWORKD_OF_ND13 = ND13[ND13.index("@@lo:networkd@@") : ND13.index("@@lo:ifupdown@@")]

REFUSED = [
    pytest.param(
        edit(recorded("nd11-found"), "Address=127.0.0.1/8\nAddress=::1/128\n", ""),
        "systemd-networkd 247 deletes every lo address that /etc/systemd/network/05-lo.network does not list, "
        "127.0.0.1/8 and ::1/128 included, when it reconfigures lo (dsrprov's reload would do that): add "
        "Address=127.0.0.1/8 and Address=::1/128 to it first",
        id="networkd-247-without-localhost",
    ),
    pytest.param(
        edit(recorded("nd13-found"), "Name=lo", "Name=lo eth*"),
        "/etc/systemd/network/05-lo.network matches lo and other links too",
        id="networkd-match-broader-than-lo",
    ),
    pytest.param(
        edit(recorded("nd13-found"), "[Match]\nName=lo", "[Match]"),
        "/etc/systemd/network/05-lo.network matches lo and other links too",
        id="networkd-empty-match",
    ),
    pytest.param(
        edit(recorded("nm12p-found"), "filename:/etc/", "filename:/run/"),
        "NetworkManager profile 'lo' (/run/NetworkManager/system-connections/lo.nmconnection) lives in /run",
        id="nm-profile-in-run",
    ),
    pytest.param(
        edit(recorded("nm12p-found"), "readonly:no", "readonly:yes"),
        f"{PROFILE} is read-only (another settings plugin owns it): dsrprov cannot add the VIPs",
        id="nm-profile-read-only",
    ),
    pytest.param(
        edit(recorded("nm12p-found"), "ipv6.method:auto", "ipv6.method:disabled"),
        f"{PROFILE} has ipv6.method=disabled: NetworkManager removes every IPv6 address from lo and cannot hold "
        f"the VIPs {V6}",
        id="nm-ipv6-disabled",
    ),
    pytest.param(
        edit(recorded("nm12-found"), "@@lo:nm-dispatcher@@\nenabled", "@@lo:nm-dispatcher@@\nmasked"),
        "NetworkManager-dispatcher.service is masked",
        id="nm-dispatcher-masked",
    ),
    pytest.param(
        edit(recorded("nm12-found"), "@@lo:nm-nmcli@@\n/usr/bin/nmcli", "@@lo:nm-nmcli@@"),
        "NetworkManager runs but nmcli is missing",
        id="nm-without-nmcli",
    ),
    pytest.param(
        edit(recorded("nm12p-found"), "connection.id:lo", "Error: unknown connection"),
        f"cannot read {PROFILE.replace(repr('lo'), repr(''))}: Error: unknown connection",
        id="nm-profile-unreadable",
    ),
    pytest.param(
        edit(recorded("nm12p-found"), "@@lo:networkd@@\ninactive\n", NETWORKD_OF_ND13),
        "both NetworkManager and systemd-networkd manage lo",
        id="nm-and-networkd",
    ),
]


@pytest.mark.parametrize(("text", "problem"), REFUSED)
def test_hosts_where_the_vips_cannot_be_made_safe_are_named(text: str, problem: str) -> None:
    found = lm.assess(lm.parse(text), VIPS)
    assert any(p.startswith(problem) for p in found.problems), found.problems


def test_ipv6_method_ignore_leaves_ipv6_vips_to_the_kernel() -> None:
    state = lm.parse(edit(recorded("nm12p-found"), "ipv6.method:auto", "ipv6.method:ignore"))
    found = lm.assess(state, VIPS)
    assert found.problems == []
    assert f"nmcli con up/down of {PROFILE} or nmcli device reapply lo removes {V4} (not in the profile)" in found.risks


def test_keep_addr_on_down_is_all_when_all_is_set() -> None:
    state = lm.LoState(keep_all=0, keep_lo=1)
    assert state.keep_addr_on_down
    state.keep_all = -1  # the kernel takes "all" when it is non-zero
    assert not state.keep_addr_on_down
    assert KEEP_RISK in lm.assess(state, VIPS).risks


@pytest.mark.parametrize(
    ("config", "lo_only"),
    [
        ("[Match]\nName=lo\n", True),
        ("[Match]\nType=loopback\n", True),
        ("[Match]\nName=lo lo\n", True),
        ("[Match]\nName=lo eth0\n", False),
        ("[Match]\nName=*\n", False),
        ("[Match]\n", False),
        ("[Network]\nAddress=10.0.0.1/32\n", False),
    ],
)
def test_a_drop_in_goes_only_beside_a_network_that_matches_lo_alone(config: str, lo_only: bool) -> None:
    assert lm._match_is_lo_only(config) is lo_only


def test_rendered_hook_and_drop_in() -> None:
    hook = lm.render_nm_hook(VIPS, "/usr/sbin/ip", "lo:1")
    assert hook.startswith("#!/bin/sh\n")
    assert f"/usr/sbin/ip -4 addr add {V4}/32 dev lo label lo:1 2>/dev/null" in hook
    assert f"/usr/sbin/ip -6 addr add {V6}/128 dev lo nodad 2>/dev/null" in hook
    assert lm.hook_addresses(hook) == VIPS
    dropin = lm.render_networkd_dropin(VIPS, "lo:1", "/usr/lib/systemd/network/05-lo.network")
    assert f"[Address]\nAddress={V4}/32\nLabel=lo:1\n" in dropin
    assert f"[Address]\nAddress={V6}/128\nDuplicateAddressDetection=none\n" in dropin
    # A drop-in in /etc extends the file of that name wherever it lives.
    assert (
        lm.networkd_dropin_path("/usr/lib/systemd/network/05-lo.network")
        == "/etc/systemd/network/05-lo.network.d/90-dsrprov-loopback-vips.conf"
    )
    state = lm.parse(recorded("nd13-found"))
    state.networkd_dropins.append(("x", dropin))
    assert lm.assess(state, VIPS).risks == [KEEP_RISK]


def test_the_cli_probe_reads_lo_with_the_roles_script() -> None:
    text = (
        (Path(__file__).parents[1] / "data" / "linux" / "probe_configured.txt")
        .read_text()
        .replace(f"{MARK}end@@", f"{MARK}lo@@\n{recorded('nd11-found')}{MARK}end@@")
    )
    facts = parse_probe(text)
    assert facts.lo.networkd_active and facts.lo.networkd_file == "/etc/systemd/network/05-lo.network"
    assert facts.loopback_vips() == ["10.250.2.200"]


def test_keyfile_timestamps_are_not_a_change() -> None:
    assert persist.without_timestamp("[connection]\nid=lo\ntimestamp=1795744107\n") == "[connection]\nid=lo"
