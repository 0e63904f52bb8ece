"""Run the roles: ``ansible-playbook site.yml --limit HOSTS``, with a compact
progress on stderr and the PLAY RECAP parsed per host.

Secrets reach Ansible only through the environment: a password is read by
``playbooks/vars/credentials.yml`` with an ``env`` lookup, so it is never on
a command line, and every line shown or logged is scrubbed of it as well.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dsrprov.paths import project_root
from dsrprov.probe_winrm import PASSWORD_ENV as WINRM_PASSWORD_ENV
from dsrprov.ssh import PASSWORD_ENV as SSH_PASSWORD_ENV


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


_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")
_RESULT = re.compile(r"^(ok|changed|fatal|failed|skipping|unreachable):\s+\[([^\]]+?)(?: -> [^\]]+)?\]:?\s*(.*)$")
_TASK = re.compile(r"^TASK \[(.*)\] \**$")


def _message(rest: str) -> str:
    """The msg of a JSON result (``FAILED! => {...}``)."""
    _, _, payload = rest.partition("=>")
    payload = payload.strip()
    try:
        data = json.loads(payload)
    except json.JSONDecodeError:
        return payload[:300]
    if isinstance(data, dict):
        msg = data.get("msg") or data.get("stderr") or data.get("module_stderr") or ""
        if isinstance(msg, str) and msg:
            return msg.strip().splitlines()[0] if msg.strip() else ""
        return json.dumps(data)[:300]
    return str(data)[:300]


class Scrubber:
    """Replace every secret by ******** in a line."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "********")
        return text


def ansible_playbook_cmd() -> str:
    local = Path(sys.executable).parent / "ansible-playbook"
    return str(local) if local.exists() else "ansible-playbook"


def run_playbook(
    inventory: Path,
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
    """Run site.yml for ``hosts`` only; return each host's outcome."""
    root = project_root()
    cmd = [
        ansible_playbook_cmd(),
        str(root / "site.yml"),
        "-i",
        str(inventory),
        "--limit",
        ",".join(hosts),
        "--forks",
        str(max(1, forks)),
    ]
    if check:
        cmd += ["--check", "--diff"]
    if absent:
        cmd += ["-e", "dsr_state=absent"]
    # Extra vars, not --private-key/--user: inventory variables would win over those.
    extra: dict[str, object] = dict(extra_vars or {})
    if private_key:
        extra["ansible_ssh_private_key_file"] = str(private_key)
    if user:
        extra["ansible_user"] = user
    if known_hosts:
        extra["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
    if extra:
        cmd += ["-e", json.dumps(extra)]
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_STDOUT_CALLBACK": "default",
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("ANSIBLE_LOG_PATH", None)
    if ssh_password or winrm_password:
        # The value travels in the environment; the vars file only names it.
        cmd += ["-e", f"@{root / 'playbooks' / 'vars' / 'credentials.yml'}"]
        if ssh_password:
            env[SSH_PASSWORD_ENV] = ssh_password
            # "pass" matches both "password:" and "Enter passphrase for key".
            env.setdefault("ANSIBLE_SSHPASS_PROMPT", "pass")
        if winrm_password:
            env[WINRM_PASSWORD_ENV] = winrm_password
    scrub = Scrubber([p for p in (ssh_password, winrm_password) if p])
    results: dict[str, HostRun] = {h: HostRun() for h in hosts}
    task = ""
    in_recap = False
    diff_lines: list[str] = []
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = scrub(raw.rstrip("\n"))
        if log is not None:
            log.write(line + "\n")
        if in_recap:
            m = _RECAP.match(line.strip())
            if m:
                r = results.setdefault(m.group(1), HostRun())
                r.ok, r.changed, r.unreachable, r.failed, r.skipped = (int(m.group(i)) for i in range(2, 7))
                r.in_recap = True
            continue
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        m = _TASK.match(line)
        if m:
            task = m.group(1).split(" : ", 1)[-1]
            diff_lines = []
            if progress and not task.startswith("Validating arguments"):
                progress(f"  task: {task}")
            continue
        m = _RESULT.match(line)
        if m:
            status, host, rest = m.groups()
            r = results.setdefault(host, HostRun())
            if status == "changed":
                r.changed_tasks.append(task)
                if progress:
                    progress(f"  {host}: {'would change' if check else 'changed'}: {task}")
                    for d in diff_lines:
                        progress(f"      {d}")
            elif status in ("fatal", "failed", "unreachable") or "UNREACHABLE!" in rest or "FAILED!" in rest:
                r.error = r.error or f"{task}: {_message(rest)}"
                if progress:
                    progress(f"  {host}: FAILED: {task}: {_message(rest)}")
            diff_lines = []
            continue
        if check and line[:1] in ("+", "-", "@") and not line.startswith(("---", "+++")):
            diff_lines.append(line)
        elif line.startswith("ERROR!") or line.startswith("[ERROR]"):
            for r in results.values():
                r.error = r.error or line
            if progress:
                progress(f"  {line}")
    proc.wait()
    return results
