#!/usr/bin/python
"""Remove what keepalived left behind of dsrprov's own virtual servers and VIPs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_director_cleanup
short_description: Delete the IPVS virtual services and VIP addresses dsrprov's keepalived configuration created
description:
  - keepalived removes its own virtual servers and static addresses when it stops;
    this module removes whatever is still there (keepalived killed, stopped with C(-I),
    or never started), and nothing else.
  - Only the entries given are touched; other IPVS services and addresses stay.
  - Supports check mode.
options:
  virtual_servers:
    description: "C({protocol, vip, port}) entries to delete from IPVS if present."
    type: list
    elements: dict
    default: []
  addresses:
    description: "C({address, dev}) entries (address with its prefix) to delete if present."
    type: list
    elements: dict
    default: []
author: dsrprov maintainers (@dsrprov)
"""

EXAMPLES = r"""
- name: Remove what a stopped keepalived left behind
  dsrprov.dsr.dsr_director_cleanup:
    virtual_servers:
      - {protocol: tcp, vip: 192.0.2.10, port: 80}
    addresses:
      - {address: 192.0.2.10/32, dev: eth0}
"""

RETURN = r"""
removed:
  description: What was (or, in check mode, would be) removed.
  returned: always
  type: list
"""

import ipaddress
import json
import os
import shutil

from ansible.module_utils.basic import AnsibleModule

SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def which(name):
    return shutil.which(name) or next(
        (os.path.join(d, name) for d in SBIN if os.access(os.path.join(d, name), os.X_OK)), ""
    )


def ipvs_services(path="/proc/net/ip_vs"):
    """The live virtual services as {(protocol, vip, port)}, read from /proc (no ipvsadm needed)."""
    found = set()
    try:
        with open(path, encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split()
        if len(parts) < 2 or parts[0] not in ("TCP", "UDP"):
            continue
        host, _sep, port = parts[1].rpartition(":")
        try:
            if host.startswith("["):
                vip = ipaddress.ip_address(host.strip("[]"))
            else:
                vip = ipaddress.ip_address(int(host, 16))
            found.add((parts[0].lower(), str(vip), int(port, 16)))
        except ValueError:
            continue
    return found


def main():
    module = AnsibleModule(
        argument_spec={
            "virtual_servers": {"type": "list", "elements": "dict", "default": []},
            "addresses": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    removed = []
    live = ipvs_services()
    ipvsadm = which("ipvsadm")
    for vs in module.params["virtual_servers"]:
        key = (str(vs["protocol"]).lower(), str(ipaddress.ip_address(vs["vip"])), int(vs["port"]))
        if key not in live:
            continue
        removed.append("virtual_server %s %s %s" % key)
        if module.check_mode:
            continue
        if not ipvsadm:
            module.fail_json(msg="dsrprov: IPVS service %s %s:%s is left but ipvsadm is missing" % key, removed=removed)
        flag = "-t" if key[0] == "tcp" else "-u"
        target = "[%s]:%d" % (key[1], key[2]) if ":" in key[1] else "%s:%d" % (key[1], key[2])
        rc, out, err = module.run_command([ipvsadm, "-D", flag, target])
        if rc != 0:
            module.fail_json(msg="dsrprov: ipvsadm -D %s %s failed: %s" % (flag, target, err.strip()), removed=removed)
    ip = which("ip")
    if module.params["addresses"]:
        rc, out, err = module.run_command([ip, "-j", "addr", "show"])
        if rc != 0:
            module.fail_json(msg="dsrprov: ip -j addr show failed: %s" % err.strip())
        held = set()
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                held.add(("%s/%s" % (info.get("local"), info.get("prefixlen")), link.get("ifname")))
        for entry in module.params["addresses"]:
            iface = ipaddress.ip_interface(entry["address"])
            key = ("%s/%d" % (iface.ip, iface.network.prefixlen), entry["dev"])
            if key not in held:
                continue
            removed.append("address %s dev %s" % key)
            if module.check_mode:
                continue
            rc, out, err = module.run_command([ip, "addr", "del", key[0], "dev", key[1]])
            if rc != 0:
                module.fail_json(msg="dsrprov: ip addr del %s dev %s failed: %s" % (key[0], key[1], err.strip()))
    module.exit_json(changed=bool(removed), removed=removed)


if __name__ == "__main__":
    main()
