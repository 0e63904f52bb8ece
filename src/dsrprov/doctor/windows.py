"""Doctor's findings on a Windows real server, from the WinRM probe's facts."""

from __future__ import annotations

import ipaddress

from dsrprov.connect.winrm import WindowsFacts
from dsrprov.doctor.findings import Finding


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def findings(host: str, facts: WindowsFacts, vips: list[str], *, metric: int = 254) -> list[Finding]:
    out: list[Finding] = []
    loops = facts.loopbacks
    if not loops:
        names = ", ".join(f"{a.name} ({a.description})" for a in facts.adapters) or "none"
        return [Finding("win-loopback-missing", host, f"{host}: no KM-TEST loopback adapter", [f"adapters: {names}"])]
    on_lo = facts.loopback_vips()
    for vip in vips:
        if not any(_same(vip, a) for a in on_lo):
            out.append(Finding("rs-vip-missing", host, f"{host}: VIP {vip} is not on the loopback adapter",
                               [f"loopback holds: {', '.join(on_lo) or 'no VIP'}"], {"vip": vip}))  # fmt: skip
    families = sorted({"IPv6" if ":" in v else "IPv4" for v in vips}) or ["IPv4"]
    for loop in loops:
        for fam in families:
            i = facts.interface(loop.ifindex, fam)
            if i is None:
                continue
            if i.metric != metric or i.automatic_metric != "Disabled":
                out.append(Finding("win-metric", host, f"{host}: {loop.name} {fam} metric {i.metric}, automatic "
                                   f"metric {i.automatic_metric}", [f"want {metric}, automatic Disabled"]))  # fmt: skip
            if i.weak_host_send != "Enabled" or i.weak_host_receive != "Enabled":
                out.append(Finding("win-weakhost", host, f"{host}: {loop.name} {fam} weakhostsend "
                                   f"{i.weak_host_send}, weakhostreceive {i.weak_host_receive}",
                                   ["the loopback needs both, the network adapter weakhostreceive"]))  # fmt: skip
        category = facts.profiles.get(loop.ifindex, "")
        public_rule = any("Public" in p or p in ("Any", "") for _, p in facts.firewall_rules)
        if category == "Public" and facts.public_firewall == "True" and not public_rule:
            rules = ", ".join(f"{n} ({p})" for n, p in facts.firewall_rules) or "no dsrprov rule"
            out.append(Finding("win-firewall-public", host, f"{host}: {loop.name} is in the Public profile, whose "
                               "firewall lets no VIP port in", [f"Public firewall on; rules: {rules}"]))  # fmt: skip
        if facts.dns_register.get(loop.ifindex):
            out.append(Finding("win-dns-register", host, f"{host}: {loop.name} registers its addresses in DNS",
                               ["RegisterThisConnectionsAddress: True"]))  # fmt: skip
    return out
