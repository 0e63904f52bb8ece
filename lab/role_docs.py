"""Generate the roles' variable tables from each role's argument_specs.

    python lab/role_docs.py          rewrite the tables
    python lab/role_docs.py --check  exit 1 if a table is out of date or a role's README lacks its own

A table lives between ``<!-- vars:ROLE -->`` and ``<!-- /vars:ROLE -->``, in
the role's own README.md (required) and in any page of docs/ that shows it."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLES = ROOT / "src" / "ansible_collections" / "dsrprov" / "dsr" / "roles"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROLES.glob("*/README.md"))]


def describe(option: dict[str, Any]) -> str:
    text = option.get("description", "")
    if isinstance(text, list):
        text = " ".join(text)
    text = re.sub(r"[CI]\(([^)]*)\)", r"`\1`", " ".join(str(text).split()))
    if option.get("choices"):
        text += " One of: " + ", ".join(f"`{c}`" for c in option["choices"]) + "."
    return text.replace("|", "\\|")


def table(role: str) -> str:
    specs = ROLES / role / "meta" / "argument_specs.yml"
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
    status = 0
    for role in sorted(p.name for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").is_file()):
        own = ROLES / role / "README.md"
        if f"<!-- vars:{role} -->" not in (own.read_text() if own.is_file() else ""):
            print(f"{own.relative_to(ROOT)} has no variable table (<!-- vars:{role} -->)", file=sys.stderr)
            status = 1
    for page in pages():
        current = page.read_text()
        wanted = render(current)
        if current == wanted:
            continue
        if "--check" in argv:
            print(
                f"{page.relative_to(ROOT)}: variable tables out of date: run python lab/role_docs.py", file=sys.stderr
            )
            status = 1
        else:
            page.write_text(wanted)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
