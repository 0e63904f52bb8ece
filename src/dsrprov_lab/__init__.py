"""The built-in local lab: systemd containers with real sshd on an internal
podman network, and the director as a QEMU VM on its bridge, described by
``inventories/lab/hosts.yml``.

Test and demo equipment: nothing a user's ``dsrprov enroll`` runs through
imports this package. It needs a dsrprov checkout (its scripts and images are
under ``lab/``), found by ``dsrprov_lab.paths.checkout_root``."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dsrprov_lab import preflight as labcheck
from dsrprov_lab.errors import LabError
from dsrprov_lab.paths import checkout_root as project_root
from dsrprov_lab.paths import lab_inventory, lab_state_dir

IMAGE = "localhost/dsrprov-lab:debian12"
# Directors that `lab up` leaves off: a second VM costs a boot and a share of
# two cores, so only the tests and benchmarks of a director pair start it.
SPARE_GROUP = "lab_spare_directors"
# The default image's kind. Other kinds (a Debian release with a network
# manager) are built by lab/image/build-kind.sh from lab/image/kinds/KIND.conf
# and named localhost/dsrprov-lab:KIND; a host names its kind with lab_image.
DEFAULT_KIND = "debian12"

# A tiny web service on every real server: it answers with the host's name, so
# a client can tell which real server replied. Listens on all addresses, the
# VIPs on lo included.
WEB_UNIT = """[Unit]
Description=dsrprov lab web service
After=network.target
[Service]
ExecStart=/usr/bin/python3 -m http.server 80 --bind :: --directory /srv/www
Restart=always
[Install]
WantedBy=multi-user.target
"""


__all__ = [
    "Lab",
    "LabError",
    "LabHost",
    "down",
    "inventory_copy",
    "kill_vm",
    "load_lab",
    "pair_inventory",
    "start_spare",
    "status",
    "stop_vm",
    "up",
]


@dataclass
class LabHost:
    name: str
    ip: str
    ip6: str
    mac: str
    container: str = ""
    groups: list[str] = field(default_factory=list)
    state_dir: Path = Path()  # the lab's generated files (key, known_hosts)
    # "container" (systemd in podman) or "vm" (QEMU: the director needs a
    # kernel with IPVS, which this machine's kernel lacks).
    kind: str = "container"
    image: str = DEFAULT_KIND  # a container's image kind (lab_image)

    @property
    def image_ref(self) -> str:
        return f"localhost/dsrprov-lab:{self.image}"

    @property
    def is_vm(self) -> bool:
        return self.kind == "vm"

    @property
    def is_realserver(self) -> bool:
        return "dsr_realservers_linux" in self.groups

    @property
    def is_spare(self) -> bool:
        """A spare director: a VM that ``lab up`` leaves off, started on demand
        (``start_spare``) to make a VRRP pair (``pair_inventory``)."""
        return SPARE_GROUP in self.groups


@dataclass
class Lab:
    network: str
    subnet: str
    subnet6: str
    hosts: list[LabHost]
    state_dir: Path

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"no lab host named {name!r}")


def _walk(group: str, node: dict[str, Any], path: list[str], out: dict[str, LabHost]) -> None:
    for name, hv in (node.get("hosts") or {}).items():
        hv = hv or {}
        host = out.setdefault(
            name,
            LabHost(
                name,
                str(hv.get("ansible_host", "")),
                str(hv.get("lab_ip6", "")),
                str(hv.get("lab_mac", "")),
                kind=str(hv.get("lab_kind", "container")),
                image=str(hv.get("lab_image", DEFAULT_KIND)),
            ),
        )
        host.groups.extend(g for g in [*path, group] if g not in host.groups)
    for child, sub in (node.get("children") or {}).items():
        _walk(child, sub or {}, [*path, group], out)


def load_lab(inventory: Path | None = None) -> Lab:
    """Read a lab from its inventory; containers are named NETWORK-HOST."""
    inventory = inventory or lab_inventory()
    root = yaml.safe_load(inventory.read_text())["all"]
    hosts: dict[str, LabHost] = {}
    _walk("all", root, [], hosts)
    lab_vars = root.get("vars", {})
    network = lab_vars["lab_network"]
    state_dir = lab_state_dir(inventory)
    lab = Lab(network, lab_vars["lab_subnet"], lab_vars["lab_subnet6"], list(hosts.values()), state_dir)
    for host in lab.hosts:
        host.container = f"{network}-{host.name}"
        host.state_dir = state_dir
        check_host_facts(lab, host, inventory)
    return lab


# Where a lab host's facts come from: all from the lab inventory's own entry
# for the host, read here with plain YAML (not through the CLI's view):
# ansible_host is its IPv4 address, lab_ip6 its IPv6 address, lab_mac its MAC
# (fixed, so that captures and the director's neighbour tables can name
# hosts), lab_kind/lab_image what it runs. podman is never asked to pick an
# address: an empty one would let it hand out another host's (seen: a real
# server given the director's IPv6 address after an edit dropped lab_ip6).
_MAC = re.compile(r"^02(:[0-9a-f]{2}){5}$")


def check_host_facts(lab: Lab, host: LabHost, inventory: Path) -> None:
    """Refuse, in one line, a lab host whose address or MAC is missing or wrong."""

    def bad(what: str) -> LabError:
        return LabError(f"lab host {host.name} in {inventory}: {what}; every lab host needs ansible_host (IPv4), "
                        f"lab_ip6 and lab_mac (02:xx:xx:xx:xx:xx) in its own entry")  # fmt: skip

    for var, value, subnet in (("ansible_host", host.ip, lab.subnet), ("lab_ip6", host.ip6, lab.subnet6)):
        if not value:
            raise bad(f"{var} is missing")
        try:
            inside = ipaddress.ip_address(value) in ipaddress.ip_network(subnet)
        except ValueError:
            raise bad(f"{var} {value!r} is not an address") from None
        if not inside:
            raise bad(f"{var} {value} is outside the lab subnet {subnet}")
    if not host.mac:
        raise bad("lab_mac is missing")
    if not _MAC.match(host.mac):
        raise bad(f"lab_mac {host.mac!r} is not a locally administered unicast MAC (02:...)")


# Kernel settings every lab container gets explicitly, so that no test
# depends on the host's history. A new network namespace copies the host's
# IPv4 settings at the moment it is made (net.core.devconf_inherit_init_net=0,
# the kernel's default) and netavark turns the host's ip_forward on while it
# sets up a container: on a host that booted with ip_forward=0 the first
# containers would not forward and later ones would. Lab hosts do not forward,
# like real servers in most fleets; DSRPROV_LAB_FORWARDING=1 makes the real
# servers forward (a real server that routes hides a missing VIP by passing
# the packet on; doctor's tests try both at run time, see set_forwarding).
FORWARDING_KEYS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")


def _forwarding(on: bool) -> dict[str, str]:
    return dict.fromkeys(FORWARDING_KEYS, "1" if on else "0")


def lab_sysctls(host: LabHost) -> dict[str, str]:
    return _forwarding(host.is_realserver and os.environ.get("DSRPROV_LAB_FORWARDING", "0") == "1")


def set_sysctls(host: LabHost, settings: dict[str, str]) -> None:
    """Write kernel settings in a container and read them back."""
    keys = list(settings)
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in settings.items())
    script = f"sysctl -qw {assignments} && sysctl -n {' '.join(keys)}"
    got = lab_exec(host, "sh", "-c", script).split()
    if got != [settings[k] for k in keys]:
        raise LabError(f"lab host {host.name}: {dict(zip(keys, got, strict=False))} after setting {settings}")


def set_forwarding(host: LabHost, on: bool) -> None:
    """Turn a container's IPv4 and IPv6 forwarding on or off now (until lab up sets the lab's value again)."""
    set_sysctls(host, _forwarding(on))


# A fleet lab: N real servers and a client on a network of its own, beside the
# default lab (no director: two VMs would fight over one TAP name, and the
# fleet measures the real-server side). Generated, never committed.
FLEET_NETWORK = "dsrprov-fleet"
FLEET_MAX = 200


def fleet_inventory(count: int, base: Path | None = None, guard_mode: str = "off") -> Path:
    """Write (idempotently) the inventory of a lab of COUNT real servers; return its path.

    GUARD_MODE is the real servers' guard mode: "off" by default, because the
    fleet benchmark sets its ratios against a parallel SSH loop that makes the
    role's host changes without a guard; DSRPROV_BENCH_GUARD=heal measures the
    role with it."""
    if not 1 <= count <= FLEET_MAX:
        raise LabError(f"a fleet lab has 1 to {FLEET_MAX} real servers, not {count}")
    where = (base or lab_state_dir()) / f"fleet-{count}"
    hosts = {
        f"rs{i}": {
            "ansible_host": f"10.251.0.{10 + i}",
            "dsr_real_address6": f"fd42:d5a:0:3::{10 + i}",
            "lab_ip6": f"fd42:d5a:0:3::{10 + i}",
            "lab_mac": f"02:d5:a1:00:{(10 + i) >> 8:02x}:{(10 + i) & 0xFF:02x}",
        }
        for i in range(1, count + 1)
    }
    doc = {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": "{{ inventory_dir }}/.state/id_ed25519",
                "ansible_ssh_common_args": "-o UserKnownHostsFile={{ inventory_dir }}/.state/known_hosts "
                "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
                "lab_network": FLEET_NETWORK,
                "lab_subnet": "10.251.0.0/24",
                "lab_subnet6": "fd42:d5a:0:3::/64",
            },
            "children": {
                "dsr_realservers": {"children": {"dsr_realservers_linux": {"hosts": hosts}}},
                "lab_clients": {
                    "hosts": {
                        "client": {
                            "ansible_host": "10.251.0.250",
                            "lab_ip6": "fd42:d5a:0:3::250",
                            "lab_mac": "02:d5:a1:00:02:50",
                        }
                    }
                },
            },
        }
    }
    services = {
        "dsr_services": [
            {"name": "web", "vip": "10.251.0.200", "port": 80, "protocol": "tcp"},
            {"name": "web6", "vip": "fd42:d5a:0:3::200", "port": 80, "protocol": "tcp"},
        ],
        "dsr_vips": "{{ dsr_services | map(attribute='vip') | unique | list }}",
        "dsr_realserver_linux_guard_mode": guard_mode,
    }
    (where / "group_vars").mkdir(parents=True, exist_ok=True)
    header = f"# Generated by `python -m dsrprov_lab up --realservers {count}`: a fleet lab.\n"
    _write_if_changed(where / "hosts.yml", header + yaml.safe_dump(doc, sort_keys=False))
    _write_if_changed(where / "group_vars" / "all.yml", header + yaml.safe_dump(services, sort_keys=False))
    return where / "hosts.yml"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(project_root() / "lab" / "containers.conf"))
    return env


def podman(*args: str, check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=podman_env(), input=input_text, check=False
    )
    if check and proc.returncode != 0:
        raise LabError(f"podman {' '.join(args[:2])} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def seconds_until(predicate: Callable[[], bool], timeout: float, step: float = 0.25) -> float | None:
    """Seconds until predicate() holds (polled every STEP), or None after TIMEOUT."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def lab_exec(host: LabHost, *cmd: str, check: bool = True, input_text: str | None = None) -> str:
    """Run a command on a lab host (lab plumbing and proofs; roles use Ansible).

    Containers through ``podman exec``; VMs over SSH with the lab's key and
    strict host key checking."""
    if host.is_vm:
        return ssh_exec(host, *cmd, check=check, input_text=input_text)
    return podman("exec", "-i", host.container, *cmd, check=check, input_text=input_text).stdout


def ssh_argv(host: LabHost, command: str) -> list[str]:
    """The ssh command line that runs the shell COMMAND on HOST (lab key, host key verified)."""
    state = host.state_dir
    return [
        "ssh", "-i", str(state / "id_ed25519"), "-o", f"UserKnownHostsFile={state / 'known_hosts'}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        f"root@{host.ip}", "--", command,
    ]  # fmt: skip


def ssh_exec(host: LabHost, *cmd: str, check: bool = True, input_text: str | None = None) -> str:
    proc = subprocess.run(
        ssh_argv(host, shlex.join(cmd)), capture_output=True, text=True, input=input_text, check=False
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise LabError(f"{host.name}: {shlex.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def vm_script(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """run-vm.sh ACTION ...; its whole output is kept in the VM's state dir
    (the image build is long), and a failure names the step and that log."""
    proc = subprocess.run(
        ["bash", str(project_root() / "lab" / "director" / "run-vm.sh"), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    state = Path(args[args.index("--state-dir") + 1]) if "--state-dir" in args else None
    log = state / f"run-vm-{args[0]}.log" if state is not None and state.is_dir() else None
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if check and proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit {proc.returncode}, no output"
        where = f" (whole output: {log})" if log is not None else ""
        raise LabError(f"director VM, step {args[0]}: {last}{where}")
    return proc


def vm_state_dir(host: LabHost) -> Path:
    return host.state_dir / f"vm-{host.name}"


def is_running(host: LabHost) -> bool:
    if host.is_vm:
        state = vm_state_dir(host)
        return state.exists() and vm_script("status", "--state-dir", str(state), check=False).returncode == 0
    proc = podman("container", "inspect", "--format", "{{.State.Running}}", host.container, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def wait_for_boot(host: LabHost, timeout: float = 90.0) -> None:
    """Wait until systemd has booted and sshd holds its host key."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = podman("exec", host.container, "systemctl", "is-system-running", check=False).stdout.strip()
        ssh = podman("exec", host.container, "systemctl", "is-active", "ssh", check=False).stdout.strip()
        if state in ("running", "degraded") and ssh == "active":
            return
        time.sleep(0.5)
    raise LabError(f"lab host {host.name} did not finish booting in {timeout:.0f} s")


def build_image(kind: str = DEFAULT_KIND) -> None:
    """Build (or find up to date) the image of one kind."""
    here = project_root() / "lab" / "image"
    cmd = ["sh", str(here / "build.sh"), IMAGE] if kind == DEFAULT_KIND else ["sh", str(here / "build-kind.sh"), kind]
    proc = subprocess.run(cmd, env=podman_env(), check=False)
    if proc.returncode != 0:
        raise LabError(f"building the lab image {kind} failed (see the output above)")


def ensure_keypair(state: Path) -> Path:
    state.mkdir(mode=0o700, exist_ok=True)
    key = state / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dsrprov-lab", "-f", str(key)], check=True)
    return key


def ensure_network(lab: Lab) -> None:
    if podman("network", "exists", lab.network, check=False).returncode == 0:
        return
    # --internal: the lab's containers get no route off this machine.
    podman("network", "create", "--internal", "--subnet", lab.subnet, "--ipv6", "--subnet", lab.subnet6, lab.network)


def bridge_of(lab: Lab) -> str:
    return podman("network", "inspect", "--format", "{{.NetworkInterface}}", lab.network).stdout.strip()


def start_vm(lab: Lab, host: LabHost, pubkey_file: Path) -> str:
    """Start the VM unless it runs; return its known_hosts line.

    Its host key comes from its serial console (run-vm.sh wait), never from
    the network. The bridge must exist, so containers start first. A VM left
    half-started by an earlier run (running without known_hosts, or state
    without QEMU) is waited for again, or stopped and started afresh."""
    state = vm_state_dir(host)
    known = state / "known_hosts"
    wait = ["wait", "--state-dir", str(state), "--known-hosts", str(known), "--timeout", "300"]
    if is_running(host) and not known.exists() and vm_script(*wait, check=False).returncode != 0:
        vm_script("stop", "--state-dir", str(state), check=False)
    if not is_running(host):
        if (state / "vm.env").exists():
            vm_script("stop", "--state-dir", str(state), check=False)  # its TAP and overlay
        state.mkdir(parents=True, exist_ok=True)
        known.unlink(missing_ok=True)
        start = time.monotonic()
        vm_script(
            "start", "--name", host.name, "--bridge", bridge_of(lab), "--ipv4", f"{host.ip}/{lab.subnet.split('/')[1]}",
            "--ipv6", f"{host.ip6}/{lab.subnet6.split('/')[1]}", "--mac", host.mac,
            "--authorized-keys", str(pubkey_file), "--state-dir", str(state),
        )  # fmt: skip
        vm_script(*wait)
        (state / "boot-seconds").write_text(f"{time.monotonic() - start:.1f}\n")
    keyline = next((line for line in known.read_text().splitlines() if line.startswith(host.ip + " ")), None)
    if keyline is None:
        raise LabError(
            f"director VM {host.name}: {known} names no key for {host.ip}; run make lab-down, then make lab-up"
        )
    return f"{host.name},{keyline}"


def start_host(lab: Lab, host: LabHost) -> None:
    """Start the container. One left stopped is started again, like a host
    that reboots (its host key and state kept); one that will not start is
    made afresh."""
    if host.is_vm or is_running(host):
        return
    exists = podman("container", "exists", host.container, check=False).returncode == 0
    if exists and podman("start", host.container, check=False).returncode == 0:
        return
    podman("rm", "-f", host.container, check=False)
    podman(
        "run",
        "-d",
        "--name",
        host.container,
        "--hostname",
        host.name,
        "--privileged",
        "--systemd=always",
        "--network",
        lab.network,
        "--ip",
        host.ip,
        "--ip6",
        host.ip6,
        "--mac-address",
        host.mac,
        "--label",
        "dsrprov_lab=1",
        # Applied by podman at every start (a restart is a reboot in the tests).
        *[arg for k, v in lab_sysctls(host).items() for arg in ("--sysctl", f"{k}={v}")],
        host.image_ref,
    )


def provision_host(host: LabHost, pubkey: str) -> str:
    """Set the lab's kernel settings, authorise the lab key, start the lab web
    service; return the host's key line."""
    # Again on every lab up: a container made by an older lab, or with other
    # settings, gets the lab's values too.
    set_sysctls(host, lab_sysctls(host))
    lab_exec(host, "sh", "-c", "umask 077; mkdir -p /root/.ssh; cat > /root/.ssh/authorized_keys", input_text=pubkey)
    if host.is_realserver:
        lab_exec(host, "sh", "-c", "cat > /etc/systemd/system/lab-web.service", input_text=WEB_UNIT)
        lab_exec(
            host,
            "sh",
            "-c",
            f"mkdir -p /srv/www && echo {host.name} > /srv/www/index.html && "
            # A download-heavy object for the byte-share measurement, and one
            # larger than a client's receive buffer for downloads that span a
            # director failover (dsrprov_lab.pair).
            "{ [ -s /srv/www/1m.bin ] || head -c 1048576 /dev/urandom > /srv/www/1m.bin; } && "
            "{ [ -s /srv/www/16m.bin ] || head -c 16777216 /dev/urandom > /srv/www/16m.bin; } && "
            "systemctl daemon-reload && systemctl enable lab-web.service >/dev/null 2>&1 && "
            "systemctl restart lab-web.service",
        )
    keytype, key = lab_exec(host, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    return f"{host.name},{host.ip} {keytype} {key}"


def check_preconditions(lab: Lab, say: Callable[[str], None] = print) -> None:
    """Check what the lab needs before anything starts; raise LabError with
    the cause and the fix. Raises the inotify limit for a big lab."""
    if shutil.which("podman") is None:
        raise LabError(str(labcheck.Problem("podman is not installed", "make setup")))
    backend = podman("info", "--format", "{{.Host.NetworkBackend}}", check=False).stdout
    problems = [labcheck.network_backend(backend), labcheck.netavark_firewall(shutil.which("iptables"))]
    if any(h.is_vm for h in lab.hosts):
        problems.append(labcheck.vm_support(shutil.which("qemu-system-x86_64"), Path("/dev/net/tun").exists()))
    for path in labcheck.image_dirs():
        problems.append(labcheck.disk(*labcheck.free_bytes(path)))
    for problem in problems:
        if problem is not None:
            raise LabError(str(problem))
    try:
        labcheck.raise_inotify(sum(not h.is_vm for h in lab.hosts), say)
    except labcheck.PreflightError as exc:
        raise LabError(str(exc)) from None


def _gateway(subnet: str) -> str:
    return str(next(ipaddress.ip_network(subnet).hosts()))


def check_reachable(lab: Lab) -> None:
    """The host must hold the lab gateway address on the bridge and reach a lab host."""
    bridge = podman("network", "inspect", "--format", "{{.NetworkInterface}}", lab.network, check=False).stdout.strip()
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", bridge], capture_output=True, text=True,
                           check=False).stdout if bridge else ""  # fmt: skip
    problem = labcheck.bridge_address(bridge, shown, _gateway(lab.subnet))
    target = next((h for h in lab.hosts if not h.is_vm), None)
    if problem is None and target is not None:
        try:
            socket.create_connection((target.ip, 22), timeout=3).close()
            connected = True
        except OSError:
            connected = False
        problem = labcheck.reaches(target.name, target.ip, connected)
    if problem is not None:
        raise LabError(str(problem))


def up(lab: Lab | None = None, say: Callable[[str], None] = print) -> Lab:
    """Bring the lab up, or bring a half-up lab the rest of the way."""
    lab = lab or load_lab()
    check_preconditions(lab, say)
    # One build per kind, one after the other: debootstrap is disk- and CPU-bound.
    for kind in sorted({h.image for h in lab.hosts if not h.is_vm}, key=lambda k: (k != DEFAULT_KIND, k)):
        build_image(kind)
    key = ensure_keypair(lab.state_dir)
    pubkey = key.with_suffix(".pub").read_text()
    ensure_network(lab)
    containers = [h for h in lab.hosts if not h.is_vm]
    # Bounded parallelism: podman and 2 cores, not one process per host.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda h: start_host(lab, h), containers))
        list(pool.map(wait_for_boot, containers))
        keylines = pool.map(lambda h: provision_host(h, pubkey), containers)
        lines = dict(zip([h.name for h in containers], keylines, strict=True))
    check_reachable(lab)
    for host in lab.hosts:
        if host.is_vm and not host.is_spare:
            lines[host.name] = start_vm(lab, host, key.with_suffix(".pub"))
    write_known_hosts(lab, lines)
    return lab


def write_known_hosts(lab: Lab, lines: dict[str, str] | None = None) -> None:
    """The lab's known_hosts: the lines given, the VMs' own (recorded from
    their serial consoles) and, for the rest, the lines already there."""
    known = lab.state_dir / "known_hosts"
    old = {line.split(",", 1)[0]: line for line in (known.read_text().splitlines() if known.exists() else [])}
    out = []
    for host in lab.hosts:
        line = (lines or {}).get(host.name)
        if line is None and host.is_vm:
            line = _vm_known_line(host) if is_running(host) else None
        elif line is None:
            line = old.get(host.name)
        if line is not None:
            out.append(line)
    known.write_text("\n".join(out) + "\n")


def _vm_known_line(host: LabHost) -> str | None:
    known = vm_state_dir(host) / "known_hosts"
    if not known.exists():
        return None
    keyline = next((line for line in known.read_text().splitlines() if line.startswith(host.ip + " ")), None)
    return f"{host.name},{keyline}" if keyline else None


def start_spare(lab: Lab, host: LabHost) -> None:
    """Boot a spare director VM (or a killed one again, afresh) and record its host key."""
    if not host.is_vm:
        raise LabError(f"{host.name} is not a VM")
    key = ensure_keypair(lab.state_dir)
    start_vm(lab, host, key.with_suffix(".pub"))
    write_known_hosts(lab)


def kill_vm(host: LabHost) -> float:
    """Kill a director VM's QEMU at once (SIGKILL: a power cut, no goodbye
    from keepalived); return when. Only this lab's QEMU: its pid file must
    name a process running this VM's overlay."""
    state = vm_state_dir(host)
    try:
        pid = int((state / "qemu.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        raise LabError(f"director VM {host.name} is not running") from None
    if str(state.resolve() / "overlay.qcow2").encode() not in cmdline:
        raise LabError(f"pid {pid} is not the QEMU of {host.name}; not killed")
    os.kill(pid, signal.SIGKILL)
    return time.time()


def stop_vm(lab: Lab, host: LabHost) -> None:
    """Stop a VM and forget its host key (it gets a new one at its next boot)."""
    state = vm_state_dir(host)
    if (state / "vm.env").exists():
        vm_script("stop", "--state-dir", str(state), check=False)
    (state / "known_hosts").unlink(missing_ok=True)
    write_known_hosts(lab)


def pair_inventory(lab: Lab, vrrp: dict[str, Any] | None = None, director_vars: dict[str, Any] | None = None) -> Path:
    """Write (idempotently) an inventory of the lab in which every spare
    director joins ``dsr_directors`` and the directors form a VRRP pair, and
    return its path (in the lab's state dir; the lab's own inventory stays
    as it is).

    Both directors start as BACKUP with ``nopreempt``: whichever becomes
    master stays master until it dies, and one that comes back makes no
    second switch. Their priorities are high (250 for a spare, 249 for the
    lab's own) because a backup's skew, (256 - priority)/256 s, adds to the
    3 advert intervals it waits before taking over: 0.03 s here, 0.6 s at the
    usual 100. A spare configured first is the master, so the director that
    the tests kill is a spare and the lab's own director ends up holding the
    VIPs. ``vrrp`` adds keys to every director's instance, ``director_vars``
    adds variables to every director. Unicast adverts, a per-lab secret."""
    doc = _lab_doc(lab)
    root = doc["all"]
    spares = (root["children"].pop(SPARE_GROUP, None) or {}).get("hosts") or {}
    directors = root["children"]["dsr_directors"].setdefault("hosts", {})
    directors.update(spares)
    secret_file = lab.state_dir / "vrrp-pass"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(4) + "\n")
        secret_file.chmod(0o600)
    addresses = {name: str(hv["ansible_host"]) for name, hv in directors.items()}
    for name, hv in directors.items():
        instance = {
            "name": "VI_lab",
            "interface": "ens3",  # the VM's NIC under QEMU's pc machine
            "state": "BACKUP",
            "nopreempt": True,
            "priority": 250 if name in spares else 249,
            "virtual_router_id": 50,
            "advert_int": 1,
            "unicast_src_ip": addresses[name],
            "unicast_peers": [a for n, a in addresses.items() if n != name],
            "auth_pass": secret_file.read_text().strip(),
            **(vrrp or {}),
        }
        hv["dsr_director_vrrp_instances"] = [instance]
        hv.update(director_vars or {})
    return _write_lab_copy(lab, "pair", doc, "pair_inventory: the lab with its directors as a VRRP pair")


def inventory_copy(lab: Lab, name: str) -> Path:
    """A copy of the lab's inventory under its state dir, for tools that edit
    one (``dsrprov enroll``), written afresh from the lab's own."""
    return _write_lab_copy(lab, name, _lab_doc(lab), "inventory_copy: a copy of the lab's inventory", fresh=True)


def _lab_doc(lab: Lab) -> dict[str, Any]:
    """The lab's inventory, with absolute paths to its key and known_hosts
    (a copy elsewhere has another inventory_dir)."""
    doc: dict[str, Any] = yaml.safe_load((lab.state_dir.parent / "hosts.yml").read_text())
    state = lab.state_dir.resolve()
    doc["all"]["vars"]["ansible_ssh_private_key_file"] = str(state / "id_ed25519")
    # A killed VM must fail the run in seconds, not hang on a dead
    # ControlPersist connection (the pair tests kill directors).
    doc["all"]["vars"]["ansible_ssh_common_args"] = (
        f"-o UserKnownHostsFile={state / 'known_hosts'} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes "
        "-o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o ConnectTimeout=10"
    )
    return doc


def _write_lab_copy(lab: Lab, name: str, doc: dict[str, Any], what: str, fresh: bool = False) -> Path:
    where = lab.state_dir / name
    (where / "group_vars").mkdir(parents=True, exist_ok=True)
    for f in sorted((lab.state_dir.parent / "group_vars").iterdir()):
        _write_if_changed(where / "group_vars" / f.name, f.read_text())
    text = f"# Generated by dsrprov_lab.{what}.\n" + yaml.safe_dump(doc, sort_keys=False)
    if fresh:
        (where / "hosts.yml").write_text(text)
    else:
        _write_if_changed(where / "hosts.yml", text)
    return where / "hosts.yml"


def down(lab: Lab | None = None) -> None:
    """Remove every container, VM and network of the lab, whatever state it is in."""
    lab = lab or load_lab()
    for host in lab.hosts:
        if host.is_vm and vm_state_dir(host).exists():
            vm_script("stop", "--state-dir", str(vm_state_dir(host)), check=False)
            (vm_state_dir(host) / "known_hosts").unlink(missing_ok=True)
    # Containers of this lab, also those no longer in its inventory.
    listed = podman("ps", "-a", "--filter", "label=dsrprov_lab=1", "--format", "{{.Names}}", check=False).stdout.split()
    names = {h.container for h in lab.hosts if not h.is_vm} | {n for n in listed if n.startswith(f"{lab.network}-")}
    if names:
        podman("rm", "-f", "-t", "0", *sorted(names), check=False)
    podman("network", "rm", "-f", lab.network, check=False)


def status(lab: Lab | None = None) -> dict[str, bool]:
    """Whether each host that ``up`` starts runs (a spare director only when it runs)."""
    lab = lab or load_lab()
    states = {host.name: is_running(host) for host in lab.hosts}
    return {h.name: states[h.name] for h in lab.hosts if not h.is_spare or states[h.name]}
