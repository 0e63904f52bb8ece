"""Issue 22, crash safety on real network managers (inventories/lab-linux): NetworkManager 1.42 with
a loopback profile (nm2) and systemd-networkd 257 with a .network for lo (nd2).

- A step that fails after the profile was changed rolls everything back, the
  profile byte for byte (a real failure: /etc/dsrprov/loopback-vips made a
  directory, so the step after the manager's cannot be written).
- A real SIGKILL of the module right after ``nmcli connection modify`` (nm2)
  or ``networkctl reload`` (nd2), staged by a pass-through nmcli/networkctl
  in /usr/local: the record written ahead names the change, the next run
  finishes it, absent leaves the host as found.

Kills at every other step are covered by the unit tests (tests/test_lo_persist_crash.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import dsrprov_lab as labmod
from tests.integration.test_realserver_linux_vlan_lab import linux_lab, play, sh

# In `make integration-extended`, not in `make test`: CI has 90 minutes on 2 cores.
pytestmark = [pytest.mark.lab, pytest.mark.extended]

HOST = "nm2"
KEYFILE = "/etc/NetworkManager/system-connections/lo.nmconnection"
RECORD = "/etc/dsrprov/loopback-manager.json"
HOOK = "/etc/NetworkManager/dispatcher.d/90-dsrprov-loopback-vips"


def state(host: labmod.LabHost) -> str:
    """What the role could touch, as text: the profile's bytes and mtime, NetworkManager's view of
    it, lo, the ARP sysctls, dsrprov's files."""
    return sh(
        host,
        f"sha256sum {KEYFILE}; stat -c %Y {KEYFILE}; nmcli -g ipv4.addresses,ipv6.addresses connection show lo;"
        " ip -o addr show dev lo | awk '{print $4}' | sort; sysctl -a 2>/dev/null | grep -E 'arp_(ign|ann)' | sort;"
        f" ls -A /etc/dsrprov {HOOK} /etc/sysctl.d /etc/systemd/system 2>&1; true",
    )


@pytest.fixture(scope="module")
def nm_host() -> Iterator[labmod.LabHost]:
    with linux_lab() as the_lab:
        host = the_lab.host(HOST)
        sh(host, "nmcli -g TYPE,FILENAME connection show | grep -q '^loopback:/etc/' || "
                 "nmcli connection add type loopback con-name lo ifname lo >/dev/null")  # fmt: skip
        try:
            yield host
        finally:
            sh(host, "rmdir /etc/dsrprov/loopback-vips /etc/dsrprov 2>/dev/null; true")
            play("-e", "dsr_state=absent", host=HOST)


def test_a_failure_after_the_profile_changed_rolls_back_and_absent_restores(nm_host: labmod.LabHost) -> None:
    found = state(nm_host)
    sh(nm_host, "mkdir -p /etc/dsrprov/loopback-vips")
    blocked = state(nm_host)
    run, counts = play(host=HOST)
    assert run.returncode != 0 and counts["failed"] == 1
    assert "write /etc/dsrprov/loopback-vips: " in run.stdout and "rolled back" in run.stdout, run.stdout[-3000:]
    assert "cannot undo" not in run.stdout
    assert state(nm_host) == blocked, "the rollback left traces"
    sh(nm_host, "rmdir /etc/dsrprov/loopback-vips")

    run, counts = play(host=HOST)
    assert run.returncode == 0 and counts["changed"] >= 1, run.stdout[-3000:]
    record = json.loads(sh(nm_host, f"cat {RECORD}"))
    (entry,) = record["nm_profiles"].values()
    assert "pending" not in entry and entry["modified"] is not None
    assert "10.240.2.200/32" in sh(nm_host, "nmcli -g ipv4.addresses connection show lo")
    run, counts = play(host=HOST)
    assert run.returncode == 0 and counts["changed"] == 0, run.stdout[-3000:]

    run, counts = play("-e", "dsr_state=absent", host=HOST)
    assert run.returncode == 0, run.stdout[-3000:]
    assert state(nm_host) == found


# A stand-in nmcli in front of the real one: after a real `nmcli connection
# modify` it SIGKILLs its parent, the module, once (the case: a kill
# between the profile change and the record). Only the kill is staged.
KILLING_NMCLI = """#!/bin/sh
/usr/bin/nmcli "$@"; rc=$?
if [ "$2" = modify ] && [ -e /run/dsrprov-test-kill ]; then rm -f /run/dsrprov-test-kill; kill -9 $PPID; fi
exit $rc
"""


def run_killed(host: labmod.LabHost, name: str, path: str, script: str) -> None:
    """Put the pass-through command at PATH, arm it and run the role: the module dies once. Then
    the command goes again."""
    labmod.lab_exec(host, "sh", "-c", f"cat > {path} && chmod 755 {path}", input_text=script)
    try:
        sh(host, "touch /run/dsrprov-test-kill")
        run, counts = play(host=name)
        assert run.returncode != 0 and counts["failed"] == 1, run.stdout[-3000:]
        assert sh(host, "test -e /run/dsrprov-test-kill && echo armed || echo fired").strip() == "fired"
    finally:
        sh(host, f"rm -f {path} /run/dsrprov-test-kill")


def test_a_kill_right_after_nmcli_modify_heals_and_absent_restores(nm_host: labmod.LabHost) -> None:
    play("-e", "dsr_state=absent", host=HOST)
    sh(nm_host, "rmdir /etc/dsrprov 2>/dev/null; true")  # an empty one an earlier test may have left
    found = state(nm_host)
    run_killed(nm_host, HOST, "/usr/local/sbin/nmcli", KILLING_NMCLI)
    # Killed after the profile changed: the record written ahead names the change.
    assert "10.240.2.200/32" in sh(nm_host, "nmcli -g ipv4.addresses connection show lo")
    entry = next(iter(json.loads(sh(nm_host, f"cat {RECORD}"))["nm_profiles"].values()))
    assert entry["pending"]["add"] == ["10.240.2.200/32", "fd42:d5a:0:42::200/128"]
    run, counts = play(host=HOST)
    assert run.returncode == 0, run.stdout[-3000:]
    entry = next(iter(json.loads(sh(nm_host, f"cat {RECORD}"))["nm_profiles"].values()))
    assert "pending" not in entry
    run, counts = play(host=HOST)
    assert run.returncode == 0 and counts["changed"] == 0, run.stdout[-3000:]
    run, counts = play("-e", "dsr_state=absent", host=HOST)
    assert run.returncode == 0, run.stdout[-3000:]
    assert state(nm_host) == found


ND = "nd2"
LO_NETWORK = "/etc/systemd/network/05-lo.network"
DROPIN_DIR = "/etc/systemd/network/05-lo.network.d"
# The same for networkd: a SIGKILL of the module right after a real
# `networkctl reload` (after the drop-in was written, before the record).
KILLING_NETWORKCTL = """#!/bin/sh
/usr/bin/networkctl "$@"; rc=$?
if [ "$1" = reload ] && [ -e /run/dsrprov-test-kill ]; then rm -f /run/dsrprov-test-kill; kill -9 $PPID; fi
exit $rc
"""


def nd_state(host: labmod.LabHost) -> str:
    return sh(
        host,
        f"sha256sum {LO_NETWORK}; ls -A {DROPIN_DIR} /etc/dsrprov 2>&1; ip -o addr show dev lo | awk '{{print $4}}' |"
        " sort; sysctl -a 2>/dev/null | grep -E 'arp_(ign|ann)' | sort; true",
    )


def test_a_kill_right_after_the_networkd_reload_heals_and_absent_restores() -> None:
    with linux_lab() as the_lab:
        host = the_lab.host(ND)
        sh(host, f"test -e {LO_NETWORK} || {{ printf '[Match]\\nName=lo\\n' > {LO_NETWORK} && networkctl reload; }}")
        play("-e", "dsr_state=absent", host=ND)
        found = nd_state(host)
        run_killed(host, ND, "/usr/local/bin/networkctl", KILLING_NETWORKCTL)
        note = json.loads(sh(host, f"cat {RECORD}"))
        assert note["networkd_dropins"] == [f"{DROPIN_DIR}/90-dsrprov-loopback-vips.conf"]
        run, counts = play(host=ND)
        assert run.returncode == 0, run.stdout[-3000:]
        run, counts = play(host=ND)
        assert run.returncode == 0 and counts["changed"] == 0, run.stdout[-3000:]
        run, counts = play("-e", "dsr_state=absent", host=ND)
        assert run.returncode == 0, run.stdout[-3000:]
        assert nd_state(host) == found
