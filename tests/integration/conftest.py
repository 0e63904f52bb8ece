"""The local lab, started once per test session for the integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import dsrprov_lab as labmod


@pytest.fixture(scope="session")
def lab() -> Iterator[labmod.Lab]:
    """The lab from inventories/lab, up for the session.

    A lab that was already running is reused and left running; one started
    here is taken down at the end (DSRPROV_KEEP_LAB=1 keeps it)."""
    was_running = all(labmod.status().values())
    the_lab = labmod.up()
    yield the_lab
    if not was_running and not os.environ.get("DSRPROV_KEEP_LAB"):
        labmod.down(the_lab)
