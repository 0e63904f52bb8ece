"""The director's DSR-path health check on the lab (docs/director.md, "Health checks").

Each fault on rs1, one at a time, breaks what DSR clients need while rs1's
own address still answers: the VIP gone from lo (IPv4, IPv6), the service
bound to the real address only, an nftables drop on the VIP's port, the VIP
on lo as a /24. With the DSR-path check (the default) rs1 leaves the IPVS
table within delay_loop + (retries + 1) x timeout + retries x delay_before_retry
(+ a measured slack) and comes back once the fault is undone. Negative
control: with ``dsr_director_check: real_address`` rs1 stays for the first
four faults (each case could fail); the /24 breaks rs1's own address too,
and the real-address check drops rs1 as well. A healthy lab loses no real server, also during a
site.yml no-op of the director.

Runs on whichever lab is up (the ``lab`` fixture, DSRPROV_LAB_INVENTORY) and
leaves it as site.yml configures it (DSR-path checks, no fault)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import dsrprov_lab as labmod
from dsrprov.model.inventory import Inventory
from dsrprov_lab import pair
from dsrprov_lab.paths import lab_inventory
from tests.support import lab_vips, run_playbook

# In `make integration-extended`, not in `make test`: CI has 90 minutes on 2 cores.
pytestmark = [pytest.mark.lab, pytest.mark.extended]

VIP, VIP6 = lab_vips()
# Seconds beyond keepalived's own bound: an ssh round trip to the VM per poll
# and TCG's slowness (measured: docs/director.md, "Health checks").
SLACK = 8.0


def _check_settings() -> dict[str, float]:
    svc = next(s for s in Inventory(lab_inventory()).services() if str(s["vip"]) == VIP)
    hc = svc.get("health_check") or {}
    return {k: float(hc.get(k, d)) for k, d in
            (("delay_loop", 5), ("connect_timeout", 3), ("retries", 2), ("delay_before_retry", 1))}  # fmt: skip


def detection_bound() -> float:
    """The longest keepalived may take to drop a failing real server: the
    wait for the next check, then retries + 1 failed attempts (each the
    probe's timeout plus the two seconds the role adds for its answer) with
    delay_before_retry between them."""
    hc = _check_settings()
    attempt = hc["connect_timeout"] + 2
    return hc["delay_loop"] + (hc["retries"] + 1) * attempt + hc["retries"] * hc["delay_before_retry"]


@dataclass
class Fault:
    name: str
    family: int  # the table that must lose rs1
    inject: str
    undo: str
    # The real-address check is blind to it. Not so for the /24: it makes the
    # whole LAN local on rs1, so rs1 cannot answer the director either
    # (measured: both checks drop rs1).
    blind_to_real_address: bool = True


def faults(rs1: labmod.LabHost) -> list[Fault]:
    unit = "/etc/systemd/system/lab-web.service"
    restart = "systemctl daemon-reload && systemctl restart lab-web"
    return [
        Fault("VIP removed from lo (IPv4)", 4, f"ip addr del {VIP}/32 dev lo",
              f"ip addr add {VIP}/32 dev lo label lo:1"),
        Fault("VIP removed from lo (IPv6)", 6, f"ip -6 addr del {VIP6}/128 dev lo",
              f"ip -6 addr add {VIP6}/128 dev lo nodad"),
        Fault("service bound to the real address only", 4,
              f"sed -i 's/--bind ::/--bind {rs1.ip}/' {unit} && {restart}",
              f"sed -i 's/--bind {rs1.ip}/--bind ::/' {unit} && {restart}"),
        Fault("nftables drop on the VIP's port", 4,
              "nft add table inet dsrfault && nft add chain inet dsrfault in '{ type filter hook input priority 0; }' "
              f"&& nft add rule inet dsrfault in ip daddr {VIP} tcp dport 80 drop",
              "nft delete table inet dsrfault"),
        Fault("VIP on lo as a /24", 4, f"ip addr del {VIP}/32 dev lo && ip addr add {VIP}/24 dev lo",
              f"ip addr del {VIP}/24 dev lo && ip addr add {VIP}/32 dev lo label lo:1", blind_to_real_address=False),
    ]  # fmt: skip


def director(the_lab: labmod.Lab) -> labmod.LabHost:
    return next(h for h in the_lab.hosts if "dsr_directors" in h.groups)


def realservers(the_lab: labmod.Lab, family: int) -> set[str]:
    """The real servers IPVS holds for the lab's VIP of this family."""
    vip = VIP if family == 4 else f"[{VIP6}]"
    out = labmod.lab_exec(director(the_lab), "ipvsadm", "-Ln", "-t", f"{vip}:80", check=False)
    return set(re.findall(r"->\s+\[?([0-9a-fA-F.:]+?)\]?:80\s", out))


def rs1_address(the_lab: labmod.Lab, family: int) -> str:
    rs1 = the_lab.host("rs1")
    return rs1.ip if family == 4 else rs1.ip6


def wait(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until predicate() holds, or None after timeout."""
    return labmod.seconds_until(predicate, timeout, step=0.3)


def director_run(*extra: str) -> None:
    done = run_playbook("site.yml", "--limit", "dsr_directors", *extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def full_pool(the_lab: labmod.Lab) -> bool:
    servers = [h for h in the_lab.hosts if h.is_realserver]
    return all({h.ip if f == 4 else h.ip6 for h in servers} <= realservers(the_lab, f) for f in (4, 6))


@pytest.fixture(scope="module")
def configured(lab: labmod.Lab) -> Iterator[labmod.Lab]:
    done = run_playbook("site.yml")
    assert done.returncode == 0, done.stdout[-3000:]
    assert wait(lambda: full_pool(lab), 60) is not None, "the pool is not full after site.yml"
    yield lab
    # Whatever happened: no fault left on rs1, DSR-path checks back (the
    # negative control switched them off).
    for fault in faults(lab.host("rs1")):
        labmod.lab_exec(lab.host("rs1"), "sh", "-c", f"{fault.undo} 2>/dev/null", check=False)
    labmod.lab_exec(lab.host("rs1"), "sh", "-c", f"ip addr add {VIP}/32 dev lo label lo:1 2>/dev/null; "
                    f"ip -6 addr add {VIP6}/128 dev lo nodad 2>/dev/null; true", check=False)  # fmt: skip
    director_run()


def test_the_probe_service_runs_in_its_own_namespace(configured: labmod.Lab) -> None:
    d = director(configured)
    unit = "dsrprov-dsr-path.service"
    out = labmod.lab_exec(d, "sh", "-c", f"systemctl is-active {unit}; systemctl is-enabled {unit}; ip netns list")
    assert out.split()[:3] == ["active", "enabled", "dsrprov-dsrpath"], out
    # The director's own namespace holds no trace of it: no macvlan, no extra rule.
    main = labmod.lab_exec(d, "sh", "-c", "ip -br link; ip rule; ip -6 rule")
    assert "dsrpath" not in main and "fwmark" not in main, main


def test_a_healthy_lab_keeps_every_real_server_also_during_a_site_yml_no_op(configured: labmod.Lab) -> None:
    d = director(configured)
    want = sum(1 for h in configured.hosts if h.is_realserver) * 2
    # The poll runs on the director (0.5 s apart), the no-op run meanwhile.
    with pair.PoolWatch(d) as watch:
        started = time.monotonic()
        done = run_playbook("site.yml", "--limit", "dsr_directors")
        assert done.returncode == 0, done.stdout[-3000:]
        assert re.search(rf"{re.escape(d.name)}\s+:\s+ok=\d+\s+changed=0\s", done.stdout), done.stdout[-1500:]
        # At least 100 polls, however quick the no-op.
        time.sleep(max(0.0, 65 - (time.monotonic() - started)))
    counts = watch.counts
    print(f"\nhealthy: {len(counts)} polls over about {len(counts) * 0.5:.0f} s, real servers {set(counts)}")
    assert len(counts) >= 100 and set(counts) == {want}, counts


def _measure(the_lab: labmod.Lab, fault: Fault) -> tuple[float | None, float | None]:
    """Seconds until rs1 left the table (None: it stayed), and until it was back after the undo."""
    rs1 = the_lab.host("rs1")
    addr = rs1_address(the_lab, fault.family)
    labmod.lab_exec(rs1, "sh", "-c", fault.inject)
    try:
        bound = detection_bound() + SLACK
        out = wait(lambda: addr not in realservers(the_lab, fault.family), bound)
    finally:
        labmod.lab_exec(rs1, "sh", "-c", fault.undo)
    back = wait(lambda: addr in realservers(the_lab, fault.family), detection_bound() + SLACK)
    return out, back


FAULT_IDS = ["vip4-removed", "vip6-removed", "bound-to-real-address", "nft-drop", "vip-as-24"]


@pytest.mark.parametrize("index", range(len(FAULT_IDS)), ids=FAULT_IDS)
def test_the_dsr_path_check_takes_rs1_out_for_each_fault_and_back(configured: labmod.Lab, index: int) -> None:
    fault = faults(configured.host("rs1"))[index]
    out, back = _measure(configured, fault)
    print(f"\ndsr_path, {fault.name}: rs1 out after {out} s, back {back} s after the fault was undone "
          f"(bound {detection_bound():.0f} s + {SLACK:.0f} s slack)")  # fmt: skip
    assert out is not None, f"{fault.name}: rs1 stayed in the pool with the DSR-path check"
    assert back is not None, f"{fault.name}: rs1 did not come back"


def test_negative_control_the_real_address_check_keeps_rs1_for_every_fault(configured: labmod.Lab) -> None:
    director_run("-e", "dsr_director_check=real_address")
    d = director(configured)
    # Switching removed the probe: no service, no namespace.
    gone = labmod.lab_exec(d, "sh", "-c", "systemctl is-active dsrprov-dsr-path.service; ip netns list", check=False)
    assert "dsrprov-dsrpath" not in gone and gone.split()[0] != "active", gone
    # The module's teardown gives the director its DSR-path checks back.
    results = []
    for fault in faults(configured.host("rs1")):
        out, back = _measure(configured, fault)
        print(f"\nreal_address, {fault.name}: rs1 out after {out} s (None: stayed)")
        if fault.blind_to_real_address:
            # Stayed in the pool over the whole detection window (reading the
            # table over SSH to the emulated director can itself take a second).
            results.append((fault.name, out is None and back is not None))
        else:
            results.append((fault.name, out is not None and back is not None))
    assert all(ok for _, ok in results), results
