"""Where the project's files are: the roles, playbooks and the lab's state."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding roles/ and playbooks/ (dsrprov is installed editable)."""
    env = os.environ.get("DSRPROV_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[1]


def lab_state_dir() -> Path:
    """Generated lab files: SSH key pair and known_hosts. Never committed."""
    return project_root() / ".lab"


def lab_inventory() -> Path:
    return project_root() / "inventories" / "lab" / "hosts.yml"
