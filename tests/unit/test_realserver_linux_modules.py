"""The Linux role's module: its pure parts (module_utils), on data fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_arp_sysctls as sysctls
from ansible_collections.dsrprov.dsr.plugins.module_utils import dsr_sysctl_overrides as facts

WANTED = {"net.ipv4.conf.all.arp_ignore": 1, "net.ipv4.conf.all.arp_announce": 2}
OWN = "/etc/sysctl.d/90-dsrprov-arp.conf"


@pytest.fixture
def sysctl_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    etc, usr = tmp_path / "etc", tmp_path / "usr"
    etc.mkdir()
    usr.mkdir()
    monkeypatch.setattr(facts, "SYSCTL_DIRS", (str(etc), str(usr)))
    monkeypatch.setattr(facts, "SYSCTL_CONF", str(tmp_path / "sysctl.conf"))
    return tmp_path


def test_a_later_file_that_weakens_a_key_is_reported(sysctl_tree: Path) -> None:
    (sysctl_tree / "etc" / "99-site.conf").write_text("net.ipv4.conf.all.arp_ignore = 0\n")
    assert facts.find_overrides(OWN, WANTED) == [
        {"file": str(sysctl_tree / "etc" / "99-site.conf"), "key": "net.ipv4.conf.all.arp_ignore", "value": "0"}
    ]


def test_an_earlier_file_is_overridden_by_ours(sysctl_tree: Path) -> None:
    (sysctl_tree / "etc" / "10-early.conf").write_text("net.ipv4.conf.all.arp_ignore = 0\n")
    assert facts.find_overrides(OWN, WANTED) == []


def test_same_or_stricter_values_coexist(sysctl_tree: Path) -> None:
    # e.g. dev-sec os_hardening sets the same keys to the same values.
    (sysctl_tree / "usr" / "99-hardening.conf").write_text(
        "net.ipv4.conf.all.arp_ignore=1\nnet.ipv4.conf.all.arp_announce = 2\nnet.ipv4.conf.all.arp_ignore = 2\n"
    )
    assert facts.find_overrides(OWN, WANTED) == []


def test_slash_keys_globs_and_sysctl_conf(sysctl_tree: Path) -> None:
    (sysctl_tree / "etc" / "95-glob.conf").write_text("# comment\n-net/ipv4/conf/*/arp_announce = 0\n")
    (sysctl_tree / "sysctl.conf").write_text("; old style\nnet.ipv4.conf.all.arp_ignore = 0\n")
    found = {(Path(o["file"]).name, o["key"]) for o in facts.find_overrides(OWN, WANTED)}
    assert found == {("95-glob.conf", "net.ipv4.conf.*.arp_announce"), ("sysctl.conf", "net.ipv4.conf.all.arp_ignore")}


def test_etc_shadows_usr_with_the_same_name(sysctl_tree: Path) -> None:
    (sysctl_tree / "usr" / "99-x.conf").write_text("net.ipv4.conf.all.arp_ignore = 0\n")
    (sysctl_tree / "etc" / "99-x.conf").write_text("# masked by the admin\n")
    assert facts.find_overrides(OWN, WANTED) == []


def test_sysctl_file_keeps_the_original_values_for_absent() -> None:
    text = sysctls.render({"net.ipv4.conf.all.arp_ignore": "1"}, {"net.ipv4.conf.all.arp_ignore": "0"})
    assert "net.ipv4.conf.all.arp_ignore = 1\n" in text
    assert sysctls.parse_originals(text) == {"net.ipv4.conf.all.arp_ignore": "0"}
    assert sysctls.parse_originals(None) == {}


def test_a_stricter_live_value_is_left_alone() -> None:
    assert sysctls.strict_enough("2", "1")
    assert sysctls.strict_enough("1", "1")
    assert not sysctls.strict_enough("0", "1")
    assert not sysctls.strict_enough(None, "1")


# The role's values, as the module checks them (dsr_realserver_linux_apply.SYSCTL_VALUES).
ROLE_VALUES = {
    **WANTED,
    "net.ipv6.conf.lo.keep_addr_on_down": 1,
    "net.ipv6.conf.all.keep_addr_on_down": 0,
}


def test_a_later_file_that_turns_keep_addr_on_down_off_is_reported(sysctl_tree: Path) -> None:
    (sysctl_tree / "etc" / "99-lo.conf").write_text("net.ipv6.conf.lo.keep_addr_on_down = 0\n")
    # all = -1 overrides lo = 1 (the kernel takes "all" when it is non-zero); all = 0 does not.
    (sysctl_tree / "etc" / "99-all.conf").write_text(
        "net.ipv6.conf.all.keep_addr_on_down = -1\nnet.ipv6.conf.default.keep_addr_on_down = 0\n"
    )
    (sysctl_tree / "etc" / "99-zero.conf").write_text("net.ipv6.conf.all.keep_addr_on_down = 0\n")
    found = {(Path(o["file"]).name, o["key"]) for o in facts.find_overrides(OWN, ROLE_VALUES)}
    assert found == {
        ("99-lo.conf", "net.ipv6.conf.lo.keep_addr_on_down"),
        ("99-all.conf", "net.ipv6.conf.all.keep_addr_on_down"),
    }


def test_sysctl_file_sets_keep_addr_on_down_and_says_why() -> None:
    text = sysctls.render({"net.ipv4.conf.all.arp_ignore": "1", sysctls.KEEP_KEY: "1"}, {sysctls.KEEP_KEY: "0"})
    assert "net.ipv6.conf.lo.keep_addr_on_down = 1\n" in text
    assert "# keep_addr_on_down=1 on lo: a down/up of lo keeps the IPv6 VIPs." in text
    assert sysctls.parse_originals(text) == {sysctls.KEEP_KEY: "0"}
    assert "keep_addr_on_down" not in sysctls.render({"net.ipv4.conf.all.arp_ignore": "1"}, {})


# Interface names with dots (VLANs) and dashes (issue 22).


@pytest.mark.parametrize(
    ("scope", "key", "path"),
    [
        ("all", "net.ipv4.conf.all.arp_ignore", "net/ipv4/conf/all/arp_ignore"),
        ("eth0", "net.ipv4.conf.eth0.arp_ignore", "net/ipv4/conf/eth0/arp_ignore"),
        ("vlan-web", "net.ipv4.conf.vlan-web.arp_ignore", "net/ipv4/conf/vlan-web/arp_ignore"),
        ("eth0.100", "net/ipv4/conf/eth0.100/arp_ignore", "net/ipv4/conf/eth0.100/arp_ignore"),
        ("bond0.20", "net/ipv4/conf/bond0.20/arp_ignore", "net/ipv4/conf/bond0.20/arp_ignore"),
        ("vlan.100", "net/ipv4/conf/vlan.100/arp_ignore", "net/ipv4/conf/vlan.100/arp_ignore"),
    ],
)
def test_a_key_is_written_as_sysctl_reads_it_and_read_from_its_proc_path(scope: str, key: str, path: str) -> None:
    assert sysctls.conf_key(scope, "arp_ignore") == key
    assert sysctls.proc_path(key) == "/proc/sys/" + path
    # The dotted spelling with "/" inside the name (sysctl -a shows it so) names the same file.
    assert sysctls.canonical(f"net.ipv4.conf.{scope.replace('.', '/')}.arp_ignore") == path


@pytest.fixture
def proc_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A /proc/sys with all, eth0, eth0.100 and a dashed name (files the kernel would have)."""
    root = tmp_path / "proc"
    for scope in ("all", "eth0", "eth0.100", "vlan-web"):
        conf = root / "net" / "ipv4" / "conf" / scope
        conf.mkdir(parents=True)
        (conf / "arp_ignore").write_text("0\n")
        (conf / "arp_announce").write_text("0\n")
    monkeypatch.setattr(sysctls, "PROC_SYS", str(root) + "/")
    return root


def test_vlan_and_dashed_interfaces_get_their_keys_in_the_file_and_live(proc_tree: Path, tmp_path: Path) -> None:
    from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_change_plan import ChangePlan
    from ansible_collections.dsrprov.dsr.plugins.module_utils.dsr_plan_inputs import Desired, Found

    def wants(present: bool, keep: bool = True) -> Desired:
        return Desired(present, [], arp_interfaces=names, sysctl_file=str(own), keep_addr_on_down=keep)

    names = ["eth0", "eth0.100", "vlan-web"]
    assert sysctls.missing_interface(names) is None
    assert sysctls.missing_interface(["eth0.200"]) == (
        "interface 'eth0.200' has no IPv4 sysctls on this host (does it exist?)"
    )
    own = tmp_path / "90-dsrprov-arp.conf"
    change = ChangePlan()
    live = sysctls.plan(change, None, wants(True, keep=False), Found("ip"))
    assert "net/ipv4/conf/eth0.100/arp_ignore" in live
    assert change.apply() is None
    text = own.read_text()
    assert "net/ipv4/conf/eth0.100/arp_ignore = 1\nnet/ipv4/conf/eth0.100/arp_announce = 2\n" in text
    assert "net.ipv4.conf.vlan-web.arp_ignore = 1\n" in text
    conf = proc_tree / "net" / "ipv4" / "conf"
    assert (conf / "eth0.100" / "arp_ignore").read_text() == "1\n"
    assert (conf / "eth0.100" / "arp_announce").read_text() == "2\n"
    assert not (conf / "eth0" / "100").exists()
    # Idempotent, then absent puts back every value found.
    again = ChangePlan()
    assert sysctls.plan(again, None, wants(True, keep=False), Found("ip")) == {} and not again.changed
    gone = ChangePlan()
    sysctls.plan(gone, None, wants(False), Found("ip"))
    assert gone.apply() is None
    assert not own.exists()
    assert {(conf / s / "arp_ignore").read_text() for s in ("all", "eth0", "eth0.100", "vlan-web")} == {"0\n"}


def test_other_files_keys_for_vlan_names_are_read_in_both_spellings(sysctl_tree: Path) -> None:
    wanted = {"net/ipv4/conf/eth0.100/arp_ignore": 1, "net.ipv4.conf.eth0.arp_ignore": 1}
    (sysctl_tree / "etc" / "99-slash.conf").write_text("net/ipv4/conf/eth0.100/arp_ignore = 0\n")
    (sysctl_tree / "etc" / "99-dot.conf").write_text("net.ipv4.conf.eth0/100.arp_ignore = 0\n")
    # Not eth0.100: net.ipv4.conf.eth0.100.x would be a key "100" under eth0.
    (sysctl_tree / "etc" / "99-other.conf").write_text("net.ipv4.conf.eth0.100.arp_ignore = 0\n")
    found = sorted((Path(o["file"]).name, o["key"]) for o in facts.find_overrides(OWN, wanted))
    assert found == [
        ("99-dot.conf", "net/ipv4/conf/eth0.100/arp_ignore"),
        ("99-slash.conf", "net/ipv4/conf/eth0.100/arp_ignore"),
    ]
    assert facts.summaries(facts.find_overrides(OWN, wanted))[0].endswith("would weaken arp_ignore/arp_announce")
