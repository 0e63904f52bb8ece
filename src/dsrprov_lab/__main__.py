"""``python -m dsrprov_lab up|down|status``: the local lab, from a checkout.

The lab is test and demo equipment: it lives in the repository, not in the
wheel, so an installed ``dsrprov`` has no lab command."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import dsrprov_lab as lab
from dsrprov_lab.errors import LabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dsrprov_lab", description="the built-in local lab (podman)")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--realservers",
        type=int,
        metavar="N",
        help="a fleet lab of N real servers and a client on a network of its own (no director), "
        "its inventory generated under the lab's .state",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        inventory = lab.fleet_inventory(args.realservers) if args.realservers else None
        the_lab = lab.load_lab(inventory)
        if args.action == "up":
            start = time.monotonic()
            lab.up(the_lab)
            names = [h.name for h in the_lab.hosts if not h.is_spare]  # a spare starts on demand only
            shown = ", ".join(names) if len(names) <= 6 else f"{len(names)} hosts ({names[0]} ... {names[-1]})"
            print(f"lab up in {time.monotonic() - start:.0f} s: {shown} on network {the_lab.network}")
            if inventory is not None:
                print(f"inventory: {inventory} (ansible-playbook -i it, or DSRPROV_LAB_INVENTORY={inventory})")
        elif args.action == "down":
            lab.down(the_lab)
            print("lab down")
        else:
            states = lab.status(the_lab)
            for name, running in states.items():
                print(f"{name:10} {'running' if running else 'stopped'}")
            return 0 if all(states.values()) else 1
    except LabError as exc:
        print(f"dsrprov lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
