"""netplan with the NetworkManager renderer (issue 24): refused, by name and
with the measured reason, on probe output recorded on the lab's hosts
(inventories/lab-npnm: Debian 13, netplan.io 1.1, NetworkManager 1.52; npnm
as found, npnmlo with lo in the admin's netplan file). Why it is refused, as
measured there: docs/linux.md, "netplan"."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lm

DATA = Path(__file__).parents[1] / "data" / "lo"
V4, V6 = "10.240.5.200", "fd42:d5a:0:45::200"
REFUSAL = (
    "netplan renders lo for NetworkManager here: dsrprov keeps VIPs in netplan with the networkd renderer only "
    "(netplan renders lo for NetworkManager as an ethernet profile that NetworkManager cannot bring up on lo, and "
    "netplan apply then leaves lo without any address); give lo `renderer: networkd` (ethernets: lo: renderer: "
    "networkd, systemd-networkd running)"
)


def recorded(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


@pytest.mark.parametrize(("host", "where"), [("npnm", "not in"), ("npnmlo", "in")])
def test_netplan_for_networkmanager_is_named_and_refused_in_one_line(host: str, where: str) -> None:
    state = lm.parse(recorded(f"{host}-found"))
    found = lm.assess(state, [V4, V6])
    assert state.nm_active and state.nm_version == "1.52.1" and state.netplan_version == "1.1.2-7"
    assert (found.manager, found.problems) == ("netplan", [REFUSAL])
    assert found.detail.startswith(f"netplan 1.1.2-7 (NetworkManager renderer), lo {where} its configuration")
    assert "\n" not in REFUSAL


def test_netplans_lo_profile_in_run_is_not_refused_as_a_profile_in_run() -> None:
    """netplan's rendered profile is netplan's business, not "a profile kept in /run"."""
    state = lm.parse(recorded("npnmlo-found"))
    assert "/run/NetworkManager/system-connections/netplan-lo.nmconnection" in state.netplan_generated
    assert all("lives in /run" not in p for p in lm.assess(state, [V4, V6]).problems)


def test_a_networkd_renderer_for_lo_is_not_refused() -> None:
    text = recorded("npnmlo-found").replace("@@lo:netplan-lo@@\n", "@@lo:netplan-lo@@\nrenderer: networkd\n")
    state = lm.parse(text)
    assert state.netplan_lo_renderer == "networkd"
    assert REFUSAL not in lm.assess(state, [V4, V6]).problems


def test_the_risk_named_for_hand_made_vips_is_netplan_apply_not_networkd() -> None:
    risks = lm.assess(lm.parse(recorded("npnmlo-found")), [V4, V6]).risks
    assert risks[0] == f"netplan apply removes {V4}, {V6}: it leaves lo without any address"
    assert not [r for r in risks if "networkctl" in r]
