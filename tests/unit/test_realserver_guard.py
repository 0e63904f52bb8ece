"""The guard (roles/dsr_realserver_linux/files/dsrprov_guard.py): its pure
logic, and one Guard driven against a stand-in `ip` (a script over a state
file) and a stand-in /proc/sys (a directory) - the real kernel is in
tests/integration/test_realserver_guard_lab.py."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROLE = Path(__file__).parents[2] / "src/ansible_collections/dsrprov/dsr/roles/dsr_realserver_linux"
V4, V6 = "10.240.2.100", "fd42:d5a:0:42::100"


def load_guard() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dsrprov_guard", ROLE / "files/dsrprov_guard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


g: Any = load_guard()

LO = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet 10.240.2.100/32 scope global lo:1\\       valid_lft forever preferred_lft forever
1: lo    inet 10.240.2.101/24 scope global lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 fd42:d5a:0:42::100/128 scope global nodad \\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever
"""


def test_parse_lo_takes_host_addresses_only() -> None:
    # 10.240.2.101/24 is not a VIP as the role puts it (a /24 makes the whole prefix local).
    assert g.parse_lo(LO) == {V4, V6, "::1"}


def test_parse_record_and_sysctl_file() -> None:
    assert g.parse_record("# dsrprov\n10.240.2.100\nFD42:d5a:0:42:0::100\n\nnot-an-ip\n") == {V4, V6}
    text = (
        "# Managed by dsrprov\n# original: net.ipv4.conf.all.arp_ignore=0\n"
        "net.ipv4.conf.all.arp_ignore = 1\nnet/ipv4/conf/eth0.100/arp_announce = 2\n; other\n"
    )
    assert g.parse_sysctl_file(text) == {
        "net.ipv4.conf.all.arp_ignore": "1",
        "net/ipv4/conf/eth0.100/arp_announce": "2",
    }


def test_proc_path_follows_sysctl_d() -> None:
    assert g.proc_path("net.ipv4.conf.all.arp_ignore") == "/proc/sys/net/ipv4/conf/all/arp_ignore"
    assert g.proc_path("net/ipv4/conf/eth0.100/arp_ignore") == "/proc/sys/net/ipv4/conf/eth0.100/arp_ignore"
    assert g.proc_path("net.ipv4.conf.eth0/100.arp_ignore") == "/proc/sys/net/ipv4/conf/eth0.100/arp_ignore"


def test_add_cmd_is_the_modules() -> None:
    from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_loopback_vips import add_cmd

    for vip in (V4, V6):
        assert g.add_cmd("ip", vip, "lo:1") == add_cmd("ip", vip, "lo:1")


def test_guarded_is_configured_and_recorded() -> None:
    # In the config but not yet recorded: a run is about to add it; recorded but
    # not configured: a run is removing it. Neither is the guard's to put back.
    assert g.guarded([V4, V6], {V4, "10.9.9.9"}) == [V4]


def test_flapping_engages_above_the_limit_and_disengages_when_back() -> None:
    flaps = g.FlapTracker(limit=3, window=60)
    for t in (0, 10, 20):
        assert flaps.allow(V4, t)
        flaps.restored(V4, t)
    assert not flaps.allow(V4, 30)  # the 4th removal within 60 s
    assert flaps.flapping == {V4}
    assert not flaps.allow(V4, 500)  # stays engaged, however long, until the VIP is back
    assert flaps.allow(V6, 30)  # per VIP
    assert flaps.seen_present(V4) is True
    assert flaps.flapping == set()
    assert flaps.allow(V4, 501)
    assert flaps.seen_present(V4) is False


def test_flapping_window_slides() -> None:
    flaps = g.FlapTracker(limit=2, window=60)
    for t in (0, 50):
        assert flaps.allow(V4, t)
        flaps.restored(V4, t)
    assert flaps.allow(V4, 61)  # the restore at 0 left the window


def config(tmp_path: Path, **over: Any) -> Path:
    data = {
        "mode": "heal",
        "vips": [V4, V6],
        "label": "lo:1",
        "period": 30,
        "flap_limit": 5,
        "flap_window": 300,
        "textfile_dir": str(tmp_path / "textfile"),
        "sysctl_file": str(tmp_path / "90-dsrprov-arp.conf"),
        "record_file": str(tmp_path / "loopback-vips"),
    }
    data.update(over)
    path = tmp_path / "guard.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"mode": "off"}, "mode: 'off' is not one of heal, report"),
        ({"period": 0}, "period: 0 is not a whole number from 1 to 86400"),
        ({"period": 86401}, "period: 86401 is not a whole number from 1 to 86400"),
        ({"flap_limit": True}, "flap_limit: True is not a whole number from 1 to 86400"),
        ({"vips": "10.0.0.1"}, "vips: '10.0.0.1' is not a list"),
        ({"vips": ["10.0.0.300"]}, "does not appear to be an IPv4 or IPv6 address"),
        ({"label": None}, "label: None is not a string"),
    ],
)
def test_bad_configuration_is_one_line(tmp_path: Path, over: dict[str, Any], message: str) -> None:
    with pytest.raises(g.ConfigError, match=re.escape(message)):
        g.load_config(str(config(tmp_path, **over)))


# --- the Prometheus text format, checked strictly -------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{{LABEL}(?:,{LABEL})*\}})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$")


def strict_parse(text: str) -> dict[str, dict[str, float]]:
    """The rules promtool's `check metrics` and the exposition format ask for:
    HELP and TYPE once per family, before its samples, families contiguous,
    counters named *_total, base units (seconds), no duplicate series, a
    final newline."""
    assert text.endswith("\n")
    families: dict[str, dict[str, float]] = {}
    types: dict[str, str] = {}
    helps: set[str] = set()
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps, f"second HELP for {name}"
            assert re.fullmatch(NAME, name) and name.startswith("dsrprov_")
            helps.add(name)
            current = name
        elif line.startswith("# TYPE "):
            _h, _t, name, kind = line.split()
            assert name == current and name not in types
            assert kind in ("gauge", "counter")
            types[name] = kind
            families[name] = {}
            if kind == "counter":
                assert name.endswith("_total")
            if "timestamp" in name:
                assert name.endswith("_seconds")
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            assert m.group(1) == current and current in types, f"sample outside its family: {line!r}"
            series = m.group(2) or ""
            assert series not in families[current], f"duplicate series {line!r}"
            families[current][series] = float(m.group(3))
    assert helps == set(types)
    return families


def test_metrics_are_well_formed_prometheus_text() -> None:
    text = g.render_metrics(
        "report",
        {V4: True, V6: False},
        False,
        {("vip", V4): 2, ("vip", V6): 0, ("sysctl", "net.ipv4.conf.all.arp_ignore"): 1},
        {V6},
        1765000000.25,
    )
    fams = strict_parse(text)
    assert fams["dsrprov_guard_mode"] == {'{mode="heal"}': 0, '{mode="report"}': 1}
    assert fams["dsrprov_vip_present"] == {f'{{vip="{V4}"}}': 1, f'{{vip="{V6}"}}': 0}
    assert fams["dsrprov_arp_sysctls_ok"] == {"": 0}
    assert fams["dsrprov_guard_restores_total"][f'{{kind="vip",target="{V4}"}}'] == 2
    assert fams["dsrprov_guard_flapping"] == {f'{{vip="{V4}"}}': 0, f'{{vip="{V6}"}}': 1}
    assert fams["dsrprov_guard_last_check_timestamp_seconds"] == {"": 1765000000.25}


def test_strict_parser_refuses_what_promtool_refuses() -> None:
    good = "# HELP dsrprov_x_total X.\n# TYPE dsrprov_x_total counter\ndsrprov_x_total 1\n"
    strict_parse(good)
    for bad in (
        good.replace("_total", ""),  # a counter without _total
        good + "dsrprov_x_total 2\n",  # a duplicate series
        good.replace("dsrprov_x_total 1", 'dsrprov_x_total{vip="a"b"} 1'),  # a bad label value
        good[:-1],  # no final newline
    ):
        with pytest.raises(AssertionError):
            strict_parse(bad)


def test_write_atomic_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "dsrprov_guard.prom"
    g.write_atomic(str(path), "a 1\n")
    g.write_atomic(str(path), "a 2\n")
    assert path.read_text() == "a 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["dsrprov_guard.prom"]
    assert path.stat().st_mode & 0o777 == 0o644


# --- one Guard against a stand-in ip and /proc/sys -------------------------

FAKE_IP = """\
import json, os, sys
state = sys.argv[1]
args = sys.argv[2:]
addrs = json.load(open(state))
if args[:5] == ["-o", "addr", "show", "dev", "lo"]:
    for a in addrs:
        fam = "inet6" if ":" in a else "inet"
        print("1: lo    %s %s scope global lo" % (fam, a))
elif args[1:3] == ["addr", "add"]:
    if ":" in args[3] and os.path.exists(state + ".v6off"):
        # What iproute2 6.1 says while IPv6 is off on lo (NetworkManager activating a loopback profile).
        sys.stderr.write("Error: ipv6: IPv6 is disabled on this device.\\n")
        sys.exit(2)
    if args[3] in addrs:
        # What iproute2 6.1 says for each family.
        v6 = ":" in args[3]
        sys.stderr.write("Error: ipv6: address already assigned.\\n" if v6 else "RTNETLINK answers: File exists\\n")
        sys.exit(2)
    addrs.append(args[3])
    json.dump(addrs, open(state, "w"))
    open(state + ".log", "a").write(" ".join(args) + "\\n")
else:
    sys.exit(1)
"""


class Host:
    """A stand-in host: lo's addresses in a JSON file, /proc/sys in a directory."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **over: Any) -> None:
        self.tmp = tmp_path
        self.state = tmp_path / "lo.json"
        self.state.write_text(json.dumps(["127.0.0.1/8", f"{V4}/32", f"{V6}/128"]))
        ip = tmp_path / "ip"
        ip.write_text(f'#!/bin/sh\nexec {sys.executable} {tmp_path / "fake_ip.py"} {self.state} "$@"\n')
        ip.chmod(0o755)
        (tmp_path / "fake_ip.py").write_text(FAKE_IP)
        (tmp_path / "loopback-vips").write_text(f"{V4}\n{V6}\n")
        (tmp_path / "90-dsrprov-arp.conf").write_text(
            "# original: net.ipv4.conf.all.arp_ignore=0\nnet.ipv4.conf.all.arp_ignore = 1\n"
            "net.ipv4.conf.all.arp_announce = 2\nnet.ipv4.conf.gone0.arp_ignore = 1\n"
        )
        proc = tmp_path / "proc/sys/"
        (proc / "net/ipv4/conf/all").mkdir(parents=True)
        self.sysctl("arp_ignore", "1")
        self.sysctl("arp_announce", "2")
        monkeypatch.setattr(g, "PROC_SYS", str(proc) + "/")
        self.logs: list[str] = []
        monkeypatch.setattr(g, "log", lambda prio, msg: self.logs.append(f"<{prio}>{msg}"))
        self.config = config(tmp_path, ip_command=str(ip), **over)
        self.guard = g.Guard(str(self.config))

    def sysctl(self, name: str, value: str | None = None) -> str:
        path = self.tmp / "proc/sys/net/ipv4/conf/all" / name
        if value is not None:
            path.write_text(value + "\n")
        return path.read_text().strip()

    def remove(self, addr: str) -> None:
        self.state.write_text(json.dumps([a for a in json.loads(self.state.read_text()) if a != addr]))

    def lo(self) -> list[str]:
        return list(json.loads(self.state.read_text()))

    def metrics(self) -> dict[str, dict[str, float]]:
        return strict_parse((self.tmp / "textfile/dsrprov_guard.prom").read_text())


def test_heal_puts_back_a_vip_with_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(tmp_path, monkeypatch)
    host.guard.check(sysctls=True)
    assert host.logs == []
    host.remove(f"{V6}/128")
    host.guard.check(sysctls=False)
    assert f"{V6}/128" in host.lo()
    assert host.logs == [f"<4>VIP {V6} was missing from lo; put it back (-6 addr add {V6}/128 dev lo nodad)"]
    m = host.metrics()
    assert m["dsrprov_guard_restores_total"][f'{{kind="vip",target="{V6}"}}'] == 1
    assert m["dsrprov_vip_present"][f'{{vip="{V6}"}}'] == 1


def test_heal_waits_out_ipv6_off_on_lo_and_says_so_only_when_it_lasts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NetworkManager turns IPv6 off on lo for a moment when it activates a loopback
    profile: a failed put-back then is no error; one that still fails V6_OFF_GRACE
    later is, said once; the VIP is put back once IPv6 is on again."""
    clock = [1000.0]
    monkeypatch.setattr(g.time, "monotonic", lambda: clock[0])
    host = Host(tmp_path, monkeypatch)
    off = Path(str(host.state) + ".v6off")
    host.remove(f"{V6}/128")
    off.touch()
    host.guard.check(sysctls=False)
    clock[0] += 0.2
    host.guard.check(sysctls=False)
    assert not [x for x in host.logs if x.startswith(("<3>", "<4>"))], host.logs
    assert f"{V6}/128" not in host.lo()
    # IPv6 on again (the kernel's ::1 event wakes the guard): the VIP goes back, one warning.
    off.unlink()
    clock[0] += 0.2
    host.guard.check(sysctls=False)
    assert f"{V6}/128" in host.lo()
    assert [x for x in host.logs if x.startswith(("<3>", "<4>"))] == [
        f"<4>VIP {V6} was missing from lo; put it back (-6 addr add {V6}/128 dev lo nodad)"
    ]
    # IPv6 off for good: one error line at the first try past the grace, not one per try.
    host.logs.clear()
    host.remove(f"{V6}/128")
    off.touch()
    for step in (0.0, g.V6_OFF_GRACE, 30.0, 30.0):
        clock[0] += step
        host.guard.check(sysctls=False)
    errors = [x for x in host.logs if x.startswith("<3>")]
    assert errors == [
        f"<3>VIP {V6} is missing from lo and could not be put back: Error: ipv6: IPv6 is disabled on this device."
    ], host.logs


def test_heal_leaves_an_unrecorded_vip_to_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(tmp_path, monkeypatch)
    (tmp_path / "loopback-vips").write_text(f"{V6}\n")
    host.remove(f"{V4}/32")
    host.guard.check(sysctls=False)
    assert f"{V4}/32" not in host.lo() and host.logs == []
    assert host.metrics()["dsrprov_vip_present"][f'{{vip="{V4}"}}'] == 0


def test_another_restorer_first_is_no_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The NetworkManager hook put it back between the guard's read and its add.
    host = Host(tmp_path, monkeypatch)
    for seen in ({V6}, {V4}):  # IPv4 missing, then IPv6 missing
        monkeypatch.setattr(host.guard, "lo_hosts", lambda seen=seen: seen)
        host.guard.check(sysctls=False)
    assert host.logs == [] and not (tmp_path / "lo.json.log").exists()
    m = host.metrics()["dsrprov_guard_restores_total"]
    assert m[f'{{kind="vip",target="{V4}"}}'] == 0 and m[f'{{kind="vip",target="{V6}"}}'] == 0


def test_report_mode_says_so_once_and_restores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(tmp_path, monkeypatch, mode="report")
    host.remove(f"{V4}/32")
    host.sysctl("arp_ignore", "0")
    for _ in range(3):
        host.guard.check(sysctls=True)
    assert f"{V4}/32" not in host.lo() and host.sysctl("arp_ignore") == "0"
    assert host.logs == [
        f"<4>VIP {V4} is missing from lo; not restored (guard in report mode)",
        "<4>sysctl net.ipv4.conf.all.arp_ignore is 0, weaker than 1; not restored (guard in report mode)",
    ]
    m = host.metrics()
    assert m["dsrprov_vip_present"][f'{{vip="{V4}"}}'] == 0
    assert m["dsrprov_arp_sysctls_ok"] == {"": 0}
    assert m["dsrprov_guard_mode"]['{mode="report"}'] == 1


def test_heal_sets_back_a_weaker_sysctl_not_a_stricter_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(tmp_path, monkeypatch)
    host.sysctl("arp_ignore", "0")
    host.sysctl("arp_announce", "8")  # stricter (a hardening role): left alone
    host.guard.check(sysctls=True)
    assert host.sysctl("arp_ignore") == "1" and host.sysctl("arp_announce") == "8"
    assert host.logs == ["<4>sysctl net.ipv4.conf.all.arp_ignore was 0, weaker than 1; set it back to 1"]
    m = host.metrics()
    assert m["dsrprov_arp_sysctls_ok"] == {"": 1}
    assert m["dsrprov_guard_restores_total"]['{kind="sysctl",target="net.ipv4.conf.all.arp_ignore"}'] == 1


def test_flapping_stops_restoring_with_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(tmp_path, monkeypatch, flap_limit=2, flap_window=600)
    for _ in range(4):
        host.remove(f"{V4}/32")
        host.guard.check(sysctls=False)
    assert f"{V4}/32" not in host.lo()
    assert [line[:3] for line in host.logs] == ["<4>", "<4>", "<3>"]
    assert host.logs[2].startswith(f"<3>flapping: something keeps removing VIP {V4} from lo (2 restores within 600s)")
    assert host.logs[2].endswith("run dsrprov doctor")
    assert host.metrics()["dsrprov_guard_flapping"][f'{{vip="{V4}"}}'] == 1
    # Back by other means (a dsrprov run): the guard guards it again.
    host.state.write_text(json.dumps([*host.lo(), f"{V4}/32"]))
    host.guard.check(sysctls=False)
    assert host.metrics()["dsrprov_guard_flapping"][f'{{vip="{V4}"}}'] == 0
    host.remove(f"{V4}/32")
    host.guard.check(sysctls=False)
    assert f"{V4}/32" in host.lo()


def test_config_change_is_read_before_the_next_judgement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A role run writes the new VIP list, then removes the VIP it dropped: the
    # guard must judge that removal by the new list.
    host = Host(tmp_path, monkeypatch)
    host.guard.check(sysctls=False)
    data = json.loads(host.config.read_text())
    data["vips"] = [V6]
    host.config.write_text(json.dumps(data) + " ")
    host.remove(f"{V4}/32")
    host.guard.check(sysctls=False)
    assert f"{V4}/32" not in host.lo()
    assert host.logs == [f"<6>configuration reloaded: mode heal, VIPs {V6}"]
    assert set(host.metrics()["dsrprov_vip_present"]) == {f'{{vip="{V6}"}}'}


def test_after_a_reload_missing_vips_are_left_to_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The role run that rewrote the configuration puts back the VIPs it finds
    # missing; the guard adding one between the run's read and its add would
    # fail the run's `ip addr add` ("File exists").
    host = Host(tmp_path, monkeypatch, mode="report")
    host.remove(f"{V4}/32")
    host.guard.check(sysctls=False)
    data = json.loads(host.config.read_text())
    data["mode"] = "heal"
    host.config.write_text(json.dumps(data))
    host.guard.check(sysctls=False)
    assert f"{V4}/32" not in host.lo()
    host.guard.grace_until = 0.0  # RUN_GRACE later
    host.guard.check(sysctls=False)
    assert f"{V4}/32" in host.lo()
    assert host.logs[-1].startswith(f"<4>VIP {V4} was missing from lo; put it back")


def test_lo_events_filter_by_interface() -> None:
    import struct

    def msg(kind: int, index: int) -> bytes:
        return struct.pack("=IHHII", 24, kind, 0, 0, 0) + struct.pack("=BBBBI", 2, 32, 0, 0, index)

    class Sock:
        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks

        def recv(self, _n: int, _flags: int) -> bytes:
            if not self.chunks:
                raise BlockingIOError
            return self.chunks.pop(0)

    assert g.lo_events(Sock([msg(g.RTM_NEWADDR, 2)]), 1) is False
    assert g.lo_events(Sock([msg(g.RTM_NEWADDR, 2) + msg(g.RTM_DELADDR, 1)]), 1) is True


def test_normalise_is_ipaddress() -> None:
    import ipaddress

    # (An IPv4-mapped address prints differently across Python versions; the guard
    # compares only addresses it normalised itself, config, record and lo alike.)
    for text in ("10.240.2.100", "FD42:0d5a:0:42:0:0:0:100", "fd42:d5a::100", "fe80::1"):
        ip = ipaddress.ip_address(text)
        assert g.normalise(text) == (ip.version, str(ip))
    for bad in ("10.0.0.300", "fd42::1::2", "", "10.0.0.1/32"):
        with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
            g.normalise(bad)


def test_run_is_subprocess_run_without_subprocess() -> None:
    assert g.run(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")
    big = g.run(["sh", "-c", "head -c 200000 /dev/zero >&2; echo done"])  # more than a pipe holds
    assert big[0] == 0 and big[1] == "done\n" and len(big[2]) == 200000
    code, _out, err = g.run(["/nonexistent/ip"])
    assert code == 127 and "No such file" in err
