"""An inventory read by ansible-core itself, exactly as ansible-playbook reads it.

``DataLoader`` + ``InventoryManager`` + ``VariableManager``: every inventory
plugin (YAML, INI, script, ``constructed``, ...), directory sources, child
groups, group priority and the ``group_vars/``/``host_vars/`` beside the
inventory mean what they mean to Ansible. Values are templated by Ansible's
own templar (its sandbox; ``!unsafe`` is never templated), one variable at a
time and only when the CLI asks for it. A value that cannot be rendered here
(a vault without its password, an undefined variable, a refused attribute)
is *unknown*: ``None``, never the raw template.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from dsrprov.errors import UsageError


class Unknown:
    """A value the CLI cannot know (vault without password, failed template)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = Unknown()
_LOADER_READY = False


def _ansible() -> Any:
    """Import ansible-core lazily (it costs ~0.3 s) and make an unparsable
    source an error, as the CLI must not act on a partly read inventory."""
    from ansible import constants as C

    C.INVENTORY_ANY_UNPARSED_IS_FAILED = True
    C.INVENTORY_UNPARSED_IS_FAILED = True
    global _LOADER_READY
    if not _LOADER_READY:
        # As ansible's own CLIs do: plugins by FQCN (ansible.builtin.constructed), collections' plugins.
        from ansible.plugins.loader import init_plugin_loader

        from dsrprov.paths import collections_root

        # This package's collection first (as ansible-playbook gets it), then the user's.
        ours = str(collections_root())
        init_plugin_loader([ours, *(str(p) for p in C.COLLECTIONS_PATHS or [] if str(p) != ours)])
        _adopt_imported_collections()
        _LOADER_READY = True
    return C


def _adopt_imported_collections() -> None:
    """Collection packages imported before Ansible's collection finder was set
    up (the CLI imports the collection's shared rules as plain Python) get the
    metadata the finder expects of them (their meta/runtime.yml), so that
    their submodules still import afterwards."""
    import yaml

    for name, module in list(sys.modules.items()):
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "ansible_collections" or hasattr(module, "_collection_meta"):
            continue
        meta: dict[str, Any] = {}
        for path in getattr(module, "__path__", []):
            runtime = Path(path) / "meta" / "runtime.yml"
            if runtime.is_file():
                meta = yaml.safe_load(runtime.read_text()) or {}
                break
        module._collection_meta = meta  # type: ignore[attr-defined]


def _vault_secrets(loader: Any) -> None:
    """A vault password given the way Ansible takes it (ANSIBLE_VAULT_PASSWORD_FILE,
    vault_identity_list in ansible.cfg); without one, vault values stay unknown."""
    from ansible import constants as C

    files = [f for f in [C.DEFAULT_VAULT_PASSWORD_FILE] if f]
    if not files and not C.DEFAULT_VAULT_IDENTITY_LIST:
        return
    from ansible.cli import CLI

    secrets = CLI.setup_vault_secrets(
        loader, vault_ids=list(C.DEFAULT_VAULT_IDENTITY_LIST), vault_password_files=files, ask_vault_pass=False
    )
    loader.set_vault_secrets(secrets)


class AnsibleView:
    """The hosts, groups and variables of one or more inventory sources."""

    def __init__(self, sources: Sequence[Path]) -> None:
        _ansible()
        from ansible.errors import AnsibleError
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.vars.manager import VariableManager

        for src in sources:
            if not os.path.exists(src):
                raise UsageError(f"inventory {src} does not exist")
        self.loader = DataLoader()
        try:
            _vault_secrets(self.loader)
            self.im = InventoryManager(loader=self.loader, sources=[str(s) for s in sources])
        except AnsibleError as exc:
            first = str(exc.message if hasattr(exc, "message") else exc).strip().splitlines()
            raise UsageError(f"inventory {sources[0]}: {first[0] if first else 'not readable'}") from None
        self.vm = VariableManager(loader=self.loader, inventory=self.im)

    def groups(self) -> list[str]:
        return list(self.im.groups)

    def group_hosts(self, group: str) -> list[str]:
        """Hosts of a group and of its descendants, in Ansible's order."""
        g = self.im.groups.get(group)
        return [h.name for h in g.get_hosts()] if g is not None else []

    def group_ancestors(self, group: str) -> set[str]:
        g = self.im.groups.get(group)
        return {a.name for a in g.get_ancestors()} if g is not None else set()

    def hostnames(self) -> list[str]:
        return [h.name for h in self.im.get_hosts()]

    def has_host(self, name: str) -> bool:
        return self.im.get_host(name) is not None

    def host_groups(self, name: str) -> list[str]:
        h = self.im.get_host(name)
        return [g.name for g in h.get_groups() if g.name != "all"] if h is not None else []

    def raw_vars(
        self, name: str, *, extra_groups: Sequence[str] = (), inventory_dir: Path | None = None
    ) -> dict[str, Any]:
        """A host's merged variables, not templated. A host not in the inventory
        is a stand-in of ``extra_groups`` (and ``all``): what it would get once added."""
        from ansible.inventory.host import Host as AnsibleHost

        host = self.im.get_host(name)
        if host is None or extra_groups:
            stand_in = AnsibleHost(name)
            if host is not None:
                for k, v in host.vars.items():
                    stand_in.set_variable(k, v)
                for g in host.get_groups():
                    stand_in.add_group(g)
            elif inventory_dir is not None:
                stand_in.set_variable("inventory_dir", str(inventory_dir))
                stand_in.set_variable("inventory_file", str(inventory_dir / "hosts.yml"))
            stand_in.add_group(self.im.groups["all"])
            for g in extra_groups:
                if g in self.im.groups:
                    stand_in.add_group(self.im.groups[g])
            host = stand_in
        return dict(self.vm.get_vars(host=host, include_hostvars=False))

    def render(self, variables: Mapping[str, Any], value: Any) -> Any:
        """One value templated by Ansible's templar, or UNKNOWN."""
        from ansible.template import Templar

        try:
            out = Templar(loader=self.loader, variables=dict(variables)).template(value)
            return _plain(out)
        except Exception:  # undefined, refused by the sandbox, vault without password
            return UNKNOWN


def _plain(value: Any) -> Any:
    """Ansible's tagged/lazy containers as plain Python (forcing vault values)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)


class RenderedVars(Mapping[str, Any]):
    """A host's variables; each is templated when first read. An unknown
    value reads as None."""

    def __init__(self, view: AnsibleView, raw: dict[str, Any]) -> None:
        self._view = view
        self._raw = raw
        self._done: dict[str, Any] = {}

    def _value(self, key: str) -> Any:
        if key not in self._done:
            self._done[key] = self._view.render(self._raw, self._raw[key])
        return self._done[key]

    def __getitem__(self, key: str) -> Any:
        if key not in self._raw:
            raise KeyError(key)
        value = self._value(key)
        return None if value is UNKNOWN else value

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def is_unknown(self, key: str) -> bool:
        return key in self._raw and self._value(key) is UNKNOWN
