#!/usr/bin/python
"""Read what the Linux real-server role needs to know about a host; changes nothing."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_realserver_facts
short_description: Read a Linux host's addresses, interfaces and sysctl overrides for DSR
description:
  - Read-only. Lists the host's own addresses (every interface but the loopback),
    its non-loopback interfaces, and the sysctl files that would set the ARP keys
    to other values than the role's file at boot (they sort after it).
  - Also finds the C(ip) binary, so the systemd unit can name it by absolute path.
options:
  sysctl_file:
    description: The role's own sysctl file; files sorting after it are overrides.
    type: path
    required: true
  sysctl_values:
    description: The keys and values the role sets (key in dotted form).
    type: dict
    required: true
  unit_file:
    description: Path of the role's systemd unit, reported as I(unit_present).
    type: path
    required: true
  vips:
    description: The VIPs, to judge whether what manages C(lo) lets them stay (I(lo_manager)).
    type: list
    elements: str
    default: []
author: dsrprov developers
"""

EXAMPLES = r"""
- name: Read the real server before anything changes
  dsrprov.dsr.dsr_realserver_facts:
    sysctl_file: /etc/sysctl.d/90-dsrprov-arp.conf
    sysctl_values:
      net.ipv4.conf.all.arp_ignore: "1"
      net.ipv4.conf.all.arp_announce: "2"
    unit_file: /etc/systemd/system/dsrprov-loopback-vips.service
  register: realserver_facts
"""

RETURN = r"""
addresses:
  description: The host's own addresses on interfaces other than C(lo).
  returned: always
  type: list
interfaces:
  description: Non-loopback network interfaces, sorted.
  returned: always
  type: list
ipv4_interfaces:
  description: Interfaces that hold at least one IPv4 address (for the multi-homed warning).
  returned: always
  type: list
sysctl_overrides:
  description: "Entries C({file, key, value}) that would weaken the role's values at boot."
  returned: always
  type: list
sysctl_override_summaries:
  description: One line per file of I(sysctl_overrides), C(FILE would weaken KEYS).
  returned: always
  type: list
ip_command:
  description: Absolute path of the C(ip) command.
  returned: always
  type: str
unit_present:
  description: Whether the role's systemd unit file exists.
  returned: always
  type: bool
systemd:
  description: Whether PID 1 is systemd.
  returned: always
  type: bool
lo_manager:
  description:
    - "Who manages C(lo): C(manager) (C(NetworkManager), C(systemd-networkd), C(ifupdown) or C(none)),
      C(detail) (one line), C(problems) (why the VIPs could not be made safe there; the role refuses
      to change anything then) and C(risks) (what could remove the VIPs as the host stands)."
  returned: always
  type: dict
"""

import fnmatch
import glob
import os
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_lo_manager import PROBE, assess, parse

# The directories systemd-sysctl and "sysctl --system" read, in their order of
# precedence for equal file names; files are applied sorted by file name.
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
# procps' "sysctl --system" reads this one last of all.
SYSCTL_CONF = "/etc/sysctl.conf"


def read_sysctl_files(own_file):
    """Return [(path, lines)] in the order they apply at boot, own file excluded."""
    by_name = {}
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
    return [(p, l) for p, l, after in files if after and os.path.basename(p) != own_name]


def weaker(value, own_value):
    """True when a later file's value undoes ours. For both ARP keys the kernel
    uses the larger of "all" and the interface's value, so a larger value is
    stricter and harmless (e.g. arp_ignore=2); only a smaller one undoes ours."""
    try:
        return int(value) < int(own_value)
    except ValueError:
        return True


def find_overrides(own_file, wanted):
    overrides = []
    for path, lines in read_sysctl_files(own_file):
        for line in lines:
            line = line.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            key = key.lstrip("-").replace("/", ".")
            for own_key, own_value in wanted.items():
                if fnmatch.fnmatchcase(own_key, key) and weaker(value, own_value):
                    overrides.append({"file": path, "key": key, "value": value})
    return overrides


def main():
    module = AnsibleModule(
        argument_spec={
            "sysctl_file": {"type": "path", "required": True},
            "sysctl_values": {"type": "dict", "required": True},
            "unit_file": {"type": "path", "required": True},
            "vips": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    ip_command = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not ip_command:
        module.fail_json(msg="the 'ip' command (iproute2) is missing on this host; install iproute2 first")
    rc, out, err = module.run_command([ip_command, "-o", "addr", "show"], check_rc=False)
    if rc != 0:
        module.fail_json(msg="cannot list the host's addresses: %s" % err.strip())
    addresses = []
    ipv4_interfaces = set()
    for line in out.splitlines():
        fields = line.split()
        # "2: eth0    inet 10.0.0.5/24 brd ... scope global eth0"
        if len(fields) < 4 or fields[2] not in ("inet", "inet6"):
            continue
        ifname = fields[1].split("@")[0]
        if ifname == "lo":
            continue
        addresses.append(fields[3].split("/")[0])
        if fields[2] == "inet":
            ipv4_interfaces.add(ifname)
    interfaces = sorted(
        name
        for name in os.listdir("/sys/class/net")
        if name != "lo" and os.path.isdir(os.path.join("/proc/sys/net/ipv4/conf", name))
    )
    overrides = find_overrides(module.params["sysctl_file"], module.params["sysctl_values"])
    for item in overrides:
        module.warn("%(file)s sets %(key)s = %(value)s, which would weaken DSR's settings at boot" % item)
    summaries = []
    for path in sorted({item["file"] for item in overrides}, key=[i["file"] for i in overrides].index):
        keys = {i["key"].rsplit(".", 1)[-1] for i in overrides if i["file"] == path}
        what = []
        if keys & {"arp_ignore", "arp_announce"}:
            what.append("arp_ignore/arp_announce")
        if "keep_addr_on_down" in keys:
            what.append("keep_addr_on_down (lo)")
        summaries.append("%s would weaken %s" % (path, " and ".join(what)))
    if len(ipv4_interfaces) > 1:
        # arp_ignore=1 stops answering ARP for an address held by another
        # interface; multi-homed setups that relied on that need a look.
        module.warn(
            "this host has IPv4 addresses on several interfaces (%s): with arp_ignore=1 each "
            "answers ARP only for its own addresses" % ", ".join(sorted(ipv4_interfaces))
        )
    rc, out, err = module.run_command(["sh", "-c", PROBE], check_rc=False)
    if "@@lo:end@@" not in out:
        module.fail_json(msg="dsrprov: cannot read who manages lo (exit %d): %s" % (rc, err.strip()))
    found = assess(parse(out), module.params["vips"])
    module.exit_json(
        changed=False,
        lo_manager={"manager": found.manager, "detail": found.detail, "problems": found.problems, "risks": found.risks},
        unit_present=os.path.exists(module.params["unit_file"]),
        addresses=addresses,
        interfaces=interfaces,
        ipv4_interfaces=sorted(ipv4_interfaces),
        sysctl_overrides=overrides,
        sysctl_override_summaries=summaries,
        ip_command=ip_command,
        systemd=os.path.isdir("/run/systemd/system"),
    )


if __name__ == "__main__":
    main()
