"""Doctor's findings on the guard of a Linux real server (connect/guard_facts.py reads it)."""

from __future__ import annotations

from dsrprov.connect.guard_facts import UNIT, GuardState
from dsrprov.doctor.findings import Finding


def findings(host: str, guard: GuardState, vips: list[str], *, wanted: str = "heal") -> list[Finding]:
    """Doctor's findings on the guard. WANTED is the inventory's dsr_realserver_linux_guard_mode:
    a guard that is off because the inventory says so is no finding."""
    out: list[Finding] = []
    if wanted not in ("heal", "report"):
        return out
    if not guard.installed or not guard.running:
        state = "not installed" if not guard.installed else f"{guard.active or 'not running'} ({guard.mode} mode)"
        out.append(
            Finding(
                "rs-guard-down",
                host,
                f"{host}: the guard is {state}; nothing puts a VIP back between runs",
                [f"systemctl is-active {UNIT}: {guard.active or '-'}; is-enabled: {guard.enabled or '-'}"],
            )
        )
        return out
    for vip in guard.flapping:
        out.append(
            Finding(
                "rs-guard-flapping",
                host,
                f"{host}: something keeps removing VIP {vip} from lo; the guard stopped restoring it",
                [f'dsrprov_guard_flapping{{vip="{vip}"}} 1', f"journalctl -u {UNIT} -p err"],
                values={"vip": vip},
            )
        )
    if guard.mode == "report":
        for vip in vips:
            if guard.vip_present.get(vip) is False:
                out.append(
                    Finding(
                        "rs-guard-report-vip-missing",
                        host,
                        f"{host}: the guard saw VIP {vip} leave lo and, in report mode, did not put it back",
                        [f'dsrprov_vip_present{{vip="{vip}"}} 0', 'dsrprov_guard_mode{mode="report"} 1'],
                        values={"vip": vip},
                    )
                )
    return out
