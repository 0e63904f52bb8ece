"""The guard's part of the Linux real server's change plan: its configuration, or stopping it.

A running guard acts on lo between runs, so what it is told comes before any
VIP or sysctl change of this run: with the guard on, its configuration
(guard.json) is the first step (the guard re-reads it before it judges the
next change of lo); with the guard off or the host leaving, stopping it is
the first step (it would put back a VIP this run removes), and the rest of it
goes with it (unit, program, metric file, configuration). All are steps of
the module's plan, so a host the module refuses is left untouched and a later
failure undoes them. With the program's text given (``program_source``), its
installation is the plan's last step: the program, its unit, enabled and
started (restarted when either changed): the whole guard in the module's one
call per host.

node_exporter's textfile directory is created here when missing, and
guard.json notes the topmost directory dsrprov made for it (e.g.
/var/lib/prometheus when that was missing too); ``absent`` removes those
directories only then, and each only when empty (the guard's metric file
aside): a directory that was there before is never removed. Standard library only, Python 3.8+.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any, Dict, List, Optional

# The boot unit's steps serve the guard's unit too (stop, disable, remove, reload).
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_boot_unit import plan_unit
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import (
    ChangePlan,
    file_mode,
    read_text,
)
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_linux_names import (
    check_count,
    check_path,
    check_unit_name,
    systemd_quote,
)
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_plan_inputs import Desired, Found

METRIC_FILE = "dsrprov_guard.prom"  # the guard's own name for it (files/dsrprov_guard.py)
CREATED_KEY = "textfile_dir_created"

# The module's option, with the role's defaults.
OPTION = {
    "type": "dict",
    "options": {
        "mode": {"type": "str", "choices": ["heal", "report", "off"], "default": "heal"},
        "config": {"type": "str", "default": "/etc/dsrprov/guard.json"},
        "program": {"type": "str", "default": "/usr/local/sbin/dsrprov-guard"},
        "unit_name": {"type": "str", "default": "dsrprov-guard.service"},
        "textfile_dir": {"type": "str", "default": "/var/lib/prometheus/node-exporter"},
        "period": {"type": "int", "default": 30},
        "flap_limit": {"type": "int", "default": 10},
        "flap_window": {"type": "int", "default": 300},
        "program_source": {"type": "str"},
    },
}


def check(guard: Optional[Dict[str, Any]]) -> None:
    """Refuse (BadName, ValueError) a guard option whose paths or numbers could not be written safely."""
    if not guard:
        return
    check_path(guard["config"], "guard configuration path")
    check_path(guard["program"], "guard program path")
    check_path(guard["textfile_dir"], "guard textfile directory")
    check_unit_name(guard["unit_name"], "guard unit name")
    for key in ("period", "flap_limit", "flap_window"):
        check_count(guard[key], "guard " + key)


def old_settings(path: str) -> Dict[str, Any]:
    text = read_text(path)
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def render(settings: Dict[str, Any]) -> str:
    """guard.json as the role's to_nice_json wrote it (sorted keys, 4 spaces)."""
    return json.dumps(settings, indent=4, sort_keys=True) + "\n"


def make_dir(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def first_missing(path: str) -> Optional[str]:
    """The topmost directory makedirs(PATH) would create, or None when PATH is a directory."""
    top = None
    while not os.path.isdir(path):
        top = path
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return top


def own_dirs(path: str, top: Any) -> List[str]:
    """PATH and its parents up to TOP (dsrprov made them), deepest first; none when TOP is not PATH or above it."""
    if not isinstance(top, str) or not (path == top or path.startswith(top.rstrip("/") + "/")):
        return []
    dirs = [path]
    while dirs[-1] != top:
        dirs.append(os.path.dirname(dirs[-1]))
    return dirs


def removable(dirs: List[str]) -> List[str]:
    """The first of DIRS (deepest first) that hold nothing but the guard's metric file, or the one before."""
    found: List[str] = []
    allowed = {METRIC_FILE}
    for path in dirs:
        try:
            entries = set(os.listdir(path))
        except OSError:
            break
        if not entries <= allowed:
            break
        found.append(path)
        allowed = {os.path.basename(path)}
    return found


def remove_own_dirs(dirs: List[str]) -> None:
    """Remove DIRS (deepest first), directories dsrprov made, the guard's metric file with them; one that
    holds anything else stays, and so do its parents."""
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(dirs[0], METRIC_FILE))
    for path in dirs:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            continue
        except OSError:
            return  # not empty: something else lives there now


def plan(change: ChangePlan, module: Any, desired: Desired, found: Found) -> Dict[str, Any]:
    """Plan the guard's steps; call before any other part plans its own, so they come first."""
    guard = desired.guard
    if not guard:
        return {}
    old = old_settings(guard["config"])
    textfile_dir = guard["textfile_dir"]
    # Made by dsrprov: on this run, or on an earlier one that noted it for this directory.
    made_before = old.get(CREATED_KEY) if own_dirs(textfile_dir, old.get(CREATED_KEY)) else None
    if desired.present and guard["mode"] != "off":
        missing = first_missing(textfile_dir)
        # The topmost of what dsrprov made then and what it makes now.
        created = min((d for d in (made_before, missing) if d), key=len, default=None)
        settings = {
            "mode": guard["mode"],
            "vips": list(desired.vips),
            "label": desired.label,
            "period": guard["period"],
            "flap_limit": guard["flap_limit"],
            "flap_window": guard["flap_window"],
            "textfile_dir": textfile_dir,
            "sysctl_file": desired.sysctl_file,
            "record_file": desired.record_file,
            CREATED_KEY: created,
        }
        change.file(guard["config"], render(settings), 0o644)
        if missing:
            made = own_dirs(textfile_dir, missing)
            change.diff("%s (directory)" % textfile_dir, "absent\n", "present\n")
            change.step("create %s" % textfile_dir, lambda: make_dir(textfile_dir), lambda: remove_own_dirs(made))
        return {"guard": guard["mode"], "textfile_dir_created": created}
    # Off, or the host leaves: the guard stops first (and is disabled, its
    # unit removed, systemd reloaded: the boot unit's steps); then its
    # program, its metric file, the directories dsrprov made for it and its
    # configuration.
    plan_unit(change, module, guard["unit_name"], None)
    program = guard["program"]
    if change.file(program, None, 0o755, diff=False):
        # The diff names it: its text (the whole program) says nothing useful.
        change.diff(program, "present\n", "absent\n")
    change.file(os.path.join(textfile_dir, METRIC_FILE), None, 0o644)
    made = removable(own_dirs(textfile_dir, made_before))
    if made:
        change.diff("%s (directory)" % made[-1], "present\n", "absent\n")
        change.step("remove %s" % " and ".join(made), lambda: remove_own_dirs(made), lambda: make_dir(textfile_dir))
    # Its directory (/etc/dsrprov) goes once empty, as with the record file.
    change.file(guard["config"], None, 0o644, remove_dir=True)
    return {"guard": "off", "textfile_dir_created": made_before}


def render_unit(program: str, config: str, boot_unit: str) -> str:
    """The guard's unit; both paths checked again and quoted by systemd's rules."""
    q = systemd_quote
    return "\n".join([
        "# Managed by dsrprov (role dsr_realserver_linux); local changes are overwritten.",
        "# dsrprov guard: puts back the DSR VIPs on lo and the ARP sysctls between runs,",
        "# exports Prometheus metrics. Ordered after the network managers but not bound",
        "# to them: it survives their restarts.",
        "[Unit]",
        "Description=dsrprov guard: keeps the DSR VIPs on lo and the ARP sysctls",
        "After=network.target NetworkManager.service systemd-networkd.service %s" % check_unit_name(boot_unit),
        "# Restart=always never gives up (a crash loop costs one start every 2 s).",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=simple",
        "# -I -S: no user site, no site-packages; the standard library only (and less memory).",
        "ExecStart=/usr/bin/python3 -I -S %s %s"
        % (q(check_path(program, "guard program path")), q(check_path(config, "guard configuration path"))),
        "Restart=always",
        "RestartSec=2",
        "# Exit status 2: a configuration error; restarting would not mend it.",
        "RestartPreventExitStatus=2",
        "NoNewPrivileges=yes",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "SyslogIdentifier=dsrprov-guard",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]) + "\n"  # fmt: skip


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def install(change: ChangePlan, module: Any, desired: Desired, found: Found) -> None:
    """Plan the program, the unit, enabled and running: last, once the VIPs it
    guards are in place. A new configuration alone needs no restart (the
    guard re-reads it); a new program or unit does."""
    guard = desired.guard
    if not guard or not desired.present or guard["mode"] == "off" or not guard.get("program_source"):
        return
    program = guard["program"]
    source = guard["program_source"]
    source = source if source.endswith("\n") else source + "\n"
    old = read_text(program)
    old_mode = file_mode(program, 0o755)
    program_changed = change.file(program, source, 0o755, diff=False, exact_mode=True) is not None
    if program_changed:
        # The diff names the versions: the whole program's text says nothing useful.
        before = "absent\n" if old is None else "sha256 %s, mode %04o\n" % (_digest(old), old_mode)
        change.diff(program, before, "sha256 %s, mode 0755\n" % _digest(source))
    unit_text = render_unit(program, guard["config"], desired.unit_name)
    plan_unit(change, module, guard["unit_name"], unit_text, restart=program_changed)
