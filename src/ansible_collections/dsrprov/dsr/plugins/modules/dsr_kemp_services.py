#!/usr/bin/python
"""Register the DSR services and their real servers at a Kemp LoadMaster (Force L4, "Direct return")."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_kemp_services
short_description: Kemp LoadMaster Virtual Services forced to layer 4, with "Direct return" (route) real servers
description:
  - Runs on the controller and talks to the LoadMaster's RESTful API over HTTPS with certificate validation, by a CA
    file, the system trust store, or a pinned SHA-256 fingerprint of the LoadMaster's certificate (checked before any
    credential is sent). With I(user) and I(password), the default and recommended way, the v1 API (C(POST
    https://LM/access/<command>), parameters in the form body, HTTP basic authentication, XML answers); with only
    I(api_key), the v2 JSON API (C(POST https://LM/accessv2), the key in the JSON body, Kemp's documented form,
    firmware 7.2.50 or later with Session Management enabled). No secret is ever put in a URL.
  - "For each service, in Kemp's order: the Virtual Service VIP:port/protocol exists (C(addvs)), is enabled, has
    the service's C(Schedule), health check and persistence, and is forced to layer 4 (C(modvs) with C(ForceL4=Y)
    and C(ForceL7=N) where the firmware reports both flags, C(ForceL7=N) where it reports only C(ForceL7)). It is
    read back right away (the firmware's C(Layer) where reported) and only then are the real servers added
    (C(addrs)) with C(Forward=route) (the WUI's Direct return), the service port, their weight and C(Enable=Y).
    A Virtual Service this task created and could not bring to layer 4 is deleted again."
  - "Health check: the service's C(health_check) C(tcp) becomes C(CheckType=tcp) on its port, C(http) becomes
    C(CheckType=http) with C(CheckUseGet=1) (GET, as keepalived's HTTP_GET; the LoadMaster's default is HEAD),
    C(CheckPort), C(CheckUrl) (the path) and C(CheckCodes) (a status from 300 to 599; 2xx are always up), C(udp)
    becomes C(CheckType=icmp) (the LoadMaster has no UDP port check). Without a type (see I(explicit_checks)) a tcp
    service gets C(tcp) on its port and a udp service the LoadMaster's own UDP default, C(icmp), never a TCP check.
    Every check setting is read back. Its timers are not mapped. Persistence: C(persistence_timeout) becomes
    source-IP persistence (C(Persist=src), C(PersistTimeout)), none without it."
  - "Ownership: a Virtual Service this module created carries C(NickName=dsrprov-<service>); any other Virtual
    Service at a service's VIP:port/protocol is refused in one line naming I(adopt), before anything changes, unless
    the service is adopted. Real servers are drained and deleted only when this module registered them (recorded in
    I(ownership_file)) or the service is adopted; others are left alone, with a warning. C(state=absent) keeps a
    Virtual Service that still holds real servers it did not register."
  - Refused before any request, in one line, is what the LoadMaster would refuse (a weight above 65530, a
    persistence longer than 604800 seconds, an C(lb_algo) it does not have), and a service with no real server
    unless it says C(allow_empty); refused before any change is a real server on no subnet of the LoadMaster (its
    interface and additional addresses, from C(showiface); see I(check_networks)), and a Virtual Service that uses
    what DSR cannot honour (SSL acceleration, re-encryption or reverse SSL, content rules by name or by counter,
    caching, compression, WAF, ESP, SubVSs, persistence other than source IP). A VIP on another subnet than its
    real servers is a warning (a two-armed LoadMaster does DSR too).
  - "Real servers that leave (not in I(real_servers) with I(purge), or all with I(state=absent)) are drained first
    (C(modrs Enable=N): no new connection reaches them), then, after I(drain_seconds), deleted (C(delrs)).
    I(state=absent) then deletes the Virtual Service (C(delvs))."
  - Every read comes first (C(listvs), C(showvs), C(showiface)); after the changes the services are read back, so
    a parameter the firmware silently ignored fails the task instead of passing for a success.
  - Supports check mode (reads, writes nothing, does not wait) and diff mode (the settings that matter for DSR,
    C(Enable), C(Schedule), C(Layer), C(ForceL4)/C(ForceL7), the check and persistence settings of the Virtual
    Service, C(Forward), C(Weight), C(Enable) of each real server). Credentials never appear in the results or the
    diff.
  - The sources followed, Kemp's pages, Kemp's PowerShell module and answers recorded from real firmware, are
    listed in docs/kemp.md with what each confirms and what is still unconfirmed.
options:
  address:
    description: The LoadMaster's API address, C(host), C(host:port), C([v6]:port); port 443 by default.
    type: str
    required: true
  api_key:
    description:
      - An API key, used only without I(user) and I(password); sent as C(apikey) in the JSON body of the v2 API
        (C(/accessv2)), never in a URL.
    type: str
  user:
    description:
      - User for HTTP basic authentication (with I(password)), the default and recommended way; the password travels
        in the C(Authorization) header only.
    type: str
  password:
    description: Password of I(user).
    type: str
  ca_file:
    description: PEM file of the CA that signed the LoadMaster's certificate (the certificate must name I(address)).
    type: path
  fingerprint:
    description:
      - SHA-256 fingerprint of the LoadMaster's certificate (C(AB:CD:...) or 64 hex digits), for self-signed
        certificates. Without I(ca_file) it replaces chain and name validation; with it, both must pass.
    type: str
  timeout:
    description: Seconds per API call.
    type: float
    default: 15
  services:
    description:
      - "The services, as the service model gives them: C(name), C(vip), C(port), C(protocol), C(lb_algo),
        C(health_check), C(persistence_timeout), C(allow_empty), and C(real_servers) (a list of C(name), C(address),
        C(weight)). The real server port is the service port. C(adopt=true) on a service hands its pre-existing
        Virtual Service and all its real servers over to this module."
      - A service with no real server is refused unless it says C(allow_empty=true) (with I(state=present)).
    type: list
    elements: dict
    required: true
  state:
    description: C(present) registers; C(absent) drains and deletes the real servers, then the Virtual Services.
    type: str
    choices: [present, absent]
    default: present
  purge:
    description: Drain and delete real servers of these Virtual Services that are not in I(real_servers).
    type: bool
    default: true
  drain_seconds:
    description: Seconds between disabling leaving real servers and deleting them.
    type: float
    default: 30
  force_parameter:
    description:
      - How to force layer 4. C(auto) sends C(ForceL4=Y) and C(ForceL7=N) where the firmware reports C(ForceL4),
        else C(ForceL7=N). C(ForceL4) or C(ForceL7) sends only that one. Success is judged by the read-back
        (C(Layer) where reported) in every case.
    type: str
    choices: [auto, ForceL4, ForceL7]
    default: auto
  check_networks:
    description:
      - Before any change, refuse a real server on no subnet of the LoadMaster's interfaces or their additional
        addresses (C(showiface)); Direct return only rewrites the MAC address. A VIP on another subnet than its real
        servers is a warning only.
    type: bool
    default: true
  adopt:
    description:
      - Names of services whose pre-existing Virtual Service (and its real servers) is handed over, as with
        C(adopt=true) on the service.
    type: list
    elements: str
    default: []
  ownership_file:
    description:
      - JSON file on the controller recording the real servers this module registered, per Virtual Service; read
        before and written after each run (not in check mode). Keep it with the inventory. Without it, only the real
        servers of adopted services are ever drained and deleted.
    type: path
  explicit_checks:
    description:
      - Names of the services whose C(health_check) type was given in the inventory; the others get their
        protocol's default check. Unset, every C(health_check) with a C(type) counts as given.
    type: list
    elements: str
  add:
    description:
      - "C(false) only drains and deletes the real servers that leave (with I(purge)) and changes nothing else: no
        Virtual Service is created or changed, no real server added. site.yml runs it so before the real servers
        change, so that a real server that loses its VIP has left the LoadMaster first."
    type: bool
    default: true
author: dsrprov maintainers (@dsrprov)
"""

EXAMPLES = r"""
- name: Register the services at the LoadMaster
  dsrprov.dsr.dsr_kemp_services:
    address: 192.0.2.5
    user: bal
    password: "{{ vault_kemp_password }}"
    ownership_file: "{{ inventory_dir }}/dsrprov_kemp/lm1.json"
    fingerprint: "3A:...:F0"
    services:
      - name: web
        vip: 192.0.2.100
        port: 80
        protocol: tcp
        lb_algo: rr
        real_servers:
          - {name: web1, address: 192.0.2.11, weight: 1}
"""

RETURN = r"""
actions:
  description: The API changes made (or, in check mode, that would be made), one line each; no secrets.
  returned: always
  type: list
  elements: str
services:
  description: Each service as the LoadMaster reports it afterwards (in check mode, as it would be), one line each.
  returned: always
  type: list
  elements: str
warnings_seen:
  description: What was left alone or is only a warning (foreign real servers, a VIP off its real servers' subnet).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dsrprov.dsr.plugins.module_utils.kemp_api import (
    Client,
    KempError,
    Reconciler,
    normalize_fingerprint,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "api_key": {"type": "str", "no_log": True},
            "user": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "ca_file": {"type": "path"},
            "fingerprint": {"type": "str"},
            "timeout": {"type": "float", "default": 15},
            "services": {"type": "list", "elements": "dict", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "purge": {"type": "bool", "default": True},
            "drain_seconds": {"type": "float", "default": 30},
            "force_parameter": {"type": "str", "choices": ["auto", "ForceL4", "ForceL7"], "default": "auto"},
            "check_networks": {"type": "bool", "default": True},
            "adopt": {"type": "list", "elements": "str", "default": []},
            "ownership_file": {"type": "path"},
            "explicit_checks": {"type": "list", "elements": "str"},
            "add": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["api_key"] and not (p["user"] and p["password"]):
        module.fail_json(
            msg="dsrprov: no LoadMaster credentials: set dsr_loadmaster_kemp_user and dsr_loadmaster_kemp_password, "
            "or dsr_loadmaster_kemp_api_key (from a vault)"
        )
    if p["ca_file"]:
        try:
            with open(p["ca_file"], "rb"):
                pass
        except OSError as exc:
            module.fail_json(msg=f"dsrprov: cannot read the CA file {p['ca_file']}: {exc.strerror}")
    if p["fingerprint"]:
        try:
            normalize_fingerprint(p["fingerprint"])
        except ValueError as exc:
            module.fail_json(msg=f"dsrprov: dsr_loadmaster_kemp_fingerprint: {exc}")
    if p["drain_seconds"] < 0:
        module.fail_json(msg="dsrprov: drain_seconds must not be negative")
    services = []
    for i, svc in enumerate(p["services"]):
        missing = [k for k in ("name", "vip", "port", "protocol") if svc.get(k) in (None, "")]
        if missing:
            module.fail_json(msg=f"dsrprov: services[{i}] has no {', '.join(missing)}")
        rss = []
        for rs in svc.get("real_servers") or []:
            if not rs.get("address"):
                module.fail_json(msg=f"dsrprov: service {svc['name']}: a real server has no address")
            rss.append(
                {
                    "name": rs.get("name") or rs["address"],
                    "address": str(rs["address"]),
                    "weight": int(rs.get("weight", 1)),
                }
            )
        hc = svc.get("health_check") or {}
        if not isinstance(hc, dict):
            module.fail_json(msg=f"dsrprov: service {svc['name']}: health_check must be a mapping")
        hc = dict(hc)
        if p["explicit_checks"] is not None and str(svc["name"]) not in p["explicit_checks"]:
            hc.pop("type", None)  # the model's default: the protocol's default check here
        for key in ("adopt", "allow_empty"):
            if not isinstance(svc.get(key, False), bool):
                module.fail_json(msg=f"dsrprov: service {svc['name']}: {key} must be true or false")
        services.append(
            {
                "name": str(svc["name"]),
                "vip": str(svc["vip"]),
                "port": int(svc["port"]),
                "protocol": str(svc["protocol"]).lower(),
                "lb_algo": str(svc.get("lb_algo") or "wlc"),
                "health_check": hc,
                "persistence_timeout": svc.get("persistence_timeout"),
                "real_servers": rss,
                "allow_empty": bool(svc.get("allow_empty", False)),
                "adopt": bool(svc.get("adopt", False)) or str(svc["name"]) in p["adopt"],
            }
        )
    try:
        client = Client(
            p["address"],
            api_key=p["api_key"],
            user=p["user"],
            password=p["password"],
            ca_file=p["ca_file"],
            fingerprint=p["fingerprint"],
            timeout=p["timeout"],
        )
        rec = Reconciler(
            client,
            check=module.check_mode,
            purge=p["purge"],
            force_param=p["force_parameter"],
            drain_seconds=p["drain_seconds"],
            check_networks=p["check_networks"],
            add=p["add"],
            owner_file=p["ownership_file"],
        )
        changed = rec.run(services, p["state"])
    except KempError as exc:
        module.fail_json(msg=f"dsrprov: {exc}")
    for warning in rec.warnings:
        module.warn(f"dsrprov: {warning}")
    result = {"changed": changed, "actions": rec.actions, "services": rec.after, "warnings_seen": rec.warnings}
    if module._diff:
        result["diff"] = {
            "before_header": f"LoadMaster {p['address']}",
            "after_header": f"LoadMaster {p['address']}",
            "before": "\n".join(rec.before) + "\n",
            "after": "\n".join(rec.after) + "\n",
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
