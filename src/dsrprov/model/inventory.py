"""The Ansible YAML inventory: read it (variables merged the way Ansible merges
them, for what the CLI needs) and edit it without losing comments or order.

Reads use the inventory file, ``group_vars/`` and ``host_vars/`` next to it.
Values that are Jinja templates are rendered with plain Jinja and the
variables Ansible would offer (``inventory_dir``, ``inventory_hostname``, the
host's other variables); a value that needs Ansible itself (a lookup, a
vault) is left as it is and treated as unknown.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import ipaddress
import os
import re
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.nativetypes import NativeEnvironment
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from dsrprov.errors import UsageError

LINUX_GROUP = "dsr_realservers_linux"
WINDOWS_GROUP = "dsr_realservers_windows"
REALSERVERS_GROUP = "dsr_realservers"
OS_GROUPS = {"linux": LINUX_GROUP, "windows": WINDOWS_GROUP}
# A host beside the director sees the director answer; the director itself
# only sees the others (it holds the VIP), so it comes second.
VANTAGE_GROUPS = ("lab_clients", "dsr_directors")


class _SafeLoader(yaml.SafeLoader):
    """PyYAML loader that accepts Ansible's ``!vault`` and ``!unsafe`` tags."""


class VaultValue(str):
    """An encrypted value: known to exist, never decrypted by the CLI."""


def _vault(loader: yaml.SafeLoader, node: yaml.Node) -> VaultValue:
    return VaultValue("<vault>")


def _unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_SafeLoader.add_constructor("!vault", _vault)
_SafeLoader.add_constructor("!unsafe", _unsafe)


def _round_trip(explicit_start: bool = False) -> YAML:
    rt = YAML()
    rt.explicit_start = explicit_start
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


def resolve_path(path: str | Path) -> Path:
    """An inventory given as a directory means its hosts.yml (or hosts.yaml)."""
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        for name in ("hosts.yml", "hosts.yaml"):
            if (p / name).is_file():
                return p / name
        raise UsageError(f"inventory directory {p} has no hosts.yml")
    if not p.is_file():
        raise UsageError(f"inventory {p} does not exist")
    return p


@dataclass
class Host:
    """A host as the CLI sees it: name, groups and merged variables."""

    name: str
    groups: list[str]
    vars: dict[str, Any]

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host") or self.name)

    @property
    def os(self) -> str | None:
        if WINDOWS_GROUP in self.groups or self.vars.get("ansible_connection") in ("winrm", "psrp"):
            return "windows"
        if LINUX_GROUP in self.groups:
            return "linux"
        return None

    @property
    def vips(self) -> list[str]:
        raw = self.vars.get("dsr_vips")
        return [str(v) for v in raw] if isinstance(raw, list) else []

    @property
    def is_realserver(self) -> bool:
        return LINUX_GROUP in self.groups or WINDOWS_GROUP in self.groups

    def known_hosts(self) -> Path | None:
        """UserKnownHostsFile from ansible_ssh_common_args / _extra_args, if set."""
        args = " ".join(str(self.vars.get(k) or "") for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args"))
        try:
            words = shlex.split(args)
        except ValueError:
            words = args.split()
        for i, word in enumerate(words):
            opt = word
            if word == "-o" and i + 1 < len(words):
                opt = words[i + 1]
            m = re.match(r"(?i)UserKnownHostsFile[= ](\S+)", opt)
            if m:
                return Path(m.group(1)).expanduser()
        return None

    def private_key(self) -> Path | None:
        for key in ("ansible_ssh_private_key_file", "ansible_private_key_file"):
            value = self.vars.get(key)
            if isinstance(value, str) and value and "{{" not in value:
                return Path(value).expanduser()
        return None

    def str_var(self, key: str, default: str = "") -> str:
        value = self.vars.get(key)
        if value is None or isinstance(value, VaultValue) or (isinstance(value, str) and "{{" in value):
            return default
        return str(value)


@dataclass
class _Node:
    name: str
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    depth: int = 0


def _load_vars_dir(base: Path, name: str) -> dict[str, Any]:
    """group_vars/NAME.yml, NAME.yaml, NAME (file) or NAME/*.yml, merged."""
    out: dict[str, Any] = {}
    files: list[Path] = []
    for candidate in (base / f"{name}.yml", base / f"{name}.yaml", base / name):
        if candidate.is_file():
            files.append(candidate)
        elif candidate.is_dir():
            files.extend(sorted(p for p in candidate.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file()))
    for path in files:
        data = yaml.load(path.read_text(), Loader=_SafeLoader)
        if isinstance(data, dict):
            out.update(data)
    return out


class Inventory:
    """One YAML inventory file and the variable files next to it."""

    def __init__(self, path: str | Path) -> None:
        self.path = resolve_path(path)
        self.dir = self.path.parent
        self._text = self.path.read_text()
        try:
            self._doc: CommentedMap = _round_trip().load(self._text)
        except Exception as exc:  # ruamel raises many kinds
            raise UsageError(f"inventory {self.path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(self._doc, dict) or "all" not in self._doc:
            raise UsageError(f"inventory {self.path} has no top-level 'all' group")
        self._plain = yaml.load(self._text, Loader=_SafeLoader)
        self._groups: dict[str, _Node] = {}
        self._walk("all", self._plain.get("all") or {}, [], 0)

    # -- reading ------------------------------------------------------------
    def _walk(self, name: str, node: dict[str, Any], parents: list[str], depth: int) -> None:
        group = self._groups.setdefault(name, _Node(name))
        group.depth = max(group.depth, depth)
        group.parents.extend(p for p in parents if p not in group.parents)
        group.vars.update(node.get("vars") or {})
        for host, hv in (node.get("hosts") or {}).items():
            group.hosts[str(host)] = dict(hv or {})
        for child, sub in (node.get("children") or {}).items():
            self._walk(str(child), sub or {}, [*parents, name], depth + 1)

    def groups(self) -> list[str]:
        return list(self._groups)

    def group_hosts(self, group: str) -> list[str]:
        """Hosts of a group and of its children, in file order."""
        out: list[str] = []
        for name, node in self._groups.items():
            if name == group or group in node.parents:
                out.extend(h for h in node.hosts if h not in out)
        return out

    def hostnames(self) -> list[str]:
        return self.group_hosts("all")

    def has_host(self, name: str) -> bool:
        return name in self.hostnames()

    def find(self, name_or_address: str) -> str | None:
        """The inventory name of a host given by name or by its ansible_host."""
        if self.has_host(name_or_address):
            return name_or_address
        for name in self.hostnames():
            if str(self.host(name).vars.get("ansible_host", "")) == name_or_address:
                return name
        return None

    def host(
        self, name: str, *, extra_groups: list[str] | None = None, overrides: dict[str, Any] | None = None
    ) -> Host:
        """A host with its variables merged (inventory file, then group_vars, then host_vars).

        A host not (yet) in the inventory gets the variables of ``all`` and of
        ``extra_groups``, as it would once added there."""
        groups = [g for g, node in self._groups.items() if name in node.hosts]
        for g in extra_groups or []:
            if g not in groups:
                groups.append(g)
        closure: list[str] = []
        for g in groups:
            for p in [*self._groups.get(g, _Node(g)).parents, g]:
                if p not in closure:
                    closure.append(p)
        if "all" not in closure:
            closure.insert(0, "all")
        closure.sort(key=lambda g: (g != "all", self._groups.get(g, _Node(g)).depth))
        merged: dict[str, Any] = {}
        for g in closure:
            merged.update(self._groups.get(g, _Node(g)).vars)
        for g in closure:
            merged.update(_load_vars_dir(self.dir / "group_vars", g))
        for g in groups:
            merged.update(self._groups.get(g, _Node(g)).hosts.get(name, {}))
        merged.update(_load_vars_dir(self.dir / "host_vars", name))
        merged.update(overrides or {})
        magic = {
            "inventory_dir": str(self.dir),
            "inventory_file": str(self.path),
            "inventory_hostname": name,
            "inventory_hostname_short": name.split(".")[0],
            "group_names": sorted(g for g in closure if g != "all"),
        }
        return Host(name, [g for g in closure if g != "all"], _render_all(merged, magic))

    def vantage_host(self) -> str | None:
        """The host ARP probes run from: dsr_vantage_host, else a lab client, else a director."""
        chosen = self.host("__dsrprov_none__").vars.get("dsr_vantage_host")
        if isinstance(chosen, str) and chosen:
            return chosen
        for group in VANTAGE_GROUPS:
            hosts = self.group_hosts(group)
            if hosts:
                return hosts[0]
        return None

    def directors(self) -> list[str]:
        return self.group_hosts("dsr_directors")

    def services(self) -> list[dict[str, Any]]:
        """dsr_services (group_vars/all or all.vars): name, vip, port, protocol."""
        raw = self.host("__dsrprov_none__").vars.get("dsr_services") or []
        return [s for s in raw if isinstance(s, dict)]

    # -- editing -------------------------------------------------------------
    def _group_node(self, group: str, create: bool) -> CommentedMap | None:
        def find(node: Any, name: str) -> CommentedMap | None:
            children = node.get("children") if isinstance(node, dict) else None
            if not isinstance(children, dict):
                return None
            if name in children:
                if children[name] is None or not isinstance(children[name], dict):
                    children[name] = CommentedMap()
                return children[name]  # type: ignore[no-any-return]
            for sub in children.values():
                found = find(sub, name)
                if found is not None:
                    return found
            return None

        root = self._doc["all"]
        if root is None:
            root = self._doc["all"] = CommentedMap()
        found = find(root, group)
        if found is not None or not create:
            return found
        parent = find(root, REALSERVERS_GROUP)
        if parent is None:
            root.setdefault("children", CommentedMap())
            root["children"][REALSERVERS_GROUP] = CommentedMap()
            parent = root["children"][REALSERVERS_GROUP]
        if not isinstance(parent.get("children"), dict):
            parent["children"] = CommentedMap()
        parent["children"][group] = CommentedMap()
        return parent["children"][group]  # type: ignore[no-any-return]

    def set_realserver(
        self, name: str, os_name: str, vips: list[str], address: str | None = None, real_address6: str | None = None
    ) -> None:
        """Put the host in its real-server group with ``dsr_vips`` (and
        ``ansible_host``, and ``dsr_real_address6`` when given)."""
        group = OS_GROUPS[os_name]
        other = OS_GROUPS["windows" if os_name == "linux" else "linux"]
        if name in self.group_hosts(other):
            raise UsageError(f"already in the inventory as a member of {other}; unenroll it first", name)
        node = self._group_node(group, create=True)
        assert node is not None
        if not isinstance(node.get("hosts"), dict):
            node["hosts"] = CommentedMap()
        hosts = node["hosts"]
        entry = hosts.get(name)
        new = not isinstance(entry, dict)
        token = None
        if new:
            entry = CommentedMap()
        elif entry:
            # A comment after the entry's last line belongs after the keys we add.
            token = _take_trailing(hosts, name)
        if address and str(entry.get("ansible_host", "")) != address:
            entry["ansible_host"] = _quoted(address)
        if real_address6 and str(entry.get("dsr_real_address6", "")) != real_address6:
            entry["dsr_real_address6"] = _quoted(real_address6)
        seq = CommentedSeq(_quoted(v) for v in vips)
        seq.fa.set_flow_style()
        old = entry.get("dsr_vips")
        if not (isinstance(old, list) and [str(v) for v in old] == vips):
            entry["dsr_vips"] = seq
        if token is not None:
            leaf, lkey = _leaf(hosts, name)
            leaf.ca.items.setdefault(lkey, [None, None, None, None])[2] = token
        if new:
            last = list(hosts)[-1] if hosts else None
            hosts[name] = entry
            if last is not None:
                # A comment after the last host belongs to what follows it.
                _put_trailing(hosts, _take_trailing(hosts, last))

    def remove_realserver(self, name: str) -> bool:
        """Remove the host from the real-server groups; True when it was there."""
        removed = False
        for group in (LINUX_GROUP, WINDOWS_GROUP):
            node = self._group_node(group, create=False)
            if node is not None and isinstance(node.get("hosts"), dict) and name in node["hosts"]:
                hosts = node["hosts"]
                keys = list(hosts)
                token = _take_trailing(hosts, name) if keys[-1] == name else None
                del hosts[name]
                if token is not None and hosts:
                    _put_trailing(hosts, token)
                if not hosts:
                    del node["hosts"]
                removed = True
        return removed

    def dump(self) -> str:
        buf = io.StringIO()
        _round_trip(self._text.lstrip().startswith("---")).dump(self._doc, buf)
        return buf.getvalue()

    def changed(self) -> bool:
        return self.dump() != self._text

    def save(self, path: Path | None = None) -> None:
        """Write atomically (same directory, same mode)."""
        target = path or self.path
        text = self.dump()
        fd, tmp = tempfile.mkstemp(prefix=".dsrprov-", suffix=".yml", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise edits of one inventory (a lock on its directory)."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
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


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_ENV = NativeEnvironment(undefined=jinja2.StrictUndefined)


def _render_all(raw: dict[str, Any], magic: dict[str, Any]) -> dict[str, Any]:
    """Render templated values until nothing more can be rendered."""
    values: dict[str, Any] = {**raw}
    pending = {k for k, v in values.items() if _templated(v)}
    for _ in range(6):
        if not pending:
            break
        progressed = False
        for key in sorted(pending):
            ctx = {**values, **magic}
            try:
                values[key] = _render(values[key], ctx)
            except Exception:  # an undefined variable, an Ansible-only filter or lookup
                continue
            if not _templated(values[key]):
                pending.discard(key)
                progressed = True
        if not progressed:
            break
    return values


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    if isinstance(value, dict):
        return any(_templated(v) for v in value.values())
    return False


def _render(value: Any, ctx: dict[str, Any]) -> Any:
    if isinstance(value, str) and _templated(value):
        return _ENV.from_string(value).render(ctx)
    if isinstance(value, list):
        return [_render(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, ctx) for k, v in value.items()}
    return value
