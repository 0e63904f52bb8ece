"""Run a playbook of the collection (``dsrprov.dsr.site`` by default) and read
its results as data.

Every caller goes through here: the CLI, the demo, the benchmarks and the
tests. The collection's ``events`` callback writes one JSON object per task
result and per host recap into a private file; this module reads those events
instead of parsing Ansible's human output, which is kept only as a log.

Secrets reach Ansible only through the environment (a password is read by the
collection's ``playbooks/vars/credentials.yml`` with an ``env`` lookup); every
line of output and every event is scrubbed of them, and the events file lives
in a private directory that is removed after the run. Nothing is written
beside the inventory or into the project.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dsrprov.paths import collection_dir, collections_root

SITE = "dsrprov.dsr.site"
EVENTS_CALLBACK = "dsrprov.dsr.events"


@dataclass
class HostRun:
    """One host's outcome of a playbook run."""

    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0
    changed_tasks: list[str] = field(default_factory=list)
    error: str = ""
    in_recap: bool = False

    @property
    def success(self) -> bool:
        return self.in_recap and not self.failed and not self.unreachable


@dataclass
class PlaybookRun:
    """What a run did: exit code, the (scrubbed) output, its events, per host."""

    returncode: int
    stdout: str
    events: list[dict[str, Any]]
    hosts: dict[str, HostRun]
    elapsed: float
    error: str = ""  # ansible-playbook's own error, when it failed before any host ran
    stderr: str = ""  # merged into stdout; kept so callers may print both

    @property
    def changed(self) -> dict[str, int]:
        return {h: r.changed for h, r in self.hosts.items()}


class Scrubber:
    """Replace every secret by ******** in a text."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "********")
        return text


def _ansible_playbook() -> str:
    local = Path(sys.executable).parent / "ansible-playbook"
    return str(local) if local.exists() else "ansible-playbook"


def _user_collection_paths() -> list[str]:
    """The collection paths the user's Ansible would search (config, env, defaults)."""
    try:
        from ansible.config.manager import ConfigManager

        value = ConfigManager().get_config_value("COLLECTIONS_PATHS")
    except Exception:  # no readable config: Ansible's defaults apply after ours
        return []
    return [str(p) for p in (value or [])]


def ansible_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ansible-playbook: this package's collection first,
    whatever ANSIBLE_COLLECTIONS_PATH or ansible.cfg the user has, then theirs."""
    env = dict(os.environ if base is None else base)
    ours = str(collections_root())
    theirs = [p for p in _user_collection_paths() if p != ours]
    env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join([ours, *theirs])
    enabled = [c for c in env.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c.strip()]
    if EVENTS_CALLBACK not in enabled:
        enabled.append(EVENTS_CALLBACK)
    env.update(
        {
            "ANSIBLE_CALLBACKS_ENABLED": ",".join(enabled),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("ANSIBLE_LOG_PATH", None)  # a log file would hold what we scrub here
    return env


def credentials_vars_file() -> Path:
    """Names the password variables by env lookups; holds no secret."""
    return collection_dir() / "playbooks" / "vars" / "credentials.yml"


def run(
    inventory: Path | str | Sequence[Path | str],
    *args: str,
    playbook: str = SITE,
    env: dict[str, str] | None = None,
    secrets: Sequence[str | None] = (),
    on_event: Callable[[dict[str, Any]], None] | None = None,
    log: IO[str] | None = None,
    cwd: Path | str | None = None,
) -> PlaybookRun:
    """``ansible-playbook -i INVENTORY PLAYBOOK ARGS...``; never raises on a failed play.

    ``inventory`` is the source the user gave (a file or a directory), or
    several (the CLI adds an overlay of what it is about to write)."""
    scrub = Scrubber(secrets)
    workdir = Path(tempfile.mkdtemp(prefix="dsrprov-run-"))  # mode 0700
    events_file = workdir / "events.jsonl"
    run_env = ansible_env(env)
    run_env["DSRPROV_EVENTS_FILE"] = str(events_file)
    sources = [inventory] if isinstance(inventory, str | Path) else list(inventory)
    cmd = [_ansible_playbook(), *(a for src in sources for a in ("-i", str(src))), playbook, *args]
    start = time.monotonic()
    events: list[dict[str, Any]] = []
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        offset = 0
        for raw in proc.stdout:
            line = scrub(raw.rstrip("\n"))
            lines.append(line)
            if log is not None:
                log.write(line + "\n")
            offset = _read_events(events_file, offset, events, scrub, on_event)
        proc.wait()
        _read_events(events_file, offset, events, scrub, on_event)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - start
    output = "\n".join(lines) + ("\n" if lines else "")
    hosts = hosts_of(events)
    error = ""
    if proc.returncode != 0 and not hosts:
        error = next((ln for ln in lines if ln.startswith(("ERROR!", "[ERROR]"))), "") or (
            lines[-1] if lines else f"ansible-playbook exited {proc.returncode}"
        )
    return PlaybookRun(proc.returncode, output, events, hosts, elapsed, error)


def _read_events(
    path: Path,
    offset: int,
    into: list[dict[str, Any]],
    scrub: Scrubber,
    on_event: Callable[[dict[str, Any]], None] | None,
) -> int:
    """Read the complete lines appended since OFFSET; return the new offset."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return offset
    end = data.rfind(b"\n") + 1
    for raw in data[:end].splitlines():
        event = json.loads(scrub(raw.decode("utf-8", "replace")))
        into.append(event)
        if on_event is not None:
            on_event(event)
    return offset + end


def hosts_of(events: Iterable[dict[str, Any]]) -> dict[str, HostRun]:
    """Per host: the recap counts, the tasks that changed, the first error."""
    hosts: dict[str, HostRun] = {}
    for ev in events:
        kind = ev.get("event")
        if kind == "result":
            r = hosts.setdefault(ev["host"], HostRun())
            if ev["status"] in ("ok", "ignored") and ev.get("changed"):
                r.changed_tasks.append(ev["task"])
            if ev["status"] in ("failed", "unreachable") and not r.error:
                r.error = f"{ev['task']}: {message(ev)}"
        elif kind == "recap":
            r = hosts.setdefault(ev["host"], HostRun())
            r.ok, r.changed, r.unreachable = ev.get("ok", 0), ev.get("changed", 0), ev.get("unreachable", 0)
            r.failed, r.skipped, r.in_recap = ev.get("failures", 0), ev.get("skipped", 0), True
    return hosts


def message(event: dict[str, Any]) -> str:
    """The first line of a result's message (msg, else stderr)."""
    res = event.get("result") or {}
    text = event.get("msg") or res.get("stderr") or res.get("module_stderr") or ""
    if not isinstance(text, str):
        text = json.dumps(text)
    text = text.strip()
    return text.splitlines()[0][:500] if text else json.dumps(res)[:300]


def diff_lines(event: dict[str, Any]) -> list[str]:
    """A changed result's --diff as unified diff lines (file-like diffs only)."""
    out: list[str] = []
    diffs = (event.get("result") or {}).get("diff") or []
    for d in diffs if isinstance(diffs, list) else [diffs]:
        if not isinstance(d, dict):
            continue
        if isinstance(d.get("prepared"), str):
            out += [ln for ln in d["prepared"].splitlines() if ln.strip()]
            continue
        before, after = d.get("before", ""), d.get("after", "")
        if isinstance(before, str) and isinstance(after, str) and before != after:
            out += [
                ln
                for ln in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=1)
                if not ln.startswith(("---", "+++"))
            ]
    return out


def progress_printer(say: Callable[[str], None], check: bool) -> Callable[[dict[str, Any]], None]:
    """A compact progress of a run: each task as it starts, each change, each failure."""

    def on_event(ev: dict[str, Any]) -> None:
        if ev.get("event") == "task_start":
            task = str(ev.get("task", "")).split(" : ", 1)[-1]
            if not task.startswith("Validating arguments"):
                say(f"  task: {task}")
        elif ev.get("event") == "result":
            task = str(ev["task"]).split(" : ", 1)[-1]
            if ev["status"] in ("failed", "unreachable"):
                say(f"  {ev['host']}: FAILED: {task}: {message(ev)}")
            elif ev.get("changed") and ev["status"] == "ok":
                say(f"  {ev['host']}: {'would change' if check else 'changed'}: {task}")
                for line in diff_lines(ev):
                    say(f"      {line}")

    return on_event


def run_roles(
    inventory: Path | Sequence[Path],
    hosts: list[str],
    *,
    check: bool = False,
    absent: bool = False,
    forks: int = 8,
    private_key: Path | None = None,
    user: str | None = None,
    known_hosts: Path | None = None,
    ssh_password: str | None = None,
    winrm_password: str | None = None,
    progress: Callable[[str], None] | None = None,
    log: IO[str] | None = None,
    extra_vars: dict[str, object] | None = None,
) -> dict[str, HostRun]:
    """``dsrprov.dsr.site`` for ``hosts`` only, as the CLI runs it; each host's outcome.

    Connection options go in as extra vars, not --private-key/--user, because
    inventory variables would win over those."""
    from dsrprov.connect.ssh import PASSWORD_ENV as SSH_PASSWORD_ENV
    from dsrprov.connect.winrm import PASSWORD_ENV as WINRM_PASSWORD_ENV

    args = ["--limit", ",".join(hosts), "--forks", str(max(1, forks))]
    if check:
        args += ["--check", "--diff"]
    if absent:
        args += ["-e", "dsr_state=absent"]
    extra: dict[str, object] = dict(extra_vars or {})
    if private_key:
        extra["ansible_ssh_private_key_file"] = str(private_key)
    if user:
        extra["ansible_user"] = user
    if known_hosts:
        extra["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
    if extra:
        args += ["-e", json.dumps(extra)]
    env = dict(os.environ)
    if ssh_password or winrm_password:
        # The value travels in the environment; the vars file only names it.
        args += ["-e", f"@{credentials_vars_file()}"]
        if ssh_password:
            env[SSH_PASSWORD_ENV] = ssh_password
            # "pass" matches both "password:" and "Enter passphrase for key".
            env.setdefault("ANSIBLE_SSHPASS_PROMPT", "pass")
        if winrm_password:
            env[WINRM_PASSWORD_ENV] = winrm_password
    on_event = progress_printer(progress, check) if progress else None
    done = run(inventory, *args, env=env, secrets=[ssh_password, winrm_password], on_event=on_event, log=log)
    results = {h: done.hosts.get(h, HostRun()) for h in hosts}
    if done.error:
        for r in results.values():
            r.error = r.error or done.error
        if progress:
            progress(f"  {done.error}")
    return results
