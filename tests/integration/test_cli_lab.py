"""dsrprov enroll / status / verify / unenroll against the lab containers:
real sshd, real paramiko, real ansible-playbook, real ARP.

The tests run in file order on one temporary copy of the lab's inventory
(its .state is the lab's), never on the committed one. The lab is the one
named by DSRPROV_LAB_INVENTORY (default: inventories/lab)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import dsrprov_lab as labmod
from dsrprov.model.inventory import Inventory
from tests.support import run_playbook

pytestmark = pytest.mark.lab

DSRPROV = str(Path(sys.executable).parent / "dsrprov")
PASSWORD = "correct-horse-9b1e"


def run(
    *args: str, env: dict[str, str] | None = None, inventory: Path | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [DSRPROV, *args]
    if inventory is not None:
        cmd[2:2] = ["-i", str(inventory)]
    base = dict(os.environ)
    for k in ("DSRPROV_SSH_PASSWORD", "DSRPROV_WINRM_PASSWORD", "DSRPROV_INVENTORY"):
        base.pop(k, None)
    return subprocess.run(cmd, capture_output=True, text=True, env={**base, **(env or {})}, check=False, timeout=300)


def copy_lab_inventory(lab: labmod.Lab, dst: Path, allow_empty: bool) -> Path:
    """The lab's inventory in DST; its .state is the lab's (key, known_hosts).

    ``allow_empty`` marks every service ``allow_empty: true``: these tests
    build the pools up and take them down one host and one VIP at a time."""
    src = lab.state_dir.parent
    (dst / "hosts.yml").write_text((src / "hosts.yml").read_text())
    (dst / "group_vars").mkdir(exist_ok=True)
    for f in (src / "group_vars").iterdir():
        doc = yaml.safe_load(f.read_text())
        for svc in doc.get("dsr_services") or []:
            if allow_empty:
                svc["allow_empty"] = True
        (dst / "group_vars" / f.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    (dst / ".state").symlink_to(lab.state_dir)
    return dst / "hosts.yml"


@pytest.fixture(scope="module")
def inv(lab: labmod.Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the lab's inventory, every service allowed to be empty."""
    src = lab.state_dir.parent
    dst = tmp_path_factory.mktemp("inventory")
    copy_lab_inventory(lab, dst, allow_empty=True)
    # Start from a clean lab: no VIP, no unit (another test may have left them).
    out = run("unenroll", "-q", "rs1", "rs2", inventory=dst / "hosts.yml")
    assert out.returncode == 0, out.stderr
    (dst / "hosts.yml").write_text((src / "hosts.yml").read_text())
    return dst / "hosts.yml"


@pytest.fixture(scope="module")
def vip(inv: Path) -> str:
    return next(s["vip"] for s in Inventory(inv).services() if ipaddress.ip_address(s["vip"]).version == 4)


def lo_addresses(lab: labmod.Lab, host: str) -> list[str]:
    out = labmod.lab_exec(lab.host(host), "ip", "-o", "addr", "show", "dev", "lo")
    return re.findall(r"inet6? (\S+)", out)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dsrprov: "), lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


def bad_cases(lab: labmod.Lab, vip: str, tmp: Path) -> list[tuple[str, list[str], dict[str, str], int, str]]:
    rs1 = lab.host("rs1")
    state = lab.state_dir
    lines = (state / "known_hosts").read_text().splitlines()
    rs2_key = next(line.split(None, 1)[1] for line in lines if line.startswith("rs2,"))
    (tmp / "wrong_known_hosts").write_text(f"{rs1.ip} {rs2_key}\n")
    (tmp / "empty_known_hosts").write_text("")
    unused = str(ipaddress.ip_network(lab.subnet)[99])
    no_agent = {"SSH_AUTH_SOCK": ""}
    return [
        ("invalid VIP", ["rs1", "--vip", "10.0.0.300"], {}, 2, "not an IPv4 or IPv6 address"),
        ("non-host prefix", ["rs1", "--vip", f"{vip}/24"], {}, 2, "must be a host address"),
        ("VIP = management address", ["rs1", "--vip", rs1.ip], {}, 2, "management address"),
        ("VIP = host address", ["rs1", "--vip", rs1.ip6], {}, 2, "one of the host's own addresses"),
        ("duplicate VIPs", ["rs1", "--vip", vip, "--vip", f"{vip}/32"], {}, 2, "duplicate VIP"),
        ("unknown OS", ["rs1", "--vip", vip, "--os", "solaris"], {}, 2, "invalid choice: 'solaris'"),
        ("unreachable host", [unused, "--vip", vip, "--timeout", "2"], {}, 3, "unreachable"),
        (
            "wrong host key",
            ["rs1", "--vip", vip, "--known-hosts", str(tmp / "wrong_known_hosts")],
            {},
            3,
            "has CHANGED",
        ),
        (
            "changed key with accept-new",
            ["rs1", "--vip", vip, "--known-hosts", str(tmp / "wrong_known_hosts"), "--accept-new-host-key"],
            {},
            3,
            "has CHANGED",
        ),
        (
            "unknown host key",
            ["rs1", "--vip", vip, "--known-hosts", str(tmp / "empty_known_hosts")],
            {},
            3,
            "unknown host key",
        ),
        (
            "missing credentials",
            ["rs1", "--vip", vip, "--identity", str(tmp / "no-such-key")],
            no_agent,
            3,
            "no SSH credentials",
        ),
    ]


def test_bad_input_gives_one_line_and_changes_nothing(lab: labmod.Lab, inv: Path, vip: str, tmp_path: Path) -> None:
    before_inv = inv.read_bytes()
    before_lo = lo_addresses(lab, "rs1")
    for label, args, env, code, reason in bad_cases(lab, vip, tmp_path):
        proc = run("enroll", "-q", *args, env=env, inventory=inv)
        assert proc.returncode == code, f"{label}: {proc.returncode} {proc.stderr}"
        line = one_error_line(proc)
        assert reason in line, f"{label}: {line}"
        assert inv.read_bytes() == before_inv, label
        assert lo_addresses(lab, "rs1") == before_lo, label
    # The refused changed key was not "accepted": the file still holds only the wrong one.
    assert len((tmp_path / "wrong_known_hosts").read_text().splitlines()) == 1


def test_accept_new_host_key_records_an_unknown_key(lab: labmod.Lab, inv: Path, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    proc = run("status", "rs1", "--known-hosts", str(known), inventory=inv)
    assert proc.returncode == 3 and "unknown host key" in proc.stderr
    # status cannot accept keys; enroll --check can, and changes nothing else.
    proc = run("enroll", "-q", "--check", "rs1", "--vip", "192.0.2.1", "--known-hosts", str(known),
               "--accept-new-host-key", inventory=inv)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert known.read_text().startswith(f"{lab.host('rs1').ip} ssh-ed25519 ")
    assert run("status", "rs1", "--known-hosts", str(known), inventory=inv).returncode == 0


def test_check_mode_shows_changes_and_changes_nothing(lab: labmod.Lab, inv: Path, vip: str) -> None:
    before = inv.read_bytes()
    proc = run("enroll", "--check", "rs1", "--vip", vip, inventory=inv)
    assert proc.returncode == 0, proc.stderr
    assert "would change: Put the VIPs on the loopback" in proc.stderr
    assert f"+              dsr_vips: [{vip}]" in proc.stderr
    assert inv.read_bytes() == before
    assert not [a for a in lo_addresses(lab, "rs1") if a.startswith(vip)]
    assert not [p for p in inv.parent.iterdir() if p.name.startswith(".dsrprov-")]


def test_enroll_changes_and_verifies_with_failures_isolated(lab: labmod.Lab, inv: Path, vip: str) -> None:
    unused = str(ipaddress.ip_network(lab.subnet)[99])
    proc = run("enroll", "rs1", "rs2", unused, "--vip", vip, "--timeout", "2", inventory=inv)
    # One unreachable host: exit 3, the others enrolled and verified all the same.
    assert proc.returncode == 3, proc.stdout + proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()}
    for host in ("rs1", "rs2"):
        assert re.search(r"ok\s+enrolled \(changed=[1-9]\d*\)\s+verified", rows[host]), rows[host]
        assert f"{vip}/32" in lo_addresses(lab, host)
        assert Inventory(inv).host(host).vips == [vip]
    assert "ERROR(3)" in rows[unused]
    assert [line for line in proc.stderr.splitlines() if line.startswith(f"dsrprov: {unused}: unreachable")]
    assert "task: Put the VIPs on the loopback" in proc.stderr
    assert not Inventory(inv).has_host(unused)
    # Verified hosts join the director's pool; the unreachable one does not.
    assert f"dsrprov: updating the directors: {director(lab).name}" in proc.stderr
    pool = ipvs_pool(lab, vip)
    assert pool == {lab.host("rs1").ip, lab.host("rs2").ip}, pool


def director(lab: labmod.Lab) -> labmod.LabHost:
    """The lab's director (its name differs between labs: DSRPROV_LAB_INVENTORY)."""
    return next(h for h in lab.hosts if "dsr_directors" in h.groups)


def ipvs_pool(lab: labmod.Lab, vip: str) -> set[str]:
    """The real servers of the director's IPVS service VIP:80."""
    table = labmod.lab_exec(director(lab), "ipvsadm", "-Ln", "-t", f"{vip}:80", check=False)
    return set(re.findall(r"->\s+([\d.]+):80\s+Route", table))


def test_enroll_again_changes_nothing(inv: Path, vip: str) -> None:
    before = inv.read_bytes()
    proc = run("enroll", "-q", "rs1", "rs2", "--vip", vip, "--json", inventory=inv)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [(h["host"], h["action"], h["changed"], h["ok"]) for h in data["hosts"]] == [
        ("rs1", "unchanged", 0, True),
        ("rs2", "unchanged", 0, True),
    ]
    assert inv.read_bytes() == before


def test_status(inv: Path, vip: str) -> None:
    proc = run("status", "--json", inventory=inv)
    assert proc.returncode == 0, proc.stderr
    hosts = {h["host"]: h for h in json.loads(proc.stdout)["hosts"]}
    assert set(hosts) == {"rs1", "rs2"}
    for h in hosts.values():
        assert h["state"]["loopback_vips"] == [vip]
        assert h["state"]["summary"] == "configured"
        assert all(a == {"arp_ignore": 1, "arp_announce": 2} for a in h["state"]["arp"].values())
    # The hosts' table first; the directors' health checks follow after a blank line.
    hosts_table, _, checks_table = run("status", inventory=inv).stdout.partition("\n\n")
    table = hosts_table.splitlines()
    assert table[0].split()[:3] == ["HOST", "OS", "ADDRESS"]
    assert all(line.rstrip().endswith("configured") for line in table[1:])
    assert "dsr_path" in checks_table
    # Per real server, the check each director runs on it and whether IPVS holds it.
    rows = [row for h in hosts.values() for row in h["state"]["director_checks"]]
    assert {(r["real_server"], r["check"], r["state"]) for r in rows} == {
        ("rs1", "dsr_path", "in pool"),
        ("rs2", "dsr_path", "in pool"),
    }, rows


def director_check_states(inv: Path, host: str, vip: str) -> set[str]:
    """The states ``dsrprov status`` gives HOST's services on VIP (IPv4), one per director."""
    proc = run("status", host, "--json", inventory=inv)
    rows = json.loads(proc.stdout)["hosts"][0]["state"].get("director_checks", [])
    return {row["state"] for row in rows if row["service"].startswith(f"{vip}:")}


def wait_for_state(inv: Path, host: str, vip: str, state: str, within_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if director_check_states(inv, host, vip) == {state}:
            return time.monotonic() - start
        time.sleep(0.5)
    now = director_check_states(inv, host, vip)
    raise AssertionError(f"{host}: director check not {state!r} within {within_s} s: {now}")


def test_status_shows_a_dsr_blackhole_taken_out_of_the_pool_and_back(lab: labmod.Lab, inv: Path, vip: str) -> None:
    """rs1's VIP removed from lo: its own address still answers (a real-address check
    would keep it), the director's DSR-path check takes it out, and status says so."""
    rs1 = lab.host("rs1")
    labmod.lab_exec(rs1, "ip", "addr", "del", f"{vip}/32", "dev", "lo")
    try:
        out_after = wait_for_state(inv, "rs1", vip, "out (check failing)", 30)
    finally:
        labmod.lab_exec(rs1, "ip", "addr", "add", f"{vip}/32", "dev", "lo", "label", "lo:1")
    back_after = wait_for_state(inv, "rs1", vip, "in pool", 30)
    print(f"\nstatus: rs1 out of the pool {out_after:.1f} s after its VIP went, back {back_after:.1f} s after")
    assert director_check_states(inv, "rs2", vip) == {"in pool"}


def test_verify_and_its_arp_probe_catches_a_real_server_answering(lab: labmod.Lab, inv: Path, vip: str) -> None:
    proc = run("verify", inventory=inv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The lab has a director (a VM): from the client, only its MAC answers.
    assert f"arp/nd probe from client: {vip}: only the director answers" in proc.stdout
    # Break rs2 behind the roles' back: it now answers ARP for the VIP on its lo.
    rs2 = lab.host("rs2")
    labmod.lab_exec(rs2, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.eth0.arp_ignore=0")
    try:
        proc = run("verify", "rs2", "--json", inventory=inv)
        assert proc.returncode == 1
        checks = {c["check"]: c for c in json.loads(proc.stdout)["hosts"][0]["checks"]}
        assert checks["arp sysctls"]["ok"] is False
        assert checks["arp/nd probe"]["ok"] is False
        assert f"rs2 answers ARP for {vip} ({rs2.mac})" in checks["arp/nd probe"]["detail"]
    finally:
        fixed = run("enroll", "-q", "rs2", "--vip", vip, inventory=inv)
    assert fixed.returncode == 0 and "enrolled (changed=1)" in fixed.stdout, fixed.stdout + fixed.stderr


def test_password_never_appears_in_output_or_logs(lab: labmod.Lab, inv: Path, vip: str, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_bytes((lab.state_dir / "id_ed25519").read_bytes())
    key.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", PASSWORD, "-f", str(key)], check=True)
    log = tmp_path / "enroll.log"
    args = ["enroll", "rs1", "--vip", vip, "--identity", str(key), "--log", str(log)]
    # Without the passphrase the encrypted key is useless: the password is really needed.
    refused = run(*args, env={"SSH_AUTH_SOCK": ""}, inventory=inv)
    assert refused.returncode == 3 and "is encrypted" in refused.stderr
    mark = "dsrprov-password-test-mark"
    labmod.lab_exec(lab.host("rs1"), "logger", mark)
    proc = run(*args, "--json", env={"SSH_AUTH_SOCK": "", "DSRPROV_SSH_PASSWORD": PASSWORD}, inventory=inv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert log.stat().st_size > 0 and "PLAY RECAP" in log.read_text()
    journal = labmod.lab_exec(lab.host("rs1"), "journalctl", "-o", "cat", "--no-pager", "-g", ".")
    assert mark in journal
    for name, data in {
        "stdout": proc.stdout.encode(),
        "stderr": proc.stderr.encode(),
        "log": log.read_bytes(),
        "first run": (refused.stdout + refused.stderr).encode(),
        "rs1 journal": journal.encode(),
    }.items():
        assert PASSWORD.encode() not in data, name
    assert PASSWORD not in inv.read_text()


def test_unenroll_leaves_nothing(lab: labmod.Lab, inv: Path, vip: str) -> None:
    # One host first: the director drains it before it is unconfigured, and
    # the other keeps serving the VIP throughout.
    one = run("unenroll", "rs1", inventory=inv)
    assert one.returncode == 0, one.stdout + one.stderr
    err = one.stderr
    assert err.index("updating the directors") < err.index("running the roles on rs1"), err
    assert ipvs_pool(lab, vip) == {lab.host("rs2").ip}
    proc = run("unenroll", "rs2", inventory=inv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ipvs_pool(lab, vip) == set()  # web says allow_empty: true
    assert re.search(r"rs1\s+ok\s+removed", one.stdout), one.stdout
    for host in ("rs1", "rs2"):
        assert not [a for a in lo_addresses(lab, host) if a.startswith(vip)]
        h = lab.host(host)
        left = labmod.lab_exec(
            h, "sh", "-c", "ls /etc/systemd/system/dsrprov-* /etc/sysctl.d/90-dsrprov-arp.conf 2>/dev/null; true"
        )
        assert left.strip() == ""
        assert labmod.lab_exec(h, "sysctl", "-n", "net.ipv4.conf.all.arp_ignore").strip() == "0"
    after = Inventory(inv)
    assert (
        not after.host("rs1").is_realserver and not after.host("rs2").is_realserver if after.has_host("rs1") else True
    )
    # Out of the real-server groups; what else the host had (lab_mac, lab_ip6) is kept.
    assert "client:" in inv.read_text()
    if after.has_host("rs1"):
        assert not after.host("rs1").is_realserver and after.host("rs1").vars.get("lab_mac")
    again = run("unenroll", "-q", "rs1", inventory=inv)
    assert again.returncode == 2 and "not enrolled" in one_error_line(again)


def test_an_ipv6_vip_records_the_hosts_ipv6_real_address(lab: labmod.Lab, inv: Path, vip: str) -> None:
    # rs2 was unenrolled above: a new host, known by its address only.
    vip6 = next(s["vip"] for s in Inventory(inv).services() if ":" in s["vip"])
    rs2 = lab.host("rs2")
    proc = run("enroll", "-q", "rs2", "--address", rs2.ip, "--vip", vip, "--vip", vip6, inventory=inv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Taken from the probe: the global IPv6 address beside the management address.
    assert Inventory(inv).host("rs2").str_var("dsr_real_address6") == rs2.ip6
    table = labmod.lab_exec(director(lab), "ipvsadm", "-Ln", "-t", f"[{vip6}]:80")
    assert f"[{rs2.ip6}]:80" in table, table
    gone = run("unenroll", "-q", "rs2", inventory=inv)
    assert gone.returncode == 0, gone.stdout + gone.stderr


def test_the_cli_refuses_what_site_yml_would_refuse_and_uses_the_inventorys_vips(
    lab: labmod.Lab, inv: Path, tmp_path: Path
) -> None:
    # The lab's own services, as committed: no allow_empty.
    pristine = copy_lab_inventory(lab, tmp_path, allow_empty=False)
    before = pristine.read_bytes()
    before_lo = lo_addresses(lab, "rs1")
    v4 = next(s["vip"] for s in Inventory(pristine).services() if ":" not in s["vip"])
    v6 = next(s["vip"] for s in Inventory(pristine).services() if ":" in s["vip"])
    refused = run("enroll", "rs1", "rs2", "--vip", v4, inventory=pristine)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = one_error_line(refused)
    assert f"refused: service web6 would be left with no real server holding its VIP {v6}" in line
    assert pristine.read_bytes() == before and lo_addresses(lab, "rs1") == before_lo
    # No --vip for hosts the inventory knows: their inventory VIPs, said so.
    proc = run("enroll", "rs1", "rs2", inventory=pristine)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"dsrprov: rs1: no --vip given: using its VIPs from the inventory: {v4}, {v6}" in proc.stderr
    # What the CLI wrote, site.yml accepts.
    site = run_playbook("site.yml", inventory=pristine)
    assert site.returncode == 0, site.stdout[-3000:] + site.stderr
