"""``make demo``: bring up the local lab, run site.yml twice, print the proof.

The proof is read from the lab itself: the VIPs and ARP sysctls on each real
server, the director's IPVS table, who answers ARP for the VIP, which real
server answered each request, the three DSR steps as captured on the lab's
segment, and the director's share of the bytes of a download-heavy load."""

from __future__ import annotations

import re
import sys
import time
from collections import Counter

import dsrprov_lab as labmod
from dsrprov.model.inventory import Inventory
from dsrprov.run import playbook as pb
from dsrprov_lab.paths import checkout_root as project_root
from dsrprov_lab.proof import Roles, arp_replies, path_report


def run_site(inventory: str) -> tuple[str, dict[str, int], float]:
    done = pb.run(inventory)
    if done.returncode != 0:
        sys.stderr.write(done.stdout)
        raise labmod.LabError("site.yml failed on the lab (output above)")
    return done.stdout[done.stdout.rfind("PLAY RECAP") :].strip(), done.changed, done.elapsed


def main() -> int:
    start = time.monotonic()
    the_lab = labmod.up()
    roles = Roles.of(the_lab)
    names = {h.mac: h.name for h in the_lab.hosts}
    print(
        f"lab up in {time.monotonic() - start:.0f} s: {', '.join(h.name for h in the_lab.hosts)}"
        f" on podman network {the_lab.network} (internal, no route off this machine)"
    )
    inventory = str(project_root() / "inventories" / "lab")

    recap, _, first = run_site(inventory)
    print(f"\n== site.yml, first run ({first:.1f} s)\n{recap}")
    recap2, changed_by_host, second = run_site(inventory)
    changed = list(changed_by_host.values())
    print(
        f"\n== site.yml, second run ({second:.1f} s): "
        + ("changed=0 on every host" if not any(changed) else f"NOT idempotent\n{recap2}")
    )
    ok = not any(changed)

    print("\n== real servers")
    for host in roles.realservers:
        sysctl = labmod.lab_exec(host, "sysctl", "-n", "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce")
        ignore, announce = sysctl.split()
        lo = labmod.lab_exec(host, "ip", "-o", "addr", "show", "dev", "lo")
        vips = [
            f"{m.group(1)}{' (' + m.group(2) + ')' if m.group(2) else ''}"
            for m in re.finditer(r"inet6? (\S+) scope \w+ ?(lo:\d+)?", lo)
            if not m.group(1).startswith(("127.", "::1"))
        ]
        print(f"  {host.name}: VIPs on lo {', '.join(vips)}; arp_ignore={ignore} arp_announce={announce}")

    print(f"\n== director ({roles.director.name}, a QEMU VM: keepalived driving IPVS)")
    print("  " + labmod.lab_exec(roles.director, "ipvsadm", "-Ln").strip().replace("\n", "\n  "))

    services = Inventory(project_root() / "inventories" / "lab" / "hosts.yml").services()
    vip = next(str(s["vip"]) for s in services if ":" not in str(s["vip"]))
    replies = arp_replies(roles.client, vip)
    print(
        f"\n== ARP: who-has {vip}, asked by {roles.client.name}: answered by "
        + ", ".join(names.get(m, m) for m in replies)
    )
    ok = ok and replies == [roles.director.mac]

    report, bodies = path_report(the_lab, roles, vip, 80, "/", 10)
    print(f"\n== 10 requests from {roles.client.name} to http://{vip}/: {dict(Counter(bodies))}")
    conn = next(iter(report.connections.values()), None)
    if conn is not None:
        rs = next(iter(conn.repliers), "?")
        print(f"  one connection (client port {conn.client_port}), as captured on the segment:")
        print(f"  1. {roles.client.name} -> {vip}:80, to the director's MAC {roles.director.mac}: {conn.step1} frames")
        print(f"  2. same packets, sent by the director to {rs}'s MAC, addresses unchanged: {conn.step2} frames")
        print(
            f"  3. {rs} -> {roles.client.name}, source {vip}, from {rs}'s MAC, not via the director: "
            f"{conn.step3} frames"
        )
    print(
        f"  all {len(report.connections)} connections took the three steps"
        if not report.violations
        else f"  PROBLEMS: {report.violations}"
    )
    ok = ok and not report.violations and set(bodies) == {h.name for h in roles.realservers}

    heavy, sizes = path_report(the_lab, roles, vip, 80, "/1m.bin", 4, body=False)
    print(
        f"\n== 4 downloads of 1 MiB: the director handled {heavy.director_bytes} of "
        f"{heavy.director_bytes + heavy.total(3)} bytes on the path ({heavy.director_share:.1%}); "
        f"{heavy.reduction:.1%} less than if the replies went back through it"
    )
    ok = ok and not heavy.violations and sizes == ["1048576"] * 4

    print(
        "\nDSR works: the director takes the requests in, the real servers answer the client directly."
        if ok
        else "\nPROBLEM: see above"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except labmod.LabError as exc:
        print(f"dsrprov demo: {exc}", file=sys.stderr)
        sys.exit(1)
