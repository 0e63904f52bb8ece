"""``dsrprov status``'s per-real-server health check column, parsed from a director's output."""

from __future__ import annotations

from dsrprov.checks.director_checks import parse

OUTPUT = """\
# dsrprov-manages real_server tcp 10.0.0.200 80 10.0.0.11 rs1
# dsrprov-check tcp 10.0.0.200 80 10.0.0.11 dsr_path
# dsrprov-manages real_server tcp 10.0.0.200 80 10.0.0.12 rs2
# dsrprov-check tcp 10.0.0.200 80 10.0.0.12 dsr_path
# dsrprov-manages real_server tcp fd00::200 80 fd00::11 rs1
# dsrprov-check tcp fd00::200 80 fd00::11 dsr_path
# dsrprov-manages real_server udp 10.0.0.201 53 10.0.0.21 win1
# dsrprov-check udp 10.0.0.201 53 10.0.0.21 real_address
---
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.200:80 rr
  -> 10.0.0.12:80                 Route   1      0          0
TCP  [fd00::200]:80 rr
  -> [fd00::11]:80                Route   1      0          0
UDP  10.0.0.201:53 mh
  -> 10.0.0.21:53                 Route   1      0          0
"""


def test_each_real_server_gets_its_check_and_whether_ipvs_holds_it() -> None:
    rows = {(r["service"], r["real_server"]): (r["check"], r["state"]) for r in parse("dir1", OUTPUT)}
    assert rows == {
        ("10.0.0.200:80/tcp", "rs1"): ("dsr_path", "out (check failing)"),
        ("10.0.0.200:80/tcp", "rs2"): ("dsr_path", "in pool"),
        ("[fd00::200]:80/tcp", "rs1"): ("dsr_path", "in pool"),
        ("10.0.0.201:53/udp", "win1"): ("real_address", "in pool"),
    }


def test_a_director_without_dsrprov_configuration_gives_no_row() -> None:
    assert parse("dir1", "---\nIP Virtual Server version 1.2.1\n") == []
