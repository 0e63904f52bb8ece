"""SSH with paramiko, secure by default: known host keys only.

An unknown host key is refused unless the caller accepts new keys, and a
changed key is always refused. Credentials: a key file, the SSH agent, or a
password (from ``DSRPROV_SSH_PASSWORD`` or a prompt). The password opens an
encrypted key file when it is its passphrase, and is tried as a login password
only after the key and the agent failed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko  # type: ignore[import-untyped]

from dsrprov.errors import ConnectError, UsageError

PASSWORD_ENV = "DSRPROV_SSH_PASSWORD"
_known_hosts_lock = threading.Lock()


@dataclass
class SSHTarget:
    """Everything needed to open one SSH connection (no secret in repr)."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    known_hosts: Path | None = None
    accept_new_host_key: bool = False
    timeout: float = 10.0
    password: str | None = None

    def __repr__(self) -> str:
        pw = "<set>" if self.password else None
        return (
            f"SSHTarget(name={self.name!r}, address={self.address!r}, port={self.port}, user={self.user!r}, "
            f"key_file={self.key_file!r}, known_hosts={self.known_hosts!r}, password={pw})"
        )

    @property
    def known_hosts_path(self) -> Path:
        return self.known_hosts or Path("~/.ssh/known_hosts").expanduser()


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Like OpenSSH's StrictHostKeyChecking=accept-new: record an unknown key.

    paramiko calls a policy only for a host it has no key for; a different
    key raises BadHostKeyException before, so a changed key never gets here."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with _known_hosts_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as fh:
                # A file without a final newline would merge our line into its last one.
                fh.seek(0, os.SEEK_END)
                lead = b""
                if fh.tell():
                    fh.seek(-1, os.SEEK_END)
                    lead = b"" if fh.read(1) == b"\n" else b"\n"
                fh.write(lead + f"{hostname} {key.get_name()} {key.get_base64()}\n".encode())
        client.get_host_keys().add(hostname, key.get_name(), key)


def _load_key(path: Path, password: str | None, target: SSHTarget) -> paramiko.PKey | None:
    """The key file as a PKey, or None when it cannot be used here.

    An unencrypted key loads whatever password is set: the password is tried
    as a passphrase only for an encrypted key. An encrypted key the password
    does not open gives None, so that paramiko goes on to the password as a
    login password (key first, password last, as OpenSSH does)."""
    try:
        return paramiko.PKey.from_path(path)
    except (paramiko.PasswordRequiredException, TypeError):  # paramiko >= 4 raises TypeError
        pass
    except (paramiko.SSHException, ValueError) as exc:
        raise ConnectError(f"cannot use the key {path}: {exc}", target.name) from None
    if not password:
        if os.environ.get("SSH_AUTH_SOCK"):
            return None  # the agent may hold it
        raise ConnectError(
            f"the key {path} is encrypted: give its passphrase in {PASSWORD_ENV} or load it into the SSH agent",
            target.name,
        )
    try:
        return paramiko.PKey.from_path(path, password.encode())
    except (paramiko.SSHException, ValueError, TypeError):
        return None  # not its passphrase: then it may be the login password


def connect(target: SSHTarget) -> paramiko.SSHClient:
    """Open an authenticated connection, or raise ConnectError with one line."""
    client = paramiko.SSHClient()
    known = target.known_hosts_path
    if known.exists():
        try:
            client.load_host_keys(str(known))
        except (OSError, paramiko.SSHException) as exc:
            raise UsageError(f"cannot read known_hosts {known}: {exc}", target.name) from None
        except paramiko.hostkeys.InvalidHostKey as exc:
            raise UsageError(
                f"cannot read known_hosts {known}: a line is not a valid host key ({exc.__class__.__name__}): "
                "fix or remove that line",
                target.name,
            ) from None
    if target.accept_new_host_key:
        client.set_missing_host_key_policy(_AcceptNewPolicy(known))
    else:
        client.set_missing_host_key_policy(paramiko.RejectPolicy())

    pkey = None
    if target.key_file is not None:
        if target.key_file.exists():
            pkey = _load_key(target.key_file, target.password, target)
        elif not target.password and not os.environ.get("SSH_AUTH_SOCK"):
            raise ConnectError(
                f"no SSH credentials: the key {target.key_file} does not exist, no SSH agent, {PASSWORD_ENV} not set",
                target.name,
            )
    elif not target.password and not os.environ.get("SSH_AUTH_SOCK") and not _default_keys():
        raise ConnectError(f"no SSH credentials: no key file, no SSH agent, {PASSWORD_ENV} not set", target.name)

    where = f"{target.user}@{target.address}:{target.port}"
    try:
        client.connect(
            target.address,
            port=target.port,
            username=target.user,
            pkey=pkey,
            # Tried by paramiko only after the key (and the agent) failed.
            password=target.password,
            allow_agent=pkey is None,
            look_for_keys=pkey is None and target.key_file is None,
            timeout=target.timeout,
            banner_timeout=target.timeout,
            auth_timeout=target.timeout,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise ConnectError(
            f"host key for {target.address} has CHANGED (got {exc.key.get_name()} "
            f"{exc.key.fingerprint}, {known} has another key): refused; remove the old key only if you know why "
            "it changed",
            target.name,
        ) from None
    except paramiko.SSHException as exc:
        client.close()
        text = str(exc)
        if "not found in known_hosts" in text:
            raise ConnectError(
                f"unknown host key for {target.address} (not in {known}): refused; verify it and add it, "
                "or pass --accept-new-host-key",
                target.name,
            ) from None
        if isinstance(exc, paramiko.AuthenticationException):
            raise ConnectError(f"authentication failed for {where}", target.name) from None
        raise ConnectError(f"SSH to {where} failed: {text}", target.name) from None
    except TimeoutError:
        client.close()
        raise ConnectError(f"unreachable: no answer from {where} within {target.timeout:g} s", target.name) from None
    except OSError as exc:
        client.close()
        raise ConnectError(f"unreachable: {where}: {exc.strerror or exc}", target.name) from None
    return client


def _default_keys() -> bool:
    ssh = Path("~/.ssh").expanduser()
    return any((ssh / n).exists() for n in ("id_ed25519", "id_ecdsa", "id_rsa"))


def run(client: paramiko.SSHClient, command: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """Run one command; return (exit status, stdout, stderr)."""
    _stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode(errors="replace")
    err = stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out, err


@contextlib.contextmanager
def session(target: SSHTarget) -> Iterator[paramiko.SSHClient]:
    client = connect(target)
    try:
        yield client
    finally:
        client.close()
