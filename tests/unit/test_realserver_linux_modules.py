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
