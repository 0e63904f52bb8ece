"""Read the frames of a classic pcap file (tcpdump -w), Ethernet + IPv4/IPv6.

Just enough to follow a DSR packet path: MAC addresses, IP addresses, TCP
ports and frame sizes. Standard library only."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LINKTYPE_ETHERNET = 1


@dataclass(frozen=True)
class Frame:
    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    length: int  # bytes on the wire (the frame's original length)
    tcp_flags: int


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def read_frames(path: Path) -> Iterator[Frame]:
    """Yield the TCP frames of an Ethernet pcap; other frames are skipped."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet")
    offset = 24
    while offset + 16 <= len(data):
        _sec, _usec, caplen, origlen = struct.unpack(endian + "IIII", data[offset : offset + 16])
        packet = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        frame = _parse(packet, origlen)
        if frame:
            yield frame


def _parse(packet: bytes, origlen: int) -> Frame | None:
    if len(packet) < 14:
        return None
    ethertype = struct.unpack("!H", packet[12:14])[0]
    payload = packet[14:]
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    if ethertype == 0x0800 and len(payload) >= 20:
        ihl = (payload[0] & 0x0F) * 4
        proto = payload[9]
        src, dst = ipaddress.IPv4Address(payload[12:16]), ipaddress.IPv4Address(payload[16:20])
        l4 = payload[ihl:]
    elif ethertype == 0x86DD and len(payload) >= 40:
        proto = payload[6]
        src, dst = ipaddress.IPv6Address(payload[8:24]), ipaddress.IPv6Address(payload[24:40])
        l4 = payload[40:]
    else:
        return None
    if proto != 6 or len(l4) < 14:
        return None
    sport, dport = struct.unpack("!HH", l4[:4])
    return Frame(_mac(packet[6:12]), _mac(packet[0:6]), str(src), str(dst), sport, dport, origlen, l4[13])
