"""``dsrprov status``: for each real server, which health check each director
runs on it (``dsr_path`` or ``real_address``, from the ``# dsrprov-check``
lines the role writes at the top of keepalived.conf) and its state now
(whether IPVS holds the real server: keepalived removes one whose check fails).
Read over SSH, read-only."""

from __future__ import annotations

import re
from typing import Any

from dsrprov.connect import ssh
from dsrprov.connect.probe import ConnOptions, ssh_target
from dsrprov.errors import DsrError
from dsrprov.model.inventory import Inventory

COMMAND = (
    "grep -h '^# dsrprov-\\(check\\|manages real_server\\) ' /etc/keepalived/keepalived.conf 2>/dev/null; "
    "echo ---; ipvsadm -Ln 2>/dev/null"
)
_CHECK = re.compile(r"^# dsrprov-check (tcp|udp) (\S+) (\d+) (\S+) (\S+)\s*$")
_NAME = re.compile(r"^# dsrprov-manages real_server (tcp|udp) (\S+) (\d+) (\S+) (\S+)\s*$")
_VS = re.compile(r"^(TCP|UDP)\s+\[?([0-9a-fA-F.:]+?)\]?:(\d+)\s")
_RS = re.compile(r"^\s+->\s+\[?([0-9a-fA-F.:]+?)\]?:\d+\s")


def parse(director: str, text: str) -> list[dict[str, Any]]:
    """Rows ``{director, service, real_server, address, check, state}`` from COMMAND's output."""
    conf, _, table = text.partition("---")
    pool: set[tuple[str, str, str, str]] = set()
    current: tuple[str, str, str] | None = None
    for line in table.splitlines():
        m = _VS.match(line)
        if m:
            current = (m.group(1).lower(), m.group(2), m.group(3))
            continue
        m = _RS.match(line)
        if m and current:
            pool.add((*current, m.group(1)))
    names = {m.groups()[:4]: m.group(5) for m in map(_NAME.match, conf.splitlines()) if m}
    rows = []
    for m in filter(None, map(_CHECK.match, conf.splitlines())):
        key = m.groups()[:4]
        rows.append(
            {
                "director": director,
                "service": f"{key[1]}:{key[2]}/{key[0]}" if ":" not in key[1] else f"[{key[1]}]:{key[2]}/{key[0]}",
                "real_server": names.get(key, key[3]),
                "address": key[3],
                "check": m.group(5),
                "state": "in pool" if key in pool else "out (check failing)",
            }
        )
    return rows


def read(inv: Inventory, opts: ConnOptions) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every director's rows, and the directors that could not be read, with the reason."""
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for name in inv.directors():
        try:
            with ssh.session(ssh_target(inv.host(name), opts)) as client:
                _, out, _ = ssh.run(client, COMMAND)
        except DsrError as exc:
            errors[name] = exc.reason
            continue
        except OSError as exc:
            errors[name] = str(exc)
            continue
        rows += parse(name, out)
    return rows, errors


def table(rows: list[dict[str, Any]]) -> str:
    from dsrprov.report import table as render

    head = ["DIRECTOR", "SERVICE", "REAL SERVER", "ADDRESS", "HEALTH CHECK", "STATE"]
    return render(
        [head] + [[r["director"], r["service"], r["real_server"], r["address"], r["check"], r["state"]] for r in rows]
    )
