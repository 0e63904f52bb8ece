"""Check a capture against the three steps of Direct Server Return.

For every TCP connection from the client to VIP:PORT:
  1. client -> VIP, destination MAC the director's;
  2. the same IP packet (addresses unchanged), sent by the director with a
     real server's MAC as destination;
  3. the real server's reply, source address the VIP, source MAC the real
     server's, destination MAC the client's: straight to the client.
The director must never send a packet from the VIP to the client."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from dsrprov.checks.pcap import Frame


@dataclass
class Connection:
    client_port: int
    step1: int = 0  # frames
    step2: int = 0
    step3: int = 0
    bytes1: int = 0
    bytes2: int = 0
    bytes3: int = 0
    realservers: set[str] = field(default_factory=set)  # who got step 2
    repliers: set[str] = field(default_factory=set)  # who sent step 3

    @property
    def complete(self) -> bool:
        return bool(self.step1 and self.step2 and self.step3)


@dataclass
class PathReport:
    connections: dict[int, Connection]
    violations: list[str]

    def total(self, step: int) -> int:
        return sum(getattr(c, f"bytes{step}") for c in self.connections.values())

    @property
    def director_bytes(self) -> int:
        """Bytes the director handles with DSR: requests in and out."""
        return self.total(1) + self.total(2)

    @property
    def director_share(self) -> float:
        """The director's share of all bytes on the path (steps 1 to 3)."""
        every = self.total(1) + self.total(2) + self.total(3)
        return self.director_bytes / every if every else 0.0

    @property
    def reduction(self) -> float:
        """How much less the director carries than if replies went back
        through it (in from the real server and out to the client)."""
        without_dsr = self.director_bytes + 2 * self.total(3)
        return 1 - self.director_bytes / without_dsr if without_dsr else 0.0

    def per_realserver(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for conn in self.connections.values():
            for name in conn.repliers:
                counts[name] += 1
        return dict(counts)


def analyse(
    frames: Iterable[Frame],
    *,
    vip: str,
    port: int,
    client_mac: str,
    director_mac: str,
    realserver_macs: dict[str, str],
) -> PathReport:
    """``realserver_macs`` maps each real server's MAC to its name."""
    conns: dict[int, Connection] = {}
    violations: list[str] = []
    for f in frames:
        if f.dst_ip == vip and f.dst_port == port:
            conn = conns.setdefault(f.src_port, Connection(f.src_port))
            if f.src_mac == client_mac and f.dst_mac == director_mac:
                conn.step1 += 1
                conn.bytes1 += f.length
            elif f.src_mac == director_mac and f.dst_mac in realserver_macs:
                conn.step2 += 1
                conn.bytes2 += f.length
                conn.realservers.add(realserver_macs[f.dst_mac])
            else:
                violations.append(f"port {f.src_port}: request frame {f.src_mac} -> {f.dst_mac} fits no DSR step")
        elif f.src_ip == vip and f.src_port == port:
            conn = conns.setdefault(f.dst_port, Connection(f.dst_port))
            if f.src_mac == director_mac:
                violations.append(f"port {f.dst_port}: the director sent a packet from the VIP to the client")
            elif f.src_mac in realserver_macs and f.dst_mac == client_mac:
                conn.step3 += 1
                conn.bytes3 += f.length
                conn.repliers.add(realserver_macs[f.src_mac])
            else:
                violations.append(f"port {f.dst_port}: reply frame {f.src_mac} -> {f.dst_mac} fits no DSR step")
    for conn in conns.values():
        if not conn.complete:
            violations.append(
                f"port {conn.client_port}: steps seen 1:{conn.step1} 2:{conn.step2} 3:{conn.step3}, not all three"
            )
        elif conn.realservers != conn.repliers:
            violations.append(
                f"port {conn.client_port}: forwarded to {sorted(conn.realservers)}, answered by {sorted(conn.repliers)}"
            )
    return PathReport(conns, violations)
