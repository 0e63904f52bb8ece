"""The director role skips a copy/template task whose result is in place:
dsr_director_facts reads the files' state, the dsr_file_in_place filter
compares it with what the task would write. Wrong either way costs: a file
taken as in place when it is not is never repaired (the lab test
test_the_director_skips_files_in_place_and_repairs_those_changed_behind_its_back
shows the repair end to end)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.dsrprov.dsr.plugins.filter.file_state import in_place
from ansible_collections.dsrprov.dsr.plugins.modules import dsr_director_facts as facts

ROOT_OWNED = os.geteuid() == 0


def state(path: Path) -> dict[str, Any]:
    return facts.file_state(str(path))


@pytest.mark.skipif(not ROOT_OWNED, reason="the filter wants root-owned files: run as root")
def test_a_file_is_in_place_only_with_its_content_and_mode(tmp_path: Path) -> None:
    f = tmp_path / "unit"
    f.write_text("[Unit]\nDescription=x\n")
    f.chmod(0o644)
    s = state(f)
    assert s == {"exists": True, "dir": False, "sha1": hashlib.sha1(f.read_bytes()).hexdigest(), "mode": "0644",
                 "uid": 0, "gid": 0}  # fmt: skip
    assert in_place(s, "[Unit]\nDescription=x\n")
    assert not in_place(s, "[Unit]\nDescription=x")  # a newline less
    assert not in_place(s, "[Unit]\nDescription=x\n", "0755")
    f.chmod(0o600)
    assert not in_place(state(f), "[Unit]\nDescription=x\n")
    os.chown(f, 0, 1)
    f.chmod(0o644)
    assert not in_place(state(f), "[Unit]\nDescription=x\n")  # group not root
    assert in_place(state(tmp_path), mode="%04o" % (tmp_path.stat().st_mode & 0o7777), directory=True)
    assert not in_place(state(tmp_path), "", mode="%04o" % (tmp_path.stat().st_mode & 0o7777))  # a dir is no file
    assert not in_place(s, mode="0644", directory=True)  # a file is no dir


def test_anything_unknown_is_not_in_place(tmp_path: Path) -> None:
    missing = state(tmp_path / "missing")
    assert missing["exists"] is False and missing["sha1"] == ""
    for s in (missing, None, {}, "x", {"exists": True}):
        assert not in_place(s, "")
    # Content that is not text (a template lookup gone wrong) never matches.
    s = {"exists": True, "dir": False, "sha1": hashlib.sha1(b"1").hexdigest(), "mode": "0644", "uid": 0, "gid": 0}
    assert in_place(s, "1") and not in_place(s, 1)


class FakeModule:
    def __init__(self, out: str) -> None:
        self.out = out
        self.calls: list[list[str]] = []

    def run_command(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        return 0, self.out, ""


def test_units_are_read_in_one_systemctl_call() -> None:
    out = (
        "Id=dsrprov-dsr-path.service\nActiveState=active\nUnitFileState=enabled\n\n"
        "Id=other.service\nActiveState=inactive\nUnitFileState=\n"
    )
    module = FakeModule(out)
    got = facts.unit_states(module, "/bin/systemctl", ["dsrprov-dsr-path.service", "other.service"])
    assert got == {
        "dsrprov-dsr-path.service": {"active": True, "enabled": True},
        "other.service": {"active": False, "enabled": False},
    }
    assert len(module.calls) == 1 and module.calls[0][-2:] == ["dsrprov-dsr-path.service", "other.service"]
    assert facts.unit_states(module, "", ["a.service"]) == {"a.service": {"active": False, "enabled": False}}
    assert facts.unit_states(FakeModule(""), "/bin/systemctl", ["a.service"]) == {
        "a.service": {"active": False, "enabled": False}
    }
