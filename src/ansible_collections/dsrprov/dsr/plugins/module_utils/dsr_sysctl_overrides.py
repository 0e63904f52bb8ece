"""Sysctl files that would undo the role's ARP keys at boot (they apply after its own file).

Read-only; standard library only, Python 3.8+ (runs on the managed host).
"""

from __future__ import annotations

import fnmatch
import glob
import os
from typing import Dict, List, Mapping, Tuple

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_arp_sysctls import canonical

# The directories systemd-sysctl and "sysctl --system" read, in their order of
# precedence for equal file names; files are applied sorted by file name.
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
# procps' "sysctl --system" reads this one last of all.
SYSCTL_CONF = "/etc/sysctl.conf"


def read_sysctl_files(own_file: str) -> List[Tuple[str, List[str]]]:
    """Return [(path, lines)] of the files that apply after OWN_FILE at boot."""
    by_name: Dict[str, str] = {}
    for directory in SYSCTL_DIRS:
        for path in glob.glob(os.path.join(directory, "*.conf")):
            by_name.setdefault(os.path.basename(path), path)
    ordered = [by_name[name] for name in sorted(by_name)]
    if os.path.exists(SYSCTL_CONF):
        ordered.append(SYSCTL_CONF)
    own_name = os.path.basename(own_file)
    files = []
    seen = set()
    for path in ordered:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        after_own = path == SYSCTL_CONF or os.path.basename(path) > own_name
        files.append((path, lines, after_own))
    return [(p, lines) for p, lines, after in files if after and os.path.basename(p) != own_name]


def display(path: str) -> str:
    """A /proc/sys path as people write the key: dotted, unless a name holds a dot."""
    parts = path.split("/")
    return path if any("." in part for part in parts) else ".".join(parts)


def weaker(value: str, own_value: object) -> bool:
    """True when a later file's value undoes ours. For both ARP keys the kernel
    uses the larger of "all" and the interface's value, so a larger value is
    stricter and harmless (e.g. arp_ignore=2); only a smaller one undoes ours."""
    try:
        return int(value) < int(str(own_value))
    except ValueError:
        return True


def find_overrides(own_file: str, wanted: Mapping[str, object]) -> List[Dict[str, str]]:
    """Entries {file, key, value} of later files that weaken WANTED at boot."""
    overrides = []
    for path, lines in read_sysctl_files(own_file):
        for line in lines:
            line = line.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            # Both spellings (net.ipv4.conf.eth0/100.x, net/ipv4/conf/eth0.100/x)
            # compared as the path under /proc/sys they name.
            key = canonical(key.lstrip("-"))
            for own_key, own_value in wanted.items():
                if fnmatch.fnmatchcase(canonical(own_key), key) and weaker(value, own_value):
                    overrides.append({"file": path, "key": display(key), "value": value})
    return overrides


def summaries(overrides: List[Dict[str, str]]) -> List[str]:
    """One line per file: ``FILE would weaken KEYS``."""
    out = []
    files = [item["file"] for item in overrides]
    for path in sorted(set(files), key=files.index):
        keys = {canonical(i["key"]).rsplit("/", 1)[-1] for i in overrides if i["file"] == path}
        what = []
        if keys & {"arp_ignore", "arp_announce"}:
            what.append("arp_ignore/arp_announce")
        if "keep_addr_on_down" in keys:
            what.append("keep_addr_on_down (lo)")
        out.append("%s would weaken %s" % (path, " and ".join(what)))
    return out
