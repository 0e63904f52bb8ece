"""An ordered list of changes to a host, each with its undo, and the diff that announces them.

Shared by the Linux real-server module's parts (module_utils/dsr_*.py): each
part plans its steps here before anything changes; check mode only reports
the plan; a real run applies the steps in order and, when one fails, undoes
the ones already done, in reverse order. Standard library only, Python 3.8+.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

Action = Callable[[], object]


class StepFailed(Exception):
    """A step could not be done; the message is one readable line."""


def run(module: Any, cmd: List[str]) -> str:
    """Run CMD on the host; raise StepFailed (never exit) when it fails, so the
    steps already done can be undone."""
    rc, out, err = module.run_command(cmd, check_rc=False)
    if rc != 0:
        raise StepFailed("%s failed (exit %d): %s" % (" ".join(cmd), rc, (err or out).strip()))
    return str(out)


def read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def write_text(path: str, text: str, mode: int) -> None:
    """Replace PATH atomically (a temporary file beside it, then rename)."""
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, ".%s.dsrprov-tmp" % os.path.basename(path))
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # no half-written file left behind
        raise


def file_mode(path: str, default: int) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return default


def put_file(path: str, content: Optional[str], mode: int, remove_dir: bool = False) -> None:
    """Make PATH hold CONTENT (None: no file). REMOVE_DIR: also remove its
    directory once empty (one dsrprov made)."""
    if content is None:
        # Only a file: what dsrprov writes is never a directory.
        if os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)
        if remove_dir:
            # Not empty: something else lives there too.
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))
    else:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        write_text(path, content, mode)


@dataclass
class Step:
    """One change to the host: what it is (shown to the user), how to do it and
    how to undo it (None: it cannot be, e.g. a restart). QUIET: bookkeeping
    (a record of dsrprov's own), no change to report. RELOAD: makes a service
    re-read files steps before it wrote; their undos reload again, so it needs
    no undo of its own and is no change of its own to roll back."""

    description: str
    action: Action
    undo: Optional[Action] = None
    quiet: bool = False
    reload: bool = False


class ChangePlan:
    """What to change, in order, with how to undo each change, and the diffs."""

    def __init__(self) -> None:
        self.steps: List[Step] = []
        self.diffs: List[Dict[str, str]] = []
        self.done: List[str] = []

    def step(
        self,
        description: str,
        action: Action,
        undo: Optional[Action] = None,
        quiet: bool = False,
        reload: bool = False,
    ) -> Step:
        self.steps.append(Step(description, action, undo, quiet, reload))
        return self.steps[-1]

    def insert(
        self, index: int, description: str, action: Action, undo: Optional[Action] = None, quiet: bool = False
    ) -> Step:
        """A step before the ones planned from INDEX on (a write-ahead note of
        what they are about to do, planned once they are)."""
        self.steps.insert(index, Step(description, action, undo, quiet))
        return self.steps[index]

    def diff(self, header: str, before: str, after: str) -> None:
        if before != after:
            self.diffs.append({"before_header": header, "after_header": header, "before": before, "after": after})

    def file(
        self,
        path: str,
        content: Optional[str],
        mode: int,
        remove_dir: bool = False,
        header: str = "",
        diff: bool = True,
        after_undo: Optional[Action] = None,
        exact_mode: bool = False,
        after: Optional[Tuple[str, Action]] = None,
    ) -> Optional[Step]:
        """Plan PATH to hold CONTENT (None: absent); the undo puts back what
        was there, then runs AFTER_UNDO (e.g. a reload of the service that
        reads it). AFTER: (what, action) run right after the write, in the
        same step (systemd's daemon-reload for a unit).
        DIFF: show it under HEADER (default PATH); off where the caller shows
        it its own way. Return the step, or None when PATH
        already holds CONTENT (and, EXACT_MODE, has MODE). The one step that
        writes a file."""
        old = read_text(path)
        if os.path.lexists(path) and old is None:
            old = ""
        old_mode = file_mode(path, mode)
        if old == content and (content is None or not exact_mode or old_mode == mode):
            return None
        if diff:
            self.diff(header or path, old or "", content or "")
        # The undo also removes a directory the step made.
        made_dir = not os.path.isdir(os.path.dirname(path))

        written: List[bool] = []

        def action() -> None:
            put_file(path, content, mode, remove_dir)
            written.append(True)
            if after is not None:
                after[1]()

        def undo() -> None:
            if not written:
                # The write itself failed: put_file is atomic, PATH is as it
                # was (it may even be a directory in the way); only a
                # directory it made may be left.
                if made_dir:
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.dirname(path))
                return
            put_file(path, old, old_mode, remove_dir=made_dir and old is None)
            if after_undo is not None:
                after_undo()

        description = ("remove %s" if content is None else "write %s") % path
        return self.step(description + (" and %s" % after[0] if after else ""), action, undo)

    @property
    def changes(self) -> List[str]:
        """The steps to report: every one but the bookkeeping."""
        return [step.description for step in self.steps if not step.quiet]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def apply(self) -> Optional[str]:
        """Do every step in order. On a failure undo the steps done, newest
        first, and return what failed, how many of the changes made before it
        were undone, and what could not be."""
        done: List[Step] = []
        for step in self.steps:
            try:
                step.action()
            except Exception as exc:
                # The failed step may have half happened: undone too (first).
                problems = []
                undone = 0
                for earlier in [step, *reversed(done)]:
                    if earlier.undo is None:
                        if earlier is not step and not earlier.reload:
                            problems.append("'%s' has no undo" % earlier.description)
                        continue
                    try:
                        earlier.undo()
                    except Exception as undo_exc:
                        problems.append("cannot undo '%s': %s" % (earlier.description, undo_exc))
                    else:
                        undone += earlier is not step
                made = len([earlier for earlier in done if not earlier.reload])
                counted = "the %d" % made if undone == made else "%d of the %d" % (undone, made)
                msg = "%s: %s; rolled back %s change(s) made before it" % (step.description, exc, counted)
                if problems:
                    msg += " (" + "; ".join(problems) + ")"
                return msg
            done.append(step)
            self.done.append(step.description)
        return None
