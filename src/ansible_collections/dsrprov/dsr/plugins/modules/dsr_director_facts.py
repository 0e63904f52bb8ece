#!/usr/bin/python
"""Read what the director role needs to know about a host; changes nothing."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_director_facts
short_description: Read a Linux director's addresses, tools, keepalived state and dsrprov manifest
description:
  - Read-only, one process run, much faster than C(setup) with C(gather_subset=network).
  - Lists the host's addresses (C(ip -j addr)), finds the interface that holds a given
    address, the C(keepalived), C(ipvsadm) and C(ip) binaries, whether keepalived is
    active, and what the role's current configuration file says it manages (the
    C(# dsrprov-manages) lines the template writes at its top).
options:
  config_path:
    description: keepalived's configuration file.
    type: path
    required: true
  modules_load_file:
    description: The role's C(modules-load.d) file; its content is returned as I(modules_load_content).
    type: path
    required: true
  address:
    description: An address (usually C(ansible_host)); its interface is returned as I(address_interface).
    type: str
    default: ""
  sysctl_file:
    description: The role's IPVS sysctl file, compared with I(sysctls).
    type: path
  sysctls:
    description: The IPVS sysctls wanted (C(name) to value); I(sysctls_ok) says whether file and live values hold them.
    type: dict
    default: {}
  probe_config:
    description: The DSR-path probe's configuration file; I(probe_present) says whether it or its namespace exists.
    type: path
  probe_netns:
    description: The DSR-path probe's network namespace.
    type: str
    default: dsrprov-dsrpath
  files:
    description:
      - Files and directories whose state is returned in I(files), so that the role skips a copy or template task
        whose result is already there (each such task costs seconds on a slow director).
    type: list
    elements: path
    default: []
  units:
    description: systemd units whose state is returned in I(units).
    type: list
    elements: str
    default: []
author: dsrprov maintainers (@dsrprov)
"""

EXAMPLES = r"""
- name: Read the director
  dsrprov.dsr.dsr_director_facts:
    config_path: /etc/keepalived/keepalived.conf
    modules_load_file: /etc/modules-load.d/dsrprov-ipvs.conf
    address: "{{ ansible_host }}"
  register: director_facts
"""

RETURN = r"""
interfaces:
  description: Every network interface name.
  returned: always
  type: list
addresses:
  description: "Every global address: C({address, prefixlen, interface, family})."
  returned: always
  type: list
address_interface:
  description: The interface holding I(address), else the interface of the default route, else "".
  returned: always
  type: str
keepalived:
  description: Path of the keepalived binary, "" if not installed.
  returned: always
  type: str
ipvsadm:
  description: Path of the ipvsadm binary, "" if not installed.
  returned: always
  type: str
keepalived_active:
  description: Whether the keepalived service is active.
  returned: always
  type: bool
keepalived_enabled:
  description: Whether the keepalived service is enabled.
  returned: always
  type: bool
ip_vs_loaded:
  description: Whether the C(ip_vs) kernel module is loaded (or built in).
  returned: always
  type: bool
modules_load_content:
  description: Content of I(modules_load_file), null when it does not exist.
  returned: always
  type: str
config_present:
  description: Whether the configuration file exists.
  returned: always
  type: bool
config_managed:
  description: Whether the configuration file was written by dsrprov.
  returned: always
  type: bool
auth_files:
  description: The VRRP secret files (C(dsrprov-vrrp-*.auth)) beside the configuration file.
  returned: always
  type: list
sysctls_ok:
  description: Whether I(sysctl_file) sets exactly I(sysctls) and the live values are those (then nothing is to do).
  returned: always
  type: bool
python3:
  description: Path of python3, "" if not installed (the DSR-path probe needs it).
  returned: always
  type: str
netns:
  description: Whether the kernel has network namespaces.
  returned: always
  type: bool
macvlan:
  description: Whether the kernel has macvlan (loaded, built in, or a module to load).
  returned: always
  type: bool
probe_present:
  description: Whether the DSR-path probe's configuration file or namespace exists.
  returned: always
  type: bool
files:
  description:
    - "Per path of I(files): C({exists, dir, sha1, mode, uid, gid}); C(sha1) is the content's (as C(copy) computes it,
      empty for a directory or a missing file), C(mode) four octal digits."
  returned: always
  type: dict
units:
  description: "Per unit of I(units): C({active, enabled})."
  returned: always
  type: dict
managed:
  description:
    - "What the current file manages: C(virtual_servers) (C({protocol, vip, port})), C(addresses) (C({address, dev}))
      and C(real_servers) (C({protocol, vip, port, address, name}); null for a file written before dsrprov listed them)."
  returned: always
  type: dict
"""

import glob
import hashlib
import json
import os
import re
import shutil

from ansible.module_utils.basic import AnsibleModule

SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin")
MARKER = "# dsrprov-manages"
_VS = re.compile(r"^# dsrprov-manages virtual_server (tcp|udp) (\S+) (\d+)\s*$")
_ADDR = re.compile(r"^# dsrprov-manages address (\S+) dev (\S+)\s*$")
# Each real server of the file, after a marker line saying the file lists them
# (a file written by an older dsrprov does not: then they are unknown).
_RS_MARKER = "# dsrprov-manages real_servers"
_RS = re.compile(r"^# dsrprov-manages real_server (tcp|udp) (\S+) (\d+) (\S+)(?: (\S+))?\s*$")


def which(name):
    return shutil.which(name) or next(
        (os.path.join(d, name) for d in SBIN if os.access(os.path.join(d, name), os.X_OK)), ""
    )


def read_manifest(path):
    managed = {"virtual_servers": [], "addresses": [], "real_servers": []}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except FileNotFoundError:
        return False, False, managed
    if _RS_MARKER not in text.splitlines():
        managed["real_servers"] = None
    for line in text.splitlines():
        m = _RS.match(line)
        if m and managed["real_servers"] is not None:
            managed["real_servers"].append(
                {
                    "protocol": m.group(1),
                    "vip": m.group(2),
                    "port": int(m.group(3)),
                    "address": m.group(4),
                    "name": m.group(5) or m.group(4),
                }
            )
            continue
        m = _VS.match(line)
        if m:
            managed["virtual_servers"].append({"protocol": m.group(1), "vip": m.group(2), "port": int(m.group(3))})
            continue
        m = _ADDR.match(line)
        if m:
            managed["addresses"].append({"address": m.group(1), "dev": m.group(2)})
    return True, MARKER in text or "Managed by dsrprov" in text, managed


def sysctls_ok(path, wanted):
    """The file sets exactly the wanted values, and they are live."""
    if not path:
        return not wanted
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return not wanted
    in_file = {}
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _sep, value = line.partition("=")
            in_file[key.strip()] = value.strip()
    want = dict((str(k), str(v).strip()) for k, v in wanted.items())
    if in_file != want:
        return False
    for key, value in want.items():
        try:
            with open("/proc/sys/" + key.replace(".", "/"), encoding="ascii") as handle:
                if handle.read().strip() != value:
                    return False
        except OSError:
            return False
    return True


def macvlan_available():
    """Loaded, built in, or a module the kernel can load (modprobe happens when the link is made)."""
    if os.path.isdir("/sys/module/macvlan"):
        return True
    base = os.path.join("/lib/modules", os.uname().release)
    for name in ("modules.dep", "modules.builtin"):
        try:
            with open(os.path.join(base, name), encoding="utf-8", errors="replace") as handle:
                if re.search(r"(^|/)macvlan\.ko", handle.read(), re.M):
                    return True
        except OSError:
            continue
    return False


def file_state(path):
    """What a copy or template task would compare: content, mode and owner."""
    try:
        st = os.stat(path)
    except OSError:
        return {"exists": False, "dir": False, "sha1": "", "mode": "", "uid": -1, "gid": -1}
    digest = ""
    if os.path.isfile(path):
        sha1 = hashlib.sha1()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(65536), b""):
                sha1.update(chunk)
        digest = sha1.hexdigest()
    return {
        "exists": True,
        "dir": os.path.isdir(path),
        "sha1": digest,
        "mode": "%04o" % (st.st_mode & 0o7777),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def unit_states(module, systemctl, units):
    """Each unit's active and enabled state, from one systemctl call."""
    if not units:
        return {}
    if not systemctl:
        return {u: {"active": False, "enabled": False} for u in units}
    _rc, out, _err = module.run_command([systemctl, "show", "--property=Id,ActiveState,UnitFileState", "--", *units])
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line) for block in out.split("\n\n")]
    # systemctl show prints one block per unit, in the order asked.
    states = {}
    for i, unit in enumerate(units):
        block = blocks[i] if i < len(blocks) else {}
        states[unit] = {
            "active": block.get("ActiveState") == "active",
            "enabled": block.get("UnitFileState") == "enabled",
        }
    return states


def main():
    module = AnsibleModule(
        argument_spec={
            "config_path": {"type": "path", "required": True},
            "modules_load_file": {"type": "path", "required": True},
            "address": {"type": "str", "default": ""},
            "sysctl_file": {"type": "path"},
            "sysctls": {"type": "dict", "default": {}},
            "probe_config": {"type": "path"},
            "probe_netns": {"type": "str", "default": "dsrprov-dsrpath"},
            "files": {"type": "list", "elements": "path", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    ip = which("ip")
    if not ip:
        module.fail_json(msg="dsrprov: the ip command (iproute2) is missing on this host")
    rc, out, err = module.run_command([ip, "-j", "addr", "show"])
    if rc != 0:
        module.fail_json(msg="dsrprov: ip -j addr show failed: %s" % err.strip())
    addresses = []
    links = json.loads(out or "[]")
    for link in links:
        for info in link.get("addr_info", []):
            if info.get("scope") != "global" or info.get("family") not in ("inet", "inet6"):
                continue
            addresses.append(
                {
                    "address": info["local"],
                    "prefixlen": int(info["prefixlen"]),
                    "interface": link["ifname"],
                    "family": 4 if info["family"] == "inet" else 6,
                }
            )
    wanted = module.params["address"]
    iface = next((a["interface"] for a in addresses if a["address"] == wanted), "")
    if not iface:
        rc, out, err = module.run_command([ip, "-j", "route", "show", "default"])
        if rc == 0:
            routes = json.loads(out or "[]")
            iface = routes[0].get("dev", "") if routes else ""
    systemctl = which("systemctl")
    active = enabled = False
    if systemctl:
        rc, out, err = module.run_command([systemctl, "is-active", "keepalived.service"])
        active = out.strip() == "active"
        rc, out, err = module.run_command([systemctl, "is-enabled", "keepalived.service"])
        enabled = out.strip() == "enabled"
    try:
        with open(module.params["modules_load_file"], encoding="utf-8", errors="replace") as handle:
            modules_load = handle.read()
    except FileNotFoundError:
        modules_load = None
    present, managed_file, managed = read_manifest(module.params["config_path"])
    module.exit_json(
        changed=False,
        addresses=addresses,
        interfaces=sorted(link["ifname"] for link in links),
        address_interface=iface,
        keepalived=which("keepalived"),
        ipvsadm=which("ipvsadm"),
        ip_command=ip,
        keepalived_active=active,
        keepalived_enabled=enabled,
        ip_vs_loaded=os.path.isdir("/sys/module/ip_vs"),
        modules_load_content=modules_load,
        sysctls_ok=sysctls_ok(module.params["sysctl_file"], module.params["sysctls"]),
        config_present=present,
        config_managed=managed_file,
        managed=managed,
        python3=which("python3"),
        netns=os.path.exists("/proc/self/ns/net"),
        macvlan=macvlan_available(),
        probe_present=bool(module.params["probe_config"] and os.path.exists(module.params["probe_config"]))
        or os.path.exists(os.path.join("/run/netns", module.params["probe_netns"])),
        files=dict((path, file_state(path)) for path in module.params["files"]),
        units=unit_states(module, systemctl, module.params["units"]),
        auth_files=sorted(
            glob.glob(os.path.join(os.path.dirname(module.params["config_path"]), "dsrprov-vrrp-*.auth"))
        ),
    )


if __name__ == "__main__":
    main()
