"""The DR-path probe: from the vantage host, send to VIP:port at a real
server's MAC, exactly as a director in direct routing does, and watch the
answer.

On the vantage host (root, iproute2, python3; tcpdump optional) a network
namespace of its own gets a macvlan on the segment, a free address, and a
route ``VIP via RIP``. A TCP connect to VIP:port from there completes only if
the real server accepts the VIP, something listens on it, and nothing (rp_filter,
firewall, a return route through the director) drops the packets; the reply
is then sourced from the VIP by construction, and tcpdump names the MAC it
came from. The namespace is removed afterwards, whatever happens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Runs as `python3 - '<json>'` on the vantage host. Standard library only.
PROBE = r"""
import ipaddress, json, os, re, shutil, subprocess, sys
req = json.loads(sys.argv[1])
ns = "dsrprov-doctor-%d" % os.getpid()
mv = "dsrdoc%d" % (os.getpid() % 100000)
def sh(*a, check=False, timeout=10):
    p = subprocess.run(list(a), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        raise RuntimeError("%s: %s" % (" ".join(a), (p.stderr or p.stdout).strip()))
    return p
out = {"results": [], "error": ""}
def own(family, dev):
    p = sh("ip", "-o", "-%d" % family, "addr", "show", "dev", dev, "scope", "global")
    return [ipaddress.ip_interface(m) for m in re.findall(r"inet6? (\S+)", p.stdout)]
def free_v4(net, taken, dev):
    for host in list(net.hosts())[::-1][:40]:
        a = str(host)
        if a in taken:
            continue
        if re.search(r"lladdr", sh("ip", "neigh", "show", a).stdout):
            continue
        if shutil.which("arping") and sh("arping", "-c", "1", "-w", "1", "-i", dev, a).returncode == 0:
            continue
        return a
    raise RuntimeError("no free IPv4 address found in %s for the probe" % net)
try:
    sh("ip", "netns", "add", ns, check=True)
    made = set()
    for t in req["targets"]:
        fam = 6 if ":" in t["rip"] else 4
        route = sh("ip", "-o", "route", "get", t["rip"]).stdout
        m = re.search(r" dev (\S+)", route)
        if not m:
            t["status"] = "error"; t["detail"] = "no route to %s from the vantage host" % t["rip"]
            out["results"].append(t); continue
        dev = m.group(1)
        link = "%s%d" % (mv, fam)
        if fam not in made:
            sh("ip", "link", "add", link, "link", dev, "type", "macvlan", "mode", "bridge", check=True)
            sh("ip", "link", "set", link, "netns", ns, check=True)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", link, "up", check=True)
            mine = own(fam, dev)
            if not mine:
                raise RuntimeError("the vantage host has no global IPv%d address on %s" % (fam, dev))
            if fam == 4:
                addr = req.get("address") or free_v4(mine[0].network, set(req.get("taken", [])), dev)
                sh("ip", "-n", ns, "addr", "add", "%s/%d" % (addr, mine[0].network.prefixlen), "dev", link, check=True)
            else:
                net = mine[0].network
                addr = req.get("address6") or str(net.network_address + 0xd5add0c7)
                sh("ip", "-n", ns, "addr", "add", "%s/%d" % (addr, net.prefixlen), "dev", link, "nodad", check=True)
            made.add(fam)
            out.setdefault("addresses", []).append(addr)
        sh("ip", "-n", ns, "route", "replace", "%s/%d" % (t["vip"], 128 if fam == 6 else 32), "via", t["rip"],
           "dev", link, check=True)
        sh("ip", "-n", ns, "neigh", "flush", "all")
        cap = None
        if shutil.which("tcpdump"):
            flt = "%s and src host %s and tcp src port %d" % ("ip6" if fam == 6 else "ip", t["vip"], t["port"])
            cap = subprocess.Popen(["ip", "netns", "exec", ns, "timeout", "4", "tcpdump", "-l", "-n", "-e",
                                    "-c", "1", "-i", link, flt], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
            import time; time.sleep(0.5)
        code = ("import socket,sys\n"
                "try:\n"
                " s=socket.create_connection((sys.argv[1],int(sys.argv[2])),2); print('ok', s.getpeername()[0])\n"
                "except ConnectionRefusedError: print('refused')\n"
                "except OSError as e: print('timeout' if 'timed out' in str(e) else 'error', e)\n")
        p = sh("ip", "netns", "exec", ns, "python3", "-c", code, t["vip"], str(t["port"]), timeout=8)
        words = (p.stdout.strip() or "error " + p.stderr.strip()).split(None, 1)
        t["status"], t["detail"] = words[0], (words[1] if len(words) > 1 else "")
        if cap is not None:
            try:
                cout, _ = cap.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                cap.kill(); cout, _ = cap.communicate()
            m = re.search(r"^\S+ ([0-9a-f:]{17}) > ([0-9a-f:]{17})", cout, re.M)
            t["reply_mac"] = m.group(1) if m else ""
            t["captured"] = True
        n = sh("ip", "-n", ns, "neigh", "show", t["rip"]).stdout
        m = re.search(r"lladdr ([0-9a-f:]{17})", n)
        t["rip_mac"] = m.group(1) if m else ""
        out["results"].append(t)
except Exception as e:
    out["error"] = str(e)
finally:
    sh("ip", "netns", "del", ns)
print(json.dumps(out))
"""


@dataclass
class Target:
    host: str
    rip: str
    vip: str
    port: int


@dataclass
class Result:
    target: Target
    status: str  # ok, refused, timeout, error
    detail: str = ""
    reply_mac: str = ""
    rip_mac: str = ""
    captured: bool = False


def request(targets: list[Target], taken: list[str], address: str = "", address6: str = "") -> str:
    return json.dumps(
        {
            "targets": [{"host": t.host, "rip": t.rip, "vip": t.vip, "port": t.port} for t in targets],
            "taken": taken,
            "address": address,
            "address6": address6,
        }
    )


def parse(text: str, targets: list[Target]) -> tuple[list[Result], str]:
    """The probe's JSON to results (in target order), and its error line."""
    try:
        data = json.loads(text.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return [], f"the DR-path probe printed no result: {text.strip()[:200]}"
    by_key = {(r.get("host"), r.get("vip"), r.get("port")): r for r in data.get("results", [])}
    out = []
    for t in targets:
        r = by_key.get((t.host, t.vip, t.port))
        if r is None:
            continue
        out.append(
            Result(t, str(r.get("status", "error")), str(r.get("detail", "")), str(r.get("reply_mac", "")),
                   str(r.get("rip_mac", "")), bool(r.get("captured", False)))
        )  # fmt: skip
    return out, str(data.get("error", ""))
