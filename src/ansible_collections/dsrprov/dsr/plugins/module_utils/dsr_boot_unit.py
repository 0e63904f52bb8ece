"""The systemd unit that restores the VIPs on the loopback at boot.

Written, then ``daemon-reload`` when it changed, then enabled and started
(a new unit: ``enable --now`` alone, which reloads the manager itself), never
restarted: a restart would take every VIP down for a moment, and the
live VIPs are already right. Standard library only, Python 3.8+.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import (
    ChangePlan,
    read_text,
    run,
)
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_linux_names import check_label, systemd_quote
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_plan_inputs import Desired, Found
from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_vips import parse_vip

UNIT_DIR = "/etc/systemd/system"


def render(vips: List[str], ip_command: str, label: str, record: str) -> str:
    """The unit. Every value is checked again (ValueError) and each argument
    quoted by systemd's rules: none can add a line or an argument."""
    check_label(label)
    q = systemd_quote
    ip = q(ip_command)
    lines = [
        "# Managed by dsrprov (role dsr_realserver_linux); local changes are overwritten.",
        "# Restores the Direct Server Return VIPs on the loopback at boot, after the ARP",
        "# sysctls are applied and before any network interface comes up.",
        "[Unit]",
        "Description=dsrprov: DSR VIPs on the loopback",
        "Documentation=file://%s" % record.replace("\n", " "),
        "DefaultDependencies=no",
        "After=systemd-sysctl.service",
        "Before=network-pre.target shutdown.target",
        "Wants=network-pre.target",
        "Conflicts=shutdown.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
    ]
    addrs = [parse_vip(vip) for vip in vips]
    for addr in addrs:
        if addr.version == 4:
            lines.append("ExecStart=%s -4 addr replace %s dev lo label %s" % (ip, q("%s/32" % addr), q(label)))
        else:
            lines.append("ExecStart=%s -6 addr replace %s dev lo nodad" % (ip, q("%s/128" % addr)))
    for addr in addrs:
        lines.append("ExecStop=-%s addr del %s dev lo" % (ip, q("%s/%d" % (addr, addr.max_prefixlen))))
    lines += ["", "[Install]", "WantedBy=multi-user.target"]
    return "\n".join(lines) + "\n"


def unit_state(module: Any, name: str) -> Dict[str, str]:
    """UnitFileState (enabled, disabled, ...) and ActiveState, in one call."""
    rc, out, _err = module.run_command(
        ["systemctl", "show", "--property=UnitFileState,ActiveState,LoadState", name], check_rc=False
    )
    found = {}
    for line in out.splitlines() if rc == 0 else []:
        key, _sep, value = line.partition("=")
        found[key] = value.strip()
    return found


def plan(change: ChangePlan, module: Any, desired: Desired, found: Found) -> Dict[str, Any]:
    """Plan the boot unit: written, daemon-reload, enabled and started
    (present), or stopped, disabled, removed and daemon-reload (absent).
    Never restarted."""
    text = None
    if desired.present:
        text = render(desired.vips, found.ip_command, desired.label, desired.record_file)
    return plan_unit(change, module, desired.unit_name, text)


def plan_unit(
    change: ChangePlan, module: Any, name: str, text: Optional[str], restart: Optional[bool] = None
) -> Dict[str, Any]:
    """Plan unit NAME to hold TEXT, daemon-reload, enable and start it, or
    (TEXT None) stop, disable, remove it and daemon-reload.

    RESTART, when not None, restarts a running unit whose file changed, or
    when True (what it runs changed): the guard's unit; the boot unit is
    never restarted."""
    path = os.path.join(UNIT_DIR, name)
    exists = os.path.exists(path)
    now = unit_state(module, name) if exists else {}
    enabled = now.get("UnitFileState") in ("enabled", "enabled-runtime")
    active = now.get("ActiveState") in ("active", "activating", "reloading")
    old = read_text(path)

    def daemon_reload() -> None:
        run(module, ["systemctl", "daemon-reload"])

    def unit_file(content: Optional[str], reload: bool = True) -> None:
        """The file and the daemon-reload that makes systemd see it: one step,
        whose undo reloads after the old file is back (also when the write
        needed none: a new unit's enable reloads the manager itself)."""
        after = ("reload systemd", daemon_reload) if reload else None
        change.file(path, content, 0o644, after=after, after_undo=daemon_reload)

    if text is not None:
        # A new unit that is enabled and started at once needs no
        # daemon-reload of its own: systemctl enable reloads the manager
        # before --now starts it. One call instead of three.
        at_once = old is None and not enabled and not active
        unit_file(text, reload=not at_once)
        if at_once:
            change.diff("%s enabled" % name, "no\n", "yes\n")
            change.diff("%s active" % name, "no\n", "yes\n")
            change.step("enable and start %s" % name,
                        lambda: run(module, ["systemctl", "enable", "--now", "--quiet", name]),
                        lambda: run(module, ["systemctl", "disable", "--now", "--quiet", name]))  # fmt: skip
            return {"path": path, "enabled": enabled, "active": active, "present": exists}
        if not enabled:
            change.diff("%s enabled" % name, "no\n", "yes\n")
            change.step("enable %s" % name, lambda: run(module, ["systemctl", "enable", "--quiet", name]),
                        lambda: run(module, ["systemctl", "disable", "--quiet", name]))  # fmt: skip
        if not active:
            change.diff("%s active" % name, "no\n", "yes\n")
            # Its stop runs ExecStop (the VIPs off): the VIPs' undo, after
            # this one, puts back what lo held before.
            change.step("start %s" % name, lambda: run(module, ["systemctl", "start", name]),
                        lambda: run(module, ["systemctl", "stop", name]))  # fmt: skip
        elif restart is not None and (restart or old != text):
            change.diff("%s restarted" % name, "no\n", "yes\n")
            change.step("restart %s" % name, lambda: run(module, ["systemctl", "restart", name]))
    else:
        if active:
            change.diff("%s active" % name, "yes\n", "no\n")
            change.step("stop %s" % name, lambda: run(module, ["systemctl", "stop", name]),
                        lambda: run(module, ["systemctl", "start", name]))  # fmt: skip
        if enabled:
            change.diff("%s enabled" % name, "yes\n", "no\n")
            change.step("disable %s" % name, lambda: run(module, ["systemctl", "disable", "--quiet", name]),
                        lambda: run(module, ["systemctl", "enable", "--quiet", name]))  # fmt: skip
        unit_file(None)
    return {"path": path, "enabled": enabled, "active": active, "present": exists}
