"""Where dsrprov's files are.

The collection ``dsrprov.dsr`` (roles, modules, plugins, playbooks) ships
inside the package and is found through Python's import system, so that an
installed ``dsrprov`` works from any directory; the inventory is the user's.
The lab's places (a checkout) are dsrprov_lab.paths'.
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


def user_inventory(given: str | None) -> Path:
    """The inventory a command works on: ``-i``, else ``DSRPROV_INVENTORY``.

    There is no default: a CLI that quietly fell back to some inventory could
    change hosts the user did not mean."""
    chosen = given or os.environ.get("DSRPROV_INVENTORY")
    if not chosen:
        raise UsageError("no inventory: give -i INVENTORY or set DSRPROV_INVENTORY")
    from dsrprov.model.inventory import resolve_path

    return resolve_path(chosen)
