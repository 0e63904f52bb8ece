"""Exit codes and the one error type the CLI turns into ``dsrprov: <host>: <reason>``."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # verification failed, or the playbook failed
EXIT_USAGE = 2  # bad input: nothing was changed
EXIT_UNREACHABLE = 3  # unreachable host, host key refused, authentication failed

EXIT_CODES_HELP = """exit codes:
  0  ok: every host enrolled and verified (status: every host read)
  1  a verification or the playbook failed
  2  bad input (invalid VIP, unknown host, bad option): nothing was changed
  3  a host is unreachable, its host key was refused, or authentication failed
  130 interrupted
with several hosts, the most severe code wins: 2, then 3, then 1."""


def worst(codes: list[int]) -> int:
    """The exit code for several hosts: usage before connection before failure."""
    for code in (EXIT_USAGE, EXIT_UNREACHABLE, EXIT_FAILED):
        if code in codes:
            return code
    return max(codes, default=EXIT_OK)


class DsrError(Exception):
    """A problem with one host (or the input), shown as one readable line."""

    exit_code = EXIT_FAILED

    def __init__(self, reason: str, host: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.host = host

    def line(self) -> str:
        return f"dsrprov: {self.host}: {self.reason}" if self.host else f"dsrprov: {self.reason}"


class UsageError(DsrError):
    exit_code = EXIT_USAGE


class ConnectError(DsrError):
    """Unreachable, host key refused, or no/bad credentials."""

    exit_code = EXIT_UNREACHABLE


class FailedError(DsrError):
    exit_code = EXIT_FAILED
