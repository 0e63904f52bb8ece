"""Connect to a host the way its inventory entry says, tell Linux from Windows,
and read its facts (read-only, fast)."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dsrprov.connect import ssh
from dsrprov.connect.linux_facts import PROBE_SCRIPT, LinuxFacts, parse_probe
from dsrprov.connect.winrm import PASSWORD_ENV as WINRM_PASSWORD_ENV
from dsrprov.connect.winrm import WindowsFacts, WinRMTarget
from dsrprov.connect.winrm import probe as winrm_probe
from dsrprov.errors import ConnectError, FailedError
from dsrprov.model.inventory import Host

Facts = LinuxFacts | WindowsFacts


@dataclass
class ConnOptions:
    """Connection settings from the command line; they override the inventory."""

    known_hosts: Path | None = None
    accept_new_host_key: bool = False
    identity: Path | None = None
    user: str | None = None
    ca_path: Path | None = None
    timeout: float = 10.0
    ssh_password: str | None = None
    winrm_password: str | None = None

    def __repr__(self) -> str:  # never show the secrets
        return (
            f"ConnOptions(known_hosts={self.known_hosts!r}, accept_new_host_key={self.accept_new_host_key}, "
            f"identity={self.identity!r}, user={self.user!r}, ca_path={self.ca_path!r}, timeout={self.timeout})"
        )

    def inventory_only(self) -> ConnOptions:
        """For hosts the command does not enroll (directors, LoadMasters, the
        vantage host): their own inventory settings, never the command line's
        user, key, known_hosts or trust on first use."""
        return ConnOptions(timeout=self.timeout)

    @classmethod
    def from_env(cls, **kwargs: object) -> ConnOptions:
        opts = cls(**kwargs)  # type: ignore[arg-type]
        opts.ssh_password = opts.ssh_password or os.environ.get(ssh.PASSWORD_ENV) or None
        opts.winrm_password = opts.winrm_password or os.environ.get(WINRM_PASSWORD_ENV) or None
        return opts


def ssh_target(host: Host, opts: ConnOptions) -> ssh.SSHTarget:
    port = host.str_var("ansible_port") or host.str_var("ansible_ssh_port") or "22"
    return ssh.SSHTarget(
        name=host.name,
        address=host.address,
        port=int(port),
        user=opts.user or host.str_var("ansible_user") or host.str_var("ansible_ssh_user") or "root",
        key_file=opts.identity or host.private_key(),
        known_hosts=opts.known_hosts or host.known_hosts(),
        accept_new_host_key=opts.accept_new_host_key,
        timeout=opts.timeout,
        password=opts.ssh_password,
    )


def winrm_target(host: Host, opts: ConnOptions) -> WinRMTarget:
    ca = opts.ca_path or (
        Path(host.str_var("ansible_winrm_ca_trust_path")) if host.str_var("ansible_winrm_ca_trust_path") else None
    )
    password = opts.winrm_password or host.str_var("ansible_password") or None
    return WinRMTarget(
        name=host.name,
        address=host.address,
        port=int(host.str_var("ansible_port") or 5986),
        user=opts.user or host.str_var("ansible_user"),
        transport=host.str_var("ansible_winrm_transport") or "ntlm",
        ca_trust_path=ca,
        timeout=opts.timeout,
        password=password,
    )


def _port_open(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def detect_os(name: str, address: str, timeout: float) -> str:
    """SSH (22) answers: linux; else WinRM over HTTPS (5986): windows."""
    with ThreadPoolExecutor(2) as pool:
        ssh_open = pool.submit(_port_open, address, 22, timeout)
        winrm_open = pool.submit(_port_open, address, 5986, timeout)
        if ssh_open.result():
            return "linux"
        if winrm_open.result():
            return "windows"
    raise ConnectError(
        f"unreachable: neither SSH (22) nor WinRM over HTTPS (5986) answers at {address} within {timeout:g} s", name
    )


def probe_linux(target: ssh.SSHTarget) -> LinuxFacts:
    with ssh.session(target) as client:
        rc, out, err = ssh.run(client, PROBE_SCRIPT, timeout=target.timeout + 20)
    if rc != 0 or "@@dsrprov:end@@" not in out:
        raise FailedError(f"reading the host failed (exit {rc}): {err.strip().splitlines()[-1:] or ''}", target.name)
    return parse_probe(out)


def probe(host: Host, os_name: str, opts: ConnOptions) -> Facts:
    if os_name == "windows":
        return winrm_probe(winrm_target(host, opts))
    return probe_linux(ssh_target(host, opts))
