"""Controller side of ``dsr_realserver_linux_apply``: the role's variables,
validated and checked, become the module's arguments, in the module's own step.

Why here, and not in the role's task: on a fleet the controller's work per
host is what the run waits for, and most of it went into the task's own
arguments - about twenty Jinja templates, each compiled afresh in every host's
worker process, and their check filters loaded with them - and into the
validation task ansible-core prepends to a role with an argument spec, which
under the linear strategy makes every host wait for every other one before the
first module call starts (docs/benchmarks.md). So the role calls the module
without arguments; this action then, for each host:

1. validates the role's variables against the role's own
   ``meta/argument_specs.yml``, as ansible-core's ``validate_argument_spec``
   does and with its messages (``site.yml`` imports the role with
   ``rolespec_validate: false``; a playbook that lists the role under
   ``roles:`` validates twice, nothing worse);
2. runs the checks of the values that end up in root scripts, units and
   sysctl files (``plugin_utils/vips.py``, ``module_utils/dsr_linux_names.py``,
   the same functions as the ``dsr_check_*`` filters), one line each;
3. only then sends the module. Bad input fails before the host is contacted.

Called with arguments (outside the role), it is the plain module: the module
checks them on the host before any change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_linux_names import (
    BadName,
    check_count,
    check_interfaces,
    check_label,
    check_path,
    check_unit_name,
)
from ansible_collections.dsrprov.dsr.plugins.plugin_utils.vips import VipError, check_vips

ROLE_NAME = "dsrprov.dsr.dsr_realserver_linux"
ROLE = Path(__file__).resolve().parents[2] / "roles" / "dsr_realserver_linux"
ENTRY_POINT = "main"
PREFIX = "dsr_realserver_linux_"
_SPEC: dict[str, Any] = {}


def role_spec() -> dict[str, Any]:
    """The options of the role's ``main`` entry point (read once per process)."""
    if not _SPEC:
        # Each host's worker is a new process: libyaml's loader, where present, reads
        # the spec in under a millisecond (the pure-Python one takes ten times that).
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"), Loader=loader)
        _SPEC.update(data["argument_specs"][ENTRY_POINT].get("options") or {})
    return _SPEC


def module_args(role: dict[str, Any], host_name: str, host_address: str, guard_source: str) -> dict[str, Any]:
    """The module's arguments from the role's validated variables (ROLE, names
    without the role's prefix). Raises VipError or BadName, one line each."""
    state = role["state"]
    return {
        "state": state,
        "vips": check_vips(role["vips"], (), allow_empty=state == "absent"),
        "host_name": host_name,
        "host_address": host_address,
        "arp_interfaces": check_interfaces(role["arp_interfaces"]),
        "label": check_label(role["label"]),
        "sysctl_file": role["sysctl_file"],
        "sysctl_override_action": role["sysctl_override_action"],
        "record_file": role["record_file"],
        "manager_record": role["manager_record"],
        "unit_name": check_unit_name(role["unit_name"], PREFIX + "unit_name"),
        "guard": {
            "mode": role["guard_mode"],
            "config": check_path(role["guard_config"], PREFIX + "guard_config"),
            "program": check_path(role["guard_program"], PREFIX + "guard_program"),
            "unit_name": check_unit_name(role["guard_unit_name"], PREFIX + "guard_unit_name"),
            "textfile_dir": check_path(role["guard_textfile_dir"], PREFIX + "guard_textfile_dir"),
            "period": check_count(role["guard_period"], PREFIX + "guard_period"),
            "flap_limit": check_count(role["guard_flap_limit"], PREFIX + "guard_flap_limit"),
            "flap_window": check_count(role["guard_flap_window"], PREFIX + "guard_flap_window"),
            # Installed by the module too, last: the whole role is one call per host.
            "program_source": guard_source,
        },
    }


class ActionModule(ActionBase):
    """Validate and check the role's variables, then run the module with them."""

    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if not args:
            built = self._from_role(task_vars)
            if built.get("failed"):
                return built
            args = built["args"]
        result.update(self._execute_module(module_args=args, task_vars=task_vars))
        return result

    def _from_role(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        """{"args": ...}, or the failed result: what the role's validation says, or one check's line."""
        spec = role_spec()
        provided = self._templar.template({name: task_vars[name] for name in spec if name in task_vars})
        checked = ArgumentSpecValidator(spec).validate(provided, validate_role_argument_spec=True)
        if checked.error_messages:
            return {
                "failed": True,
                "msg": "Validation of arguments failed:\n" + "\n".join(checked.error_messages),
                "argument_errors": checked.error_messages,
                "validate_args_context": {
                    "type": "role",
                    "name": ROLE_NAME,
                    "argument_spec_name": ENTRY_POINT,
                    "path": str(ROLE),
                },
            }
        # The values as given (templated), not as the validator converted them: a
        # "path" would come back with ~ and $VARS expanded on the controller, and
        # the checks below refuse such characters rather than guess.
        values = {**checked.validated_parameters, **provided}
        role = {name[len(PREFIX) :]: value for name, value in values.items()}
        host_name = str(task_vars.get("inventory_hostname", ""))
        host_address = str(self._templar.template(task_vars.get("ansible_host", host_name)))
        source = (ROLE / "files" / "dsrprov_guard.py").read_text(encoding="utf-8")
        try:
            return {"args": module_args(role, host_name, host_address, source)}
        except (VipError, BadName) as exc:
            return {"failed": True, "msg": f"dsrprov: {exc}"}
