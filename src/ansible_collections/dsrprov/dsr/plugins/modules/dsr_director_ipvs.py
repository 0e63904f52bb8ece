#!/usr/bin/python
"""Wait until the kernel's IPVS table holds what keepalived was told; changes nothing."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_director_ipvs
short_description: Wait for a director's IPVS table to drain leaving real servers, or to match the model
description:
  - Read-only. keepalived applies a reload asynchronously and adds a real server only once its health
    check passes; this module reads C(/proc/net/ip_vs) until the table holds what it should, so that a
    run ends only when IPVS really does.
  - With I(drain), waits until each listed real server has weight 0 in IPVS (quiesced by keepalived) and
    then until its active connections are gone, or I(timeout) passes (then the run goes on and the
    connections still open are reported in I(cut)).
  - With I(expect), waits until every service's destinations are exactly its real servers, each with its
    weight; a real server in I(expect) with C(required=false) may be missing (its health check fails), the
    others must be there. Fails with one line naming what is missing or left over after I(timeout).
options:
  drain:
    description: "Real servers to drain: C({protocol, vip, port, address})."
    type: list
    elements: dict
    default: []
  expect:
    description:
      - "Services as they should be: C({protocol, vip, port, real_servers: [{name, address, weight, required}]})."
      - Services not listed are not looked at.
    type: list
    elements: dict
    default: []
  timeout:
    description: Seconds to wait.
    type: float
    default: 30
  interval:
    description: Seconds between reads.
    type: float
    default: 0.25
author: dsrprov maintainers (@dsrprov)
"""

EXAMPLES = r"""
- name: Wait until the real servers that leave have no active connection
  dsrprov.dsr.dsr_director_ipvs:
    drain:
      - {protocol: tcp, vip: 192.0.2.10, port: 80, address: 192.0.2.21}
    timeout: 30

- name: Read IPVS back
  dsrprov.dsr.dsr_director_ipvs:
    expect:
      - protocol: tcp
        vip: 192.0.2.10
        port: 80
        real_servers:
          - {name: web1, address: 192.0.2.22, weight: 1, required: true}
"""

RETURN = r"""
ipvs:
  description: The table as last read (C(/proc/net/ip_vs)).
  returned: always
  type: list
waited:
  description: Seconds waited.
  returned: always
  type: float
drained:
  description: Whether every real server in I(drain) reached weight 0 and no active connection.
  returned: always
  type: bool
cut:
  description: Active connections still open on drained real servers when I(timeout) passed.
  returned: always
  type: int
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dsrprov.dsr.plugins.module_utils import ipvs


def drain_state(table, drain):
    """(all quiesced and idle, active connections left, what is not yet quiesced)."""
    live = ipvs.index(table)
    active = 0
    waiting = []
    for item in drain:
        dest = live.get(ipvs.key(item["protocol"], item["vip"], item["port"]), {}).get(item["address"])
        if dest is None:
            continue  # already gone: nothing to drain
        if dest["weight"] != 0:
            waiting.append("%s still has weight %d" % (item["address"], dest["weight"]))
        active += dest["active"]
    return not waiting and active == 0, active, waiting


def expect_problems(table, expect):
    """What differs between the table and the services expected, one phrase each."""
    live = ipvs.index(table)
    problems = []
    for svc in expect:
        label = "%s %s:%s" % (svc["protocol"], svc["vip"], svc["port"])
        dests = live.get(ipvs.key(svc["protocol"], svc["vip"], svc["port"]))
        servers = svc.get("real_servers") or []
        if dests is None:
            if any(rs.get("required", True) for rs in servers):
                problems.append("service %s is not in IPVS" % label)
            continue
        wanted = {}
        for rs in servers:
            wanted[str(ipvs.key("tcp", rs["address"], 0)[1])] = rs
        for address in sorted(set(dests) - set(wanted)):
            problems.append("service %s still sends to %s, which it should not" % (label, address))
        for address, rs in wanted.items():
            dest = dests.get(address)
            name = rs.get("name") or address
            if dest is None:
                if rs.get("required", True):
                    problems.append("real server %s (%s) is not in service %s" % (name, address, label))
            elif dest["weight"] != int(rs.get("weight", 1)):
                problems.append(
                    "real server %s (%s) has weight %d in service %s, not %d"
                    % (name, address, dest["weight"], label, int(rs.get("weight", 1)))
                )
    return problems


def main():
    module = AnsibleModule(
        argument_spec={
            "drain": {"type": "list", "elements": "dict", "default": []},
            "expect": {"type": "list", "elements": "dict", "default": []},
            "timeout": {"type": "float", "default": 30},
            "interval": {"type": "float", "default": 0.25},
        },
        supports_check_mode=True,
    )
    p = module.params
    start = time.monotonic()
    drained, cut, waiting, problems = True, 0, [], []
    while True:
        table = ipvs.read()
        if p["drain"]:
            drained, cut, waiting = drain_state(table, p["drain"])
        problems = expect_problems(table, p["expect"]) if p["expect"] else []
        done = drained and not problems
        if done or time.monotonic() - start >= p["timeout"]:
            break
        time.sleep(p["interval"])
    waited = round(time.monotonic() - start, 2)
    result = {"changed": False, "ipvs": table, "waited": waited, "drained": drained, "cut": cut}
    if problems:
        module.fail_json(msg="dsrprov: after %gs: %s" % (p["timeout"], "; ".join(problems)), **result)
    if waiting:
        module.fail_json(
            msg="dsrprov: keepalived did not quiesce the real servers that leave within %gs: %s"
            % (p["timeout"], "; ".join(waiting)),
            **result,
        )
    if not drained:
        module.warn(
            "%d connection(s) were still open on the real servers that leave after %gs; they are cut"
            % (cut, p["timeout"])
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
