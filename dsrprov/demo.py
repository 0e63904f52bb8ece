"""``make demo``: bring up the local lab, run site.yml twice, print the proof.

The proof is read from the lab hosts themselves: the VIPs on each real
server's loopback, the live ARP sysctls, and an ARP probe for each IPv4 VIP
sent from the lab's client, with the replying MACs named."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from dsrprov import lab as labmod
from dsrprov.paths import project_root

MAC_RE = re.compile(r"bytes from ([0-9a-f]{2}(?::[0-9a-f]{2}){5}) \(")


def run_site(inventory: str) -> tuple[str, float]:
    start = time.monotonic()
    proc = subprocess.run(
        ["ansible-playbook", "-i", inventory, "site.yml"],
        cwd=project_root(),
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise labmod.LabError("site.yml failed on the lab (output above)")
    recap = proc.stdout[proc.stdout.rfind("PLAY RECAP") :]
    return recap.strip(), elapsed


def arp_replies(client: labmod.LabHost, vip: str) -> list[str]:
    out = labmod.lab_exec(client, "arping", "-c", "2", "-w", "2", "-i", "eth0", vip, check=False)
    return sorted(set(MAC_RE.findall(out)))


def main() -> int:
    the_lab = labmod.up()
    inventory = str(project_root() / "inventories" / "lab")
    print(f"lab: {', '.join(h.name for h in the_lab.hosts)} on podman network {the_lab.network} (internal)")

    recap, first = run_site(inventory)
    print(f"\nsite.yml, first run ({first:.1f} s):\n{recap}")
    recap2, second = run_site(inventory)
    print(f"\nsite.yml, second run ({second:.1f} s):\n{recap2}")
    changed = [int(n) for n in re.findall(r"changed=(\d+)", recap2)]
    print("  -> idempotent: changed=0 on every host" if not any(changed) else "  -> NOT idempotent")

    realservers = [h for h in the_lab.hosts if h.is_realserver]
    macs = {}
    print("\nreal servers:")
    for host in realservers:
        lo = labmod.lab_exec(host, "ip", "-o", "addr", "show", "dev", "lo")
        vips = [
            f"{m.group(1)} ({m.group(2) or 'no label'})"
            for m in re.finditer(r"inet6? (\S+) scope \w+ ?(lo:\d+)?", lo)
            if not m.group(1).startswith(("127.", "::1"))
        ]
        sysctl = labmod.lab_exec(
            host, "sysctl", "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce"
        ).split("\n")
        macs[labmod.lab_exec(host, "cat", "/sys/class/net/eth0/address").strip()] = host.name
        print(f"  {host.name}: VIPs on lo: {', '.join(vips) or 'none'}")
        print(f"  {host.name}: {'; '.join(s for s in sysctl if s)}")

    client = next(h for h in the_lab.hosts if "lab_clients" in h.groups)
    ok = not any(changed)
    print(f"\nARP probe from {client.name} for each IPv4 VIP:")
    vips4 = sorted(
        {
            v.split("/")[0]
            for v in re.findall(
                r"inet (\S+) scope \w+ lo:1", labmod.lab_exec(realservers[0], "ip", "-o", "addr", "show", "dev", "lo")
            )
        }
    )
    for vip in vips4:
        replies = arp_replies(client, vip)
        from_rs = [macs[m] for m in replies if m in macs]
        print(f"  who-has {vip}: {len(replies)} replies; from real servers: {', '.join(from_rs) or 'none'}")
        ok = ok and not from_rs
    print(
        "\nDSR real servers ready: VIPs on lo, ARP for the VIPs left to the director." if ok else "\nPROBLEM: see above"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except labmod.LabError as exc:
        print(f"dsrprov demo: {exc}", file=sys.stderr)
        sys.exit(1)
