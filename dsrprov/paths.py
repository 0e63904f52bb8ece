"""Where the project's files are: the roles, playbooks and the lab's state."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding roles/ and playbooks/ (dsrprov is installed editable)."""
    env = os.environ.get("DSRPROV_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[1]


def lab_inventory() -> Path:
    """The lab's inventory; ``DSRPROV_LAB_INVENTORY`` names another lab."""
    env = os.environ.get("DSRPROV_LAB_INVENTORY")
    return Path(env).resolve() if env else project_root() / "inventories" / "lab" / "hosts.yml"


def lab_state_dir(inventory: Path | None = None) -> Path:
    """A lab's generated files (SSH key pair, known_hosts), next to its inventory.

    Never committed (.gitignore)."""
    return (inventory or lab_inventory()).parent / ".state"
