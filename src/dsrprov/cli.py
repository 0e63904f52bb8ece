"""The ``dsrprov`` command line: parses, calls the core, maps errors to exit codes."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn

from dsrprov.errors import (
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    DsrError,
    UsageError,
    worst,
)
from dsrprov.paths import user_inventory

if TYPE_CHECKING:
    from dsrprov import enroll
    from dsrprov.connect.probe import ConnOptions
    from dsrprov.model.inventory import Inventory


def version() -> str:
    """The installed distribution's version: one for the wheel, the collection and the CLI."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("dsrprov")
    except PackageNotFoundError:
        from dsrprov import __version__

        return __version__


def _inventory(args: argparse.Namespace) -> Path:
    return user_inventory(args.inventory)


def _opts(args: argparse.Namespace) -> ConnOptions:
    from dsrprov.connect.probe import ConnOptions

    opts = ConnOptions.from_env(
        known_hosts=Path(args.known_hosts).expanduser().resolve() if args.known_hosts else None,
        accept_new_host_key=getattr(args, "accept_new_host_key", False),
        identity=Path(args.identity).expanduser().resolve() if args.identity else None,
        user=args.user,
        ca_path=Path(args.ca_path).expanduser().resolve() if args.ca_path else None,
        timeout=args.timeout,
    )
    if args.ask_pass:
        if not sys.stdin.isatty():
            raise UsageError("--ask-pass needs a terminal; set DSRPROV_SSH_PASSWORD / DSRPROV_WINRM_PASSWORD instead")
        secret = getpass.getpass("password (SSH password or key passphrase, or WinRM password): ")
        opts.ssh_password = opts.ssh_password or secret
        opts.winrm_password = opts.winrm_password or secret
    return opts


@contextlib.contextmanager
def _log(args: argparse.Namespace) -> Iterator[IO[str] | None]:
    if not getattr(args, "log", None):
        yield None
        return
    fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        yield fh


def _progress(args: argparse.Namespace, log: IO[str] | None) -> Callable[[str], None]:
    def show(line: str) -> None:
        if log is not None:
            log.write(line + "\n")
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    return show


def _emit_errors(reports: Sequence[object]) -> None:
    for r in reports:
        if getattr(r, "exit_code", 0) != EXIT_OK:
            print(f"dsrprov: {r.host}: {r.error}", file=sys.stderr)  # type: ignore[attr-defined]


def _emit_warnings(reports: Sequence[object]) -> None:
    """What could still take a VIP away (who manages lo): said, never a failure."""
    for r in reports:
        for warning in getattr(r, "warnings", []):
            print(f"dsrprov: warning: {r.host}: {warning}", file=sys.stderr)  # type: ignore[attr-defined]


def _enroll(args: argparse.Namespace) -> int:
    from dsrprov import enroll

    requests = [enroll.Request(h, list(args.vip)) for h in args.hosts]
    if args.hosts_file:
        requests += enroll.parse_hosts_file(Path(args.hosts_file), list(args.vip))
    if not requests:
        raise UsageError("no host given (HOST ... or --hosts-file)")
    if args.address:
        if len(requests) != 1:
            raise UsageError("--address needs exactly one host")
        requests[0].address = args.address
    with _changing(args) as inv:
        return _enroll_with(args, inv, requests)


@contextlib.contextmanager
def _changing(args: argparse.Namespace) -> Iterator[Inventory]:
    """The inventory, read once for the command, locked for all of it
    (another dsrprov changing it is waited for, then refused)."""
    from dsrprov.model.inventory import Inventory, locked

    source = _inventory(args)
    if args.check:
        yield Inventory(source)
        return
    with locked(source):
        yield Inventory(source)


def _enroll_with(args: argparse.Namespace, known: Inventory, requests: list[enroll.Request]) -> int:
    from dsrprov import enroll, report

    for r in requests:
        if r.vips:
            continue
        # A host already enrolled keeps the VIPs the inventory gives it.
        name = known.find(r.host)
        host = known.host(name) if name else None
        if host is None or not host.is_realserver or not host.vips:
            raise UsageError(
                "no VIP given and the inventory gives it none: use --vip (or VIPs after the host in --hosts-file)",
                r.host,
            )
        r.vips = list(host.vips)
        if not args.quiet:
            print(f"dsrprov: {r.host}: no --vip given: using its VIPs from the inventory: {', '.join(r.vips)}",
                  file=sys.stderr)  # fmt: skip
    if args.port is not None:
        from dsrprov import loadmaster

        loadmaster.check_port(known, [v for r in requests for v in r.vips], args.port)
    with _log(args) as log:
        reports = enroll.enroll(
            known,
            requests,
            os_choice=args.os,
            opts=_opts(args),
            check=args.check,
            parallel=args.parallel,
            progress=_progress(args, log),
            log=log,
            loadmasters=args.loadmaster,
        )
        code = worst([r.exit_code for r in reports])
        if args.json:
            print(report.as_json(reports, code))
        else:
            print(report.summary_lines(reports))
        _emit_errors(reports)
    return code


def _unenroll(args: argparse.Namespace) -> int:
    from dsrprov import enroll, report

    with _changing(args) as inv, _log(args) as log:
        reports = enroll.unenroll(
            inv,
            list(args.hosts),
            opts=_opts(args),
            check=args.check,
            parallel=args.parallel,
            progress=_progress(args, log),
            log=log,
        )
        code = worst([r.exit_code for r in reports])
        print(report.as_json(reports, code) if args.json else report.summary_lines(reports))
        _emit_errors(reports)
    return code


def _status(args: argparse.Namespace) -> int:
    from dsrprov import loadmaster, report
    from dsrprov.checks import director_checks, hostcheck
    from dsrprov.model.inventory import Inventory

    inv = Inventory(_inventory(args))
    reports = hostcheck.collect(
        inv,
        list(args.hosts),
        _opts(args),
        parallel=args.parallel,
        arp=False,
    )
    # What the LoadMasters say about each real server (enabled, forwarding, weight).
    lm_rows, lm_errors = loadmaster.read(inv, loadmaster.select(inv, None), args.timeout)
    for r in reports:
        mine = [row for row in lm_rows if row["host"] == r.host]
        if mine:
            r.state["loadmaster"] = mine
    # Which health check each director runs on each real server, and its state.
    # Directors are reached with their own inventory settings: the command
    # line's user, key and known_hosts are for the real servers asked about.
    dir_rows, dir_errors = director_checks.read(inv, _opts(args).inventory_only())
    for r in reports:
        mine = [row for row in dir_rows if row["real_server"] == r.host]
        if mine:
            r.state["director_checks"] = mine
    # status reports what is there; only reading can fail.
    code = worst([r.exit_code for r in reports] + [EXIT_UNREACHABLE for _ in [*lm_errors, *dir_errors]])
    if args.json:
        print(report.as_json(reports, code))
    elif reports:
        print(report.status_table(reports))
    if lm_rows and not args.json:
        shown = [row for row in lm_rows if not args.hosts or row["host"] in {r.host for r in reports}]
        if shown:
            print()
            print(loadmaster.table(shown))
    shown_dir = [row for row in dir_rows if not args.hosts or row["real_server"] in {r.host for r in reports}]
    if shown_dir and not args.json:
        print()
        print(director_checks.table(shown_dir))
    _emit_errors(reports)
    _emit_warnings(reports)
    for name, reason in [*lm_errors.items(), *dir_errors.items()]:
        print(f"dsrprov: {name}: {reason}", file=sys.stderr)
    return code


def _verify(args: argparse.Namespace) -> int:
    from dsrprov import report
    from dsrprov.checks import hostcheck
    from dsrprov.model.inventory import Inventory

    reports = hostcheck.verify(Inventory(_inventory(args)), list(args.hosts), _opts(args), parallel=args.parallel)
    code = worst([r.exit_code for r in reports])
    if args.json:
        print(report.as_json(reports, code))
    elif reports:
        print(report.verify_table(reports))
    _emit_errors(reports)
    _emit_warnings(reports)
    return code


def _doctor(args: argparse.Namespace) -> int:
    from dsrprov.doctor import run
    from dsrprov.model.inventory import Inventory

    result = run.diagnose(Inventory(_inventory(args)), list(args.hosts), _opts(args), parallel=args.parallel)
    print(run.as_json(result) if args.json else run.render(result))
    for name in result.unknown:
        print(f"dsrprov: {name}: not in the inventory", file=sys.stderr)
    return result.exit_code


DOCTOR_EXIT_CODES = """exit codes:
  0  no finding: DSR works on every host probed
  1  at least one finding (errors and warnings alike; --json says which)
  2  bad input (a host not in the inventory): nothing was probed
  3  a host or the vantage host could not be probed (finding probe-failed)"""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        words = self.prog.split()
        print(f"dsrprov: {message} (see {' '.join(['dsrprov', *words[1:]])} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _connection_options(p: argparse.ArgumentParser, *, accept_new: bool) -> None:
    g = p.add_argument_group("connection (defaults from the inventory)")
    g.add_argument(
        "-i",
        "--inventory",
        metavar="PATH",
        help="inventory file or directory (default: $DSRPROV_INVENTORY; one of the two is needed)",
    )
    g.add_argument(
        "--known-hosts",
        metavar="PATH",
        help="SSH known_hosts (default: UserKnownHostsFile of ansible_ssh_common_args, else ~/.ssh/known_hosts)",
    )
    if accept_new:
        g.add_argument(
            "--accept-new-host-key",
            action="store_true",
            help="record the SSH host key of a host that has none yet (a changed key is always refused)",
        )
    g.add_argument(
        "--identity", metavar="KEY", help="SSH private key (default: ansible_ssh_private_key_file, the agent)"
    )
    g.add_argument("--user", help="remote user (default: ansible_user)")
    g.add_argument("--ca-path", metavar="PEM", help="CA bundle that signs the WinRM HTTPS certificates")
    g.add_argument(
        "--ask-pass",
        action="store_true",
        help="prompt for the password (else $DSRPROV_SSH_PASSWORD, $DSRPROV_WINRM_PASSWORD)",
    )
    g.add_argument("--timeout", type=float, default=10.0, metavar="S", help="connection timeout in seconds (10)")
    p.add_argument("--parallel", type=int, default=8, metavar="N", help="hosts handled at once (8)")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dsrprov",
        description="Provision servers for Direct Server Return. Changes to hosts are made by the Ansible roles only.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dsrprov {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "enroll",
        help="make hosts DSR real servers (inventory + roles + verify)",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("hosts", nargs="*", metavar="HOST", help="inventory name, or a new name or address")
    p.add_argument("--vip", action="append", default=[], metavar="VIP", help="a VIP (repeat for more)")
    p.add_argument(
        "--os", choices=["auto", "linux", "windows"], default="auto", help="auto: from the inventory, else by probing"
    )
    p.add_argument("--address", help="the host's address (written as ansible_host)")
    p.add_argument("--hosts-file", metavar="FILE", help="hosts to enroll, one a line: HOST [VIP ...]")
    p.add_argument(
        "--port", type=int, metavar="PORT", help="the service port: refused unless dsr_services has VIP:PORT"
    )
    p.add_argument(
        "--loadmaster",
        action="append",
        metavar="NAME",
        help="register at this Kemp LoadMaster (group dsr_loadmasters; default: all of them) after verification",
    )
    p.add_argument("--check", action="store_true", help="show what would change; change nothing")
    p.add_argument("--log", metavar="FILE", help="append the full playbook output here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    _connection_options(p, accept_new=True)
    p.set_defaults(func=_enroll)

    p = sub.add_parser(
        "unenroll",
        help="remove DSR from hosts (roles with state absent), then from the inventory",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("hosts", nargs="+", metavar="HOST")
    p.add_argument("--check", action="store_true", help="show what would change; change nothing")
    p.add_argument("--log", metavar="FILE", help="append the full playbook output here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    _connection_options(p, accept_new=False)
    p.set_defaults(func=_unenroll)

    for name, func, text in (
        ("status", _status, "what is on the hosts now (read-only)"),
        ("verify", _verify, "prove DSR works on the hosts, ARP probe included (read-only)"),
    ):
        p = sub.add_parser(
            name, help=text, epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.add_argument("hosts", nargs="*", metavar="HOST", help="default: every real server in the inventory")
        _connection_options(p, accept_new=False)
        p.set_defaults(func=func)

    p = sub.add_parser(
        "doctor",
        help="find what breaks DSR: one line per finding, its evidence and fix (read-only)",
        epilog=DOCTOR_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("hosts", nargs="*", metavar="HOST", help="default: every real server in the inventory")
    _connection_options(p, accept_new=False)
    p.set_defaults(func=_doctor)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DsrError as exc:
        print(exc.line(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into head
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK
