"""The DSR path checker on synthetic captures (pcap bytes built here)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

from dsrprov.checks.dsrpath import PathReport, analyse
from dsrprov.checks.pcap import read_frames

CLIENT, DIRECTOR, RS1, RS2 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:11", "02:00:00:00:00:12"
CLIENT_IP, VIP = "10.0.0.100", "10.0.0.200"


def frame(src_mac: str, dst_mac: str, src: str, dst: str, sport: int, dport: int, payload: int = 0) -> bytes:
    def mac(m: str) -> bytes:
        return bytes(int(x, 16) for x in m.split(":"))

    tcp = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 0x18, 0, 0, 0) + b"x" * payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + tcp


def pcap(tmp_path: Path, frames: list[bytes]) -> Path:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for f in frames:
        out += struct.pack("<IIII", 0, 0, len(f), len(f)) + f
    path = tmp_path / "cap.pcap"
    path.write_bytes(out)
    return path


def dsr_connection(sport: int, rs: str, reply: int = 1000) -> list[bytes]:
    return [
        frame(CLIENT, DIRECTOR, CLIENT_IP, VIP, sport, 80, 100),
        frame(DIRECTOR, rs, CLIENT_IP, VIP, sport, 80, 100),
        frame(rs, CLIENT, VIP, CLIENT_IP, 80, sport, reply),
    ]


def check(path: Path) -> PathReport:
    return analyse(
        read_frames(path), vip=VIP, port=80, client_mac=CLIENT, director_mac=DIRECTOR,
        realserver_macs={RS1: "rs1", RS2: "rs2"},
    )  # fmt: skip


def test_a_clean_dsr_capture_passes_and_counts_bytes(tmp_path: Path) -> None:
    report = check(pcap(tmp_path, dsr_connection(40000, RS1) + dsr_connection(40001, RS2, reply=8000)))
    assert report.violations == []
    assert report.per_realserver() == {"rs1": 1, "rs2": 1}
    assert report.total(3) == 2 * 54 + 9000
    req = 2 * (54 + 100)
    assert report.director_bytes == 2 * req
    assert abs(report.reduction - (1 - 2 * req / (2 * req + 2 * report.total(3)))) < 1e-9


def test_the_reference_ratio_one_in_eight_out(tmp_path: Path) -> None:
    # Same size in and out per frame, one request frame to eight reply frames.
    frames = [frame(CLIENT, DIRECTOR, CLIENT_IP, VIP, 40000, 80), frame(DIRECTOR, RS1, CLIENT_IP, VIP, 40000, 80)]
    frames += [frame(RS1, CLIENT, VIP, CLIENT_IP, 80, 40000)] * 8
    report = check(pcap(tmp_path, frames))
    assert report.violations == []
    assert round(report.reduction, 3) == round(8 / 9, 3)


def test_a_reply_through_the_director_is_a_violation(tmp_path: Path) -> None:
    frames = [*dsr_connection(40000, RS1)[:2], frame(DIRECTOR, CLIENT, VIP, CLIENT_IP, 80, 40000)]
    report = check(pcap(tmp_path, frames))
    assert any("the director sent a packet from the VIP" in v for v in report.violations)
    assert any("not all three" in v for v in report.violations)


def test_a_real_server_that_took_the_vip_from_the_director_is_a_violation(tmp_path: Path) -> None:
    # The client's ARP cache points at rs2: the request skips the director.
    frames = [frame(CLIENT, RS2, CLIENT_IP, VIP, 40000, 80), frame(RS2, CLIENT, VIP, CLIENT_IP, 80, 40000)]
    report = check(pcap(tmp_path, frames))
    assert any("fits no DSR step" in v for v in report.violations)


def test_a_reply_from_another_server_than_the_one_forwarded_to(tmp_path: Path) -> None:
    frames = [*dsr_connection(40000, RS1)[:2], frame(RS2, CLIENT, VIP, CLIENT_IP, 80, 40000)]
    report = check(pcap(tmp_path, frames))
    assert report.violations == ["port 40000: forwarded to ['rs1'], answered by ['rs2']"]
