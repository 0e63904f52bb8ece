"""Syntax check for PowerShell, without PowerShell.

Finds PowerShell in ``.ps1``/``.psm1`` files and in Ansible YAML (the
``script`` of ``ansible.windows.win_powershell``, the command of
``ansible.windows.win_shell``), parses it with tree-sitter-powershell and
reports every ERROR or MISSING node as ``file:line:column``.

Jinja in embedded scripts (``{{ ... }}``, ``{% ... %}``) is replaced by a
PowerShell variable or blanks of the same line count before parsing, so line
numbers stay those of the YAML file.

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
DEFAULT_PATHS = ("roles/dsr_realserver_windows", "molecule/windows")

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


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or list(DEFAULT_PATHS)
    snippets, problems = check_paths(args)
    for problem in problems:
        print(problem)
    print(f"{len(snippets)} PowerShell snippet(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
