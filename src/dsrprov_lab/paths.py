"""Where the lab's files are: a dsrprov checkout (the lab's scripts and
images, its inventories). Only the lab, the demo and the tests need one."""

from __future__ import annotations

import os
from pathlib import Path

from dsrprov_lab.errors import LabError


def checkout_root() -> Path:
    """A dsrprov checkout: ``DSRPROV_HOME``, else the one this package runs from."""
    env = os.environ.get("DSRPROV_HOME")
    root = Path(env) if env else Path(__file__).resolve().parents[2]
    if not (root / "lab" / "setup.sh").is_file():
        raise LabError(
            f"the lab needs a dsrprov checkout, and {root} is none: set DSRPROV_HOME to one (a pip install "
            "carries the roles and the CLI, not the lab)"
        )
    return root


def lab_inventory() -> Path:
    """The lab's inventory; ``DSRPROV_LAB_INVENTORY`` names another lab."""
    env = os.environ.get("DSRPROV_LAB_INVENTORY")
    return Path(env).resolve() if env else checkout_root() / "inventories" / "lab" / "hosts.yml"


def lab_state_dir(inventory: Path | None = None) -> Path:
    """A lab's generated files (SSH key pair, known_hosts), next to its inventory.

    Never committed (.gitignore)."""
    return (inventory or lab_inventory()).parent / ".state"
