"""Preconditions of the local lab, checked before ``lab up`` starts anything.

Each check reads what a command printed (or a file), and returns one line
naming the cause and the fix, or None. The readers are kept apart from the
judges so that every message is unit-tested on recorded output.

Where the lab needs a host setting raised (inotify instances for a big lab),
``raise_inotify`` raises it and says what it changed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# A systemd container takes a few inotify instances (systemd, journald,
# udev-less .path units); about 20 booted with the default 128. Measured
# margin: 6 per container plus 64 for the host itself.
INOTIFY_PER_HOST = 6
INOTIFY_HOST_RESERVE = 64
INOTIFY_RAISED = 8192
INOTIFY_KEY = "fs.inotify.max_user_instances"

# debootstrap roots, the container image and the director VM image.
DISK_NEEDED_GIB = 4.0


class PreflightError(RuntimeError):
    """A precondition of the lab is not met; the message says the cause and the fix."""


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str

    def __str__(self) -> str:
        return f"lab preflight: {self.what}; fix: {self.fix}"


def network_backend(backend: str) -> Problem | None:
    """``podman info --format '{{.Host.NetworkBackend}}'``."""
    backend = backend.strip()
    if backend == "netavark":
        return None
    return Problem(
        f"podman uses the {backend or 'unknown'} network backend, not netavark (with CNI an internal network gives "
        "this host no address on the lab bridge)",
        "apt-get install netavark aardvark-dns, keep CONTAINERS_CONF=lab/containers.conf "
        '(network_backend = "netavark"), then podman system reset -f',
    )


def netavark_firewall(iptables: str | None) -> Problem | None:
    """netavark (Debian 12's 1.4) programs the lab network's rules with iptables:
    without it every container start fails with "netavark: No such file or directory"."""
    if iptables:
        return None
    return Problem("iptables is not installed; podman's netavark needs it for every network", "make setup")


def bridge_address(bridge: str, ip_addr_output: str, gateway: str) -> Problem | None:
    """``ip -o -4 addr show dev BRIDGE``: the host needs the lab gateway address there."""
    if not bridge:
        return Problem(
            "podman names no bridge for the lab network",
            "make lab-down, then make lab-up (the network is made again)",
        )
    for line in ip_addr_output.splitlines():
        words = line.split()
        if "inet" in words and words[words.index("inet") + 1].split("/")[0] == gateway:
            return None
    return Problem(
        f"this host has no address {gateway} on the lab bridge {bridge}, so it cannot reach the lab",
        "make lab-down; check that podman uses netavark (podman info), then make lab-up",
    )


def reaches(host: str, address: str, connected: bool) -> Problem | None:
    """A TCP connection from this host to the lab host's sshd."""
    if connected:
        return None
    return Problem(
        f"this host does not reach lab host {host} at {address} over the lab bridge",
        "look for a firewall on this host that drops traffic on the podman bridge, then make lab-up",
    )


def vm_support(qemu: str | None, tun_exists: bool) -> Problem | None:
    """The director VM needs QEMU (TCG: no KVM needed) and /dev/net/tun for its TAP."""
    if not qemu:
        return Problem("qemu-system-x86_64 is not installed (the director runs as a VM)", "make setup")
    if not tun_exists:
        return Problem(
            "/dev/net/tun is missing, so the director VM gets no TAP on the lab bridge",
            "modprobe tun (or run the lab where TUN/TAP is available)",
        )
    return None


def inotify_needed(hosts: int) -> int:
    return INOTIFY_HOST_RESERVE + INOTIFY_PER_HOST * hosts


def inotify(current: int, hosts: int) -> int | None:
    """The value to raise ``fs.inotify.max_user_instances`` to, or None if it suffices."""
    needed = inotify_needed(hosts)
    if current >= needed:
        return None
    return max(INOTIFY_RAISED, needed)


def disk(path: str, free_bytes: int, needed_gib: float = DISK_NEEDED_GIB) -> Problem | None:
    free_gib = free_bytes / 2**30
    if free_gib >= needed_gib:
        return None
    return Problem(
        f"only {free_gib:.1f} GiB free under {path}; the lab images need about {needed_gib:.0f} GiB",
        f"free space under {path}",
    )


# -- readers: the machine's side ------------------------------------------------
def read_inotify(proc: Path = Path("/proc/sys/fs/inotify/max_user_instances")) -> int:
    return int(proc.read_text().strip())


def raise_inotify(hosts: int, say: Callable[[str], None], proc: Path | None = None) -> None:
    """Raise the inotify instance limit when the lab needs more; say what changed."""
    path = proc or Path("/proc/sys/fs/inotify/max_user_instances")
    current = read_inotify(path)
    target = inotify(current, hosts)
    if target is None:
        return
    try:
        path.write_text(f"{target}\n")
    except OSError as exc:
        raise PreflightError(
            str(
                Problem(
                    f"{INOTIFY_KEY} is {current}; {hosts} lab hosts need about {inotify_needed(hosts)}, "
                    f"and it could not be raised ({exc.strerror})",
                    f"sysctl -w {INOTIFY_KEY}={target} as root",
                )
            )
        ) from None
    say(f"lab: raised {INOTIFY_KEY} from {current} to {target} ({hosts} systemd containers need about "
        f"{inotify_needed(hosts)}); not persisted across a reboot of this machine")  # fmt: skip


def free_bytes(path: str) -> tuple[str, int]:
    """Free space of the nearest existing ancestor of PATH."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return str(p), shutil.disk_usage(p).free


def image_dirs() -> list[str]:
    return [
        "/var/tmp",
        "/var/lib/containers",
        os.environ.get("DSRPROV_DIRECTOR_IMAGE_DIR", "/var/cache/dsrprov/director"),
    ]
