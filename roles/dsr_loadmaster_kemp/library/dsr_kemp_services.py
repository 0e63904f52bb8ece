#!/usr/bin/python
"""Register the DSR services and their real servers at a Kemp LoadMaster (Force L4, "Direct return")."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dsr_kemp_services
short_description: Kemp LoadMaster Virtual Services forced to layer 4, with "Direct return" (route) real servers
description:
  - Runs on the controller and talks to the LoadMaster's RESTful API (v1, C(https://LM/access/<command>), XML
    answers) over HTTPS with certificate validation, by a CA file, the system trust store, or a pinned SHA-256
    fingerprint of the LoadMaster's certificate (checked before any credential is sent).
  - "For each service: the Virtual Service VIP:port/protocol exists (C(addvs)), is enabled, forced to layer 4
    (C(modvs) with C(ForceL4=Y), or C(ForceL7=N) on firmware that only reports C(ForceL7)), and has the service's
    C(Schedule); each real server exists (C(addrs)) with C(Forward=route) (the WUI's \"Direct return\"), the
    service port, its weight and C(Enable=Y)."
  - A Virtual Service that uses what DSR cannot honour (SSL acceleration or re-encryption, content or header rules,
    caching, compression, WAF, ESP, SubVSs, persistence other than source IP) is refused with one readable line,
    before anything changes.
  - "Real servers that leave (not in I(real_servers) with I(purge), or all with I(state=absent)) are drained first
    (C(modrs Enable=N): no new connection reaches them), then, after I(drain_seconds), deleted (C(delrs)).
    I(state=absent) then deletes the Virtual Service (C(delvs))."
  - Every read comes first (C(listvs), C(showvs)); after the changes the services are read back, so a parameter
    the firmware silently ignored fails the task instead of passing for a success.
  - Supports check mode (reads, writes nothing, does not wait) and diff mode (the settings that matter for DSR,
    C(Enable), C(ForceL4)/C(ForceL7), C(Schedule) of the Virtual Service, C(Forward), C(Weight), C(Enable) of each
    real server). Credentials never appear in the results or the diff.
  - "API pages followed (Progress Kemp documentation):
    RESTful API Interface Description U(https://support.kemptechnologies.com/hc/en-us/articles/203863435-RESTful-API);
    Real Servers (showrs, addrs, modrs, delrs, the C(<Rs>) fields)
    U(https://docs.progress.com/bundle/loadmaster-configuration-guide-web-user-interface-wui-ltsf/page/Real-Servers_4.html);
    Add a Virtual Service U(https://docs.progress.com/bundle/loadmaster-technical-note-restful-api-programmer-guide-ga/page/Add-a-Virtual-Service-and-Set-Values.html);
    Modify a Real Server U(https://docs.progress.com/bundle/loadmaster-technical-note-restful-api-programmer-guide-ga/page/Modify-a-Real-Server.html);
    POST instead of query parameters U(https://docs.progress.com/bundle/loadmaster-technical-note-restful-api-programmer-guide-ltsf/page/API-Examples.html);
    error reports U(https://docs.progress.com/de-DE/bundle/multi-tenant-loadmaster-interface-description-multi-tenant-loadmaster-api-ga/page/Error-Reports.html);
    API keys U(https://support.kemptechnologies.com/hc/en-us/articles/360052814551-JSON-based-Input-and-Output-for-the-LoadMaster-RESTful-API);
    Force L4 U(https://docs.progress.com/bundle/loadmaster-configuration-guide-web-user-interface-wui-ga/page/Standard-Options.html);
    DSR U(https://support.kemptechnologies.com/hc/en-us/articles/115002958203-How-to-configure-Direct-Server-Return-DSR-on-Kemp-LoadMaster-)."
options:
  address:
    description: The LoadMaster's API address, C(host), C(host:port), C([v6]:port); port 443 by default.
    type: str
    required: true
  api_key:
    description: An API key (sent as the C(apikey) parameter in the POST body). Takes precedence over I(user).
    type: str
  user:
    description: User for HTTP basic authentication (with I(password)).
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
      - "The services, as the service model gives them: C(name), C(vip), C(port), C(protocol), C(lb_algo), and
        C(real_servers): C([{name, address, weight}]). The real server port is the service port."
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
      - How to force layer 4. C(auto) sends C(ForceL4=Y) when the firmware reports C(ForceL4), else C(ForceL7=N).
    type: str
    choices: [auto, ForceL4, ForceL7]
    default: auto
author: dsrprov developers
"""

EXAMPLES = r"""
- name: Register the services at the LoadMaster
  dsr_kemp_services:
    address: 192.0.2.5
    api_key: "{{ vault_kemp_api_key }}"
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
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dsr_kemp import Client, KempError, Reconciler, normalize_fingerprint


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
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["api_key"] and not (p["user"] and p["password"]):
        module.fail_json(msg="dsrprov: no LoadMaster credentials: set dsr_loadmaster_kemp_api_key, or "
                             "dsr_loadmaster_kemp_user and dsr_loadmaster_kemp_password (from a vault)")
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
            rss.append({"name": rs.get("name") or rs["address"], "address": str(rs["address"]),
                        "weight": int(rs.get("weight", 1))})
        services.append({"name": str(svc["name"]), "vip": str(svc["vip"]), "port": int(svc["port"]),
                         "protocol": str(svc["protocol"]).lower(), "lb_algo": str(svc.get("lb_algo") or "wlc"),
                         "real_servers": rss})
    try:
        client = Client(p["address"], api_key=p["api_key"], user=p["user"], password=p["password"],
                        ca_file=p["ca_file"], fingerprint=p["fingerprint"], timeout=p["timeout"])
        rec = Reconciler(client, check=module.check_mode, purge=p["purge"], force_param=p["force_parameter"],
                         drain_seconds=p["drain_seconds"])
        changed = rec.run(services, p["state"])
    except KempError as exc:
        module.fail_json(msg=f"dsrprov: {exc}")
    result = {"changed": changed, "actions": rec.actions, "services": rec.after}
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
