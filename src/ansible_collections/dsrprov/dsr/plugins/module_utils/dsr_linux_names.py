"""The names the Linux real-server role puts into files and commands on the host: lo's label, interface names.

One set of rules for the controller (the role's filters) and the host (the
module checks again, as it would for any caller). A value that breaks them is
refused before anything is written; the renderers quote what they write
anyway, so no value can ever become shell, a unit line or a drop-in line.
Standard library only, Python 3.8+ (runs on the managed host).
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Iterable, List

# The kernel's IFNAMSIZ (16) less the final NUL: a label, like a name, is at most 15 bytes.
IFNAME_MAX = 15
# "lo:" and a short name. iproute2 and the kernel take any bytes after the
# colon, but a shell, systemd's ExecStart= and networkd's Label= each give a
# meaning to some of them (; $ ` " ' % \ space newline). Letters, digits, "_"
# and "-" are what label conventions use (lo:1, lo:dsr, lo:vip-web) and mean
# nothing to any of them; "." is left out too, as ifconfig-era tools read
# "lo:1.2" as an alias of an alias.
LABEL_RE = re.compile(r"lo:[A-Za-z0-9_-]+")
# What the kernel's dev_valid_name() refuses (empty, ".", "..", "/", ":",
# whitespace, more than 15 bytes), and what no sysctl.d line could carry.
_IFNAME_BAD = re.compile(r"[/:\s\x00-\x1f\x7f=#;*?\[\]\\'\"$`]")


class BadName(ValueError):
    """A label or interface name breaks the rules; the message is one readable line."""


def check_label(label: Any) -> str:
    """Return LABEL when it is ``lo:`` + [A-Za-z0-9_-]+, at most 15 bytes."""
    if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
        raise BadName(
            "invalid label %r: it must be 'lo:' followed by letters, digits, '_' or '-' (e.g. lo:1)" % (label,)
        )
    if len(label.encode()) > IFNAME_MAX:
        raise BadName("invalid label %r: at most %d bytes (the kernel's limit)" % (label, IFNAME_MAX))
    return label


def check_interface(name: Any) -> str:
    """Return NAME when the kernel could have named an interface so (and a sysctl line can carry it)."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or _IFNAME_BAD.search(name)
        or len(name.encode()) > IFNAME_MAX
    ):
        raise BadName(
            "invalid interface name %r: 1 to %d bytes, no '/', ':', whitespace, quotes or shell/glob "
            "characters" % (name, IFNAME_MAX)
        )
    return name


def check_interfaces(names: Iterable[Any]) -> List[str]:
    if isinstance(names, (str, bytes)) or names is None:
        raise BadName("the interface list must be a list of names, not a single string")
    return [check_interface(n) for n in names]


def sh_quote(value: str) -> str:
    """One shell word, whatever VALUE holds."""
    return shlex.quote(value)


_SYSTEMD_BARE = re.compile(r"[A-Za-z0-9_./:@+,=-]+")


def systemd_quote(value: str) -> str:
    """One argument of a unit's ExecStart=, whatever VALUE holds (systemd.service(5),
    "Command lines"): bare when it is plain, else in double quotes with "\\" and
    '"' escaped, a newline as \\n, "%" as "%%" (specifiers) and "$" as "$$"
    (environment variables)."""
    if _SYSTEMD_BARE.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = escaped.replace("\t", "\\t").replace("%", "%%").replace("$", "$$")
    return '"%s"' % escaped


# Paths the guard's unit runs or reads, and where it writes: absolute, and
# only characters that mean nothing to a shell, to systemd's ExecStart= (no
# "%" specifier, no "$" variable, no quote, no whitespace) or to a JSON reader.
_PATH_RE = re.compile(r"/[A-Za-z0-9_./+@,=-]*")
PATH_MAX = 4095
# A unit name systemd takes (systemd.unit(5)), of a service.
_UNIT_RE = re.compile(r"[A-Za-z0-9_.@:-]+\.service")
UNIT_NAME_MAX = 255


def check_path(path: Any, what: str = "path") -> str:
    """Return PATH when it is absolute and plain (see _PATH_RE), without "." or ".." parts."""
    if (
        not isinstance(path, str)
        or not _PATH_RE.fullmatch(path)
        or len(path.encode()) > PATH_MAX
        or any(part in (".", "..") for part in path.split("/"))
    ):
        raise BadName(
            "invalid %s %r: it must be an absolute path of letters, digits and _ . / + @ , = - "
            "(no whitespace, quotes, '%%', '$' or other shell characters, no '.' or '..' parts)" % (what, path)
        )
    return path


def check_unit_name(name: Any, what: str = "unit name") -> str:
    """Return NAME when it is a plain systemd service name (letters, digits, _ . @ : -, ending .service)."""
    if not isinstance(name, str) or not _UNIT_RE.fullmatch(name) or len(name.encode()) > UNIT_NAME_MAX:
        raise BadName(
            "invalid %s %r: letters, digits, '_', '.', '@', ':' or '-', ending in .service, "
            "at most %d bytes" % (what, name, UNIT_NAME_MAX)
        )
    return name


# The guard's period and flapping limits: at most a day. A longer period is no
# guard, and a huge one overflows the guard's time.sleep (its unit would
# crash-loop); the guard program checks the same bound.
COUNT_MAX = 86400


def check_count(value: Any, what: str = "value") -> int:
    """Return VALUE as an int when it is a whole number from 1 to COUNT_MAX ("30" from a template included)."""
    try:
        number = int(value) if not isinstance(value, (bool, float)) else 0
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    if not 1 <= number <= COUNT_MAX:
        raise BadName("%s must be a whole number from 1 to %d, not %r" % (what, COUNT_MAX, value))
    return number
