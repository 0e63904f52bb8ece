"""The Linux role's one step, on the controller: its action plugin
(``plugins/action/dsr_realserver_linux_apply.py``) validates the role's
variables against the role's argument spec and runs the value checks, then
sends the module. ``site.yml`` imports the role with ``rolespec_validate:
false``, so this is the only validation it gets: each bad input must fail with
its line *before* the host is contacted.

One run of the collection's ``site.yml`` over one host per case. Every host is
a closed port on 127.0.0.1 (no host is contacted by this file): a case that
passes the controller's checks shows up as *unreachable*, one that fails them
as *failed* with its message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from dsrprov.run.playbook import PlaybookRun
from tests.support import host_failures, run_playbook

CLOSED_PORT = 9  # discard: nothing listens on it here
VIPS = ["10.250.0.200", "fd42:d5a:0:1::200"]

CASES: dict[str, tuple[dict[str, Any], str]] = {
    "bad-state": (
        {"dsr_realserver_linux_state": "gone"},
        "value of dsr_realserver_linux_state must be one of: present, absent, got: gone",
    ),
    "bad-period-type": (
        {"dsr_realserver_linux_guard_period": "soon"},
        "dsr_realserver_linux_guard_period",
    ),
    "bad-vips-type": (
        {"dsr_realserver_linux_vips": {"10.250.0.200": 1}},
        "dsr_realserver_linux_vips",
    ),
    "hostile-label": ({"dsr_realserver_linux_label": "lo:1;reboot"}, "dsrprov: invalid label 'lo:1;reboot'"),
    "hostile-interface": (
        {"dsr_realserver_linux_arp_interfaces": ["eth0;id"]},
        "dsrprov: invalid interface name 'eth0;id'",
    ),
    "hostile-unit-name": (
        {"dsr_realserver_linux_unit_name": "../../tmp/x.service"},
        "dsrprov: invalid dsr_realserver_linux_unit_name '../../tmp/x.service'",
    ),
    "bad-vip": ({"dsr_vips": ["10.250.0.300"]}, "dsrprov: invalid VIP '10.250.0.300'"),
    "zero-period": ({"dsr_realserver_linux_guard_period": 0}, "dsrprov: dsr_realserver_linux_guard_period"),
    "relative-guard-path": (
        {"dsr_realserver_linux_guard_program": "sbin/guard"},
        "dsrprov: invalid dsr_realserver_linux_guard_program 'sbin/guard'",
    ),
}


@pytest.fixture(scope="module")
def cases_run(tmp_path_factory: pytest.TempPathFactory) -> PlaybookRun:
    tmp: Path = tmp_path_factory.mktemp("linux-action")
    base = {"ansible_host": "127.0.0.1", "ansible_port": CLOSED_PORT, "dsr_vips": VIPS}
    hosts = {name: {**base, **values} for name, (values, _message) in CASES.items()}
    hosts["sound"] = dict(base)
    inventory = tmp / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"children": {"dsr_realservers_linux": {"hosts": hosts}}}})
    )
    return run_playbook("site.yml", inventory=inventory)


def _status(run: PlaybookRun, host: str) -> set[str]:
    return {str(ev.get("status")) for ev in run.events if ev.get("event") == "result" and ev.get("host") == host}


@pytest.mark.parametrize(("case", "message"), [(k, v[1]) for k, v in CASES.items()], ids=list(CASES))
def test_bad_input_fails_on_the_controller_before_the_host_is_contacted(
    cases_run: PlaybookRun, case: str, message: str
) -> None:
    said = host_failures(cases_run, case)
    assert message in said, (said, cases_run.stdout[-3000:])
    assert _status(cases_run, case) == {"failed"}, "the host was contacted: the controller let the value through"


def test_sound_input_passes_the_checks_and_the_module_is_sent(cases_run: PlaybookRun) -> None:
    """The control: the same inventory with nothing wrong reaches the host (here, its closed port)."""
    assert _status(cases_run, "sound") == {"unreachable"}, host_failures(cases_run, "sound")
