"""A director pair on the lab: who holds a VIP, a download that runs across a
failover, and the failover itself, measured from the client.

Test and benchmark equipment. Everything runs on the lab's own hosts and
bridge; traffic goes only to the lab's VIP."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dsrprov_lab as labmod
from dsrprov.run import playbook as pb
from dsrprov_lab.load import Load, LoadResult
from dsrprov_lab.proof import capture


def holds(director: labmod.LabHost, vip: str) -> bool:
    """Whether the director holds ``vip`` on an interface (read over SSH)."""
    out = labmod.ssh_exec(director, "ip", "-o", "addr", "show", check=False)
    return re.search(rf"inet6? {re.escape(vip)}/", out) is not None


def wait_for_holder(directors: list[labmod.LabHost], vip: str, want: labmod.LabHost, timeout: float = 60) -> float:
    """Wait until ``want`` alone holds ``vip``; return the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        holders = [d for d in directors if labmod.is_running(d) and holds(d, vip)]
        if holders == [want]:
            return time.monotonic() - start
        time.sleep(0.5)
    raise labmod.LabError(f"{want.name} did not come to hold {vip} alone within {timeout:.0f} s")


class PoolWatch:
    """The number of real servers in a director's IPVS table, polled on the
    director every half second while the block runs (its own loop over one
    SSH session, so a slow controller does not thin the samples).

    ``with PoolWatch(director) as watch: ...``, then ``watch.counts``."""

    def __init__(self, director: labmod.LabHost, interval: float = 0.5) -> None:
        self.director = director
        self.interval = interval
        self.counts: list[int] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> PoolWatch:
        cmd = f"while :; do ipvsadm -Ln | grep -c Route; sleep {self.interval}; done"
        self._proc = subprocess.Popen(labmod.ssh_argv(self.director, cmd), stdout=subprocess.PIPE, text=True)
        time.sleep(2 * self.interval)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        time.sleep(2 * self.interval)
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=30)
        self.counts = [int(n) for n in out.split() if n.isdigit()]


def _site(inventory: Path, limit: str) -> None:
    done = pb.run(inventory, "--limit", limit)
    if done.returncode != 0:
        raise labmod.LabError(f"site.yml --limit {limit} failed:\n{done.stdout[-4000:]}")


def form_pair(the_lab: labmod.Lab, sync: bool = True) -> tuple[Path, labmod.LabHost, labmod.LabHost]:
    """Start the lab's spare director and make a VRRP pair of it and the lab's
    own director, the spare as master; return (inventory, master, backup).

    The spare is configured first and becomes master alone; the lab's
    director then joins as backup (nopreempt: it stays backup, whatever the
    priorities)."""
    spare = next(h for h in the_lab.hosts if h.is_spare)
    main = next(h for h in the_lab.hosts if "dsr_directors" in h.groups)
    labmod.start_spare(the_lab, spare)
    inventory = labmod.pair_inventory(the_lab, director_vars={"dsr_director_connection_sync": sync})
    _site(inventory, spare.name)
    wait_for_holder([spare], the_lab_vip(the_lab), spare)
    _site(inventory, main.name)
    wait_for_holder([main, spare], the_lab_vip(the_lab), spare)
    return inventory, spare, main


def dissolve_pair(the_lab: labmod.Lab) -> None:
    """Stop the spare directors; the lab's own director holds the VIPs alone again (static, no VRRP)."""
    main = next(h for h in the_lab.hosts if "dsr_directors" in h.groups)
    for spare in (h for h in the_lab.hosts if h.is_spare):
        labmod.stop_vm(the_lab, spare)
    if not labmod.is_running(main):  # killed last: it comes back afresh
        labmod.start_spare(the_lab, main)
    _site(labmod.inventory_copy(the_lab, "single"), main.name)


def the_lab_vip(the_lab: labmod.Lab) -> str:
    """The lab's IPv4 service VIP."""
    from dsrprov.model.inventory import Inventory

    services = Inventory(the_lab.state_dir.parent / "hosts.yml").services()
    return next(str(s["vip"]) for s in services if ":" not in str(s["vip"]))


class Download:
    """A slow download from the VIP in the client, in the background:
    ``rate`` bytes per second, so it spans what happens meanwhile. The file
    must be larger than the client's receive buffer (a few MB), or the real
    server sends it all at once and the client never needs the director
    again: the lab's ``/16m.bin`` at 1 MB/s takes 16 s and the client keeps
    acknowledging through the director the whole time."""

    def __init__(self, client: labmod.LabHost, url: str, rate: str = "1M", max_seconds: int = 120) -> None:
        self.cmd = [
            "podman", "exec", client.container, "curl", "-s", "-o", "/dev/null", "--limit-rate", rate,
            "--max-time", str(max_seconds), "-w", "%{http_code} %{size_download}", url,
        ]  # fmt: skip
        self.proc: subprocess.Popen[str] | None = None
        self.started = 0.0

    def start(self) -> Download:
        self.started = time.time()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, text=True, env=labmod.podman_env())
        return self

    def finish(self, timeout: float = 180) -> tuple[int, str, int, float]:
        """curl's exit code (0 complete, 56 reset, 28 timeout), HTTP code, bytes, seconds."""
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=timeout)
        code, _, size = (out or "000 0").strip().partition(" ")
        return self.proc.returncode, code, int(size or 0), time.time() - self.started


@dataclass
class Failover:
    """What the client saw while the master director was killed."""

    load: LoadResult
    killed_at: float
    master: str
    backup: str
    takeover_s: float  # until the backup held the VIP, as polled over SSH
    garp_from_backup: int  # gratuitous ARPs for the VIP from the backup's MAC
    client_mac_before: str  # the client's neighbour entry for the VIP just before the kill
    client_mac_after: str  # and afterwards
    download: tuple[int, str, int, float] | None = None
    notes: list[str] = field(default_factory=list)


def kill_master(
    the_lab: labmod.Lab,
    client: labmod.LabHost,
    master: labmod.LabHost,
    backup: labmod.LabHost,
    vip: str,
    *,
    download_url: str | None = None,
    settle_s: float = 6,
    independent: bool = False,
) -> Failover:
    """Under load (and with a slow download running when ``download_url`` is
    given), kill the master's QEMU, wait until the backup holds the VIP and
    the client has been answered for ``settle_s`` seconds, then stop."""
    download = Download(client, download_url) if download_url else None
    with capture(the_lab, f"arp and host {vip}") as pcap, Load(client, vip, independent=independent) as load:
        if download is not None:
            download.start()
        time.sleep(3)
        mac_before = _neighbour(client, vip)
        load.mark("master killed")
        killed = labmod.kill_vm(master)
        takeover = wait_for_holder([backup], vip, backup, timeout=30)
        load.mark("backup holds the VIP")
        time.sleep(settle_s)
        result_download = download.finish() if download is not None else None
    arp = subprocess.run(
        ["tcpdump", "-nn", "-e", "-r", str(pcap)], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    # Gratuitous ARP: a request for the VIP from the VIP ("Request who-has VIP
    # (ff:ff:ff:ff:ff:ff) tell VIP" with -e), or an unasked reply for it.
    garp = re.compile(rf"who-has {re.escape(vip)} (\(\S+\) )?tell {re.escape(vip)},|Reply {re.escape(vip)} is-at")
    garps = [line for line in arp if line.split()[1:2] == [backup.mac] and garp.search(line)]
    return Failover(
        load.result,
        killed,
        master.name,
        backup.name,
        takeover,
        len(garps),
        mac_before,
        _neighbour(client, vip),
        result_download,
    )


def _neighbour(client: labmod.LabHost, vip: str) -> str:
    """The MAC address the client sends the VIP's packets to."""
    neigh = labmod.lab_exec(client, "ip", "neigh", "show", vip, check=False).split()
    return neigh[neigh.index("lladdr") + 1] if "lladdr" in neigh else ""
