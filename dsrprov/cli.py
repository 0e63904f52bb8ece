"""The ``dsrprov`` command line: parses, calls the core, maps errors to exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dsrprov import __version__, lab

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _lab(args: argparse.Namespace) -> int:
    if args.action == "up":
        the_lab = lab.up()
        print(f"lab up: {', '.join(h.name for h in the_lab.hosts)} on network {the_lab.network}")
    elif args.action == "down":
        lab.down()
        print("lab down")
    else:
        states = lab.status()
        for name, running in states.items():
            print(f"{name:10} {'running' if running else 'stopped'}")
        return EXIT_OK if all(states.values()) else EXIT_FAILED
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsrprov", description="Provision servers for Direct Server Return.")
    parser.add_argument("--version", action="version", version=f"dsrprov {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_lab = sub.add_parser("lab", help="the built-in local lab (podman containers)")
    p_lab.add_argument("action", choices=["up", "down", "status"])
    p_lab.set_defaults(func=_lab)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except lab.LabError as exc:
        print(f"dsrprov: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
