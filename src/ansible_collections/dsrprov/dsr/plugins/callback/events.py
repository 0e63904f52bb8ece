"""One JSON object per line for every task result, task start and the recap,
so that the dsrprov CLI reads per-task, per-host results as data instead of
parsing Ansible's human output."""

from __future__ import annotations

DOCUMENTATION = r"""
name: events
type: notification
short_description: Write one JSON line per task result, per host, to a file
description:
  - Appends one JSON object per line to the file named by O(path) for every task start, every host's task
    result (ok, failed, ignored, skipped, unreachable) and, at the end, each host's recap counts.
  - The C(dsrprov) CLI enables it for its own runs only; Ansible's normal output is unchanged.
  - Results of C(no_log) tasks arrive here already censored by ansible-core; the module arguments
    (C(invocation)) are never written. The file is created with mode 0600.
  - Does nothing when no path is configured.
author: dsrprov maintainers (@dsrprov)
requirements:
  - enabled with C(ANSIBLE_CALLBACKS_ENABLED=dsrprov.dsr.events)
options:
  path:
    description: File to append the JSON lines to.
    type: path
    env:
      - name: DSRPROV_EVENTS_FILE
    ini:
      - section: callback_dsrprov_events
        key: path
"""

import json
import os
from typing import IO, Any

from ansible.plugins.callback import CallbackBase

# Never written: the module's arguments (they may hold secrets a module did not
# mark no_log) and Ansible's internal keys.
_DROP_KEYS = frozenset({"invocation"})


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "dsrprov.dsr.events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fh: IO[str] | None = None

    def set_options(self, *args: Any, **kwargs: Any) -> None:
        super().set_options(*args, **kwargs)
        path = self.get_option("path")
        if not path:
            self.disabled = True
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._fh = os.fdopen(fd, "a", encoding="utf-8", buffering=1)  # a line each: readable as it runs

    def _write(self, event: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(event, default=str, sort_keys=True) + "\n")

    def _result(self, status: str, result: Any) -> None:
        # ansible-core 2.19's CallbackTaskResult: plain Python values, censored when no_log.
        res = {k: v for k, v in result.result.items() if k not in _DROP_KEYS and not k.startswith("_ansible")}
        self._write(
            {
                "event": "result",
                "status": status,
                "host": result.host.get_name(),
                "task": result.task.get_name(),
                "action": result.task.action,
                "changed": bool(res.get("changed", False)),
                "msg": res.get("msg"),
                "result": res,
            }
        )

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._write({"event": "task_start", "task": task.get_name(), "action": task.action})

    def v2_runner_on_ok(self, result: Any) -> None:
        self._result("ok", result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result("ignored" if ignore_errors else "failed", result)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result("unreachable", result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        for host in sorted(stats.processed):
            self._write({"event": "recap", "host": host, **stats.summarize(host)})
        if self._fh is not None:
            self._fh.close()
            self._fh = None
