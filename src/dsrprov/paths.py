"""Where dsrprov's files are.

Two kinds of place:
- the collection ``dsrprov.dsr`` (roles, modules, plugins, playbooks), which
  ships inside the package and is found through Python's import system, so
  that an installed ``dsrprov`` works from any directory;
- a dsrprov checkout (the lab's scripts and images, its inventory), needed
  only by the lab, the demo and the tests.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from dsrprov.errors import UsageError

# A module of the collection with a real file: the namespace packages above it
# have no __file__, and an editable install may map them anywhere.
_ANCHOR = "ansible_collections.dsrprov.dsr.plugins.plugin_utils.vips"


def collection_dir() -> Path:
    """The collection ``dsrprov.dsr`` this package carries (``.../ansible_collections/dsrprov/dsr``)."""
    spec = importlib.util.find_spec(_ANCHOR)
    if spec is None or spec.origin is None:  # pragma: no cover: a broken install
        raise RuntimeError("the dsrprov.dsr collection is not installed with the dsrprov package")
    return Path(spec.origin).resolve().parents[2]


def collections_root() -> Path:
    """The directory holding ``ansible_collections/``: first on Ansible's collection path."""
    return collection_dir().parents[2]


def checkout_root() -> Path:
    """A dsrprov checkout: ``DSRPROV_HOME``, else the one this package runs from."""
    env = os.environ.get("DSRPROV_HOME")
    root = Path(env) if env else Path(__file__).resolve().parents[2]
    if not (root / "lab" / "setup.sh").is_file():
        raise UsageError(
            f"the lab needs a dsrprov checkout, and {root} is none: set DSRPROV_HOME to one (a pip install "
            "carries the roles and the CLI, not the lab)"
        )
    return root


def user_inventory(given: str | None) -> Path:
    """The inventory a command works on: ``-i``, else ``DSRPROV_INVENTORY``.

    There is no default: a CLI that quietly fell back to some inventory could
    change hosts the user did not mean."""
    chosen = given or os.environ.get("DSRPROV_INVENTORY")
    if not chosen:
        raise UsageError("no inventory: give -i INVENTORY or set DSRPROV_INVENTORY")
    from dsrprov.model.inventory import resolve_path

    return resolve_path(chosen)


def lab_inventory() -> Path:
    """The lab's inventory; ``DSRPROV_LAB_INVENTORY`` names another lab."""
    env = os.environ.get("DSRPROV_LAB_INVENTORY")
    return Path(env).resolve() if env else checkout_root() / "inventories" / "lab" / "hosts.yml"


def lab_state_dir(inventory: Path | None = None) -> Path:
    """A lab's generated files (SSH key pair, known_hosts), next to its inventory.

    Never committed (.gitignore)."""
    return (inventory or lab_inventory()).parent / ".state"
