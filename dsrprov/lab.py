"""The built-in local lab: systemd containers with real sshd on an internal
podman network, described by ``inventories/lab/hosts.yml``."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dsrprov.paths import lab_inventory, lab_state_dir, project_root

IMAGE = "localhost/dsrprov-lab:debian12"

# A tiny web service on every real server: it answers with the host's name, so
# a client can tell which real server replied. Listens on all addresses, the
# VIPs on lo included.
WEB_UNIT = """[Unit]
Description=dsrprov lab web service
After=network.target
[Service]
ExecStart=/usr/bin/python3 -m http.server 80 --directory /srv/www
Restart=always
[Install]
WantedBy=multi-user.target
"""


class LabError(RuntimeError):
    """Something in the lab failed; the message says what."""


@dataclass
class LabHost:
    name: str
    ip: str
    ip6: str
    mac: str
    container: str = ""
    groups: list[str] = field(default_factory=list)

    @property
    def is_realserver(self) -> bool:
        return "dsr_realservers_linux" in self.groups


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
            name, LabHost(name, str(hv.get("ansible_host", "")), str(hv.get("lab_ip6", "")), str(hv.get("lab_mac", "")))
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
    for host in hosts.values():
        host.container = f"{network}-{host.name}"
    return Lab(network, lab_vars["lab_subnet"], lab_vars["lab_subnet6"], list(hosts.values()), lab_state_dir(inventory))


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


def lab_exec(host: LabHost, *cmd: str, check: bool = True, input_text: str | None = None) -> str:
    """Run a command inside a lab host (lab plumbing only; roles use SSH)."""
    return podman("exec", "-i", host.container, *cmd, check=check, input_text=input_text).stdout


def is_running(host: LabHost) -> bool:
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


def build_image() -> None:
    script = project_root() / "lab" / "image" / "build.sh"
    proc = subprocess.run(["sh", str(script), IMAGE], env=podman_env(), check=False)
    if proc.returncode != 0:
        raise LabError("building the lab image failed (see the output above)")


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


def start_host(lab: Lab, host: LabHost) -> None:
    if is_running(host):
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
        "dsrprov.lab=1",
        IMAGE,
    )


def provision_host(host: LabHost, pubkey: str) -> str:
    """Authorise the lab key, start the lab web service; return the host's key line."""
    lab_exec(host, "sh", "-c", "umask 077; mkdir -p /root/.ssh; cat > /root/.ssh/authorized_keys", input_text=pubkey)
    if host.is_realserver:
        lab_exec(host, "sh", "-c", "cat > /etc/systemd/system/lab-web.service", input_text=WEB_UNIT)
        lab_exec(
            host,
            "sh",
            "-c",
            f"mkdir -p /srv/www && echo {host.name} > /srv/www/index.html && "
            "systemctl daemon-reload && systemctl enable --now lab-web.service >/dev/null 2>&1",
        )
    keytype, key = lab_exec(host, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    return f"{host.name},{host.ip} {keytype} {key}"


def up(lab: Lab | None = None) -> Lab:
    lab = lab or load_lab()
    build_image()
    key = ensure_keypair(lab.state_dir)
    pubkey = key.with_suffix(".pub").read_text()
    ensure_network(lab)
    for host in lab.hosts:
        start_host(lab, host)
    lines = []
    for host in lab.hosts:
        wait_for_boot(host)
        lines.append(provision_host(host, pubkey))
    known = lab.state_dir / "known_hosts"
    known.write_text("\n".join(lines) + "\n")
    return lab


def down(lab: Lab | None = None) -> None:
    lab = lab or load_lab()
    for host in lab.hosts:
        podman("rm", "-f", "-t", "0", host.container, check=False)
    podman("network", "rm", "-f", lab.network, check=False)


def status(lab: Lab | None = None) -> dict[str, bool]:
    lab = lab or load_lab()
    return {host.name: is_running(host) for host in lab.hosts}
