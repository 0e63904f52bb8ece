"""Generate the README's variable tables from each role's argument_specs.

    python lab/role_docs.py          rewrite the tables in README.md
    python lab/role_docs.py --check  exit 1 if README.md is out of date

A table lives between ``<!-- vars:ROLE -->`` and ``<!-- /vars:ROLE -->``."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def describe(option: dict[str, Any]) -> str:
    text = option.get("description", "")
    if isinstance(text, list):
        text = " ".join(text)
    text = re.sub(r"[CI]\(([^)]*)\)", r"`\1`", " ".join(str(text).split()))
    if option.get("choices"):
        text += " One of: " + ", ".join(f"`{c}`" for c in option["choices"]) + "."
    return text.replace("|", "\\|")


def table(role: str) -> str:
    specs = ROOT / "src" / "ansible_collections" / "dsrprov" / "dsr" / "roles" / role / "meta" / "argument_specs.yml"
    spec = yaml.safe_load(specs.read_text())
    options = spec["argument_specs"]["main"].get("options", {})
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, option in options.items():
        default = option.get("default", "(required)" if option.get("required") else "")
        default_text = f"`{default}`".replace("|", "\\|") if default != "" else ""
        kind = option.get("type", "str") + (f" of {option['elements']}" if option.get("elements") else "")
        rows.append(f"| `{name}` | {kind} | {default_text} | {describe(option)} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    def replace(match: re.Match[str]) -> str:
        role = match.group(1)
        return f"<!-- vars:{role} -->\n{table(role)}\n<!-- /vars:{role} -->"

    return re.sub(r"<!-- vars:(\w+) -->.*?<!-- /vars:\1 -->", replace, readme, flags=re.S)


def main(argv: list[str]) -> int:
    current = README.read_text()
    wanted = render(current)
    if "--check" in argv:
        if current != wanted:
            print("README.md variable tables are out of date: run python lab/role_docs.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
