"""Syntax check for PowerShell, without PowerShell.

Finds PowerShell in ``.ps1``/``.psm1`` files and in Ansible YAML (the
``script`` of ``ansible.windows.win_powershell``, the command of
``ansible.windows.win_shell``), parses it with tree-sitter-powershell and
reports every ERROR or MISSING node as ``file:line:column``.

Jinja in embedded scripts (``{{ ... }}``, ``{% ... %}``) is replaced by a
PowerShell variable or blanks of the same line count before parsing, so line
numbers stay those of the YAML file.

``csharp_blocks`` finds, in the same parse trees, the C# source of every
``Add-Type`` and ``Add-CSharpType`` call (a here-string or string literal
given directly, or through a variable assigned one in the same script), so
that tests/unit/test_windows_csharp.py can compile each one. A call whose source
cannot be read that way is reported, never skipped.

Usage: ``python tests/powershell_syntax.py [PATH ...]`` (files or
directories; default: the Windows role and its molecule scenario). Exit
status 1 when a problem is found.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tree_sitter
import tree_sitter_powershell
import yaml  # type: ignore[import-untyped,unused-ignore]

PS_SUFFIXES = {".ps1", ".psm1"}
YAML_SUFFIXES = {".yml", ".yaml"}
# Modules whose argument is PowerShell: module name -> key holding the script.
# ``None`` means the free-form string itself (``win_shell: Get-Item x``).
POWERSHELL_MODULES = {
    "ansible.windows.win_powershell": "script",
    "win_powershell": "script",
    "ansible.windows.win_shell": "cmd",
    "win_shell": "cmd",
}
DEFAULT_PATHS = (
    "src/ansible_collections/dsrprov/dsr/roles/dsr_realserver_windows",
    "src/ansible_collections/dsrprov/dsr/plugins/modules",
    "molecule/windows",
)

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    """A piece of PowerShell and where its first line sits in its file."""

    path: str
    first_line: int  # 1-based line of the snippet's first line in the file
    text: str
    origin: str  # e.g. "file" or "win_powershell script"


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    column: int
    kind: str  # "ERROR" or "MISSING"
    context: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.kind} near {self.context!r}"


def _language() -> tree_sitter.Language:
    return tree_sitter.Language(tree_sitter_powershell.language())


_PARSER: tree_sitter.Parser | None = None


def _parser() -> tree_sitter.Parser:
    global _PARSER
    if _PARSER is None:
        _PARSER = tree_sitter.Parser(_language())
    return _PARSER


def neutralise_jinja(text: str) -> str:
    """Replace Jinja by PowerShell-neutral text with the same newlines."""

    def repl(match: re.Match[str]) -> str:
        chunk = match.group(0)
        newlines = "\n" * chunk.count("\n")
        if chunk.startswith("{{"):
            return "$dsrJinja" + newlines
        return " " + newlines

    return _JINJA.sub(repl, text)


def check_text(text: str, path: str = "<string>", first_line: int = 1) -> list[Problem]:
    """Parse PowerShell ``text``; return its ERROR and MISSING nodes."""
    source = text.encode("utf-8")
    tree = _parser().parse(source)
    problems: list[Problem] = []
    lines = text.splitlines()

    def visit(node: tree_sitter.Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            row, col = node.start_point
            context = lines[row].strip()[:60] if row < len(lines) else ""
            problems.append(
                Problem(
                    path=path,
                    line=first_line + row,
                    column=col + 1,
                    kind="MISSING " + node.type if node.is_missing else "ERROR",
                    context=context,
                )
            )
            if node.type == "ERROR":
                return  # one report per broken region
        for child in node.children:
            visit(child)

    if tree.root_node.has_error:
        visit(tree.root_node)
        if not problems:  # has_error but nothing located: report the file
            problems.append(Problem(path, first_line, 1, "ERROR", "unlocated parse error"))
    return problems


def _scalar_first_line(node: yaml.Node) -> int:
    """1-based file line where a scalar's text starts."""
    line = int(node.start_mark.line) + 1
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        line += 1  # block scalar: the text starts below the indicator
    return line


def _walk_yaml(node: yaml.Node) -> Iterator[yaml.MappingNode]:
    if isinstance(node, yaml.MappingNode):
        yield node
        for key, value in node.value:
            yield from _walk_yaml(key)
            yield from _walk_yaml(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _walk_yaml(item)


def extract_yaml(path: Path) -> list[Snippet]:
    """PowerShell embedded in an Ansible YAML file."""
    text = path.read_text(encoding="utf-8")
    snippets: list[Snippet] = []
    for document in yaml.compose_all(text, Loader=yaml.SafeLoader):
        if document is None:
            continue
        for mapping in _walk_yaml(document):
            for key, value in mapping.value:
                if not isinstance(key, yaml.ScalarNode) or key.value not in POWERSHELL_MODULES:
                    continue
                script_key = POWERSHELL_MODULES[key.value]
                if isinstance(value, yaml.ScalarNode):
                    if script_key == "cmd":  # win_shell free form
                        snippets.append(Snippet(str(path), _scalar_first_line(value), value.value, f"{key.value}"))
                    continue
                if isinstance(value, yaml.MappingNode):
                    for arg_key, arg_value in value.value:
                        if (
                            isinstance(arg_key, yaml.ScalarNode)
                            and arg_key.value == script_key
                            and isinstance(arg_value, yaml.ScalarNode)
                        ):
                            snippets.append(
                                Snippet(
                                    str(path),
                                    _scalar_first_line(arg_value),
                                    arg_value.value,
                                    f"{key.value} {script_key}",
                                )
                            )
    return snippets


def extract(path: Path) -> list[Snippet]:
    if path.suffix.lower() in PS_SUFFIXES:
        return [Snippet(str(path), 1, path.read_text(encoding="utf-8-sig"), "file")]
    if path.suffix.lower() in YAML_SUFFIXES:
        return extract_yaml(path)
    return []


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                # A symlink is checked where its target lives.
                if child.is_symlink():
                    continue
                if child.is_file() and child.suffix.lower() in PS_SUFFIXES | YAML_SUFFIXES:
                    yield child
        elif p.is_file():
            yield p


def check_snippet(snippet: Snippet) -> list[Problem]:
    text = snippet.text if snippet.origin == "file" else neutralise_jinja(snippet.text)
    return check_text(text, snippet.path, snippet.first_line)


def check_paths(paths: Iterable[str | Path]) -> tuple[list[Snippet], list[Problem]]:
    snippets: list[Snippet] = []
    problems: list[Problem] = []
    for path in iter_files(paths):
        for snippet in extract(path):
            snippets.append(snippet)
            problems.extend(check_snippet(snippet))
    return snippets, problems


# --------------------------------------------------------------------------
# C# given to Add-Type / Add-CSharpType
# --------------------------------------------------------------------------

# Cmdlet -> the parameter holding C# source. Add-Type's first positional
# parameter is -TypeDefinition; Add-CSharpType (Ansible.ModuleUtils.AddType)
# takes -References, its only positional one.
CSHARP_COMMANDS = {"add-type": "-typedefinition", "add-csharptype": "-references"}
# Add-Type calls that load an existing assembly carry no source to compile.
_NO_SOURCE_PARAMETERS = {"-assemblyname", "-path", "-literalpath"}


@dataclass(frozen=True)
class CSharpBlock:
    """C# source handed to Add-Type or Add-CSharpType."""

    path: str
    line: int  # file line of the command
    command: str  # "Add-Type" or "Add-CSharpType"
    text: str  # the C# source; empty when ``problem`` is set
    problem: str = ""  # why the source could not be read


def _node_text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def _iter_nodes(node: tree_sitter.Node, kind: str) -> Iterator[tree_sitter.Node]:
    if node.type == kind:
        yield node
    for child in node.children:
        yield from _iter_nodes(child, kind)


def _command_name(command: tree_sitter.Node) -> str:
    for child in command.children:
        if child.type in ("command_name", "command_name_expr"):
            return _node_text(child).strip()
    return ""


def _string_value(node: tree_sitter.Node) -> tuple[str | None, str]:
    """The value of a string literal node (or of the one it wraps).

    Returns (value, "") or (None, reason). Expandable strings are read only
    when they expand nothing."""
    literals = list(_iter_nodes(node, "string_literal"))
    if not literals or _node_text(literals[0]) != _node_text(node).strip():
        return None, f"not a string literal: {_node_text(node)[:40]!r}"
    literal = literals[0]
    inner = literal.children[0] if literal.children else literal
    raw = _node_text(inner)
    kind = inner.type
    if kind == "verbatim_here_string_characters":
        return raw[2:-2].removeprefix("\r").removeprefix("\n").removesuffix("\n").removesuffix("\r"), ""
    if kind == "verbatim_string_characters":
        return raw[1:-1].replace("''", "'"), ""
    if kind in ("expandable_here_string_literal", "expandable_string_literal"):
        if "$" in raw or "`" in raw:
            return None, "an expandable string that expands variables or escapes; use a verbatim here-string"
        if kind == "expandable_here_string_literal":
            return raw[2:-2].removeprefix("\r").removeprefix("\n").removesuffix("\n").removesuffix("\r"), ""
        return raw[1:-1], ""
    return None, f"unsupported string form {kind}"


def _assignments(root: tree_sitter.Node) -> dict[str, list[tuple[int, tree_sitter.Node]]]:
    """Variable name (lower case) -> [(byte offset, value node)] of ``$x = ...``."""
    found: dict[str, list[tuple[int, tree_sitter.Node]]] = {}
    for assignment in _iter_nodes(root, "assignment_expression"):
        left = assignment.children[0]
        variables = list(_iter_nodes(left, "variable"))
        if len(variables) != 1 or len(assignment.children) < 3:
            continue
        name = _node_text(variables[0]).lower()
        found.setdefault(name, []).append((assignment.start_byte, assignment.children[2]))
    return found


def _source_argument(command: tree_sitter.Node, wanted: str) -> tuple[tree_sitter.Node | None, str]:
    """The node given for ``wanted`` (by name, else first positional)."""
    elements = next((c for c in command.children if c.type == "command_elements"), None)
    if elements is None:
        return None, "no arguments"
    items = [c for c in elements.children if c.type != "command_argument_sep"]
    positional: list[tree_sitter.Node] = []
    i = 0
    while i < len(items):
        item = items[i]
        if item.type == "command_parameter":
            name = _node_text(item).lower().rstrip(":")
            if name in _NO_SOURCE_PARAMETERS:
                return None, ""
            value = items[i + 1] if i + 1 < len(items) and items[i + 1].type != "command_parameter" else None
            if wanted.startswith(name) and len(name) > 2:  # PowerShell accepts unique prefixes
                return value, "" if value is not None else f"{name} without a value"
            if name == "-memberdefinition":
                return None, "-MemberDefinition is not compiled by this check; use -TypeDefinition"
            i += 2 if value is not None and name not in ("-ignorewarnings", "-passthru") else 1
            continue
        positional.append(item)
        i += 1
    if positional:
        return positional[0], ""
    return None, f"no {wanted} argument"


def csharp_blocks_in_text(text: str, path: str = "<string>", first_line: int = 1) -> list[CSharpBlock]:
    """Every Add-Type / Add-CSharpType call of a PowerShell text."""
    tree = _parser().parse(text.encode("utf-8"))
    assignments = _assignments(tree.root_node)
    blocks: list[CSharpBlock] = []
    for command in _iter_nodes(tree.root_node, "command"):
        name = _command_name(command)
        wanted = CSHARP_COMMANDS.get(name.lower())
        if wanted is None:
            continue
        line = first_line + command.start_point[0]
        argument, why = _source_argument(command, wanted)
        if argument is None:
            if why:  # an assembly load has no source and no problem
                blocks.append(CSharpBlock(path, line, name, "", why))
            continue
        variables = list(_iter_nodes(argument, "variable"))
        if variables and _node_text(variables[0]) == _node_text(argument).strip():
            var = _node_text(variables[0]).lower()
            earlier = [v for offset, v in assignments.get(var, []) if offset < command.start_byte]
            if not earlier:
                blocks.append(CSharpBlock(path, line, name, "", f"{var} is not assigned a string before this call"))
                continue
            argument = earlier[-1]
        source, why = _string_value(argument)
        if source is None:
            blocks.append(CSharpBlock(path, line, name, "", why))
        else:
            blocks.append(CSharpBlock(path, line, name, source))
    return blocks


def csharp_blocks(paths: Iterable[str | Path]) -> list[CSharpBlock]:
    """Every Add-Type / Add-CSharpType call in the scripts under ``paths``."""
    blocks: list[CSharpBlock] = []
    for path in iter_files(paths):
        for snippet in extract(path):
            text = snippet.text if snippet.origin == "file" else neutralise_jinja(snippet.text)
            blocks.extend(csharp_blocks_in_text(text, snippet.path, snippet.first_line))
    return blocks


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or list(DEFAULT_PATHS)
    snippets, problems = check_paths(args)
    for problem in problems:
        print(problem)
    print(f"{len(snippets)} PowerShell snippet(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
