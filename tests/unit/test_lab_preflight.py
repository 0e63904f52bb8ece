"""The lab's preconditions: each check's one-line message, fed the output of
the command it reads (recorded on this kind of machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsrprov_lab import preflight as labcheck

# `ip -o -4 addr show dev podman1` with netavark, and with CNI on an --internal network.
IP_NETAVARK = "5: podman1    inet 10.250.0.1/24 brd 10.250.0.255 scope global podman1\\       valid_lft forever"
IP_CNI_INTERNAL = ""


def test_netavark_passes_and_cni_names_cause_and_fix() -> None:
    assert labcheck.network_backend("netavark\n") is None
    problem = labcheck.network_backend("cni\n")
    assert problem is not None
    line = str(problem)
    assert line.startswith("lab preflight: podman uses the cni network backend")
    assert "apt-get install netavark aardvark-dns" in line and 'network_backend = "netavark"' in line
    assert "\n" not in line


def test_netavark_without_iptables_is_named() -> None:
    assert labcheck.netavark_firewall("/usr/sbin/iptables") is None
    assert "iptables is not installed" in str(labcheck.netavark_firewall(None))


def test_the_host_needs_the_gateway_address_on_the_bridge() -> None:
    assert labcheck.bridge_address("podman1", IP_NETAVARK, "10.250.0.1") is None
    line = str(labcheck.bridge_address("cni-podman1", IP_CNI_INTERNAL, "10.250.0.1"))
    assert "no address 10.250.0.1 on the lab bridge cni-podman1" in line
    assert "no bridge" in str(labcheck.bridge_address("", "", "10.250.0.1"))


def test_a_lab_host_that_does_not_answer_is_named() -> None:
    assert labcheck.reaches("rs1", "10.250.0.11", True) is None
    assert "does not reach lab host rs1 at 10.250.0.11" in str(labcheck.reaches("rs1", "10.250.0.11", False))


def test_the_director_vm_needs_qemu_and_tun() -> None:
    assert labcheck.vm_support("/usr/bin/qemu-system-x86_64", True) is None
    assert "qemu-system-x86_64 is not installed" in str(labcheck.vm_support(None, True))
    assert "/dev/net/tun is missing" in str(labcheck.vm_support("/usr/bin/qemu-system-x86_64", False))


def test_inotify_is_raised_only_for_a_big_lab() -> None:
    assert labcheck.inotify(128, 3) is None  # the default lab fits the default limit
    assert labcheck.inotify(128, 32) == labcheck.INOTIFY_RAISED
    assert labcheck.inotify(8192, 32) is None
    assert labcheck.inotify(128, 2000) == labcheck.inotify_needed(2000)


def test_raising_inotify_says_what_it_changed(tmp_path: Path) -> None:
    proc = tmp_path / "max_user_instances"
    proc.write_text("128\n")
    said: list[str] = []
    labcheck.raise_inotify(32, said.append, proc)
    assert proc.read_text().strip() == str(labcheck.INOTIFY_RAISED)
    assert said == [
        f"lab: raised fs.inotify.max_user_instances from 128 to {labcheck.INOTIFY_RAISED} (32 systemd containers "
        f"need about {labcheck.inotify_needed(32)}); not persisted across a reboot of this machine"
    ]
    said.clear()
    labcheck.raise_inotify(32, said.append, proc)
    assert said == []  # idempotent


def test_an_inotify_limit_that_cannot_be_raised_stops_with_the_command_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = tmp_path / "max_user_instances"
    proc.write_text("128\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(labcheck.PreflightError) as err:
        labcheck.raise_inotify(32, print, proc)
    assert "could not be raised (Permission denied)" in str(err.value)
    assert str(err.value).endswith("fix: sysctl -w fs.inotify.max_user_instances=8192 as root")


def test_free_disk() -> None:
    assert labcheck.disk("/var/tmp", 10 * 2**30) is None
    line = str(labcheck.disk("/var/tmp", 2**30))
    assert line.startswith("lab preflight: only 1.0 GiB free under /var/tmp; the lab images need about 4 GiB")
    assert line.endswith("; fix: free space under /var/tmp")


def _lab_with(tmp_path: Path, **rs1: str) -> Path:
    import yaml

    from dsrprov_lab.paths import checkout_root

    doc = yaml.safe_load((checkout_root() / "inventories" / "lab" / "hosts.yml").read_text())
    entry = doc["all"]["children"]["dsr_realservers"]["children"]["dsr_realservers_linux"]["hosts"]["rs1"]
    for key, value in rs1.items():
        if value == "-":
            del entry[key]
        else:
            entry[key] = value
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"lab_ip6": "-"}, "lab_ip6 is missing"),
        ({"lab_mac": "-"}, "lab_mac is missing"),
        ({"lab_ip6": ""}, "lab_ip6 is missing"),
        ({"lab_mac": "02:d5:a0:00:00"}, "lab_mac '02:d5:a0:00:00' is not"),
        ({"lab_ip6": "fd42:d5a:0:9::11"}, "lab_ip6 fd42:d5a:0:9::11 is outside the lab subnet"),
        ({"ansible_host": "rs1.example"}, "ansible_host 'rs1.example' is not an address"),
    ],
)
def test_a_lab_host_without_its_own_address_or_mac_is_refused_in_one_line(
    tmp_path: Path, change: dict[str, str], said: str
) -> None:
    # Seen: an unenroll/enroll round trip dropped lab_ip6 and lab_mac, and lab up
    # ran `podman run --ip6 "" --mac-address ""`: podman gave rs1 the director's
    # IPv6 address. load_lab refuses before anything starts.
    import dsrprov_lab as labmod
    from dsrprov_lab.errors import LabError

    with pytest.raises(LabError) as err:
        labmod.load_lab(_lab_with(tmp_path, **change))
    line = str(err.value)
    assert line.startswith("lab host rs1 in ") and said in line and "\n" not in line


def test_the_lab_sets_forwarding_explicitly_off_unless_asked_for_real_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    import dsrprov_lab as labmod

    lab = labmod.load_lab()
    rs1, client = lab.host("rs1"), lab.host("client")
    monkeypatch.delenv("DSRPROV_LAB_FORWARDING", raising=False)
    off = {"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0"}
    assert labmod.lab_sysctls(rs1) == off and labmod.lab_sysctls(client) == off
    monkeypatch.setenv("DSRPROV_LAB_FORWARDING", "1")
    assert set(labmod.lab_sysctls(rs1).values()) == {"1"} and labmod.lab_sysctls(client) == off
