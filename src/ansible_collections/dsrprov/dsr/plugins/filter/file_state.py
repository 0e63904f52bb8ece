"""Ansible filter: is a file already what a copy or template task would write?

On a slow director (a VM without hardware virtualisation, a busy box) every
copy or template task costs seconds even when nothing changes: it runs a
stat module, then the copy module. The role reads the files' state once
(``dsr_director_facts``' ``files``) and skips the tasks whose result is
already in place; a task that does run still writes and reports as before."""

from __future__ import annotations

import hashlib
from typing import Any


def in_place(state: Any, content: Any = None, mode: str = "0644", directory: bool = False) -> bool:
    """True when STATE (one entry of the facts' ``files``) is a root-owned file
    holding CONTENT with MODE, or with DIRECTORY a root-owned directory with MODE.
    Anything unknown (no state, another type) is not in place: the task runs."""
    if not isinstance(state, dict) or not state.get("exists"):
        return False
    if state.get("uid") != 0 or state.get("gid") != 0 or state.get("mode") != mode:
        return False
    if directory:
        return bool(state.get("dir"))
    if state.get("dir") or not isinstance(content, str):
        return False
    return hashlib.sha1(content.encode("utf-8")).hexdigest() == state.get("sha1")


class FilterModule:
    """Ansible filters: ``dsr_file_in_place``."""

    def filters(self) -> dict[str, Any]:
        return {"dsr_file_in_place": in_place}
