"""Unit tests need the venv only: no podman, no lab image, no network.

Every run proves it: podman (and the VM's QEMU) are shadowed on PATH by a
stand-in that fails loudly, and a connection to anything but this machine's
loopback raises. A unit test that came to need the lab fails here, not on
a developer's machine without podman. The one exception is opt-in: the real
LoadMaster a developer names in DSRPROV_KEMP_HOST (docs/kemp.md, "Against a
real LoadMaster") for tests/unit/test_kemp_module.py's ``real`` backend."""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from collections.abc import Iterator
from typing import Any

import pytest

from ansible_collections.dsrprov.dsr.plugins.module_utils.kemp_api import split_address

_ABSENT = ("podman", "qemu-system-x86_64", "buildah")


@pytest.fixture(scope="session", autouse=True)
def _no_lab_tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    shim = tmp_path_factory.mktemp("no-lab-tools")
    for tool in _ABSENT:
        path = shim / tool
        path.write_text(f"#!/bin/sh\necho 'unit tests run without {tool}' >&2\nexit 127\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{shim}{os.pathsep}{old}"
    yield
    os.environ["PATH"] = old


def _named_loadmaster() -> set[str]:
    """The addresses of DSRPROV_KEMP_HOST (host, host:port or [v6]:port), when a developer set it."""
    named = os.environ.get("DSRPROV_KEMP_HOST")
    if not named:
        return set()
    host, port = split_address(named)
    return {str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}


def _loopback_only(connect: Any) -> Any:
    allowed = _named_loadmaster()

    def guarded(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in allowed:
            host = address[0]
            try:
                local = ipaddress.ip_address(host).is_loopback
            except ValueError:
                local = host == "localhost"
            if not local:
                raise OSError(f"unit tests stay off the network: a connection to {host} was attempted")
        return connect(sock, address)

    return guarded


@pytest.fixture(scope="session", autouse=True)
def _no_network() -> Iterator[None]:
    original = socket.socket.connect
    socket.socket.connect = _loopback_only(original)  # type: ignore[method-assign]
    yield
    socket.socket.connect = original  # type: ignore[method-assign]
