"""Edits of an inventory's YAML files: minimal, safe, or refused.

Only the one static YAML file that defines a host is edited (ruamel round
trip: comments, order, quoting and the document end marker kept). What cannot
be edited safely is refused in one line before anything changes: a host
defined in several files, a host or group built from anchors or merge keys
(an edit would spread to others), a host that an INI, script or plugin source
defines. Files are written atomically (temporary file, fsync, rename, fsync of
the directory) with their owner, group and mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from dsrprov.errors import UsageError

LINUX_GROUP = "dsr_realservers_linux"
WINDOWS_GROUP = "dsr_realservers_windows"
REALSERVERS_GROUP = "dsr_realservers"
OS_GROUPS = {"linux": LINUX_GROUP, "windows": WINDOWS_GROUP}
YAML_EXTENSIONS = ("", ".yml", ".yaml", ".json")
CLI_WRITES = ("ansible_host", "dsr_vips", "dsr_real_address6")


def _round_trip() -> YAML:
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


@dataclass
class SourceFile:
    """One file of an inventory source and what kind of source it is."""

    path: Path
    kind: str  # yaml, ini, script, plugin
    text: str = ""
    doc: Any = None
    edited: bool = False
    tail: str = ""  # a document end marker and the comments before it, kept as they are

    def dump(self) -> str:
        if not self.edited:
            return self.text
        buf = io.StringIO()
        rt = _round_trip()
        rt.explicit_start = self.text.lstrip().startswith("---")
        rt.dump(self.doc, buf)
        return buf.getvalue() + self.tail


# The end of a document: comment or blank lines, then "...", then anything.
# ruamel drops the comments before "..." (they belong to no node): split off.
_TAIL = re.compile(r"(?:^[ \t]*(?:#[^\n]*)?\n)*^\.\.\.[ \t]*(?:#[^\n]*)?$(?:.|\n)*\Z", re.M)


def _split_tail(text: str) -> tuple[str, str]:
    m = _TAIL.search(text)
    return (text[: m.start()], text[m.start() :]) if m else (text, "")


def source_files(source: Path) -> list[SourceFile]:
    """The files Ansible reads as inventory sources for ``source`` (its ignore rules)."""
    from ansible import constants as C

    ignored = tuple(C.INVENTORY_IGNORE_EXTS)
    patterns = [re.compile(p) for p in C.INVENTORY_IGNORE_PATTERNS]
    if source.is_file():
        paths = [source]
    else:
        paths = []
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("group_vars", "host_vars"))
            for f in sorted(files):
                if f.startswith(".") or f.endswith(ignored) or any(p.search(f) for p in patterns):
                    continue
                paths.append(Path(root) / f)
    return [_classify(p) for p in paths]


def _classify(path: Path) -> SourceFile:
    if os.access(path, os.X_OK):
        return SourceFile(path, "script")
    text = path.read_text(errors="replace")
    if path.suffix not in YAML_EXTENSIONS:
        return SourceFile(path, "ini", text)
    body, tail = _split_tail(text)
    try:
        doc = _round_trip().load(body)
    except Exception:  # not YAML: the INI plugin's
        return SourceFile(path, "ini", text)
    if not isinstance(doc, CommentedMap):
        return SourceFile(path, "ini" if doc is not None else "yaml", text, doc)
    if isinstance(doc.get("plugin"), str):
        return SourceFile(path, "plugin", text, doc)
    return SourceFile(path, "yaml", text, doc, tail=tail)


@dataclass
class Entry:
    """A host's entry in a group's ``hosts`` of one YAML file."""

    file: SourceFile
    group: str
    hosts: CommentedMap
    name: str


def _groups(doc: CommentedMap) -> Iterator[tuple[str, CommentedMap]]:
    """Every group node of a YAML inventory document, depth first."""

    def walk(name: str, node: Any) -> Iterator[tuple[str, CommentedMap]]:
        if not isinstance(node, CommentedMap):
            return
        yield name, node
        children = node.get("children")
        if isinstance(children, CommentedMap):
            for child, sub in children.items():
                yield from walk(str(child), sub)

    for name, node in doc.items():
        yield from walk(str(name), node)


def _anchored(node: Any) -> bool:
    """True when a node (or anything in it) is an anchor, an alias target or merges one."""
    anchor = getattr(node, "anchor", None)
    if anchor is not None and getattr(anchor, "value", None):
        return True
    if isinstance(node, CommentedMap):
        if getattr(node, "merge", None):
            return True
        return any(_anchored(v) for v in node.values())
    if isinstance(node, CommentedSeq):
        return any(_anchored(v) for v in node)
    return False


@dataclass
class InventoryFiles:
    """The YAML files of one inventory source, for edits."""

    source: Path
    default: Path
    files: list[SourceFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.files = source_files(self.source)

    def yaml_files(self) -> list[SourceFile]:
        return [f for f in self.files if f.kind == "yaml" and isinstance(f.doc, CommentedMap)]

    def entries(self, name: str) -> list[Entry]:
        out = []
        for f in self.yaml_files():
            for group, node in _groups(f.doc):
                hosts = node.get("hosts")
                if isinstance(hosts, CommentedMap) and name in hosts:
                    out.append(Entry(f, group, hosts, name))
        return out

    def defining_file(self, name: str, known: bool) -> SourceFile | None:
        """The one YAML file that defines the host; refuses what is unsafe to edit."""
        files = {e.file.path: e.file for e in self.entries(name)}
        if len(files) > 1:
            shown = ", ".join(str(p) for p in files)
            raise UsageError(f"defined in several inventory files ({shown}): refused; keep it in one file", name)
        if not files:
            if known:
                others = [f"{f.path} ({f.kind})" for f in self.files if f.kind != "yaml"]
                where = ", ".join(others) or "a source dsrprov cannot edit"
                raise UsageError(f"defined by {where}, which dsrprov does not edit: change it there by hand", name)
            return None
        return next(iter(files.values()))

    def _refuse_anchors(self, name: str, node: Any, what: str) -> None:
        if _anchored(node):
            raise UsageError(
                f"{what} uses YAML anchors/aliases or merge keys shared with other entries: refused (an edit would "
                "change them too); write it out in full first",
                name,
            )

    def _group_node(self, f: SourceFile, group: str, create: bool) -> CommentedMap | None:
        for g, node in _groups(f.doc):
            if g == group:
                return node
        # An empty group written as `group:` or `group: {}` is None/empty: make it a mapping.
        for _g, node in _groups(f.doc):
            children = node.get("children")
            if isinstance(children, CommentedMap) and group in children and not isinstance(children[group], dict):
                children[group] = CommentedMap()
                return children[group]  # type: ignore[no-any-return]
        if not create:
            return None
        parent = self._group_node(f, REALSERVERS_GROUP, create=False)
        if parent is None:
            root = f.doc.get("all")
            if not isinstance(root, CommentedMap):
                root = f.doc["all"] = CommentedMap()
            if not isinstance(root.get("children"), CommentedMap):
                root["children"] = CommentedMap()
            root["children"][REALSERVERS_GROUP] = CommentedMap()
            parent = root["children"][REALSERVERS_GROUP]
        if not isinstance(parent.get("children"), CommentedMap):
            parent["children"] = CommentedMap()
        parent["children"][group] = CommentedMap()
        return parent["children"][group]  # type: ignore[no-any-return]

    def _target_for_new(self, group: str) -> SourceFile:
        for f in self.yaml_files():
            if any(g == group for g, _ in _groups(f.doc)):
                return f
        for f in self.yaml_files():
            if f.path == self.default:
                return f
        yamls = self.yaml_files()
        if yamls:
            return yamls[0]
        raise UsageError(f"inventory {self.source} has no YAML file dsrprov can add a host to")

    def set_realserver(
        self,
        name: str,
        os_name: str,
        vips: list[str],
        *,
        rs_groups: set[str],
        known: bool,
        address: str | None = None,
        real_address6: str | None = None,
        inherited: dict[str, Any] | None = None,
    ) -> SourceFile:
        """Put the host in its real-server group (or keep it in the descendant
        group it is in) with ``dsr_vips`` and, when given, ``ansible_host`` and
        ``dsr_real_address6``. ``rs_groups``: the OS group and its descendants.
        A value the host already gets from elsewhere (``inherited``, e.g. a
        group default) is not written into its entry."""
        inherited = inherited or {}

        def wanted(key: str, value: object) -> bool:
            return key in entry or inherited.get(key) != value

        group = OS_GROUPS[os_name]
        f = self.defining_file(name, known)
        entries = [e for e in self.entries(name) if f is not None and e.file is f]
        here = [e for e in entries if e.group in rs_groups]
        if f is None:
            f = self._target_for_new(group)
        for e in entries:
            self._refuse_anchors(name, e.hosts.get(e.name), f"its entry in {f.path}")
        parked = [e for e in entries if e.group == "all" and not here]
        if here:
            hosts, entry, new = here[0].hosts, here[0].hosts[name], False
            if not isinstance(entry, CommentedMap):
                entry = hosts[name] = CommentedMap()
        else:
            node = self._group_node(f, group, create=True)
            assert node is not None
            self._refuse_anchors(name, node, f"group {group} in {f.path}")
            if not isinstance(node.get("hosts"), CommentedMap):
                node["hosts"] = CommentedMap()
            hosts, new = node["hosts"], True
            entry = CommentedMap()
            if parked:  # unenrolled earlier: its entry comes back whole
                old = parked[0].hosts
                if isinstance(old[name], CommentedMap):
                    entry = old[name]
                _remove_key(old, name)
                root = f.doc.get("all")
                if isinstance(root, CommentedMap) and isinstance(root.get("hosts"), CommentedMap) and not root["hosts"]:
                    del root["hosts"]
        token = _take_trailing(hosts, name) if not new and entry else None
        if address and str(entry.get("ansible_host", "")) != address and wanted("ansible_host", address):
            entry["ansible_host"] = _quoted(address)
        if (
            real_address6
            and str(entry.get("dsr_real_address6", "")) != real_address6
            and wanted("dsr_real_address6", real_address6)
        ):
            entry["dsr_real_address6"] = _quoted(real_address6)
        old_vips = entry.get("dsr_vips")
        same = isinstance(old_vips, list) and [str(v) for v in old_vips] == vips
        if not same and wanted("dsr_vips", vips):
            seq = CommentedSeq(_quoted(v) for v in vips)
            seq.fa.set_flow_style()
            entry["dsr_vips"] = seq
        if token is not None:
            leaf, lkey = _leaf(hosts, name)
            leaf.ca.items.setdefault(lkey, [None, None, None, None])[2] = token
        if new:
            last = list(hosts)[-1] if hosts else None
            hosts[name] = entry
            if last is not None:
                _put_trailing(hosts, _take_trailing(hosts, last))
        f.edited = True
        return f

    def remove_realserver(self, name: str, *, rs_groups: set[str], known: bool) -> SourceFile | None:
        """Take the host out of the real-server groups (``rs_groups``: both OS
        groups and their descendants). A host left in no other group of the
        file keeps its entry (variables, comments) under ``all.hosts``, so
        that other plays and a later enroll still have them, unless it holds
        only what enroll writes."""
        f = self.defining_file(name, known)
        if f is None:
            return None
        entries = [e for e in self.entries(name) if e.file is f]
        rs = [e for e in entries if e.group in rs_groups]
        if not rs:
            return None
        for e in rs:
            self._refuse_anchors(name, e.hosts.get(name), f"its entry in {f.path}")
        kept = rs[0].hosts.get(name)
        for e in rs:
            _remove_key(e.hosts, name)
        own = isinstance(kept, CommentedMap) and any(k not in CLI_WRITES for k in kept)
        if len(rs) == len(entries) and own:
            root = f.doc.get("all")
            if not isinstance(root, CommentedMap):
                root = f.doc["all"] = CommentedMap()
            if not isinstance(root.get("hosts"), CommentedMap):
                root["hosts"] = CommentedMap()
            last = list(root["hosts"])[-1] if root["hosts"] else None
            root["hosts"][name] = kept
            if last is not None:
                _put_trailing(root["hosts"], _take_trailing(root["hosts"], last))
        emptied = [e.hosts for e in rs if not e.hosts]
        for _g, node in _groups(f.doc):
            if any(node.get("hosts") is h for h in emptied):
                del node["hosts"]
        f.edited = True
        return f

    def changed(self) -> dict[Path, str]:
        """The new text of each file an edit changed."""
        return {f.path: f.dump() for f in self.files if f.edited and f.dump() != f.text}

    def save(self) -> list[Path]:
        written = []
        for path, text in self.changed().items():
            write_atomic(path, text)
            written.append(path)
        return written


def _remove_key(hosts: CommentedMap, name: str) -> None:
    keys = list(hosts)
    token = _take_trailing(hosts, name) if keys and keys[-1] == name else None
    del hosts[name]
    if token is not None and hosts:
        _put_trailing(hosts, token)


def write_atomic(path: Path, text: str) -> None:
    """Replace a file atomically, with its owner, group and mode, fsynced."""
    st = path.stat() if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=".dsrprov-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            if st is not None:
                os.fchmod(fh.fileno(), st.st_mode & 0o7777)
                with contextlib.suppress(PermissionError):
                    os.fchown(fh.fileno(), st.st_uid, st.st_gid)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def locked(path: Path, wait: float | None = None) -> Iterator[None]:
    """Serialise commands that change one inventory: a lock on its directory,
    held for the whole command. Another holder is waited for up to ``wait``
    seconds (default: $DSRPROV_LOCK_WAIT, else 30), then the command is refused."""
    if wait is None:
        wait = float(os.environ.get("DSRPROV_LOCK_WAIT") or 30)
    target = path if path.is_dir() else path.parent
    try:
        fd = os.open(target, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"cannot lock the inventory {path}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise UsageError(
                        f"the inventory {path} is locked by another dsrprov command (waited {wait:.0f} s): "
                        "try again when it has finished"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def _quoted(text: str) -> str:
    """IPv6 addresses are quoted, as in the rest of the inventory."""
    return DoubleQuotedScalarString(text) if ":" in text else text


def _leaf(node: CommentedMap, key: Any) -> tuple[CommentedMap, Any]:
    """The mapping and key that a comment after ``node[key]`` is attached to."""
    while isinstance(node[key], CommentedMap) and len(node[key]):
        node = node[key]
        key = list(node)[-1]
    return node, key


def _take_trailing(node: CommentedMap, key: Any) -> Any:
    leaf, lkey = _leaf(node, key)
    items = leaf.ca.items.get(lkey)
    if not items or len(items) < 3 or items[2] is None:
        return None
    token = items[2]
    items[2] = None
    return token


def _put_trailing(node: CommentedMap, token: Any) -> None:
    if token is None or not node:
        return
    leaf, lkey = _leaf(node, list(node)[-1])
    items = leaf.ca.items.setdefault(lkey, [None, None, None, None])
    items[2] = token
