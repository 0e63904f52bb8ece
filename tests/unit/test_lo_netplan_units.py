"""netplan as lo's manager (module_utils/dsr_lo_manager.py): probe output
recorded on the netplan lab's hosts (inventories/lab-netplan) in, the
judgement out; the netplan file dsrprov renders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lm
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_linux_names import BadName

DATA = Path(__file__).parents[1] / "data" / "lo"
V4, V6 = "10.240.3.200", "fd42:d5a:0:43::200"
VIPS = [V4, V6]
KEEP_RISK = (
    f"a down/up of lo (ip link set lo down, ifdown lo) removes {V6}: net.ipv6.conf.lo.keep_addr_on_down is not set"
)


def recorded(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


def edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("host", "detail", "risk"),
    [
        (
            "np13",
            "netplan 1.1.2-7 (networkd renderer), lo not in its configuration",
            f"once lo is in netplan's configuration (an admin's or cloud-init's file, then netplan apply), {V4}, {V6} "
            "are removed: they are not in it",
        ),
        (
            "np12",
            "netplan 0.106-2+deb12u1 (networkd renderer), lo not in its configuration",
            f"once lo is in netplan's configuration (an admin's or cloud-init's file, then netplan apply), {V4}, {V6} "
            "are removed: they are not in it",
        ),
        (
            "np13lo",
            "netplan 1.1.2-7 (networkd renderer), lo in its configuration",
            f"netplan apply, networkctl reload or reconfigure lo removes {V4}, {V6}: lo is in netplan's configuration "
            "and they are not",
        ),
    ],
)
def test_netplan_owns_the_network_as_found(host: str, detail: str, risk: str) -> None:
    state = lm.parse(recorded(f"{host}-found"))
    found = lm.assess(state, VIPS)
    assert (found.manager, found.detail, found.problems) == ("netplan", detail, [])
    assert found.risks == [risk, KEEP_RISK]
    # lo's .network in /run is netplan's, not a place for a networkd drop-in.
    assert not state.networkd_manages_lo or state.netplan_generated_for(state.networkd_file)


def test_once_configured_netplan_holds_the_vips() -> None:
    state = lm.parse(recorded("np13-configured"))
    found = lm.assess(state, VIPS)
    assert (found.manager, found.problems, found.risks) == ("netplan", [], [])
    assert state.networkd_file == "/run/systemd/network/10-netplan-lo.network"
    assert state.netplan_lo_addresses == [f"{V4}/32", f"{V6}/128"]


def test_without_netplan_files_netplan_is_not_the_manager() -> None:
    text = recorded("np13-found")
    start, end = text.index("@@lo:netplan@@"), text.index("@@lo:ifupdown@@")
    found = lm.assess(lm.parse(text[:start] + "@@lo:netplan@@\n" + text[end:]), VIPS)
    assert found.manager == "none"


NP13 = recorded("np13-found")
REFUSED = [
    pytest.param(
        edit(
            NP13,
            "@@lo:netplan-lo@@\nnull",
            "@@lo:netplan-lo@@\nCommand failed: /etc/netplan/99-broken.yaml:2:1: Invalid YAML: did not find expected "
            "node content:",
        ),
        "netplan cannot read its configuration (Command failed: /etc/netplan/99-broken.yaml:2:1: Invalid YAML",
        id="broken-yaml",
    ),
    pytest.param(
        edit(NP13, "@@lo:netplan-renderer@@\nnull", "@@lo:netplan-renderer@@\nNetworkManager"),
        "netplan renders lo for NetworkManager here",
        id="global-renderer-nm",
    ),
    pytest.param(
        edit(
            NP13, "@@lo:netplan-lo@@\nnull", '@@lo:netplan-lo@@\nrenderer: NetworkManager\naddresses:\n- "127.0.0.1/8"'
        ),
        "netplan renders lo for NetworkManager here",
        id="lo-renderer-nm",
    ),
    pytest.param(
        edit(NP13, "@@lo:netplan-ours@@\n", "@@lo:netplan-ours@@\nnetwork:\n  version: 2\n"),
        f"{lm.NETPLAN_FILE} exists and is not dsrprov's",
        id="our-file-is-someone-elses",
    ),
    pytest.param(
        edit(NP13, "@@lo:netplan-lo@@\nnull", f'@@lo:netplan-lo@@\naddresses:\n- "{V4}/24"'),
        f"netplan's configuration of lo puts the VIP {V4} on lo as {V4}/24",
        id="vip-with-a-wide-prefix-in-netplan",
    ),
]


@pytest.mark.parametrize(("text", "problem"), REFUSED)
def test_hosts_where_netplan_cannot_carry_the_vips_are_named(text: str, problem: str) -> None:
    found = lm.assess(lm.parse(text), VIPS)
    assert any(p.startswith(problem) for p in found.problems), found.problems


def test_a_netplan_profile_in_run_is_not_refused_as_a_profile_in_run() -> None:
    state = lm.parse(NP13)
    assert state.netplan_generated_for("/run/NetworkManager/system-connections/netplan-lo.nmconnection")
    assert not state.netplan_generated_for("/run/NetworkManager/system-connections/lo-run.nmconnection")
    assert not state.netplan_generated_for("/etc/systemd/network/10-netplan-lo.network")


@pytest.mark.parametrize("localhost", [False, True])
def test_rendered_netplan_file(localhost: bool) -> None:
    text = lm.render_netplan(VIPS, "lo:1", localhost)
    assert text.startswith(lm.NETPLAN_MARK)
    assert "renderer" not in text  # global in netplan: never dsrprov's to set
    localhost_list = ["127.0.0.1/8", "::1/128"] if localhost else []
    assert yaml.safe_load(text) == {
        "network": {
            "version": 2,
            "ethernets": {
                "lo": {
                    "addresses": [
                        *localhost_list,
                        {f"{V4}/32": {"label": "lo:1"}},
                        f"{V6}/128",
                    ]
                }
            },
        }
    }


def test_rendered_netplan_file_checks_the_label_again() -> None:
    with pytest.raises(BadName):
        lm.render_netplan(VIPS, 'lo:1"\n  renderer: NetworkManager', False)
