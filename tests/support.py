"""What unit and integration tests share: the checkout, the venv's commands, the
playbook runner, the lab's VIPs. No fixture here: the lab fixture is in
``tests/integration/conftest.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dsrprov.model.inventory import Inventory
from dsrprov.run import playbook as pb
from dsrprov_lab.paths import checkout_root, lab_inventory

ROOT = checkout_root()


def venv_bin(name: str) -> str:
    """A command of the environment pytest runs in (the project's .venv)."""
    return str(Path(sys.executable).parent / name)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_playbook(*args: str, inventory: Path | None = None) -> pb.PlaybookRun:
    """The collection's site playbook through the one runner (``dsrprov.run.playbook``).

    ``site.yml`` as the first argument names the checkout's entry point, which
    imports ``dsrprov.dsr.site``: the collection's playbook runs either way."""
    playbook = pb.SITE
    if args and args[0].endswith((".yml", ".yaml")):
        playbook, args = str(ROOT / args[0]), args[1:]
    return pb.run(inventory or lab_inventory().parent, *args, playbook=playbook, env=ansible_env(), cwd=ROOT)


def lab_vips() -> tuple[str, str]:
    """The lab's IPv4 and IPv6 service VIPs (DSRPROV_LAB_INVENTORY names another lab)."""
    vips = [str(s["vip"]) for s in Inventory(lab_inventory()).services()]
    return next(v for v in vips if ":" not in v), next(v for v in vips if ":" in v)


TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"


def dsrprov_cli(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dsrprov ARGS[0] -i INVENTORY ARGS[1:]``, as a user runs it (DSRPROV_INVENTORY unset)."""
    env = {k: v for k, v in os.environ.items() if k != "DSRPROV_INVENTORY"}
    return subprocess.run(
        [sys.executable, "-m", "dsrprov", args[0], "-i", str(inventory), *args[1:]],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip


def host_failures(run: pb.PlaybookRun, host: str) -> str:
    """Every failure message one host got in a run, whole (``HostRun.error`` keeps the first line
    only): tests that put one case per inventory host in a single run tell the cases apart by it."""
    lines: list[str] = []
    for ev in run.events:
        if ev.get("event") == "result" and ev.get("host") == host and ev.get("status") in ("failed", "unreachable"):
            lines.append(f"{ev['task']}: {ev.get('msg') or ''}")
            lines += [str(e) for e in ev.get("result", {}).get("argument_errors", [])]
    return "\n".join(lines)
