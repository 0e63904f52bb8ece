"""What the Linux real-server module reads about a host before it changes anything.

The host's own addresses (every interface but lo), its non-loopback
interfaces, the ``ip`` command, whether PID 1 is systemd. Standard library
only, Python 3.8+ (runs on the managed host).
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import StepFailed

# Where the kernel lists interfaces and their IPv4 sysctls, and where systemd
# shows it is PID 1. Constants, not literals, so that the module-level unit
# tests (tests/unit/test_linux_apply_main.py) can point them into a temporary
# root; nothing on a host sets them.
SYS_CLASS_NET = "/sys/class/net"
IPV4_CONF = "/proc/sys/net/ipv4/conf"
SYSTEMD_RUNTIME = "/run/systemd/system"


def find_ip_command() -> str:
    ip_command = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not ip_command:
        raise StepFailed("the 'ip' command (iproute2) is missing on this host; install iproute2 first")
    return ip_command


def read_addresses(module: Any, ip_command: str) -> Dict[str, Any]:
    """{addresses, ipv4_interfaces, lo}: the host's own addresses off lo, the
    interfaces that hold an IPv4 address, and lo's lines of the same read (the
    VIPs' part reads them from there: one ``ip addr`` call, not two)."""
    rc, out, err = module.run_command([ip_command, "-o", "addr", "show"], check_rc=False)
    if rc != 0:
        raise StepFailed("cannot list the host's addresses: %s" % err.strip())
    addresses = []
    ipv4_interfaces = set()
    lo_lines = []
    for line in out.splitlines():
        fields = line.split()
        # "2: eth0    inet 10.0.0.5/24 brd ... scope global eth0"
        if len(fields) < 4 or fields[2] not in ("inet", "inet6"):
            continue
        ifname = fields[1].split("@")[0]
        if ifname == "lo":
            lo_lines.append(line + "\n")
            continue
        addresses.append(fields[3].split("/", 1)[0])
        if fields[2] == "inet":
            ipv4_interfaces.add(ifname)
    return {"addresses": addresses, "ipv4_interfaces": sorted(ipv4_interfaces), "lo": "".join(lo_lines)}


def interfaces() -> List[str]:
    """Non-loopback network interfaces with IPv4 sysctls, sorted."""
    return sorted(
        name for name in os.listdir(SYS_CLASS_NET) if name != "lo" and os.path.isdir(os.path.join(IPV4_CONF, name))
    )


def runs_systemd() -> bool:
    return os.path.isdir(SYSTEMD_RUNTIME)
