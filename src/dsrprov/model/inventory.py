"""The inventory as the CLI sees it: read by ansible-core (``ansible_view``),
once per command, and edited safely (``inventory_files``).

``Inventory(SOURCE)`` takes what the user gives ``ansible-playbook -i``: a
file, a directory, an INI file, a script or a plugin configuration. Nothing
here merges or templates variables: Ansible does.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsrprov.errors import UsageError
from dsrprov.model.ansible_view import AnsibleView, RenderedVars
from dsrprov.model.inventory_files import (
    LINUX_GROUP,
    OS_GROUPS,
    REALSERVERS_GROUP,
    WINDOWS_GROUP,
    InventoryFiles,
    SourceFile,
    locked,
    write_atomic,
)

# A host beside the director sees the director answer; the director itself
# only sees the others (it holds the VIP), so it comes second.
VANTAGE_GROUPS = ("lab_clients", "dsr_directors")
# Characters that make a host name an Ansible pattern (--limit would select
# other hosts): refused in names the CLI writes or limits to.
_PATTERN = re.compile(r"[!&:,*\[\]\s]|^~")

__all__ = [
    "LINUX_GROUP",
    "OS_GROUPS",
    "REALSERVERS_GROUP",
    "VANTAGE_GROUPS",
    "WINDOWS_GROUP",
    "Host",
    "Inventory",
    "check_host_name",
    "is_ip",
    "locked",
    "resolve_path",
    "write_atomic",
]


def resolve_path(path: str | Path) -> Path:
    """The inventory source as given (a directory stays a directory)."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise UsageError(f"inventory {p} does not exist")
    return p


def check_host_name(name: str) -> None:
    """Refuse a host name that Ansible would read as a pattern (``!rs1`` selects every other host)."""
    if is_ip(name):
        return
    if not name or _PATTERN.search(name):
        raise UsageError(
            "is not a plain host name: Ansible would read it as a host pattern (! & : , * [ ] ~ or a space); refused",
            name,
        )


@dataclass
class Host:
    """A host as the CLI sees it: name, groups and variables (rendered by Ansible on first read)."""

    name: str
    groups: list[str]
    vars: Mapping[str, Any]

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
            if isinstance(value, str) and value:
                return Path(value).expanduser()
        return None

    def str_var(self, key: str, default: str = "") -> str:
        value = self.vars.get(key)
        return default if value is None else str(value)


class Inventory:
    """One inventory source, read once by Ansible; a typed view of it."""

    def __init__(self, source: str | Path, *, overlays: Sequence[Path] = ()) -> None:
        self.source = resolve_path(source)
        self.dir = self.source if self.source.is_dir() else self.source.parent
        if self.source.is_dir():
            found = [self.dir / n for n in ("hosts.yml", "hosts.yaml") if (self.dir / n).is_file()]
            self.path = found[0] if found else self.dir / "hosts.yml"
        else:
            self.path = self.source
        self._view = AnsibleView([self.source, *overlays])
        self._hosts: dict[str, Host] = {}
        self._files: InventoryFiles | None = None

    # -- reading ------------------------------------------------------------
    def groups(self) -> list[str]:
        return self._view.groups()

    def group_hosts(self, group: str) -> list[str]:
        """Hosts of a group and of its descendants."""
        return self._view.group_hosts(group)

    def descendants(self, group: str) -> set[str]:
        """The group and every group below it."""
        return {g for g in self._view.groups() if g == group or group in self._view.group_ancestors(g)}

    def hostnames(self) -> list[str]:
        return self._view.hostnames()

    def has_host(self, name: str) -> bool:
        return self._view.has_host(name)

    def find(self, name_or_address: str) -> str | None:
        """The inventory name of a host given by name or by its ansible_host."""
        if self.has_host(name_or_address):
            return name_or_address
        for name in self.hostnames():
            if str(self.host(name).vars.get("ansible_host") or "") == name_or_address:
                return name
        return None

    def host(
        self, name: str, *, extra_groups: list[str] | None = None, overrides: dict[str, Any] | None = None
    ) -> Host:
        """A host with its variables as Ansible merges them.

        A host not (yet) in the inventory gets the variables of ``all`` and of
        ``extra_groups``, as it would once added there; ``overrides`` win over
        the inventory (the values a command is about to write)."""
        plain = not extra_groups and not overrides
        if plain and name in self._hosts:
            return self._hosts[name]
        raw = self._view.raw_vars(name, extra_groups=extra_groups or [], inventory_dir=self.dir)
        raw.update(overrides or {})
        groups = [str(g) for g in raw.get("group_names") or []]
        host = Host(name, groups, RenderedVars(self._view, raw))
        if plain:
            self._hosts[name] = host
        return host

    def _all_vars(self) -> Host:
        return self.host("__dsrprov_none__", extra_groups=["all"])

    def vantage_host(self) -> str | None:
        """The host ARP probes run from: dsr_vantage_host, else a lab client, else a director."""
        chosen = self._all_vars().vars.get("dsr_vantage_host")
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
        """dsr_services as the directors get it (else as group ``all`` has it)."""
        directors = self.directors()
        host = self.host(directors[0]) if directors else self._all_vars()
        raw = host.vars.get("dsr_services") or []
        return [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []

    # -- editing -------------------------------------------------------------
    def files(self) -> InventoryFiles:
        """The source's YAML files, loaded for edits once."""
        if self._files is None:
            self._files = InventoryFiles(self.source, self.path)
        return self._files

    def reset_edits(self) -> None:
        """Forget edits made in memory: the next edit starts from the files."""
        self._files = None

    def set_realserver(
        self, name: str, os_name: str, vips: list[str], address: str | None = None, real_address6: str | None = None
    ) -> SourceFile:
        """Put the host in its real-server group with ``dsr_vips`` (and
        ``ansible_host``, and ``dsr_real_address6`` when given), in the one
        file that defines it."""
        check_host_name(name)
        other = OS_GROUPS["windows" if os_name == "linux" else "linux"]
        if name in self.group_hosts(other):
            raise UsageError(f"already in the inventory as a member of {other}; unenroll it first", name)
        # What the host gets without an edit (group defaults): not written again.
        now = self.host(name, extra_groups=[OS_GROUPS[os_name]])
        inherited = {
            "ansible_host": now.vars.get("ansible_host"),
            "dsr_vips": now.vips if "dsr_vips" in now.vars else None,
            "dsr_real_address6": now.vars.get("dsr_real_address6"),
        }
        return self.files().set_realserver(
            name,
            os_name,
            vips,
            rs_groups=self.descendants(OS_GROUPS[os_name]),
            known=self.has_host(name),
            address=address,
            real_address6=real_address6,
            inherited=inherited,
        )

    def remove_realserver(self, name: str) -> bool:
        """Remove the host from the real-server groups; True when it was there."""
        groups = self.descendants(LINUX_GROUP) | self.descendants(WINDOWS_GROUP)
        return self.files().remove_realserver(name, rs_groups=groups, known=self.has_host(name)) is not None

    def dump(self) -> str:
        """The text of the main file (hosts.yml, or the file given), edits included."""
        for f in self.files().files:
            if f.path == self.path:
                return f.dump()
        return ""

    def changed(self) -> bool:
        return bool(self.files().changed())

    def save(self) -> list[Path]:
        return self.files().save()


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
