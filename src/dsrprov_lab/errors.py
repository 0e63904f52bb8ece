"""The lab's one error: something in the local lab failed; the message says what."""

from __future__ import annotations


class LabError(RuntimeError):
    """Something in the local lab failed; the message says what (and where to look)."""
