"""What the CLI prints: one report per host, as a table for people or JSON for machines."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dsrprov.checks.verify import Check
from dsrprov.errors import EXIT_FAILED, EXIT_OK


@dataclass
class HostReport:
    host: str
    os: str = ""
    address: str = ""
    vips: list[str] = field(default_factory=list)
    action: str = ""  # enroll/unenroll: enrolled, unchanged, would change, removed ...
    changed: int | None = None
    checks: list[Check] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # status: what is on the host
    error: str = ""
    exit_code: int = EXIT_OK
    warnings: list[str] = field(default_factory=list)  # never fail the host

    @property
    def verified(self) -> bool:
        return not self.error and all(c.ok is not False for c in self.checks)

    def fail(self, code: int, reason: str) -> HostReport:
        self.exit_code, self.error = code, reason
        return self

    def settle(self) -> HostReport:
        """A failed check makes the host fail (exit 1) unless it already failed otherwise."""
        if self.exit_code == EXIT_OK and not self.verified:
            self.exit_code = EXIT_FAILED
            bad = [c for c in self.checks if c.ok is False]
            self.error = self.error or "; ".join(f"{c.name}: {c.detail}" for c in bad)
        return self

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "host": self.host,
            "os": self.os,
            "address": self.address,
            "vips": self.vips,
            "ok": self.exit_code == EXIT_OK,
            "exit_code": self.exit_code,
            "error": self.error or None,
            "checks": [c.to_json() for c in self.checks],
        }
        if self.action:
            out["action"] = self.action
        if self.changed is not None:
            out["changed"] = self.changed
        if self.state:
            out["state"] = self.state
        if self.warnings:
            out["warnings"] = self.warnings
        return out


def as_json(reports: list[HostReport], exit_code: int) -> str:
    return json.dumps({"exit_code": exit_code, "hosts": [r.to_json() for r in reports]}, indent=2)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _mark(ok: bool | None) -> str:
    return "ok" if ok else ("-" if ok is None else "FAIL")


def _check(report: HostReport, prefix: str) -> bool | None:
    found = [c.ok for c in report.checks if c.name.startswith(prefix)]
    if not found:
        return None
    return False if False in found else (True if True in found else None)


def status_table(reports: list[HostReport]) -> str:
    rows = [
        [
            "HOST",
            "OS",
            "ADDRESS",
            "INVENTORY VIPS",
            "ON LOOPBACK",
            "ARP/WEAKHOST",
            "PERSISTED",
            "LISTEN",
            "LO MANAGER",
            "GUARD",
            "STATE",
        ]
    ]
    for r in reports:
        if r.error and not r.state:
            rows.append(
                [r.host, r.os or "?", r.address, ",".join(r.vips) or "-", "?", "?", "?", "?", "?", "?", "unreachable"]
            )
            continue
        manager = r.state.get("lo_manager", {}).get("manager", "-")
        arp = _check(r, "arp sysctls") if r.os == "linux" else _check(r, "metric and weak host")
        persisted = _check(r, "persisted") if r.os == "linux" else _check(r, "loopback adapter")
        rows.append(
            [
                r.host,
                r.os,
                r.address,
                ",".join(r.vips) or "-",
                ",".join(r.state.get("loopback_vips", [])) or "-",
                _mark(arp),
                _mark(persisted),
                _mark(_check(r, "listen")),
                manager + (f" ({len(r.warnings)} warning{'s' if len(r.warnings) > 1 else ''})" if r.warnings else ""),
                r.state.get("guard", {}).get("summary", "-"),
                r.state.get("summary", ""),
            ]
        )
    return table(rows)


def verify_table(reports: list[HostReport]) -> str:
    rows = [["HOST", "RESULT", "DETAIL"]]
    for r in reports:
        if r.exit_code == EXIT_OK:
            probe = next((c for c in r.checks if c.name == "arp/nd probe"), None)
            n = sum(1 for c in r.checks if c.ok)
            detail = f"{n} checks ok" + (f"; arp/nd probe {probe.detail}" if probe and probe.ok else "")
            rows.append([r.host, "verified", detail])
        else:
            rows.append([r.host, "FAILED" if r.exit_code == EXIT_FAILED else f"ERROR({r.exit_code})", r.error])
    return table(rows)


def summary_lines(reports: list[HostReport]) -> str:
    """One line per host for enroll/unenroll."""
    rows = []
    for r in reports:
        if r.exit_code == EXIT_OK:
            what = r.action
            if r.changed is not None:
                what += f" (changed={r.changed})"
            tail = "verified" if r.checks else ""
            rows.append([r.host, "ok", what, tail])
        else:
            rows.append(
                [r.host, "FAILED" if r.exit_code == EXIT_FAILED else f"ERROR({r.exit_code})", r.action, r.error]
            )
    return table(rows)
