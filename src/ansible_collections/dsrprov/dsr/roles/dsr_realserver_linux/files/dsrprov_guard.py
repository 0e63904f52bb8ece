#!/usr/bin/python3
"""dsrprov guard: keeps a DSR real server's VIPs on lo and its ARP sysctls as
the role set them between runs, and says so (journal, Prometheus textfile).

Installed by the role dsr_realserver_linux and run by systemd. Standard
library only, Python 3.8+ (the managed host's own python3, no new package).

- Addresses: a netlink socket subscribed to IPv4/IPv6 address events wakes
  the guard when an address of lo changes; it then reads lo once and, in heal
  mode, puts back a missing VIP with the role's own command (``/32 label``,
  ``/128 nodad``) - within milliseconds, not at the next period.
- Sysctls: no netlink event exists for them, so every ``period`` seconds the
  guard compares the keys of the role's sysctl file with /proc/sys and, in
  heal mode, writes back a value that became weaker (a stricter one, e.g.
  arp_ignore=2 from a hardening role, is left alone as the role leaves it).
- It only ever adds: it never removes an address, and it puts back only VIPs
  that are both in its configuration and in the role's record of the VIPs it
  put on lo (so a VIP that a role run is removing is never put back, and one
  that a run is about to add is left to the run). Another restorer (the
  NetworkManager dispatcher hook) may win the race: "File exists" (IPv6:
  "address already assigned") is success,
  and only the guard's own adds are counted and logged.
- It never fights forever: more than ``flap_limit`` restores of one VIP within
  ``flap_window`` seconds and it stops restoring that VIP (error line, metric
  dsrprov_guard_flapping=1) until the VIP is back by other means (a dsrprov
  run, an admin) or the guard restarts.

Memory: it imports neither subprocess nor ipaddress (together about 1 MB of
RSS on Debian 12); commands run through os.posix_spawnp, addresses are
normalised by inet_pton/inet_ntop.

Journal lines carry a syslog priority prefix (<3> error, <4> warning, <6>
info), which journald reads from a service's stderr.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time

# typing is imported for the type checker only: at run time it would cost
# about 1 MB of RSS (the annotations are strings, PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Set, Tuple

CONFIG = "/etc/dsrprov/guard.json"
METRIC_FILE = "dsrprov_guard.prom"
MODES = ("heal", "report")
PROC_SYS = "/proc/sys/"
ORIGINAL_MARK = "# original: "
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWADDR, RTM_DELADDR = 20, 21
# After its configuration changed while it runs - a role run writes it just
# before it changes lo, and puts back the VIPs it finds missing itself - the
# guard leaves missing VIPs to that run for this long: the run's own
# `ip addr add` would fail on an address the guard added between the run's
# read of lo and its add.
RUN_GRACE = 20.0
# The largest period or flapping limit, a day (the module and the role check
# the same bound, dsr_linux_names.COUNT_MAX): a longer period is no guard, and
# a huge one overflows time.sleep (the unit would crash-loop).
COUNT_MAX = 86400


class ConfigError(Exception):
    pass


class Config:
    """The guard's configuration (a JSON file the role writes)."""

    def __init__(self, data: Dict[str, object]) -> None:
        def text(key: str) -> str:
            value = data.get(key)
            if not isinstance(value, str):
                raise ConfigError("%s: %r is not a string" % (key, value))
            return value

        def number(key: str) -> int:
            value = data.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= COUNT_MAX:
                raise ConfigError("%s: %r is not a whole number from 1 to %d" % (key, value, COUNT_MAX))
            return value

        self.mode = text("mode")
        if self.mode not in MODES:
            raise ConfigError("mode: %r is not one of %s" % (self.mode, ", ".join(MODES)))
        vips = data.get("vips")
        if not isinstance(vips, list):
            raise ConfigError("vips: %r is not a list" % (vips,))
        self.vips = [normalise(str(v))[1] for v in vips]
        self.label = text("label")
        self.period = float(number("period"))
        self.flap_limit = number("flap_limit")
        self.flap_window = float(number("flap_window"))
        self.textfile_dir = text("textfile_dir")
        self.sysctl_file = text("sysctl_file")
        self.record_file = text("record_file")
        self.ip_command = str(data.get("ip_command", "ip"))


# How long IPv6 may stay off on lo before a VIP that cannot be put back is an error.
V6_OFF_GRACE = 5.0


def load_config(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc)) from None
    if not isinstance(data, dict):
        raise ConfigError("%s: not a JSON object" % path)
    try:
        return Config(data)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# --- what is on the host (pure parsers) ----------------------------------


def normalise(text: str) -> Tuple[int, str]:
    """(IP version, canonical text) of an address, as ipaddress would print it."""
    for family, version in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
        try:
            return version, socket.inet_ntop(family, socket.inet_pton(family, text))
        except (OSError, ValueError):
            continue
    raise ValueError("%r does not appear to be an IPv4 or IPv6 address" % text)


def parse_lo(out: str) -> Set[str]:
    """The host addresses (/32, /128) in ``ip -o addr show dev lo`` output."""
    hosts = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] not in ("inet", "inet6"):
            continue
        address, _slash, length = fields[3].partition("/")
        try:
            version, text = normalise(address)
        except ValueError:
            continue
        if length == ("32" if version == 4 else "128"):
            hosts.add(text)
    return hosts


def parse_record(text: str) -> Set[str]:
    """The role's record of the VIPs it put on lo (one a line, # comments)."""
    out = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                out.add(normalise(line)[1])
            except ValueError:
                continue
    return out


def parse_sysctl_file(text: str) -> Dict[str, str]:
    """key -> value of the role's sysctl file (comments, originals skipped)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def proc_path(key: str) -> str:
    """As sysctl.d(5): the first separator decides; in the dotted form a "/"
    stands for a "." inside a name (eth0/100 is eth0.100)."""
    slash, dot = key.find("/"), key.find(".")
    if slash != -1 and (dot == -1 or slash < dot):
        return PROC_SYS + key.strip("/")
    return PROC_SYS + key.translate(str.maketrans("./", "/."))


def strict_enough(live: Optional[str], wanted: str) -> bool:
    """The role's rule: a larger value is at least as strict for its keys."""
    try:
        return int(str(live)) >= int(wanted)
    except (TypeError, ValueError):
        return False


def add_cmd(ip_command: str, vip: str, label: str) -> List[str]:
    """The role's own command (module_utils dsr_loopback_vips.add_cmd)."""
    version, addr = normalise(vip)
    cmd = [ip_command, "-%d" % version, "addr", "add", "%s/%d" % (addr, 32 if version == 4 else 128), "dev", "lo"]
    return cmd + (["label", label] if version == 4 else ["nodad"])


# --- the decisions (pure) ------------------------------------------------


class FlapTracker:
    """Restores of one VIP within a sliding window; engaged above the limit."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.times: Dict[str, List[float]] = {}
        self.flapping: Set[str] = set()

    def allow(self, vip: str, now: float) -> bool:
        """May the guard restore VIP now? False engages flapping for it."""
        if vip in self.flapping:
            return False
        recent = [t for t in self.times.get(vip, []) if now - t < self.window]
        self.times[vip] = recent
        if len(recent) >= self.limit:
            self.flapping.add(vip)
            return False
        return True

    def restored(self, vip: str, now: float) -> None:
        self.times.setdefault(vip, []).append(now)

    def seen_present(self, vip: str) -> bool:
        """VIP is on lo while flapping (put back by someone else): disengage.
        True when that ended a flapping state."""
        if vip in self.flapping:
            self.flapping.discard(vip)
            self.times.pop(vip, None)
            return True
        return False


def guarded(cfg_vips: List[str], record: Set[str]) -> List[str]:
    """The VIPs the guard may put back: configured and recorded by the role."""
    return [v for v in cfg_vips if v in record]


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(
    mode: str,
    present: Dict[str, bool],
    sysctls_ok: bool,
    restores: Dict[Tuple[str, str], int],
    flapping: Set[str],
    now: float,
) -> str:
    """The textfile for node_exporter, Prometheus text format 0.0.4."""
    out: List[str] = []

    def family(name: str, kind: str, help_text: str, samples: List[Tuple[str, object]]) -> None:
        out.append("# HELP %s %s" % (name, help_text))
        out.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples:
            out.append("%s%s %s" % (name, labels, value))

    family(
        "dsrprov_guard_mode",
        "gauge",
        "Mode of the dsrprov guard (1 for the mode it runs in).",
        [('{mode="%s"}' % m, int(m == mode)) for m in MODES],
    )
    family(
        "dsrprov_vip_present",
        "gauge",
        "Whether the VIP is on lo as a host address (1) or not (0).",
        [('{vip="%s"}' % escape_label(v), int(p)) for v, p in sorted(present.items())],
    )
    family(
        "dsrprov_arp_sysctls_ok",
        "gauge",
        "Whether every key of the role's sysctl file (ARP keys, keep_addr_on_down) is at least as strict as set (1).",
        [("", int(sysctls_ok))],
    )
    family(
        "dsrprov_guard_restores_total",
        "counter",
        "Restores the guard made since it started, by kind (vip, sysctl) and target.",
        [('{kind="%s",target="%s"}' % (escape_label(k), escape_label(t)), n) for (k, t), n in sorted(restores.items())],
    )
    family(
        "dsrprov_guard_flapping",
        "gauge",
        "Whether the guard stopped restoring the VIP because something keeps removing it (1).",
        [('{vip="%s"}' % escape_label(v), int(v in flapping)) for v in sorted(present)],
    )
    family(
        "dsrprov_guard_last_check_timestamp_seconds",
        "gauge",
        "Unix time of the guard's last check.",
        [("", "%.3f" % now)],
    )
    return "\n".join(out) + "\n"


def write_atomic(path: str, text: str) -> None:
    """Write beside, then rename: node_exporter never reads half a file."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# --- the running guard ---------------------------------------------------


def run(cmd: List[str]) -> Tuple[int, str, str]:
    """(exit status, stdout, stderr) of CMD: subprocess.run without importing subprocess."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
    try:
        pid = os.posix_spawnp(cmd[0], cmd, dict(os.environ), file_actions=actions)
    except OSError as exc:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        return 127, "", "%s: %s" % (cmd[0], exc.strerror)
    os.close(out_w)
    os.close(err_w)
    chunks: Dict[int, List[bytes]] = {out_r: [], err_r: []}
    pending = [out_r, err_r]
    while pending:  # both pipes at once: a full stderr never blocks the child
        ready, _w, _x = select.select(pending, [], [])
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                pending.remove(fd)
                os.close(fd)
    _pid, status = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    return code, b"".join(chunks[out_r]).decode(errors="replace"), b"".join(chunks[err_r]).decode(errors="replace")


def log(priority: int, message: str) -> None:
    sys.stderr.write("<%d>%s\n" % (priority, message))
    sys.stderr.flush()


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


class Guard:
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self.config_stamp: Optional[Tuple[float, int]] = None
        self.cfg = load_config(config_path)
        self.flaps = FlapTracker(self.cfg.flap_limit, self.cfg.flap_window)
        self.restores: Dict[Tuple[str, str], int] = {}
        self.reported: Set[str] = set()
        self.present: Dict[str, bool] = {}
        self.sysctls_ok = True
        self.grace_until = 0.0
        # VIP -> when putting it back first failed because IPv6 was off on lo.
        self.v6_off_since: Dict[str, float] = {}
        self.stamp_config()

    def stamp_config(self) -> bool:
        """True when the config file changed since it was last read."""
        try:
            st = os.stat(self.config_path)
            stamp: Optional[Tuple[float, int]] = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        changed = stamp != self.config_stamp
        self.config_stamp = stamp
        return changed

    def reload_if_changed(self) -> None:
        # A role run writes the new config before it changes lo, so the event
        # of a VIP it removes is judged by the new list, never the old one.
        if self.stamp_config():
            try:
                cfg = load_config(self.config_path)
            except ConfigError as exc:
                log(3, "configuration not reloaded, keeping the previous one: %s" % exc)
                return
            if (cfg.flap_limit, cfg.flap_window) != (self.cfg.flap_limit, self.cfg.flap_window):
                self.flaps.limit, self.flaps.window = cfg.flap_limit, cfg.flap_window
            self.cfg = cfg
            self.grace_until = time.monotonic() + RUN_GRACE
            log(6, "configuration reloaded: mode %s, VIPs %s" % (cfg.mode, " ".join(cfg.vips) or "none"))

    def lo_hosts(self) -> Optional[Set[str]]:
        code, out, err = run([self.cfg.ip_command, "-o", "addr", "show", "dev", "lo"])
        if code != 0:
            log(3, "cannot read lo's addresses: %s" % err.strip())
            return None
        return parse_lo(out)

    def check_vips(self) -> None:
        hosts = self.lo_hosts()
        if hosts is None:
            return
        record = parse_record(read_text(self.cfg.record_file))
        self.present = {v: v in hosts for v in self.cfg.vips}
        for vip in self.cfg.vips:
            if vip in hosts:
                self.reported.discard(vip)
                self.v6_off_since.pop(vip, None)
                if self.flaps.seen_present(vip):
                    log(6, "VIP %s is back on lo (put back by something else): restoring it again if it goes" % vip)
                continue
            if vip not in guarded([vip], record):
                continue
            self.missing_vip(vip)

    def missing_vip(self, vip: str) -> None:
        if self.cfg.mode == "report":
            if vip not in self.reported:
                log(4, "VIP %s is missing from lo; not restored (guard in report mode)" % vip)
                self.reported.add(vip)
            return
        now = time.monotonic()
        if now < self.grace_until:
            return  # a role run is under way (see RUN_GRACE); the next check after it restores
        if not self.flaps.allow(vip, now):
            if vip not in self.reported:
                log(
                    3,
                    "flapping: something keeps removing VIP %s from lo (%d restores within %ds); "
                    "not restoring it until it is back; run dsrprov doctor"
                    % (vip, self.flaps.limit, int(self.flaps.window)),
                )
                self.reported.add(vip)
            return
        cmd = add_cmd(self.cfg.ip_command, vip, self.cfg.label)
        code, _out, err = run(cmd)
        if code == 0:
            self.flaps.restored(vip, now)
            self.v6_off_since.pop(vip, None)
            key = ("vip", vip)
            self.restores[key] = self.restores.get(key, 0) + 1
            self.present[vip] = True
            log(4, "VIP %s was missing from lo; put it back (%s)" % (vip, " ".join(cmd[1:])))
        elif "File exists" in err or "already assigned" in err:
            # Another restorer (the NetworkManager hook) was first. iproute2 says
            # "RTNETLINK answers: File exists" for IPv4, "Error: ipv6: address
            # already assigned." for IPv6 (Debian 12, seen in the lab).
            self.present[vip] = True
        elif "IPv6 is disabled" in err:
            # NetworkManager turns IPv6 off on lo for a moment when it activates
            # a loopback profile (seen in the lab, NetworkManager 1.42). When it
            # comes back the kernel adds ::1, whose address event wakes the
            # guard, which puts the VIP back then. Only a lasting state is an
            # error: a try V6_OFF_GRACE or more after the first failed one (the
            # next period at the latest) that fails too, said once.
            first = self.v6_off_since.setdefault(vip, now)
            if now - first < V6_OFF_GRACE:
                log(6, "VIP %s cannot be put back yet: IPv6 is off on lo; trying again when it is on" % vip)
            elif vip not in self.reported:
                log(3, "VIP %s is missing from lo and could not be put back: %s" % (vip, err.strip()))
                self.reported.add(vip)
        else:
            log(3, "VIP %s is missing from lo and could not be put back: %s" % (vip, err.strip()))

    def check_sysctls(self) -> None:
        wanted = parse_sysctl_file(read_text(self.cfg.sysctl_file))
        ok = True
        for key, value in sorted(wanted.items()):
            path = proc_path(key)
            live = read_text(path).strip()
            if not os.path.exists(path):
                continue  # an interface that is gone: nothing to guard
            if strict_enough(live, value):
                self.reported.discard("sysctl " + key)
                continue
            if self.cfg.mode == "report":
                ok = False
                if ("sysctl " + key) not in self.reported:
                    log(4, "sysctl %s is %s, weaker than %s; not restored (guard in report mode)" % (key, live, value))
                    self.reported.add("sysctl " + key)
                continue
            try:
                with open(path, "w", encoding="ascii") as handle:
                    handle.write(value + "\n")
            except OSError as exc:
                ok = False
                log(3, "sysctl %s is %s, weaker than %s, and could not be set: %s" % (key, live, value, exc))
                continue
            self.restores[("sysctl", key)] = self.restores.get(("sysctl", key), 0) + 1
            log(4, "sysctl %s was %s, weaker than %s; set it back to %s" % (key, live, value, value))
        self.sysctls_ok = ok
        for key in wanted:
            self.restores.setdefault(("sysctl", key), 0)

    def write_metrics(self) -> None:
        for vip in self.cfg.vips:
            self.restores.setdefault(("vip", vip), 0)
        known = {("vip", v) for v in self.cfg.vips}
        restores = {k: n for k, n in self.restores.items() if k[0] != "vip" or k in known}
        text = render_metrics(self.cfg.mode, self.present, self.sysctls_ok, restores, self.flaps.flapping, time.time())
        try:
            os.makedirs(self.cfg.textfile_dir, mode=0o755, exist_ok=True)
            write_atomic(os.path.join(self.cfg.textfile_dir, METRIC_FILE), text)
        except OSError as exc:
            log(3, "cannot write the metrics to %s: %s" % (self.cfg.textfile_dir, exc))

    def check(self, sysctls: bool) -> None:
        self.reload_if_changed()
        self.check_vips()
        if sysctls:
            self.check_sysctls()
        self.write_metrics()


def lo_events(sock: socket.socket, lo_index: int) -> bool:
    """Drain the socket; True when an address event concerned lo (or events
    were lost, which asks for a full look as well)."""
    hit = False
    while True:
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return hit
        except OSError:  # ENOBUFS: the kernel dropped events
            return True
        offset = 0
        while offset + 24 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if kind in (RTM_NEWADDR, RTM_DELADDR):
                index = struct.unpack_from("=I", data, offset + 20)[0]
                hit = hit or index == lo_index
            if length < 16:
                break
            offset += (length + 3) & ~3


def main(argv: List[str]) -> int:
    path = argv[1] if len(argv) > 1 else CONFIG
    try:
        guard = Guard(path)
    except ConfigError as exc:
        log(3, str(exc))
        return 2
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
    lo_index = socket.if_nametoindex("lo")
    log(
        6,
        "guarding VIPs %s on lo in %s mode (sysctls every %gs)"
        % (" ".join(guard.cfg.vips) or "none", guard.cfg.mode, guard.cfg.period),
    )
    next_sysctl = 0.0
    while True:
        now = time.monotonic()
        due = now >= next_sysctl
        if due:
            next_sysctl = now + guard.cfg.period
        guard.check(sysctls=due)
        while True:
            wake = next_sysctl if guard.grace_until <= time.monotonic() else min(next_sysctl, guard.grace_until)
            timeout = max(0.0, wake - time.monotonic())
            ready, _w, _x = select.select([sock], [], [], timeout)
            if not ready or lo_events(sock, lo_index):
                break


if __name__ == "__main__":
    sys.exit(main(sys.argv))
