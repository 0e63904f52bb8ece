"""No value reaches the Linux real server's rendered files unchecked and unquoted (issue 22).

Hostile labels, interface names and VIPs are refused with one line by the
rules the controller's filters and the module share, before anything is
written; the renderers refuse them again and quote what they write, so even a
value that slipped past the checks stays one argument of one command."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.dsrprov.dsr.plugins.filter.linux_names import FilterModule as NameFilters
from ansible_collections.dsrprov.dsr.plugins.filter.vips import FilterModule as VipFilters
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_boot_unit as unit
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lm
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_linux_names import (
    BadName,
    check_interface,
    check_label,
    systemd_quote,
)
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_vips import VipError, check_vips
from ansible_collections.dsrprov.dsr.plugins.modules import dsr_realserver_linux_apply as apply_module

HOSTILE_LABELS = [
    "lo:1;reboot",
    "lo:$(id>/x)",
    "lo:`id`",
    "lo:1\nExecStartPre=/bin/touch /x",
    "lo:1 2",
    "lo:1'x",
    'lo:1"x',
    "lo:1%n",
    "lo:1.2",
    "lo:",
    "lo",
    "eth0:1",
    "lo:abcdefghijklm",  # 16 bytes
    "lo:\u00e9",
]
HOSTILE_VIPS = ["2001:db8::10%$(touch x)", "2001:db8::10%eth0", "10.0.0.10;reboot", "10.0.0.10\nExecStartPre=/x"]
HOSTILE_INTERFACES = ["eth0;reboot", "eth0/100", "eth0 1", "eth0\n", "$(id)", "..", "", "a" * 16, "eth:0", "eth*"]


@pytest.mark.parametrize("label", HOSTILE_LABELS)
def test_a_hostile_label_is_refused_with_one_line_by_the_rules_and_the_controller_filter(label: str) -> None:
    with pytest.raises(BadName) as err:
        check_label(label)
    assert "\n" not in str(err.value) and str(err.value).startswith("invalid label ")
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError) as ferr:
        NameFilters().filters()["dsr_check_lo_label"](label)
    assert str(ferr.value).startswith("dsrprov: invalid label ") and "\n" not in str(ferr.value)


@pytest.mark.parametrize("label", ["lo:1", "lo:dsr", "lo:vip-web", "lo:vip_2", "lo:abcdefghijkl"])
def test_plain_labels_pass(label: str) -> None:
    assert check_label(label) == label
    assert NameFilters().filters()["dsr_check_lo_label"](label) == label


@pytest.mark.parametrize("vip", HOSTILE_VIPS)
def test_a_hostile_vip_is_refused_with_one_line_by_the_rules_and_the_controller_filter(vip: str) -> None:
    with pytest.raises(VipError) as err:
        check_vips([vip])
    assert "\n" not in str(err.value)
    problem = VipFilters().filters()["dsr_vip_problem"]([vip])
    assert problem.startswith("dsrprov: invalid VIP ") and "\n" not in problem


def test_a_zone_id_is_named() -> None:
    with pytest.raises(VipError, match=r"a VIP takes no zone id"):
        check_vips(["2001:db8::10%$(touch x)"])


@pytest.mark.parametrize("name", HOSTILE_INTERFACES)
def test_a_hostile_interface_name_is_refused_with_one_line(name: str) -> None:
    with pytest.raises(BadName) as err:
        check_interface(name)
    assert "\n" not in str(err.value)
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError):
        NameFilters().filters()["dsr_check_interfaces"]([name])


@pytest.mark.parametrize("name", ["eth0", "eth0.100", "bond0.20", "vlan.100", "dummy-dsr", "enp3s0f1", "veth@x"])
def test_names_the_kernel_gives_pass(name: str) -> None:
    assert check_interface(name) == name


@pytest.mark.parametrize("label", HOSTILE_LABELS)
def test_the_renderers_refuse_a_hostile_label_themselves(label: str) -> None:
    with pytest.raises(ValueError):
        lm.render_nm_hook(["10.0.0.10"], "/usr/sbin/ip", label)
    with pytest.raises(ValueError):
        lm.render_networkd_dropin(["10.0.0.10"], label, "/etc/systemd/network/05-lo.network")
    with pytest.raises(ValueError):
        unit.render(["10.0.0.10"], "/usr/sbin/ip", label, "/etc/dsrprov/loopback-vips")


@pytest.mark.parametrize("vip", HOSTILE_VIPS[:2])
def test_the_renderers_refuse_a_zone_id_themselves(vip: str) -> None:
    with pytest.raises(ValueError):
        lm.render_nm_hook([vip], "/usr/sbin/ip", "lo:1")
    with pytest.raises(ValueError):
        lm.render_networkd_dropin([vip], "lo:1", "/etc/systemd/network/05-lo.network")
    with pytest.raises(ValueError):
        unit.render([vip], "/usr/sbin/ip", "lo:1", "/etc/dsrprov/loopback-vips")


def fake_ip(tmp_path: Path) -> Path:
    """A stand-in for ip(8) that logs its arguments, one a line, "--" after each call."""
    path = tmp_path / "bin dir" / "ip"
    path.parent.mkdir()
    log = tmp_path / "argv"
    path.write_text(
        f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '{log}'\nprintf -- '--\\n' >> '{log}'\n"
    )
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("label", ["lo:1;touch PWN", "lo:$(touch PWN)", "lo:`touch PWN`", "lo:1\ntouch PWN"])
def test_the_hook_quotes_even_a_label_that_slipped_past_the_checks(
    label: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lm, "check_label", lambda value: value)  # as if a check were missing
    ip = fake_ip(tmp_path)  # its directory has a space: the command is quoted too
    hook = tmp_path / "hook"
    hook.write_text(lm.render_nm_hook(["10.0.0.10", "2001:db8::10"], str(ip), label))
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    subprocess.run([str(hook), "lo", "up"], cwd=tmp_path, check=True, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert not (tmp_path / "PWN").exists()
    argv = (tmp_path / "argv").read_text()
    assert argv == (
        f"-4\naddr\nadd\n10.0.0.10/32\ndev\nlo\nlabel\n{label}\n--\n-6\naddr\nadd\n2001:db8::10/128\ndev\nlo\nnodad\n--\n"
    )


def systemd_words(line: str) -> list[str]:
    """ExecStart='s words as systemd splits them (systemd.service(5), "Command lines"):
    whitespace separates, double quotes group, C escapes inside; %% and $$ are one char."""
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            break
        word = ""
        if line[i] == '"':
            i += 1
            while line[i] != '"':
                if line[i] == "\\":
                    word += {"n": "\n", "t": "\t", "r": "\r"}.get(line[i + 1], line[i + 1])
                    i += 2
                else:
                    word += line[i]
                    i += 1
            i += 1
        else:
            while i < n and line[i] not in " \t":
                word += line[i]
                i += 1
        words.append(word.replace("%%", "%").replace("$$", "$"))
    return words


@pytest.mark.parametrize("label", ["lo:1;reboot", "lo:$(id>/x)", "lo:1\nExecStartPre=/bin/touch /x", "lo:1 %n $HOME"])
def test_the_unit_quotes_even_a_label_that_slipped_past_the_checks(label: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unit, "check_label", lambda value: value)
    text = unit.render(["10.0.0.10"], "/opt/my ip/ip", label, "/etc/dsrprov/loopback-vips")
    lines = text.splitlines()
    assert not any(line.startswith("ExecStartPre") for line in lines)
    (start,) = [line for line in lines if line.startswith("ExecStart=")]
    assert systemd_words(start[len("ExecStart=") :]) == [
        "/opt/my ip/ip", "-4", "addr", "replace", "10.0.0.10/32", "dev", "lo", "label", label,
    ]  # fmt: skip


def test_systemd_quote_leaves_plain_values_bare() -> None:
    assert systemd_quote("/usr/sbin/ip") == "/usr/sbin/ip"
    assert systemd_quote("lo:1") == "lo:1"
    assert systemd_quote("2001:db8::10/128") == "2001:db8::10/128"
    assert systemd_quote("a b") == '"a b"'


class Refused(Exception):
    pass


class FakeModule:
    """Only what check_names touches: the params and fail_json."""

    def __init__(self, **params: Any) -> None:
        self.params = {"label": "lo:1", "arp_interfaces": [], **params}

    def fail_json(self, msg: str, **_: Any) -> None:
        raise Refused(msg)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"label": "lo:1;reboot"}, "dsrprov: invalid label 'lo:1;reboot'"),
        ({"label": "lo:1\nExecStartPre=/x"}, "dsrprov: invalid label 'lo:1\\nExecStartPre=/x'"),
        ({"arp_interfaces": ["eth0", "eth0;reboot"]}, "dsrprov: invalid interface name 'eth0;reboot'"),
        ({"unit_name": "../../tmp/x.service"}, "dsrprov: invalid unit_name '../../tmp/x.service'"),
    ],
)
def test_the_module_refuses_before_it_reads_the_host(params: dict[str, Any], message: str) -> None:
    with pytest.raises(Refused) as err:
        apply_module.check_names(FakeModule(**params))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
