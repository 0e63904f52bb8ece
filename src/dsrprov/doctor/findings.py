"""What doctor can find: a stable id, a severity, the fix. The troubleshooting
table (docs/troubleshooting.md) is generated from :data:`CATALOGUE`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR = "error"  # DSR is broken for some traffic now
WARNING = "warning"  # it works now, and will break on a reboot, a bounce or a reload


_DOCTOR_LAB = "integration/test_doctor_lab.py::"
_LAB = f"{_DOCTOR_LAB}test_doctor_names_each_injected_fault_and_its_undoing_clears_it"
_UNIT = "unit/test_doctor_units.py::"
_RECORDED = " (recorded output: no Windows here)"
_GUARD = "unit/test_guard_status.py::"


@dataclass(frozen=True)
class Kind:
    id: str
    severity: str
    what: str  # the README's one-line description
    fix: str  # the fix; {host}, {vip}, {iface}, {port} filled in per finding
    proof: str = ""  # the test that injects the fault (README); checked to exist by the unit tests


CATALOGUE: dict[str, Kind] = {
    k.id: k
    for k in (
        # -- a Linux real server ------------------------------------------------
        Kind("rs-vip-missing", ERROR, "a VIP of the host is not on its loopback (IPv4 or IPv6)",
             "dsrprov enroll {host} (puts the inventory's VIPs back and persists them)",
             proof=f"{_DOCTOR_LAB}test_a_missing_vip_is_named_alike_whether_the_real_server_forwards_or_not "
             "[forwarding-off-ipv4], [forwarding-off-ipv6], [forwarding-on-ipv4], [forwarding-on-ipv6]"),
        Kind("rs-lo-down", ERROR, "lo is down: its addresses stay listed but the kernel no longer takes packets "
             "for them (and drops IPv6 VIPs unless keep_addr_on_down)",
             "ip link set lo up on {host}, then dsrprov enroll {host}; find what took it down (ip monitor link)",
             proof=f"{_LAB}[rs-lo-down]"),
        Kind("rs-vip-wide-prefix", ERROR, "a VIP is on lo with a prefix wider than /32 (/128): the host takes "
             "the whole prefix as local and cannot reach its other addresses",
             "ip addr del {address} dev lo, then dsrprov enroll {host} (puts it back as a host address)",
             proof=f"{_LAB}[rs-vip-wide-prefix]"),
        Kind("rs-vip-on-interface", ERROR, "a VIP is on a real interface: the host answers ARP/ND for it",
             "ip addr del {vip} dev {iface}, and remove it from that interface's network configuration",
             proof=f"{_LAB}[rs-vip-on-interface]"),
        Kind("rs-arp-weak", ERROR, "effective arp_ignore/arp_announce too weak (the kernel takes the larger of "
             "all and the interface)", "dsrprov enroll {host}; remove the setting that lowered them",
             proof=f"{_LAB}[rs-arp-weak]"),
        Kind("rs-arp-boot-override", WARNING, "a sysctl file read later at boot sets weaker ARP values than "
             "dsrprov's", "remove or raise the setting in the named file (it wins at the next boot)",
             proof=f"{_LAB}[rs-arp-boot-override]"),
        Kind("rs-service-not-on-vip", ERROR, "the service listens on the real address only, not on the VIP "
             "(the health check stays green, DR traffic fails)",
             "bind the service to the VIP {vip} or to all addresses (0.0.0.0 / ::)",
             proof=f"{_DOCTOR_LAB}test_the_service_bound_to_the_real_address_is_named_as_the_cause"),
        Kind("rs-rp-filter-drops", ERROR, "strict rp_filter drops the DR packets: the route back to the client "
             "leaves by another interface", "sysctl -w net.ipv4.conf.all.rp_filter=2 "
             "net.ipv4.conf.{iface}.rp_filter=2 (loose), persisted in /etc/sysctl.d",
             proof=f"{_LAB}[rs-rp-filter-drops]"),
        Kind("rs-return-via-director", ERROR, "the host's route back to the client goes through the director, "
             "which drops replies from its own VIP as martians",
             "route the client's traffic via the router, not via a director address",
             proof=f"{_LAB}[rs-return-via-director]"),
        Kind("rs-firewall-drops", ERROR, "a firewall on the host drops traffic to the VIP's port",
             "allow {vip} port {port} in the host's firewall",
             proof=f"{_LAB}[rs-firewall-drops]"),
        Kind("rs-dr-path-fails", ERROR, "a DR packet to the VIP gets no answer, cause not identified",
             "look at the evidence: the capture, the host's firewall, its routes",
             proof=f"{_UNIT}test_dr_probe_failures_are_put_on_the_finding_that_explains_them"),
        Kind("rs-dr-reply-wrong-mac", WARNING, "the DR reply did not come from the real server's MAC",
             "look for another host answering for the VIP on the segment",
             proof=f"{_UNIT}test_dr_probe_failures_are_put_on_the_finding_that_explains_them"),
        Kind("rs-lo-manager", WARNING, "a network manager owns lo and would remove the VIPs on its next "
             "reload or reapply", "put the VIPs into that manager's configuration for lo (dsrprov enroll "
             "{host} does it where it can), or remove the profile that matches lo",
             # Proven where a manager really runs (the plain lab image has no udev, so
             # networkd leaves its lo pending): the network-manager lab, hand-made VIPs.
             proof="integration/test_lo_managers.py::test_status_warns_where_the_manager_could_remove_hand_made_vips"
             ", integration/test_lo_managers.py::test_status_and_verify_name_the_manager_and_warn_of_nothing"),
        Kind("rs-ipv6-keep-addr-off", WARNING, "net.ipv6.conf.lo.keep_addr_on_down=0 with IPv6 VIPs: a lo "
             "bounce drops them", "sysctl -w net.ipv6.conf.lo.keep_addr_on_down=1, persisted (dsrprov enroll "
             "{host})",
             proof=f"{_LAB}[rs-ipv6-keep-addr-off]"),
        # -- the guard on a Linux real server (dsrprov-guard.service) -------------
        # Only where the inventory wants a guard (dsr_realserver_linux_guard_mode heal or report).
        Kind("rs-guard-down", WARNING, "the guard is not running (not installed, stopped or failed): nothing "
             "puts a VIP back between runs", "dsrprov enroll {host} (installs and starts it); journalctl -u "
             "dsrprov-guard says why it stopped",
             proof=f"{_GUARD}test_doctor_names_a_guard_that_is_down"),
        Kind("rs-guard-flapping", ERROR, "something keeps removing a VIP from lo; the guard stopped restoring it",
             "find what removes {vip} (journalctl -u dsrprov-guard; lo's network configuration), then dsrprov "
             "enroll {host}", proof=f"{_GUARD}test_doctor_names_flapping_and_report_mode"),
        Kind("rs-guard-report-vip-missing", ERROR, "the guard in report mode saw a VIP leave lo and did not put "
             "it back", "dsrprov enroll {host} (puts {vip} back); dsr_realserver_linux_guard_mode: heal lets the "
             "guard do it", proof=f"{_GUARD}test_doctor_names_flapping_and_report_mode"),
        # -- the segment, seen from the vantage host -----------------------------
        Kind("arp-rs-answers", ERROR, "a real server answers ARP (or ND) for the VIP",
             "dsrprov enroll {host} (ARP sysctls), then flush the router's neighbour entry for {vip}",
             proof=f"{_LAB}[rs-arp-weak], [rs-vip-on-interface]"),
        Kind("arp-several-macs", ERROR, "several MACs answer ARP/ND for the VIP",
             "keep the VIP on the director only; find the other host by its MAC",
             proof=f"{_LAB}[rs-arp-weak], [rs-vip-on-interface]"),
        Kind("arp-cache-holds-rs", WARNING, "the vantage host's neighbour cache holds a real server's MAC for "
             "the VIP (traffic bypasses the director)", "ip neigh flush to {vip} on the vantage host and the "
             "router",
             proof=f"{_LAB}[arp-cache-holds-rs]"),
        # -- the director -------------------------------------------------------
        Kind("dir-keepalived-down", ERROR, "keepalived is not running on the director",
             "systemctl start keepalived on {host}; journalctl -u keepalived says why it stopped",
             proof=f"{_LAB}[dir-keepalived-down]"),
        Kind("dir-vs-missing", ERROR, "a service has no virtual server in IPVS",
             "ansible-playbook dsrprov.dsr.site --limit {host}",
             proof=f"{_LAB}[dir-keepalived-down]; unit/test_doctor_units.py::test_director_faults_are_named"),
        Kind("dir-not-route", ERROR, "a real server is forwarded by another method than Route (direct "
             "routing)", "ansible-playbook dsrprov.dsr.site --limit {host} (lb_kind DR)",
             proof=f"{_LAB}[dir-not-route]"),
        Kind("dir-rs-missing", ERROR, "a real server the inventory names is not in IPVS",
             "dsrprov verify {rs}; a failing health check takes it out: fix the service, or rerun site.yml",
             proof=f"{_LAB}[dir-rs-missing]"),
        Kind("dir-rs-extra", WARNING, "IPVS holds a real server the inventory does not name",
             "ansible-playbook dsrprov.dsr.site --limit {host} (keepalived follows the inventory)",
             proof=f"{_LAB}[dir-rs-extra]"),
        # -- a Windows real server ---------------------------------------------
        Kind("win-loopback-missing", ERROR, "no KM-TEST loopback adapter holds the VIPs",
             "dsrprov enroll {host}",
             proof=f"{_UNIT}test_windows_findings_on_recorded_probe_output{_RECORDED}"),
        Kind("win-metric", WARNING, "the loopback's interface metric is not 254 (or automatic metric is on)",
             "dsrprov enroll {host}",
             proof=f"{_UNIT}test_windows_findings_on_recorded_probe_output{_RECORDED}"),
        Kind("win-weakhost", ERROR, "weak host send/receive is off where DSR needs it",
             "dsrprov enroll {host}",
             proof=f"{_UNIT}test_windows_findings_on_recorded_probe_output{_RECORDED}"),
        Kind("win-firewall-public", ERROR, "the loopback is in the Public firewall profile and no rule lets "
             "the VIP's port in", "dsrprov enroll {host} (firewall rules scoped to the VIPs)",
             proof=f"{_UNIT}test_windows_findings_on_recorded_probe_output{_RECORDED}"),
        Kind("win-dns-register", WARNING, "the loopback registers its VIP in DNS: clients may resolve the "
             "host's name to the VIP", "Set-DnsClient -InterfaceAlias <loopback> "
             "-RegisterThisConnectionsAddress $false (dsrprov enroll {host})",
             proof=f"{_UNIT}test_windows_findings_on_recorded_probe_output{_RECORDED}"),
        # -- probing itself ----------------------------------------------------
        Kind("probe-failed", ERROR, "a probe could not run (unreachable host, missing tool)",
             "see the evidence",
             proof=f"{_UNIT}test_an_unreachable_host_is_a_probe_failed_finding_and_exit_3"),
        Kind("doctor-no-vantage", WARNING, "no vantage host: the ARP/ND and DR-path probes did not run",
             "set dsr_vantage_host in the inventory (a Linux host on the real servers' segment, root)",
             proof=f"{_UNIT}test_an_unreachable_host_is_a_probe_failed_finding_and_exit_3"),
    )
}  # fmt: skip


@dataclass
class Finding:
    id: str
    host: str
    line: str  # what is wrong and where, one line
    evidence: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)  # fills the fix

    @property
    def kind(self) -> Kind:
        return CATALOGUE[self.id]

    @property
    def severity(self) -> str:
        return self.kind.severity

    @property
    def fix(self) -> str:
        return self.kind.fix.format_map(_Default(host=self.host, **self.values))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "host": self.host,
            "line": self.line,
            "evidence": self.evidence,
            "fix": self.fix,
        }


class _Default(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def readme_table() -> str:
    rows = ["| id | severity | what it means | fix | proven by (tests/) |", "|---|---|---|---|---|"]
    for k in CATALOGUE.values():
        fix = k.fix.replace("|", "\\|")
        rows.append(f"| `{k.id}` | {k.severity} | {k.what} | {fix} | `{k.proof}` |")
    return "\n".join(rows)
