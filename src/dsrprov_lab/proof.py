"""Proofs of DSR on the local lab, in real packets: used by ``make demo``
(which prints them) and by the end-to-end tests (which assert on them).

Every probe runs inside the lab's own hosts or on the lab's own bridge."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dsrprov_lab as labmod
from dsrprov.checks.dsrpath import PathReport, analyse
from dsrprov.checks.pcap import read_frames
from dsrprov.checks.verify import parse_arping


@dataclass
class Roles:
    client: labmod.LabHost
    director: labmod.LabHost
    realservers: list[labmod.LabHost]

    @classmethod
    def of(cls, the_lab: labmod.Lab) -> Roles:
        client = next(h for h in the_lab.hosts if "lab_clients" in h.groups)
        director = next(h for h in the_lab.hosts if "dsr_directors" in h.groups)
        return cls(client, director, [h for h in the_lab.hosts if h.is_realserver])

    @property
    def realserver_macs(self) -> dict[str, str]:
        return {h.mac: h.name for h in self.realservers}


def http_get(client: labmod.LabHost, url: str, count: int, timeout: float = 3, *, body: bool = True) -> list[str]:
    """``count`` requests, one new connection each: the body (or, with
    ``body=False``, the number of bytes received), or ``FAIL``."""
    fetch = f"curl -s -m {timeout} {url}" if body else f"curl -s -m {timeout} -o /dev/null -w %{{size_download}} {url}"
    script = f"for i in $(seq {count}); do {fetch} || echo FAIL; echo; done"
    out = labmod.lab_exec(client, "sh", "-c", script, check=False)
    return [line.strip() for line in out.splitlines() if line.strip()]


def arp_replies(prober: labmod.LabHost, vip: str, count: int = 3) -> list[str]:
    """MACs that answered ARP for ``vip`` (the prober's cache is flushed first)."""
    labmod.lab_exec(prober, "ip", "neigh", "flush", "dev", "eth0", check=False)
    out = labmod.lab_exec(prober, "arping", "-c", str(count), "-w", "3", "-i", "eth0", vip, check=False)
    return sorted(parse_arping(out))


@contextmanager
def capture(the_lab: labmod.Lab, bpf: str) -> Iterator[Path]:
    """Capture on the lab's bridge (promiscuous: it sees every frame it
    forwards between the lab's hosts) into a pcap file."""
    bridge = labmod.bridge_of(the_lab)
    out = Path(tempfile.mkdtemp(prefix="dsrprov-cap-")) / "segment.pcap"
    proc = subprocess.Popen(
        ["tcpdump", "--immediate-mode", "-Z", "root", "-i", bridge, "-U", "-s", "128", "-w", str(out), bpf],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # tcpdump says "listening on" once the capture runs.
        assert proc.stderr is not None
        proc.stderr.readline()
        yield out
    finally:
        time.sleep(0.5)
        proc.terminate()
        proc.wait(timeout=10)


def path_report(
    the_lab: labmod.Lab, roles: Roles, vip: str, port: int, url_path: str, count: int, *, body: bool = True
) -> tuple[PathReport, list[str]]:
    """Requests from the client to the VIP, captured on the segment and
    checked against the three DSR steps."""
    # The client's connections only: the director's DSR-path health check also
    # sends to VIP:port at each real server's MAC, from its probe address.
    client = roles.client.ip6 if ":" in vip else roles.client.ip
    with capture(the_lab, f"tcp port {port} and host {vip} and host {client}") as pcap:
        bodies = http_get(roles.client, f"http://{vip}:{port}{url_path}", count, timeout=20, body=body)
    report = analyse(
        read_frames(pcap),
        vip=vip,
        port=port,
        client_mac=roles.client.mac,
        director_mac=roles.director.mac,
        realserver_macs=roles.realserver_macs,
    )
    return report, bodies


@dataclass
class Failover:
    """Client requests around a stopped web service; times are epoch seconds
    (the containers share this machine's clock)."""

    timeline: list[tuple[float, str]]  # when, and the body or FAIL
    stopped_at: float
    started_at: float

    def failed(self) -> int:
        return sum(1 for _, body in self.timeline if body == "FAIL")

    def served_by(self, start: float, end: float) -> Counter[str]:
        return Counter(body for t, body in self.timeline if start <= t < end)


def failover(roles: Roles, vip: str, victim: labmod.LabHost, down_s: float = 12, settle_s: float = 10) -> Failover:
    """Stop the web service on ``victim`` while the client keeps asking, then
    start it again; one request every 0.2 s, each with a 1 s timeout."""
    total = int(2 + down_s + settle_s) + 1
    loop = (
        f"end=$(($(date +%s) + {total})); "
        f'while [ "$(date +%s)" -lt "$end" ]; do '
        f'r=$(curl -s -m 1 http://{vip}/ || true); [ -n "$r" ] || r=FAIL; '
        'echo "$(date +%s.%N) $r"; sleep 0.2; done'
    )
    proc = subprocess.Popen(
        ["podman", "exec", roles.client.container, "sh", "-c", loop],
        stdout=subprocess.PIPE, text=True, env=labmod.podman_env(),
    )  # fmt: skip
    time.sleep(2)
    labmod.lab_exec(victim, "systemctl", "stop", "lab-web.service")
    stopped = time.time()
    time.sleep(down_s)
    labmod.lab_exec(victim, "systemctl", "start", "lab-web.service")
    started = time.time()
    out, _ = proc.communicate(timeout=total + 30)
    timeline = []
    for line in out.splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            timeline.append((float(parts[0]), parts[1]))
    return Failover(timeline, stopped, started)
