"""The VIP rules shared by the CLI and the roles (the collection's plugin_utils/vips.py)."""

from __future__ import annotations

import pytest

from ansible_collections.dsrprov.dsr.plugins.filter.vips import FilterModule
from ansible_collections.dsrprov.dsr.plugins.plugin_utils.vips import VipError, check_vips, vip_prefix


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["10.0.0.10"], ["10.0.0.10"]),
        (["10.0.0.10/32", "2001:db8::10/128"], ["10.0.0.10", "2001:db8::10"]),
        (["2001:DB8:0:0::10"], ["2001:db8::10"]),
        ([" 192.0.2.1 "], ["192.0.2.1"]),
    ],
)
def test_valid_vips_are_normalised(given: list[str], expected: list[str]) -> None:
    assert check_vips(given) == expected


@pytest.mark.parametrize(
    ("given", "hosts", "message"),
    [
        (["10.0.0.300"], [], "invalid VIP '10.0.0.300': not an IPv4 or IPv6 address"),
        (["10.0.0.10/24"], [], "a VIP must be a host address (/32), not /24"),
        (["2001:db8::10/64"], [], "a VIP must be a host address (/128), not /64"),
        (["10.0.0.10/x"], [], "not /x"),
        (["10.0.0.10", "10.0.0.10/32"], [], "duplicate VIP 10.0.0.10"),
        (["2001:db8::a", "2001:DB8::A"], [], "duplicate VIP 2001:db8::a"),
        (["10.0.0.5"], ["10.0.0.5/24"], "VIP 10.0.0.5 is one of the host's own addresses"),
        (["fe80::1"], [], "link-local"),
        (["127.0.0.2"], [], "loopback"),
        (["0.0.0.0"], [], "unspecified"),
        (["224.0.0.1"], [], "multicast"),
        ([], [], "no VIP given"),
        ([""], [], "invalid VIP ''"),
        ([None], [], "invalid VIP None"),
    ],
)
def test_bad_vips_give_one_clear_line(given: list[str], hosts: list[str], message: str) -> None:
    with pytest.raises(VipError) as err:
        check_vips(given, hosts)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_string_is_not_a_list() -> None:
    with pytest.raises(VipError, match="not a single string"):
        check_vips("10.0.0.1")  # type: ignore[arg-type]


def test_empty_list_allowed_for_absent() -> None:
    assert check_vips([], allow_empty=True) == []


def test_host_addresses_that_are_names_are_ignored() -> None:
    assert check_vips(["10.0.0.1"], ["rs1.example", "fe80::1%eth0", "10.0.0.2"]) == ["10.0.0.1"]


def test_prefix() -> None:
    assert vip_prefix("10.0.0.1") == "10.0.0.1/32"
    assert vip_prefix("2001:db8::1/128") == "2001:db8::1/128"


def test_filters_as_ansible_sees_them() -> None:
    filters = FilterModule().filters()
    assert filters["dsr_vip_problem"](["10.0.0.1"]) == ""
    assert filters["dsr_vip_problem"](["10.0.0.1/8"]) == (
        "dsrprov: invalid VIP '10.0.0.1/8': a VIP must be a host address (/32), not /8"
    )
    assert filters["dsr_vip_family"]("2001:db8::1") == 6
