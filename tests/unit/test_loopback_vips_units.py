"""The VIPs on lo (module_utils/dsr_loopback_vips.py), issue 22: the label check on live addresses, and a VIP
found with a wide prefix (``ip addr add VIP/24 dev lo`` by hand) replaced by the host prefix.

``ip`` is a stand-in (``SimulatedIp``) that keeps lo's addresses in a list and
prints them as iproute2 6.1 does (the output below was read from a lab
container); the lab test runs the real one."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lm
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_loopback_vips as lo_vips
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import ChangePlan
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_plan_inputs import Desired, Found

# ip -o addr show dev lo, on a Debian 12 lab container.
READ = (
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
    "1: lo    inet 10.240.2.250/32 scope global lo:1\\       valid_lft forever preferred_lft forever\n"
    "1: lo    inet 10.240.2.251/24 scope global lo\\       valid_lft forever preferred_lft forever\n"
    "1: lo    inet6 fd42:d5a:0:42::250/128 scope global nodad \\       valid_lft forever preferred_lft forever\n"
    "1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever\n"
)
V4, V6 = "10.240.2.200", "fd42:d5a:0:42::200"
IP = "/usr/sbin/ip"


def test_the_label_is_read_from_the_word_before_the_lifetimes() -> None:
    present, labelled = lo_vips.parse_lo_addresses(READ, "lo:1")
    assert labelled == {"10.240.2.250"}
    assert present["10.240.2.251"] == {24}
    assert present["fd42:d5a:0:42::250"] == {128}
    assert lo_vips.parse_lo_addresses(READ, "lo:2")[1] == set()


class SimulatedIp:
    """A stand-in for ip(8) on lo, and the module object."""

    def __init__(self, *addresses: tuple[str, int, str]) -> None:
        self.addresses = [("127.0.0.1", 8, "lo"), ("::1", 128, ""), *addresses]

    def show(self) -> str:
        lines = []
        for addr, length, label in self.addresses:
            family = "inet" if ipaddress.ip_address(addr).version == 4 else "inet6"
            lines.append(f"1: lo    {family} {addr}/{length} scope global {label}\\       valid_lft forever")
        return "\n".join(lines) + "\n"

    def run_command(self, cmd: list[str], check_rc: bool = False) -> tuple[int, str, str]:
        if cmd[1:] == ["-o", "addr", "show", "dev", "lo"]:
            return 0, self.show(), ""
        verb, target = cmd[3], cmd[4]
        addr, length_text = target.split("/")
        length = int(length_text)
        if verb == "add":
            if any(a == addr and (n == length or ":" in addr) for a, n, _ in self.addresses):
                return 2, "", "RTNETLINK answers: File exists"
            self.addresses.append((addr, length, cmd[cmd.index("label") + 1] if "label" in cmd else ""))
            return 0, "", ""
        if verb == "del":
            for entry in self.addresses:
                if entry[:2] == (addr, length):
                    self.addresses.remove(entry)
                    return 0, "", ""
            return 2, "", "RTNETLINK answers: Cannot assign requested address"
        raise AssertionError(cmd)

    def on_lo(self) -> set[str]:
        return {f"{a}/{n}" for a, n, _ in self.addresses if a not in ("127.0.0.1", "::1")}


def plan(ip: SimulatedIp, state: str, vips: list[str], record: str) -> tuple[ChangePlan, Any]:
    change = ChangePlan()
    return change, lo_vips.plan(change, ip, Desired(state == "present", vips, record_file=record), Found(IP))


@pytest.mark.parametrize(("vip", "wide"), [(V4, 24), (V6, 64)])
def test_a_vip_with_a_wide_prefix_is_replaced_by_the_host_prefix(vip: str, wide: int, tmp_path: Any) -> None:
    ip = SimulatedIp((vip, wide, "lo" if ":" not in vip else ""))
    record = str(tmp_path / "loopback-vips")
    host = ipaddress.ip_address(vip).max_prefixlen
    change, result = plan(ip, "present", [vip], record)
    # What check mode and --diff show.
    assert change.steps[0].description == f"replace {vip}/{wide} on the loopback by {vip}/{host}"
    assert change.diffs[0] == {
        "before_header": "loopback VIPs", "after_header": "loopback VIPs", "before": f"{vip}/{wide}\n",
        "after": f"{vip}\n",
    }  # fmt: skip
    assert result == {"added": [], "removed": []}
    assert change.apply() is None
    assert ip.on_lo() == {f"{vip}/{host}"}
    again, _ = plan(ip, "present", [vip], record)
    assert not again.changed


def test_a_failure_after_the_replacement_puts_the_wide_prefix_back(tmp_path: Any) -> None:
    ip = SimulatedIp((V4, 24, "lo"))
    change, _ = plan(ip, "present", [V4, V6], str(tmp_path / "loopback-vips"))

    def boom() -> None:
        raise RuntimeError("simulated failure")

    change.step("a later step", boom)
    assert change.apply() is not None
    assert ip.on_lo() == {f"{V4}/24"}


def test_absent_leaves_a_hand_made_wide_address_alone(tmp_path: Any) -> None:
    ip = SimulatedIp((V4, 24, "lo"))
    change, result = plan(ip, "absent", [V4], str(tmp_path / "loopback-vips"))
    assert change.apply() is None and result["removed"] == []
    assert ip.on_lo() == {f"{V4}/24"}


def test_a_wide_vip_in_the_managers_configuration_is_refused_with_one_line() -> None:
    profile = lm.NmProfile(uuid="u", name="lo", filename="/etc/NetworkManager/system-connections/lo.nmconnection")
    profile.addresses = {4: [f"{V4}/24"], 6: []}
    state = lm.LoState(nm_active=True, nm_nmcli=True, nm_lo_state="connected", nm_dispatcher="enabled",
                       nm_profiles=[profile])  # fmt: skip
    (problem,) = lm.assess(state, [V4]).problems
    assert problem == (
        f"NetworkManager profile 'lo' (/etc/NetworkManager/system-connections/lo.nmconnection) puts the VIP {V4} on "
        f"lo as {V4}/24, which makes all of 10.240.2.0/24 local to this host: make it {V4}/32 there (or remove "
        "it), then run again"
    )
    nd = lm.LoState(networkd_active=True, networkd_version=257, networkd_file="/etc/systemd/network/05-lo.network",
                    networkd_config=f"[Match]\nName=lo\n[Network]\nAddress={V6}/64\n")  # fmt: skip
    assert any(p.startswith("/etc/systemd/network/05-lo.network puts the VIP") for p in lm.assess(nd, [V6]).problems)


def test_the_module_reads_the_addresses_once(tmp_path: Any) -> None:
    from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_host_facts as facts

    ip = SimulatedIp((V4, 32, "lo:1"))
    calls: list[list[str]] = []

    class Once:
        def run_command(self, cmd: list[str], check_rc: bool = False) -> tuple[int, str, str]:
            calls.append(cmd)
            return 0, ip.show() + "2: eth0    inet 10.240.2.11/24 scope global eth0\\       valid_lft forever\n", ""

    found = facts.read_addresses(Once(), IP)
    assert found["addresses"] == ["10.240.2.11"] and "eth0" not in found["lo"]
    change = ChangePlan()
    lo_vips.plan(change, Once(), Desired(True, [V4], record_file=str(tmp_path / "r")), Found(IP, lo_read=found["lo"]))
    assert len(calls) == 1  # the plan took lo's addresses from that read
    assert not [s for s in change.steps if "loopback" in s.description]  # the VIP is there, labelled


class NetworkdFirst(SimulatedIp):
    """systemd-networkd applying its drop-in on its own time: the VIPs appear on lo
    right after the step's read of lo, before the step's own add (networkd 247)."""

    def __init__(self, vips: list[str]) -> None:
        super().__init__()
        self.pending = vips
        self.reads = 0

    def run_command(self, cmd: list[str], check_rc: bool = False) -> tuple[int, str, str]:
        result = super().run_command(cmd, check_rc)
        if cmd[1:] == ["-o", "addr", "show", "dev", "lo"]:
            self.reads += 1
            if self.reads == 2:  # the plan's read of lo, then the step's: networkd adds right after it
                for vip in self.pending:
                    self.addresses.append(
                        (vip, ipaddress.ip_address(vip).max_prefixlen, "lo:1" if ":" not in vip else "")
                    )
        return result


def test_a_vip_that_networkd_put_on_lo_first_is_no_failure(tmp_path: Any) -> None:
    ip = NetworkdFirst([V4, V6])
    change, result = plan(ip, "present", [V4, V6], str(tmp_path / "loopback-vips"))
    assert result == {"added": [V4, V6], "removed": []}
    assert change.apply() is None, "networkd's own add of the same VIP made the step fail"
    assert ip.on_lo() == {f"{V4}/32", f"{V6}/128"}


class NetworkdRemovesFirst(SimulatedIp):
    """systemd-networkd, its drop-in gone, taking the VIPs off lo right after the
    step's read of lo, before the step's own delete."""

    def __init__(self, vips: list[str]) -> None:
        super().__init__(*((v, ipaddress.ip_address(v).max_prefixlen, "" if ":" in v else "lo:1") for v in vips))
        self.reads = 0

    def run_command(self, cmd: list[str], check_rc: bool = False) -> tuple[int, str, str]:
        result = super().run_command(cmd, check_rc)
        if cmd[1:] == ["-o", "addr", "show", "dev", "lo"]:
            self.reads += 1
            if self.reads == 2:
                self.addresses = [a for a in self.addresses if a[0] in ("127.0.0.1", "::1")]
        return result


def test_a_vip_that_networkd_took_off_lo_first_is_no_failure(tmp_path: Any) -> None:
    ip = NetworkdRemovesFirst([V4, V6])
    change, result = plan(ip, "absent", [V4, V6], str(tmp_path / "loopback-vips"))
    assert result == {"added": [], "removed": sorted([V4, V6])}
    assert change.apply() is None, "networkd's own removal of the same VIP made the step fail"
    assert ip.on_lo() == set()
