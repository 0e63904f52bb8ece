"""How the SSH client picks its credentials: an unencrypted key loads whatever
password is set; the password is a passphrase only for an encrypted key, and a
login password only after the key (and the agent) failed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import paramiko  # type: ignore[import-untyped]
import pytest

from dsrprov.connect import ssh
from dsrprov.errors import ConnectError

PASSPHRASE = "correct horse battery"


def _key(tmp_path: Path, passphrase: str = "") -> Path:
    path = tmp_path / ("enc" if passphrase else "plain")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True)
    return path


@pytest.fixture
def connect_kwargs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """paramiko's connect is recorded instead of run: what would it try?"""
    seen: dict[str, Any] = {}

    def fake_connect(self: paramiko.SSHClient, hostname: str, **kwargs: Any) -> None:
        seen.update(kwargs, hostname=hostname)

    monkeypatch.setattr(paramiko.SSHClient, "connect", fake_connect)
    return seen


def _target(tmp_path: Path, key: Path, password: str | None) -> ssh.SSHTarget:
    return ssh.SSHTarget("h", "192.0.2.1", key_file=key, known_hosts=tmp_path / "kh", password=password)


@pytest.mark.parametrize("password", [None, "some-login-password"])
def test_an_unencrypted_key_loads_whether_or_not_a_password_is_set(
    tmp_path: Path, password: str | None, connect_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    ssh.connect(_target(tmp_path, _key(tmp_path), password)).close()
    assert isinstance(connect_kwargs["pkey"], paramiko.PKey)
    # The password stays available as a login password, tried after the key.
    assert connect_kwargs["password"] == password


def test_an_encrypted_key_opens_with_its_passphrase(
    tmp_path: Path, connect_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    ssh.connect(_target(tmp_path, _key(tmp_path, PASSPHRASE), PASSPHRASE)).close()
    assert isinstance(connect_kwargs["pkey"], paramiko.PKey)


def test_an_encrypted_key_the_password_does_not_open_falls_back_to_password_login(
    tmp_path: Path, connect_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    ssh.connect(_target(tmp_path, _key(tmp_path, PASSPHRASE), "the-login-password")).close()
    assert connect_kwargs["pkey"] is None
    assert connect_kwargs["password"] == "the-login-password"


def test_an_encrypted_key_without_password_or_agent_is_refused_in_one_line(
    tmp_path: Path, connect_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(ConnectError, match="is encrypted: give its passphrase"):
        ssh.connect(_target(tmp_path, _key(tmp_path, PASSPHRASE), None))
    assert connect_kwargs == {}


def test_an_encrypted_key_without_password_leaves_the_agent_to_try(
    tmp_path: Path, connect_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    ssh.connect(_target(tmp_path, _key(tmp_path, PASSPHRASE), None)).close()
    assert connect_kwargs["pkey"] is None and connect_kwargs["allow_agent"] is True


def test_a_file_that_is_no_key_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "notakey"
    bad.write_text("hello\n")
    with pytest.raises(ConnectError, match="cannot use the key"):
        ssh.connect(_target(tmp_path, bad, "pw"))
