"""The WinRM probe's parsing and checks, on recorded PowerShell JSON output
(tests/data/winrm). No Windows host is needed: these tests use recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsrprov.checks.verify import windows_checks
from dsrprov.connect.winrm import WinRMTarget, parse_windows_facts, probe
from dsrprov.errors import ConnectError, FailedError

DATA = Path(__file__).parents[1] / "data" / "winrm"
SERVICES = [
    {"name": "web", "vip": "192.0.2.10", "port": 80, "protocol": "tcp"},
    {"name": "web6", "vip": "2001:db8::10", "port": 80, "protocol": "tcp"},
]


def recording(name: str) -> str:
    # Bytes as received: a UTF-8 BOM and CRLF line ends are part of the recording.
    return (DATA / name).read_bytes().decode("utf-8")


def test_recorded_configured_host_parses() -> None:
    facts = parse_windows_facts(recording("configured_ps51.json"))
    assert facts.hostname == "WEB-WIN-01" and facts.os_build == 20348
    assert [a.name for a in facts.loopbacks] == ["loopback"]
    assert sorted(facts.loopback_vips()) == ["192.0.2.10", "2001:db8::10"]
    # VIPs on the KM-TEST adapter and 127.0.0.1/::1 are not the host's own addresses.
    assert facts.own_addresses == ["fe80::a0b1:c2d3:e4f5:1234", "192.0.2.21"]
    assert facts.macs == {"Ethernet0": "00:50:56:9a:11:22"}
    assert facts.adapter_holding("192.0.2.21") is not None


def test_recorded_configured_host_verifies() -> None:
    facts = parse_windows_facts(recording("configured_ps51.json"))
    checks = windows_checks(facts, ["192.0.2.10", "2001:db8::10"], SERVICES, management_address="192.0.2.21")
    assert {c.name: c.ok for c in checks} == {
        "loopback adapter": True,
        "vips on loopback": True,
        "metric and weak host": True,
        "listen 192.0.2.10:80/tcp": True,
        "listen [2001:db8::10]:80/tcp": True,
    }


def test_recorded_configured_host_with_a_wrong_metric_fails() -> None:
    facts = parse_windows_facts(recording("configured_ps51.json"))
    loop = facts.interface(12, "IPv4")
    assert loop is not None
    loop.metric, loop.automatic_metric = 10, "Enabled"
    bad = [c for c in windows_checks(facts, ["192.0.2.10"], SERVICES, management_address="192.0.2.21") if not c.ok]
    assert [c.name for c in bad] == ["metric and weak host"]
    assert "loopback IPv4: metric 10, automatic Enabled" in bad[0].detail


def test_recorded_ps51_quirks_flattened_arrays_and_numeric_enums() -> None:
    facts = parse_windows_facts(recording("unconfigured_ps51_quirks.json"))
    assert [a.name for a in facts.adapters] == ["Ethernet"]  # one object, not a list
    assert [(a.address, a.family) for a in facts.addresses] == [
        ("192.0.2.22", "IPv4"),
        ("fe80::1c2:3d4e:5f60:7a8b", "IPv6"),  # the %4 zone index is dropped
    ]
    i = facts.interfaces[0]
    assert (i.family, i.automatic_metric, i.weak_host_send, i.weak_host_receive) == (
        "IPv4",
        "Enabled",
        "Disabled",
        "Disabled",
    )
    assert len(facts.listeners) == 1 and facts.listeners[0].port == 5986
    checks = {c.name: c for c in windows_checks(facts, ["192.0.2.10"], SERVICES, management_address="192.0.2.22")}
    assert checks["loopback adapter"].ok is False
    assert checks["vips on loopback"].ok is False
    assert checks["listen 192.0.2.10:80/tcp"].ok is False


def test_recorded_powershell_error_is_one_clear_failure() -> None:
    with pytest.raises(FailedError, match="did not return JSON"):
        parse_windows_facts(recording("error_not_json.txt"))


def test_winrm_probe_without_credentials_refuses_before_connecting() -> None:
    target = WinRMTarget("win1", "192.0.2.1", user="admin", password=None)
    with pytest.raises(ConnectError, match="no WinRM credentials"):
        probe(target)
    assert "s3cret" not in repr(WinRMTarget("w", "a", user="u", password="s3cret"))
    assert WinRMTarget("w", "2001:db8::1").endpoint == "https://[2001:db8::1]:5986/wsman"
