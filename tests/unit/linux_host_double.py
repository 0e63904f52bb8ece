"""A Linux real server for the module-level tests of ``dsr_realserver_linux_apply`` (issue 28).

The module's ``main()`` runs for real (the real AnsibleModule, its checks,
plan, apply and undo); only the host is a double, in two parts:

- a temporary root: the module's host paths (``/etc``, ``/proc/sys``,
  ``/sys/class/net``, ``/run``) are module-level constants of its
  module_utils, pointed into the root by :func:`point_into`;
- :class:`LinuxHost`, AnsibleModule.run_command's stand-in: it answers from
  recorded outputs (``tests/data/linux_apply``: the lo probe as recorded
  on the lab's kinds, ``ip -o addr show`` of a Debian 12 lab host) and keeps
  the state those commands change (lo's addresses, the units, the
  NetworkManager keyfile, what networkd and netplan render), so a second run
  reads what the first one did. Every call is recorded; a chosen one fails.

While the module runs, an audit hook refuses any write outside the root (the
tests may run as root: a path the seam missed must not reach the real /etc)
and lists any host path read or listed, so a test sees the seam is whole.
The lab tests (tests/integration/test_lo_*.py) run the real managers.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_arp_sysctls as arp
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_boot_unit as boot_unit
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_host_facts as facts
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_manager as lm
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_lo_persist as persist
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_sysctl_overrides as overrides

DATA = Path(__file__).parents[1] / "data" / "linux_apply"
IP = "/usr/sbin/ip"
KINDS = ("plain", "nm", "networkd", "netplan")
# What each kind's lo is configured by, inside the root.
NM_KEYFILE = "/etc/NetworkManager/system-connections/lo.nmconnection"
LO_NETWORK = "/etc/systemd/network/05-lo.network"
NETPLAN_LO = "/run/systemd/network/10-netplan-lo.network"
# The host paths themselves (read before point_into() moves the module's into the root).
NM_HOOK, NETPLAN_FILE, UNIT_DIR = lm.NM_HOOK, lm.NETPLAN_FILE, boot_unit.UNIT_DIR
# The probe's sections in the order it prints them (dsr_lo_manager.PROBE).
PROBE_ORDER = re.findall(r"""echo ['"]@@lo:([\w-]+)@@""", lm.PROBE)
# The commands that only read (everything else changes the host).
READS = (["sh", "-c", lm.PROBE], [IP, "-o", "addr", "show"], ["systemctl", "show"])


def is_read(cmd: list[str]) -> bool:
    return any(cmd[: len(prefix)] == prefix for prefix in READS)


def point_into(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's host paths, inside ROOT (the seam: module-level constants)."""
    r = str(root)
    monkeypatch.setattr(facts, "find_ip_command", lambda: IP)
    monkeypatch.setattr(facts, "SYS_CLASS_NET", r + "/sys/class/net")
    monkeypatch.setattr(facts, "IPV4_CONF", r + "/proc/sys/net/ipv4/conf")
    monkeypatch.setattr(facts, "SYSTEMD_RUNTIME", r + "/run/systemd/system")
    monkeypatch.setattr(arp, "PROC_SYS", r + "/proc/sys/")
    monkeypatch.setattr(overrides, "SYSCTL_DIRS", tuple(r + d for d in overrides.SYSCTL_DIRS))
    monkeypatch.setattr(overrides, "SYSCTL_CONF", r + overrides.SYSCTL_CONF)
    monkeypatch.setattr(boot_unit, "UNIT_DIR", r + UNIT_DIR)
    monkeypatch.setattr(lm, "NETWORKD_DIRS", tuple(r + d for d in lm.NETWORKD_DIRS))
    for module in (lm, persist):
        monkeypatch.setattr(module, "NM_HOOK", r + NM_HOOK)
        monkeypatch.setattr(module, "NETPLAN_FILE", r + NETPLAN_FILE)
    monkeypatch.setattr(persist, "NETPLAN_LO_NETWORK", r + persist.NETPLAN_LO_NETWORK)


def sections(text: str) -> list[tuple[str, str]]:
    """The probe's output as [(section, body)], in order (a section may repeat)."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        m = re.fullmatch(r"@@lo:([\w-]+)@@", line)
        if m:
            out.append((m.group(1), ""))
        else:
            name, body = out[-1]
            out[-1] = (name, body + line + "\n")
    return out


def addresses_of(config: str) -> list[tuple[str, str | None]]:
    """(address, label) of each Address= of a .network file and its drop-ins."""
    found: list[tuple[str, str | None]] = []
    for line in config.splitlines():
        key, _sep, value = line.strip().partition("=")
        if key == "Address":
            found.append((value, None))
        elif key == "Label" and found:
            found[-1] = (found[-1][0], value)
    return found


class LinuxHost:
    """AnsibleModule.run_command's stand-in, with the state its commands change (see the docstring)."""

    def __init__(self, root: Path, kind: str) -> None:
        self.root, self.kind = root, kind
        self.probe = sections((DATA / kind / "probe.txt").read_text())
        recorded = (DATA / "ip-addr.txt").read_text().splitlines()
        self.lo = [line for line in recorded if line.split()[1] == "lo"]
        self.others = [line for line in recorded if line.split()[1] != "lo"]
        self.units: dict[str, dict[str, bool]] = {}
        self.calls: list[list[str]] = []
        self.fail: list[str] | None = None  # a command starting so fails
        self.networkd_owned: list[tuple[str, str | None]] = []
        self.outside: list[str] = []  # host paths the module reached (audit hook)

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def build(self) -> None:
        """The root as the kind's host has it before dsrprov."""
        for line in (DATA / "sysctl.txt").read_text().splitlines():
            key, _sep, value = line.partition(" = ")
            proc = self.path("/proc/sys/" + key.replace(".", "/"))
            proc.parent.mkdir(parents=True, exist_ok=True)
            proc.write_text(value + "\n")
        for name in ("lo", "eth0"):
            self.path("/sys/class/net/" + name).mkdir(parents=True)
        for directory in ("/run/systemd/system", "/etc/systemd/system", "/etc/sysctl.d", "/usr/lib/sysctl.d"):
            self.path(directory).mkdir(parents=True, exist_ok=True)
        given = DATA / self.kind / "root"
        for source in sorted(given.rglob("*")) if given.is_dir() else []:
            target = self.root / source.relative_to(given)
            if source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.write_bytes(source.read_bytes())
                target.chmod(0o600 if "NetworkManager" in str(source) else 0o644)
        if self.kind == "nm":
            # NetworkManager's package ships it (empty, on a host without hooks).
            self.path("/etc/NetworkManager/dispatcher.d").mkdir(parents=True)
        if self.kind == "netplan":
            self.path("/run/systemd/network").mkdir(parents=True)
            self.path("/run/systemd/network/10-netplan-eth0.network").write_text("[Match]\nName=eth0\n")

    # -- what the probe reads --------------------------------------------------

    def read(self, host_path: str) -> str:
        path = self.path(host_path)
        return path.read_text() if path.is_file() else ""

    def nm_addresses(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {4: [], 6: []}
        section = ""
        for line in self.read(NM_KEYFILE).splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif line.startswith("address") and section in ("ipv4", "ipv6"):
                out[4 if section == "ipv4" else 6].append(line.split("=", 1)[1].split(",")[0])
        return out

    def netplan_lo(self) -> list[tuple[str, str | None]]:
        """lo's addresses in dsrprov's netplan file (the only one that names lo here)."""
        text = self.read(NETPLAN_FILE)
        found: list[tuple[str, str | None]] = []
        for line in text.splitlines():
            m = re.match(r'\s*- "([^"]+)"', line)
            if m:
                found.append((m.group(1), None))
            m = re.match(r'\s*label: "([^"]+)"', line)
            if m and found:
                found[-1] = (found[-1][0], m.group(1))
        return found

    def probe_output(self) -> str:
        """The recorded probe, its sections that follow the host's state read again."""
        keep = "{}{}".format(
            self.read("/proc/sys/net/ipv6/conf/all/keep_addr_on_down"),
            self.read("/proc/sys/net/ipv6/conf/lo/keep_addr_on_down"),
        )
        live: dict[str, list[str]] = {"keep": [keep], "nm-hook": [self.read(NM_HOOK)]}
        if self.kind == "nm":
            addresses = self.nm_addresses()
            block = re.sub(r"(?m)^filename:.*$", "filename:" + str(self.path(NM_KEYFILE)),
                           dict(self.probe)["nm-profile"])  # fmt: skip
            for family in (4, 6):
                block = re.sub(rf"(?m)^ipv{family}\.addresses:.*$",
                               f"ipv{family}.addresses:" + ", ".join(addresses[family]), block)  # fmt: skip
            live["nm-profile"] = [block]
        if self.kind == "networkd":
            live["networkd-file"] = [str(self.path(LO_NETWORK)) + "\n"]
            live["networkd-config"] = [self.read(LO_NETWORK)]
            dropins = sorted(self.path(LO_NETWORK + ".d").glob("*.conf"))
            live["networkd-dropin"] = [f"{p}\n{p.read_text()}" for p in dropins]
        if self.kind == "netplan":
            rendered = self.path(NETPLAN_LO).exists()
            live["netplan"] = ["".join(f"/{p.relative_to(self.root)}\n"
                                       for p in sorted(self.path("/etc/netplan").glob("*.yaml")))]  # fmt: skip
            # Its real path: the module tells netplan's files by it (and never opens it).
            live["networkd-file"] = [(NETPLAN_LO if rendered else "n/a") + "\n"]
            live["networkd-config"] = [self.read(NETPLAN_LO)] if rendered else []
            ours = self.netplan_lo()
            live["netplan-lo"] = [
                "addresses:\n"
                + "".join('- "{}"{}\n'.format(a, f':\n    label: "{label}"' if label else "") for a, label in ours)
                if ours
                else "null\n"
            ]
            live["netplan-generated"] = [
                "/run/systemd/network/10-netplan-eth0.network\n" + (NETPLAN_LO + "\n" if rendered else "")
            ]
            live["netplan-ours"] = [self.read(NETPLAN_FILE)]
        recorded: dict[str, list[str]] = {}
        for name, body in self.probe:
            recorded.setdefault(name, []).append(body)
        # The sections the recording lacks (a drop-in, what netplan renders) come where the probe prints them.
        return "".join(
            f"@@lo:{name}@@\n{body}" for name in PROBE_ORDER for body in live.get(name, recorded.get(name, []))
        )

    # -- the commands ------------------------------------------------------------

    def run_command(self, _module: Any, args: list[str], check_rc: bool = False, **_kw: Any) -> tuple[int, str, str]:
        cmd = [str(a) for a in args]
        self.calls.append(cmd)
        if self.fail is not None and cmd[: len(self.fail)] == self.fail:
            return 1, "", "Job failed (simulated by the test)"
        handlers: dict[str, Callable[[list[str]], tuple[int, str, str]]] = {
            "sh": lambda c: (0, self.probe_output(), ""),
            IP: self.ip,
            "systemctl": self.systemctl,
            "nmcli": self.nmcli,
            "networkctl": self.networkctl,
            "netplan": self.netplan,
        }
        if cmd[0] not in handlers:
            raise AssertionError(f"the module ran a command the test does not know: {cmd!r}")
        return handlers[cmd[0]](cmd)

    def ip(self, cmd: list[str]) -> tuple[int, str, str]:
        if cmd[1:4] == ["-o", "addr", "show"]:
            lines = self.lo + ([] if cmd[4:] == ["dev", "lo"] else self.others)
            return 0, "".join(line + "\n" for line in lines), ""
        args = cmd[2:] if cmd[1] in ("-4", "-6") else cmd[1:]
        assert args[0] == "addr" and args[3:5] == ["dev", "lo"], cmd
        action, address, rest = args[1], args[2], args[5:]
        held = [line for line in self.lo if line.split()[3] == address]
        if action == "del":
            if not held:
                return 2, "", "RTNETLINK answers: Cannot assign requested address"
            self.lo.remove(held[0])
            return 0, "", ""
        assert action in ("add", "replace"), cmd
        if held:
            return (0, "", "") if action == "replace" else (2, "", "RTNETLINK answers: File exists")
        self.lo_add(address, rest[rest.index("label") + 1] if "label" in rest else None)
        return 0, "", ""

    def lo_add(self, address: str, label: str | None) -> None:
        scope = "host" if address.startswith(("127.", "::1/")) else "global"
        if ":" in address:
            self.lo.append(f"1: lo    inet6 {address} scope {scope} \\       valid_lft forever preferred_lft forever")
        else:
            self.lo.append(
                "1: lo    inet {} scope {} {}\\       valid_lft forever preferred_lft forever".format(
                    address, scope, label or "lo"
                )
            )

    def systemctl(self, cmd: list[str]) -> tuple[int, str, str]:
        words = [w for w in cmd[1:] if w != "--quiet"]
        verb, name = words[0], words[-1]
        unit = self.units.get(name, {"enabled": False, "active": False})
        if verb == "show":
            if name not in self.units and not self.path(UNIT_DIR + "/" + name).exists():
                return 0, "UnitFileState=\nActiveState=inactive\nLoadState=not-found\n", ""
            return (
                0,
                "UnitFileState={}\nActiveState={}\nLoadState=loaded\n".format(
                    "enabled" if unit["enabled"] else "disabled",
                    "active" if unit["active"] else "inactive",
                ),
                "",
            )
        if verb == "daemon-reload":
            return 0, "", ""
        if verb in ("enable", "start") and not self.path(UNIT_DIR + "/" + name).exists():
            return 1, "", f"Failed to {verb} unit: Unit file {name} does not exist."
        now = "--now" in words
        if verb == "enable":
            unit = {"enabled": True, "active": unit["active"] or now}
        elif verb == "disable":
            unit = {"enabled": False, "active": unit["active"] and not now}
        elif verb in ("start", "stop"):
            unit = {"enabled": unit["enabled"], "active": verb == "start"}
        else:
            raise AssertionError(f"unknown systemctl call {cmd!r}")
        self.units[name] = unit
        return 0, "", ""

    def nmcli(self, cmd: list[str]) -> tuple[int, str, str]:
        if cmd[1:3] == ["connection", "modify"]:
            addresses = self.nm_addresses()
            for prop, value in zip(cmd[5::2], cmd[6::2], strict=True):
                family = 4 if "ipv4" in prop else 6
                if prop.startswith("+") and value not in addresses[family]:
                    addresses[family].append(value)
                elif prop.startswith("-") and value in addresses[family]:
                    addresses[family].remove(value)
            # NetworkManager saves the whole profile again: its own file round-trips,
            # the addresses first in their section (as nm12p-configured shows, the method stays).
            lines, section = [], ""
            for line in self.read(NM_KEYFILE).splitlines():
                if line.startswith("["):
                    section = line.strip("[]")
                    lines.append(line)
                    if section in ("ipv4", "ipv6"):
                        family = int(section[-1])
                        lines += [f"address{i}={a}" for i, a in enumerate(addresses[family], 1)]
                elif not (line.startswith("address") and section in ("ipv4", "ipv6")):
                    lines.append(line)
            self.path(NM_KEYFILE).write_text("\n".join(lines) + "\n")
            return 0, "", ""
        if cmd[1:3] == ["connection", "load"] or cmd[1:] == ["device", "reapply", "lo"]:
            return 0, "", ""
        raise AssertionError(f"unknown nmcli call {cmd!r}")

    def networkctl(self, cmd: list[str]) -> tuple[int, str, str]:
        """networkd puts on lo what its configuration of lo lists, and takes off what it listed before."""
        assert cmd[1:] == ["reload"], cmd
        if self.kind == "netplan":
            rendered = self.path(NETPLAN_LO).exists()
            if not rendered and self.networkd_owned:
                # lo left netplan's configuration: networkd 252/257 delete every address, localhost too.
                self.lo, self.networkd_owned = [], []
                return 0, "", ""
            wanted = addresses_of(self.read(NETPLAN_LO))
        else:
            texts = [self.read(LO_NETWORK)] + [p.read_text() for p in sorted(self.path(LO_NETWORK + ".d").glob("*"))]
            wanted = addresses_of("\n".join(texts))
        for address, _label in self.networkd_owned:
            if address not in [a for a, _ in wanted]:
                self.lo = [line for line in self.lo if line.split()[3] != address]
        for address, label in wanted:
            if address not in [line.split()[3] for line in self.lo]:
                self.lo_add(address, label)
        self.networkd_owned = wanted
        return 0, "", ""

    def netplan(self, cmd: list[str]) -> tuple[int, str, str]:
        """netplan generate: lo's .network from the netplan files (only dsrprov's names lo here)."""
        assert cmd[1:] == ["generate"], cmd
        ours = self.netplan_lo()
        target = self.path(NETPLAN_LO)
        if not ours:
            target.unlink(missing_ok=True)
            return 0, "", ""
        lines = ["[Match]", "Name=lo", "", "[Network]", "LinkLocalAddressing=ipv6"]
        lines += ["Address=" + a for a, label in ours if not label]
        for address, label in ours:
            if label:
                lines += ["", "[Address]", "Address=" + address, "Label=" + label]
        target.write_text("\n".join(lines) + "\n")
        return 0, "", ""

    # -- what a test compares ----------------------------------------------------

    def lo_addresses(self) -> list[str]:
        # "10.0.0.1/32 lo:1" (IPv4 with its label), "fd00::1/128".
        heads = [line.split("\\", 1)[0].split() for line in self.lo]
        return sorted(f[3] + (" " + f[-1] if f[2] == "inet" else "") for f in heads)

    def running_units(self) -> dict[str, dict[str, bool]]:
        return {n: u for n, u in self.units.items() if u["enabled"] or u["active"]}


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file (bytes, mode) and directory (None) under ROOT."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else (p.read_bytes(), p.stat().st_mode & 0o7777)
        for p in sorted(root.rglob("*"))
    }


# -- the audit hook ------------------------------------------------------------

_watched: list[LinuxHost] = []
_WRITES = {"os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.chmod", "os.utime", "os.symlink", "os.truncate"}
_LISTS = {"os.listdir", "os.scandir", "glob.glob"}
# Python's own files and the repository's (a lazy import while the module runs is no host state).
_OURS = tuple(
    {sysconfig.get_paths()[key] + "/" for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    | {str(Path(__file__).parents[2]) + "/"}
)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _watched or not (event == "open" or event in _WRITES or event in _LISTS):
        return
    host = _watched[-1]
    paths = [a for a in (args[:2] if event == "os.rename" else args[:1]) if isinstance(a, (str, bytes, Path))]
    for raw in paths:
        path = os.path.normpath(raw.decode() if isinstance(raw, bytes) else str(raw))
        inside = (path + "/").startswith(str(host.root) + "/")
        if not path.startswith("/") or inside or path.startswith(_OURS) or path == "/dev/null":
            continue
        host.outside.append(f"{event} {path}")
        flags = args[2] if event == "open" and isinstance(args[2], int) else 0
        if event in _WRITES or flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(f"the test's host double refuses a write outside its root: {path}")


sys.addaudithook(_audit)


@contextmanager
def watching(host: LinuxHost) -> Iterator[None]:
    _watched.append(host)
    try:
        yield
    finally:
        _watched.pop()
