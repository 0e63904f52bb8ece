"""The guard on a Linux real server (role dsr_realserver_linux, dsrprov-guard.service), as the
controller reads it: its unit's state, its mode, the metrics it wrote, the restores of the last day.

:data:`PROBE` is one section of the Linux probe (connect/linux_facts.py); :func:`parse` turns it
into :class:`GuardState`; doctor judges it (doctor/guard.py). Pure functions, tested on recorded output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

UNIT = "dsrprov-guard.service"
CONFIG = "/etc/dsrprov/guard.json"
METRIC_FILE = "dsrprov_guard.prom"

# The module writes the configuration as to_nice_json would (sorted keys, 4 spaces): one "key": value a line.
PROBE = f"""echo "active=$(systemctl is-active {UNIT} 2>/dev/null)"
echo "enabled=$(systemctl is-enabled {UNIT} 2>/dev/null)"
sed -n 's/^ *"\\(mode\\|textfile_dir\\)": "\\(.*\\)",\\{{0,1\\}}$/\\1=\\2/p' {CONFIG} 2>/dev/null
d=$(sed -n 's/^ *"textfile_dir": "\\(.*\\)",\\{{0,1\\}}$/\\1/p' {CONFIG} 2>/dev/null)
[ -z "$d" ] || grep -v '^#' "$d/{METRIC_FILE}" 2>/dev/null | sed 's/^/metric /'
[ ! -f {CONFIG} ] || echo "restores_day=$(journalctl -q -u {UNIT} --since -24h -o cat 2>/dev/null \\
  | grep -cE 'put it back|set it back')"
"""

_SAMPLE = re.compile(r"metric (\w+)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class GuardState:
    installed: bool = False  # its configuration is on the host
    active: str = ""  # systemctl is-active
    enabled: str = ""
    mode: str = ""  # heal, report ("" when not installed)
    vip_present: dict[str, bool] = field(default_factory=dict)
    flapping: list[str] = field(default_factory=list)
    sysctls_ok: bool | None = None
    restores_day: int | None = None  # warning lines "put it back"/"set it back" in the last 24 h
    last_check: float | None = None

    @property
    def running(self) -> bool:
        return self.active == "active"

    def summary(self) -> str:
        """One line for `dsrprov status`: mode and state, restores in the last day."""
        if not self.installed:
            return "off"
        if not self.running:
            return f"{self.mode}, {self.active or 'not running'}"
        text = f"{self.mode}, running"
        if self.restores_day:
            text += f", {self.restores_day} restore{'s' if self.restores_day > 1 else ''} in 24 h"
        if self.flapping:
            text += f", flapping: {' '.join(self.flapping)}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "installed": self.installed,
            "active": self.active,
            "enabled": self.enabled,
            "mode": self.mode or "off",
            "vip_present": self.vip_present,
            "flapping": self.flapping,
            "sysctls_ok": self.sysctls_ok,
            "restores_last_day": self.restores_day,
            "last_check": self.last_check,
            "summary": self.summary(),
        }


def parse(text: str) -> GuardState:
    state = GuardState()
    for line in text.splitlines():
        line = line.strip()
        m = _SAMPLE.match(line)
        if m:
            name, labels, value = m.group(1), dict(_LABEL.findall(m.group(2) or "")), m.group(3)
            try:
                number = float(value)
            except ValueError:
                continue
            if name == "dsrprov_vip_present" and "vip" in labels:
                state.vip_present[labels["vip"]] = number == 1
            elif name == "dsrprov_guard_flapping" and "vip" in labels and number == 1:
                state.flapping.append(labels["vip"])
            elif name == "dsrprov_arp_sysctls_ok":
                state.sysctls_ok = number == 1
            elif name == "dsrprov_guard_last_check_timestamp_seconds":
                state.last_check = number
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "active":
            state.active = value
        elif key == "enabled":
            state.enabled = value
        elif key == "mode":
            state.mode, state.installed = value, True
        elif key == "restores_day" and value.isdigit():
            state.restores_day = int(value)
    return state
