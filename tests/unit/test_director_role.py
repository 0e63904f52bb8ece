"""Tests of roles/dsr_director that need no director host.

- validation: ``ansible-playbook`` runs the role against localhost (connection
  local) with a small inventory; each bad input must stop the play at the
  first check, before the read-only fact module even runs;
- rendering: the role's own template, variables and filters render a sample
  model; the result must equal the golden files in tests/data/director/ and
  pass the real ``keepalived -t`` (skipped, saying why, without keepalived);
- the modules' parsers (ansible-lint with the production profile is ``make lint``'s,
  which lints every role of the collection).

The role on a real director (keepalived + IPVS in the QEMU VM) is proven by
the end-to-end tests, not here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from dsrprov.run.playbook import PlaybookRun
from tests.support import host_failures, run_playbook

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "src" / "ansible_collections" / "dsrprov" / "dsr"
ROLE = COLLECTION / "roles" / "dsr_director"
MODULES = COLLECTION / "plugins" / "modules"
DATA = Path(__file__).resolve().parents[1] / "data" / "director"
KEEPALIVED = shutil.which("keepalived") or next(
    (p for p in ("/usr/sbin/keepalived", "/sbin/keepalived") if os.access(p, os.X_OK)), None
)
NO_KEEPALIVED = "keepalived is not installed on this controller (apt-get install keepalived)"
# Set DSRPROV_REGOLD=1 to rewrite the golden files after a deliberate template change.
REGOLD = os.environ.get("DSRPROV_REGOLD") == "1"


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / "src"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / "rtmp"),
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    return env


HOSTS = {
    "all": {
        "children": {
            "dsr_directors": {
                "hosts": {
                    "dir1": {
                        "ansible_connection": "local",
                        "ansible_host": "127.0.0.1",
                        "ansible_python_interpreter": sys.executable,
                        "dsr_director_probe_address": "10.0.0.4",
                    }
                }
            },
            "dsr_realservers_linux": {
                "hosts": {
                    "rs1": {"ansible_host": "10.0.0.11", "dsr_real_address6": "fd00::11"},
                    "rs2": {"ansible_host": "10.0.0.12", "dsr_real_address6": "fd00::12", "dsr_weight": 3},
                }
            },
            "dsr_realservers_windows": {
                "hosts": {
                    "win1": {
                        "ansible_host": "win1.example.test",
                        "dsr_real_address": "10.0.0.21",
                        "dsr_vips": ["10.0.0.201"],
                    }
                }
            },
        }
    }
}

SERVICES: list[dict[str, Any]] = [
    {"name": "web", "vip": "10.0.0.200", "port": 80},
    {
        "name": "web6",
        "vip": "fd00::200",
        "port": 443,
        "lb_algo": "sh",
        "persistence_timeout": 300,
        "health_check": {
            "type": "http",
            "path": "/healthz",
            "status": 204,
            "port": 8080,
            "delay_loop": 10,
            "connect_timeout": 2,
            "retries": 3,
            "delay_before_retry": 2,
        },
    },
    {
        "name": "dns",
        "vip": "10.0.0.201",
        "port": 53,
        "protocol": "udp",
        "lb_algo": "mh",
        "health_check": {"type": "udp"},
    },
]

GROUP_VARS = {
    "dsr_services": SERVICES,
    # The real servers hold the VIPs of the first two services (win1 its own).
    "dsr_vips": ["10.0.0.200", "fd00::200"],
}

PLAY = [
    {
        "name": "Director",
        "hosts": "dsr_directors",
        "gather_facts": False,
        "roles": [{"role": "dsrprov.dsr.dsr_director"}],
    }
]


def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump(HOSTS))
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(GROUP_VARS))
    return inv


# --------------------------------------------------------------------------
# validation before any change
# --------------------------------------------------------------------------

FIRST_CHECK = "Check the service model and the VRRP instances"
FACTS_TASK = "Read the director's addresses, tools and keepalived state"


def _vrrp(**change: Any) -> dict[str, Any]:
    inst = {"name": "VI_1", "interface": "eth0", "state": "MASTER", "priority": 150, "virtual_router_id": 51}
    inst.update(change)
    return inst


# Every case is a director host of its own (this controller, connection local) with the case's
# variables as host variables, in one ansible-playbook run per group of cases: a run costs 2-3 s
# of Ansible start-up, the checks milliseconds. Each test reads its own host's outcome from the
# run's events (tests.support.host_failures).
MODEL_CASES = [
    pytest.param(
        {"dsr_director_services": [{"name": "mail", "vip": "10.0.0.250", "port": 25}]},
        "dsrprov: service mail: no real server holds its VIP 10.0.0.250",
        id="vip-without-real-server",
    ),
    pytest.param(
        {"dsr_director_services": [{"name": "web", "vip": "10.0.0.200", "port": 70000}]},
        "dsrprov: service web: port 70000 is out of range (1-65535)",
        id="port-out-of-range",
    ),
    pytest.param(
        {"dsr_director_services": [{"name": "web", "vip": "10.0.0.200", "port": 80, "lb_algo": "lblc"}]},
        "dsrprov: service web: unknown lb_algo 'lblc' (known: rr, wrr, lc, wlc, sh, mh)",
        id="lb-algo",
    ),
    pytest.param(
        {
            "dsr_director_vrrp_instances": [
                _vrrp(virtual_ipaddresses=["10.0.0.200", "fd00::200"]),
                _vrrp(name="VI_2", virtual_ipaddresses=["10.0.0.201"]),
            ]
        },
        "dsrprov: VRRP instances VI_1 and VI_2 both use virtual_router_id 51",
        id="vrrp-same-vrid",
    ),
    pytest.param(
        {"dsr_director_services": [{"name": "web", "vip": "10.0.0.300", "port": 80}]},
        "dsrprov: service web: invalid VIP '10.0.0.300'",
        id="invalid-vip",
    ),
    pytest.param(
        {"dsr_director_services": [SERVICES[0], {**SERVICES[0], "name": "web2"}]},
        "dsrprov: services web and web2 are the same virtual server (10.0.0.200 port 80/tcp)",
        id="duplicate-service",
    ),
    pytest.param(
        {"dsr_director_vrrp_instances": [_vrrp(auth_pass="far-too-long-secret")]},
        "dsrprov: VRRP instance VI_1: auth_pass must be 1-8 characters",
        id="vrrp-secret",
    ),
]


def _director_hosts(cases: dict[str, dict[str, Any]], hosts: dict[str, Any] | None = None) -> dict[str, Any]:
    """HOSTS (or HOSTS as given) with dir1 replaced by one director per case, named after it."""
    inventory = json.loads(json.dumps(hosts or HOSTS))
    directors = inventory["all"]["children"]["dsr_directors"]["hosts"]
    dir1 = directors.pop("dir1")
    directors.update({name: {**dir1, **variables} for name, variables in cases.items()})
    return inventory


def _run_cases(directory: Path, hosts: dict[str, Any], *args: str) -> PlaybookRun:
    inv = _inventory(directory)
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    playbook = directory / "play.yml"
    playbook.write_text(yaml.safe_dump(PLAY, sort_keys=False))
    return run_playbook(str(playbook), *args, inventory=inv)


def _ran(run: PlaybookRun, host: str, task: str) -> bool:
    return any(
        ev.get("host") == host and task in str(ev.get("task")) for ev in run.events if ev.get("event") == "result"
    )


@pytest.fixture(scope="module")
def model_run(tmp_path_factory: pytest.TempPathFactory) -> PlaybookRun:
    cases = {case.id: case.values[0] for case in MODEL_CASES}
    cases["bad-type"] = {"dsr_director_state": "gone"}
    return _run_cases(tmp_path_factory.mktemp("director-model"), _director_hosts(cases))


@pytest.mark.parametrize(
    ("case", "message"), [(c.id, c.values[1]) for c in MODEL_CASES], ids=[c.id for c in MODEL_CASES]
)
def test_validation_stops_before_the_host_is_read(model_run: PlaybookRun, case: str, message: str) -> None:
    said = host_failures(model_run, case)
    assert message in said, (said, model_run.stdout)
    assert said.startswith(f"dsrprov.dsr.dsr_director : {FIRST_CHECK}") or said.startswith(FIRST_CHECK), said
    assert not _ran(model_run, case, FACTS_TASK), "the host was contacted before the model was refused"
    assert "far-too-long-secret" not in model_run.stdout


def test_real_server_without_real_address(tmp_path: Path) -> None:
    hosts = json.loads(json.dumps(HOSTS))
    del hosts["all"]["children"]["dsr_realservers_linux"]["hosts"]["rs2"]["ansible_host"]
    inv = _inventory(tmp_path)
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(PLAY))
    proc = subprocess.run(
        [_tool("ansible-playbook"), "-i", str(inv), str(playbook)],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "dsrprov: real server rs2 holds an IPv4 VIP but has no IPv4 real address: set dsr_real_address" in out, out
    assert FACTS_TASK not in out


def test_argument_spec_refuses_bad_types(model_run: PlaybookRun) -> None:
    said = host_failures(model_run, "bad-type")
    assert "dsr_director_state" in said and "present, absent" in said, said
    assert not _ran(model_run, "bad-type", FACTS_TASK)


@pytest.fixture(scope="module")
def host_check_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PlaybookRun]:
    """In check mode, after the read-only facts: a sound model on a controller that is not on the real
    servers' LAN; an interface that does not exist; a keepalived.conf that dsrprov did not write."""
    tmp = tmp_path_factory.mktemp("director-host-checks")
    (tmp / "foreign.conf").write_text("global_defs {\n  router_id someone_else\n}\n")
    cases = {
        "off-lan": {"dsr_director_config_path": str(tmp / "off-lan.conf")},
        "no-iface": {"dsr_director_config_path": str(tmp / "no-iface.conf"), "dsr_director_vip_interface": "nosuch0"},
        "foreign": {"dsr_director_config_path": str(tmp / "foreign.conf")},
    }
    return tmp, _run_cases(tmp, _director_hosts(cases), "--check")


def test_host_checks_run_after_the_read_only_facts(host_check_run: tuple[Path, PlaybookRun]) -> None:
    """A sound model, but this controller is not on the real servers' LAN."""
    tmp, run = host_check_run
    assert _ran(run, "off-lan", FACTS_TASK)  # the read-only facts ran: the failure comes after them
    said = host_failures(run, "off-lan")
    assert "is on no network of director off-lan; LVS-DR needs every real server on the director's LAN" in said, said
    assert run.hosts["off-lan"].changed == 0
    assert not (tmp / "off-lan.conf").exists()


def test_missing_interface_is_refused(host_check_run: tuple[Path, PlaybookRun]) -> None:
    _tmp, run = host_check_run
    said = host_failures(run, "no-iface")
    assert "dsrprov: interface nosuch0 does not exist on no-iface" in said, said


@pytest.mark.skipif(KEEPALIVED is None, reason=NO_KEEPALIVED)
def test_nonexistent_interface_fails_the_config_test(tmp_path: Path, rendered: dict[str, str]) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(rendered["static"].replace("dev eth0", "dev nosuch0"))
    assert KEEPALIVED
    proc = subprocess.run([KEEPALIVED, "-t", "-f", str(conf)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0


def test_foreign_keepalived_conf_is_not_replaced(host_check_run: tuple[Path, PlaybookRun]) -> None:
    tmp, run = host_check_run
    conf = tmp / "foreign.conf"
    said = host_failures(run, "foreign")
    assert f"dsrprov: {conf} exists and was not written by dsrprov" in said, said
    assert "someone_else" in conf.read_text()


# --------------------------------------------------------------------------
# rendering: golden files and keepalived's own config test
# --------------------------------------------------------------------------

FACTS = {
    "addresses": [
        {"address": "10.0.0.2", "prefixlen": 24, "interface": "eth0", "family": 4},
        {"address": "fd00::2", "prefixlen": 64, "interface": "eth0", "family": 6},
    ],
    "address_interface": "eth0",
    "interfaces": ["eth0", "lo"],
    "keepalived": "/usr/sbin/keepalived",
    "ipvsadm": "/usr/sbin/ipvsadm",
    "keepalived_active": False,
    "keepalived_enabled": False,
    "ip_vs_loaded": True,
    "modules_load_content": None,
    "config_present": False,
    "config_managed": False,
    "auth_files": [],
    "managed": {"virtual_servers": [], "addresses": [], "real_servers": []},
    "sysctls_ok": False,
    "python3": "/usr/bin/python3",
    "netns": True,
    "macvlan": True,
    "probe_present": False,
}

VRRP = [
    {
        "name": "VI_web",
        "interface": "eth0",
        "state": "MASTER",
        "priority": 150,
        "virtual_router_id": 51,
        "unicast_src_ip": "10.0.0.2",
        "unicast_peers": ["10.0.0.3"],
        "auth_pass": "s3cret",
        "virtual_ipaddresses": ["10.0.0.200", "fd00::200"],
    },
    {
        "name": "VI_dns",
        "interface": "eth0",
        "state": "BACKUP",
        "priority": 100,
        "virtual_router_id": 52,
        "virtual_ipaddresses": ["10.0.0.201"],
    },
]


def _render(tmp_path: Path, variants: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Render keepalived.conf once per variant (its variables as task variables: they outrank the
    role's defaults and vars, loaded as vars_files), all in one ansible-playbook run."""
    tasks = [
        {
            "name": f"Render keepalived.conf: {name}",
            "ansible.builtin.template": {
                "src": str(ROLE / "templates" / "keepalived.conf.j2"),
                "dest": str(tmp_path / f"{name}.conf"),
                "mode": "0644",
            },
            "vars": {"dsr_director_probe_address": "10.0.0.4", **extra},
        }
        for name, extra in variants.items()
    ]
    play = [
        {
            "name": "Render",
            "hosts": "dir1",
            "gather_facts": False,
            "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
            "vars": {"_dsr_director_facts": FACTS},
            "tasks": tasks,
        }
    ]
    inv = _inventory(tmp_path)  # the collection (src/) holds the filters
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    cmd = [_tool("ansible-playbook"), "-i", str(inv), str(playbook)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {name: (tmp_path / f"{name}.conf").read_text() for name in variants}


def _golden(name: str, text: str) -> None:
    path = DATA / name
    if REGOLD:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"rendering differs from {path} (DSRPROV_REGOLD=1 rewrites it)"


def _local_interface() -> str:
    """An interface of this controller: keepalived -t refuses interfaces that do not exist."""
    names = sorted(n for n in os.listdir("/sys/class/net") if n != "lo")
    return names[0] if names else "lo"


def _keepalived_test(conf: Path) -> subprocess.CompletedProcess[str]:
    assert KEEPALIVED
    iface = _local_interface()
    conf.write_text(
        conf.read_text().replace("dev eth0", f"dev {iface}").replace("interface eth0", f"interface {iface}")
    )
    return subprocess.run([KEEPALIVED, "-t", "-f", str(conf)], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # A service nobody holds, allowed because the service says so (the "empty" variant).
    empty = {"name": "mail", "vip": "10.0.0.250", "port": 25, "allow_empty": True}
    return _render(
        tmp_path_factory.mktemp("render"),
        {
            "static": {},
            "vrrp": {"dsr_director_vrrp_instances": VRRP},
            "real_address": {"dsr_director_check": "real_address"},
            "empty": {"dsr_services": [*SERVICES, empty]},
        },
    )


def test_render_static_matches_golden(rendered: dict[str, str]) -> None:
    _golden("keepalived-static.conf", rendered["static"])
    text = rendered["static"]
    assert "lvs_flush" not in text.replace("No lvs_flush", "").replace("no lvs_flush_on_stop", "")
    assert "# dsrprov-manages address fd00::200/128 dev eth0" in text


def test_render_vrrp_matches_golden_without_the_secret(rendered: dict[str, str]) -> None:
    _golden("keepalived-vrrp.conf", rendered["vrrp"])
    assert "s3cret" not in rendered["vrrp"]
    assert "static_ipaddress" not in rendered["vrrp"]


@pytest.mark.skipif(KEEPALIVED is None, reason=NO_KEEPALIVED)
@pytest.mark.parametrize("variant", ["static", "vrrp"])
def test_rendered_config_passes_keepalived_config_test(tmp_path: Path, rendered: dict[str, str], variant: str) -> None:
    auth = tmp_path / "dsrprov-vrrp-VI_web.auth"
    auth.write_text("auth_pass s3cret\n")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(rendered[variant].replace("/etc/keepalived/dsrprov-vrrp-", f"{tmp_path}/dsrprov-vrrp-"))
    proc = _keepalived_test(conf)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(KEEPALIVED is None, reason=NO_KEEPALIVED)
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("lb_algo wlc", "lb_algo fastest"),  # unknown scheduler
        ("retry 2", "nb_get_retry 2"),  # the pre-2.0 keyword, unknown in TCP_CHECK
        ("lb_kind DR", "lb_kind DRR"),
        ("    }\n}\n", "    }\n"),  # a missing brace
    ],
)
def test_keepalived_config_test_fails_on_a_bad_config(
    tmp_path: Path, rendered: dict[str, str], old: str, new: str
) -> None:
    """The role's validate: relies on keepalived -t exiting non-zero on any such mistake."""
    assert old in rendered["static"]
    conf = tmp_path / "keepalived.conf"
    conf.write_text(rendered["static"].replace(old, new, 1))
    assert _keepalived_test(conf).returncode != 0


@pytest.mark.skipif(KEEPALIVED is None, reason=NO_KEEPALIVED)
def test_missing_vrrp_secret_file_fails_the_config_test(tmp_path: Path, rendered: dict[str, str]) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(rendered["vrrp"].replace("/etc/keepalived/dsrprov-vrrp-", f"{tmp_path}/dsrprov-vrrp-"))
    assert _keepalived_test(conf).returncode != 0


# --------------------------------------------------------------------------
# the modules' parsers
# --------------------------------------------------------------------------


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manifest_is_read_back_from_the_rendered_file(tmp_path: Path, rendered: dict[str, str]) -> None:
    facts = _load(MODULES / "dsr_director_facts.py")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(rendered["static"])
    present, managed, entries = facts.read_manifest(str(conf))
    assert present and managed
    assert entries == {
        "virtual_servers": [
            {"protocol": "tcp", "vip": "10.0.0.200", "port": 80},
            {"protocol": "tcp", "vip": "fd00::200", "port": 443},
            {"protocol": "udp", "vip": "10.0.0.201", "port": 53},
        ],
        "addresses": [
            {"address": "10.0.0.200/32", "dev": "eth0"},
            {"address": "fd00::200/128", "dev": "eth0"},
            {"address": "10.0.0.201/32", "dev": "eth0"},
        ],
        "real_servers": [
            {"protocol": "tcp", "vip": "10.0.0.200", "port": 80, "address": "10.0.0.11", "name": "rs1"},
            {"protocol": "tcp", "vip": "10.0.0.200", "port": 80, "address": "10.0.0.12", "name": "rs2"},
            {"protocol": "tcp", "vip": "fd00::200", "port": 443, "address": "fd00::11", "name": "rs1"},
            {"protocol": "tcp", "vip": "fd00::200", "port": 443, "address": "fd00::12", "name": "rs2"},
            {"protocol": "udp", "vip": "10.0.0.201", "port": 53, "address": "10.0.0.21", "name": "win1"},
        ],
    }
    assert facts.read_manifest(str(tmp_path / "none")) == (
        False,
        False,
        {"virtual_servers": [], "addresses": [], "real_servers": []},
    )
    # A file of an older dsrprov lists no real servers: they are unknown, not none.
    conf.write_text(rendered["static"].replace("# dsrprov-manages real_servers\n", ""))
    assert facts.read_manifest(str(conf))[2]["real_servers"] is None


def test_ipvs_table_parser(tmp_path: Path) -> None:
    cleanup = _load(MODULES / "dsr_director_cleanup.py")
    table = tmp_path / "ip_vs"
    # As read from /proc/net/ip_vs in the director VM.
    table.write_text(
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
        "TCP  0AFA08C8:0050 rr  \n"
        "  -> 0AFA080B:0050      Route   1      0          0\n"
        "UDP  0AFA0863:0035 wlc \n"
        "TCP  [fd42:0d5a:0000:0008:0000:0000:0000:0200]:0050 wlc \n"
    )
    assert cleanup.ipvs_services(str(table)) == {
        ("tcp", "10.250.8.200", 80),
        ("udp", "10.250.8.99", 53),
        ("tcp", "fd42:d5a:0:8::200", 80),
    }
    assert cleanup.ipvs_services(str(tmp_path / "none")) == set()


# --------------------------------------------------------------------------
# lint
# --------------------------------------------------------------------------


@pytest.mark.skipif(KEEPALIVED is None, reason=NO_KEEPALIVED)
def test_an_empty_service_is_left_out_of_ipvs_and_the_config_still_passes(
    tmp_path: Path, rendered: dict[str, str]
) -> None:
    text = rendered["empty"]
    assert "# service mail: no real server holds 10.0.0.250" in text
    assert "virtual_server 10.0.0.250 25" not in text
    assert "virtual_server 10.0.0.200 80" in text
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text.replace("dev eth0", f"dev {_local_interface()}"))
    proc = _keepalived_test(conf)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------
# IPVS read-back, drain and sysctls (module logic; the lab runs them for real)
# --------------------------------------------------------------------------

# As read from /proc/net/ip_vs in the lab's director VM while rs1 drained.
PROC_IP_VS = (
    "IP Virtual Server version 1.2.1 (size=4096)\n"
    "Prot LocalAddress:Port Scheduler Flags\n"
    "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
    "TCP  0AFD00C8:0050 rr \n"
    "  -> 0AFD000B:0050      Route   0      2          282       \n"
    "  -> 0AFD000C:0050      Route   1      0          1031      \n"
    "TCP  [fd42:0d5a:0000:0005:0000:0000:0000:0200]:0050 rr \n"
    "  -> [fd42:0d5a:0000:0005:0000:0000:0000:0012]:0050      Route   1      0          0         \n"
    "FWM  00000001 wlc \n"
    "  -> 0AFD000D:0000      Route   1      0          0         \n"
)


def test_ipvs_proc_parser_reads_destinations() -> None:
    from ansible_collections.dsrprov.dsr.plugins.module_utils import ipvs

    table = ipvs.parse(PROC_IP_VS)
    assert [(s["protocol"], s["vip"], s["port"]) for s in table] == [
        ("tcp", "10.253.0.200", 80),
        ("tcp", "fd42:d5a:0:5::200", 80),
    ]
    assert table[0]["dests"][0] == {
        "address": "10.253.0.11",
        "port": 80,
        "forward": "Route",
        "weight": 0,
        "active": 2,
        "inactive": 282,
    }
    assert list(ipvs.index(table)[("tcp", "fd42:d5a:0:5::200", 80)]) == ["fd42:d5a:0:5::12"]


def test_drain_waits_for_weight_zero_then_for_active_connections() -> None:
    from ansible_collections.dsrprov.dsr.plugins.module_utils import ipvs

    mod = _load(MODULES / "dsr_director_ipvs.py")
    leaving = [{"protocol": "tcp", "vip": "10.253.0.200", "port": 80, "address": "10.253.0.11"}]
    table = ipvs.parse(PROC_IP_VS)
    assert mod.drain_state(table, leaving) == (False, 2, [])
    idle = ipvs.parse(PROC_IP_VS.replace("Route   0      2 ", "Route   0      0 "))
    assert mod.drain_state(idle, leaving) == (True, 0, [])
    loaded = ipvs.parse(PROC_IP_VS.replace("Route   0      2 ", "Route   1      0 "))
    assert mod.drain_state(loaded, leaving) == (False, 0, ["10.253.0.11 still has weight 1"])
    assert mod.drain_state(table, [{**leaving[0], "address": "10.253.0.99"}]) == (True, 0, [])


def test_read_back_names_what_ipvs_lacks_or_still_holds() -> None:
    from ansible_collections.dsrprov.dsr.plugins.module_utils import ipvs

    mod = _load(MODULES / "dsr_director_ipvs.py")
    table = ipvs.parse(PROC_IP_VS)
    web = {"protocol": "tcp", "vip": "10.253.0.200", "port": 80}
    ok = [{**web, "real_servers": [{"name": "rs2", "address": "10.253.0.12", "weight": 1, "required": True}]}]
    # rs1 (weight 0, draining) is still there: not what the model says.
    assert mod.expect_problems(table, ok) == [
        "service tcp 10.253.0.200:80 still sends to 10.253.0.11, which it should not"
    ]
    gone = ipvs.parse(PROC_IP_VS.replace("  -> 0AFD000B:0050      Route   0      2          282       \n", ""))
    assert mod.expect_problems(gone, ok) == []
    joining = [{**ok[0], "real_servers": [*ok[0]["real_servers"], {"name": "rs3", "address": "10.253.0.13",
                                                                     "weight": 1, "required": True}]}]  # fmt: skip
    assert mod.expect_problems(gone, joining) == ["real server rs3 (10.253.0.13) is not in service tcp 10.253.0.200:80"]
    # One already in the pool whose check fails may be missing; a wrong weight may not.
    down = [{**ok[0], "real_servers": [{**ok[0]["real_servers"][0], "required": False}]}]
    assert mod.expect_problems(ipvs.parse(""), down) == []
    heavy = [{**ok[0], "real_servers": [{**ok[0]["real_servers"][0], "weight": 3}]}]
    assert mod.expect_problems(gone, heavy) == [
        "real server rs2 (10.253.0.12) has weight 1 in service tcp 10.253.0.200:80, not 3"
    ]


def test_sysctl_file_records_the_values_found_before() -> None:
    mod = _load(MODULES / "dsr_director_sysctls.py")
    text = mod.render({"net.ipv4.vs.expire_nodest_conn": "1"}, {"net.ipv4.vs.expire_nodest_conn": "0"})
    assert text.splitlines()[1:] == ["# before: net.ipv4.vs.expire_nodest_conn=0", "net.ipv4.vs.expire_nodest_conn = 1"]
    assert mod.recorded(text) == {"net.ipv4.vs.expire_nodest_conn": "0"}
    assert mod.proc_path("net.ipv4.vs.expire_nodest_conn") == "/proc/sys/net/ipv4/vs/expire_nodest_conn"


# --------------------------------------------------------------------------
# the DSR-path check (docs/director.md, "Health checks")
# --------------------------------------------------------------------------


def test_render_real_address_keeps_keepalived_own_checks(rendered: dict[str, str]) -> None:
    """dsr_director_check: real_address renders the classic checks to the real servers' addresses."""
    _golden("keepalived-real-address.conf", rendered["real_address"])
    text = rendered["real_address"]
    assert "connect_ip 127.0.0.1" not in text and "/probe?" not in text
    assert text.count("TCP_CHECK {") == 2 and text.count("HTTP_GET {") == 2 and text.count("UDP_CHECK {") == 1
    assert "# dsrprov-check tcp 10.0.0.200 80 10.0.0.11 real_address" in text


def test_render_dsr_path_is_the_default_for_tcp_and_http_services(rendered: dict[str, str]) -> None:
    """keepalived's own HTTP_GET asks the probe service on 127.0.0.1, one URL per real server."""
    text = rendered["static"]
    assert text.count("HTTP_GET {") == 4 and text.count("connect_ip 127.0.0.1") == 4 and "TCP_CHECK {" not in text
    # UDP keeps keepalived's own check to the real address.
    assert text.count("UDP_CHECK {") == 1
    assert "# dsrprov-check udp 10.0.0.201 53 10.0.0.21 real_address" in text
    assert "# dsrprov-check tcp fd00::200 443 fd00::12 dsr_path" in text
    assert "path /probe?rip=fd00%3A%3A12&vip=fd00%3A%3A200&port=8080&timeout=2&path=%2Fhealthz&status=204" in text
    assert "path /probe?rip=10.0.0.11&vip=10.0.0.200&port=80&timeout=3\n" in text
    assert "connect_port 7383" in text


@pytest.mark.skipif(KEEPALIVED is None, reason=NO_KEEPALIVED)
def test_real_address_rendering_passes_keepalived_config_test(tmp_path: Path, rendered: dict[str, str]) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(rendered["real_address"])
    proc = _keepalived_test(conf)
    assert proc.returncode == 0, proc.stderr


PROBE_CASES = [
    pytest.param(
        {"dsr_director_probe_address": ""},
        "dsrprov: the DSR-path check needs dsr_director_probe_address: a free IPv4 address on",
        id="no-probe-address",
    ),
    pytest.param(
        {"dsr_director_probe_address": "192.168.77.4"},
        "dsrprov: dsr_director_probe_address 192.168.77.4 is not a host address of a network on",
        id="probe-address-off-lan",
    ),
    pytest.param(
        {"dsr_director_probe_address": "not-an-ip"},
        "dsrprov: dsr_director_probe_address 'not-an-ip' is not an IP address",
        id="probe-address-invalid",
    ),
]


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PlaybookRun]:
    """On this controller (a stand-in director): the real servers are put on its own LAN, so that the
    probe's own check is the first host problem found; one director host per case, in check mode."""
    net = _local_network()
    if net is None:
        pytest.skip("this controller has no global IPv4 address to stand in for a director LAN")
    iface, hosts = net
    tmp = tmp_path_factory.mktemp("director-probe")
    cases = {
        case.id: {
            "dsr_director_config_path": str(tmp / f"{case.id}.conf"),
            "dsr_director_services": [{"name": "web", "vip": str(hosts[-1]), "port": 80}],
            "dsr_director_vip_interface": iface,
            **case.values[0],
        }
        for case in PROBE_CASES
    }
    hostvars = _director_hosts(cases)
    rs = hostvars["all"]["children"]["dsr_realservers_linux"]["hosts"]
    rs["rs1"].update(ansible_host=str(hosts[-2]), dsr_vips=[str(hosts[-1])])
    rs["rs2"].update(ansible_host=str(hosts[-3]), dsr_vips=[str(hosts[-1])])
    return tmp, _run_cases(tmp, hostvars, "--check")


@pytest.mark.parametrize(
    ("case", "message"), [(c.id, c.values[1]) for c in PROBE_CASES], ids=[c.id for c in PROBE_CASES]
)
def test_probe_problems_are_refused_after_the_facts_before_any_change(
    probe_run: tuple[Path, PlaybookRun], case: str, message: str
) -> None:
    tmp, run = probe_run
    said = host_failures(run, case)
    assert message in said, (said, run.stdout)
    assert _ran(run, case, FACTS_TASK)
    assert run.hosts[case].changed == 0
    assert not (tmp / f"{case}.conf").exists()


def _local_network() -> tuple[str, list[Any]] | None:
    import ipaddress

    proc = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, check=False)
    for link in json.loads(proc.stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("scope") == "global" and int(a["prefixlen"]) <= 29:
                net = ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
                own = ipaddress.ip_address(a["local"])
                free = [h for h in list(net.hosts())[-8:] if h != own]
                return str(link["ifname"]), free
    return None


def test_probe_mark_formula_is_the_same_in_the_role_and_on_the_director() -> None:
    """The role's filter and the director's dsr-path program must derive one mark per real server alike."""
    from ansible_collections.dsrprov.dsr.plugins.plugin_utils import director_probe

    prog = _program()
    for rip in ("10.250.0.11", "10.0.0.1", "fd42:d5a:0:1::11", "fd00::fd", "2001:db8::ffff:ffff"):
        assert prog.mark_of(rip) == director_probe.mark_of(rip)
        assert director_probe.mark_of(rip) not in (0, 253, 254, 255)


def test_probe_program_refuses_bad_arguments() -> None:
    prog = [sys.executable, str(ROLE / "files" / "dsr-path"), "probe"]
    for args in (
        ["--rip", "10.0.0.11", "--vip", "fd00::200", "--port", "80", "--timeout", "1"],
        ["--rip", "10.0.0.11", "--vip", "10.0.0.200", "--port", "0", "--timeout", "1"],
        ["--rip", "10.0.0.11", "--vip", "10.0.0.200", "--port", "80"],
        ["--rip", "10.0.0.11", "--vip", "10.0.0.200", "--port", "80", "--timeout", "1", "--http-path", "x"],
        ["--rip", "10.0.0.11", "--vip", "10.0.0.200", "--port", "80", "--timeout", "1", "--bogus", "1"],
    ):
        proc = subprocess.run([*prog, *args], capture_output=True, text=True, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("dsr-path probe: "), (args, proc.stderr)


def test_probe_plan_refuses_what_the_probe_cannot_do() -> None:
    from ansible_collections.dsrprov.dsr.plugins.plugin_utils import director_probe as dp
    from ansible_collections.dsrprov.dsr.plugins.plugin_utils import service_model as sm

    model = sm.check_services([{"name": "web6", "vip": "fd00::200", "port": 80}])
    model[0]["real_servers"] = [
        {"name": "rs1", "address": "fd00::1:11", "weight": 1},
        {"name": "rs2", "address": "fd01::1:11", "weight": 1},
    ]
    addrs = [{"address": "fd00::2", "prefixlen": 64, "interface": "eth0"}]
    with pytest.raises(dp.ProbeError, match="share the low 32 bits"):
        dp.probe_plan(model, "dsr_path", addrs, "eth0")
    # IPv6 alone needs no probe address (link-local); real_address needs no probe at all.
    model[0]["real_servers"].pop()
    assert dp.probe_plan(model, "dsr_path", addrs, "eth0")["config"]["address6"] == ""
    assert dp.probe_plan(model, "real_address", addrs, "eth0") == {"config": None}
    with pytest.raises(dp.ProbeError, match="is already in use"):
        dp.probe_plan(model, "dsr_path", addrs, "eth0", address6="fd00::2")
    model[0]["health_check"].update(type="http", path='/a"b', status=200)
    with pytest.raises(dp.ProbeError, match="does not pass"):
        dp.probe_plan(model, "dsr_path", addrs, "eth0")


def _program() -> ModuleType:
    spec = importlib.util.spec_from_loader("dsr_path_prog", loader=None)
    assert spec
    prog = importlib.util.module_from_spec(spec)
    exec(compile((ROLE / "files" / "dsr-path").read_text(), "dsr-path", "exec"), prog.__dict__)
    return prog


def test_probe_service_answers_only_well_formed_requests_for_configured_pairs() -> None:
    """The service's request handling (the namespace and MAC check need a director: the lab test)."""
    prog = _program()

    class Known:
        def __contains__(self, pair: object) -> bool:
            return pair == ("127.0.0.1", "127.0.0.2")

    known = Known()
    assert prog.route("POST /probe HTTP/1.0", known, None)[0] == 400
    assert prog.route("GET /other HTTP/1.0", known, None)[0] == 404
    assert prog.route("GET /probe?rip=127.0.0.1&vip=fd00::1&port=80&timeout=1 HTTP/1.0", known, None)[0] == 400
    assert prog.route("GET /probe?rip=127.0.0.1&vip=127.0.0.2 HTTP/1.0", known, None)[0] == 400
    status, text = prog.route("GET /probe?rip=127.0.0.3&vip=127.0.0.2&port=80&timeout=1 HTTP/1.0", known, None)
    assert status == 403 and "not in the configuration" in text
    # A configured pair: probed (a closed port on 127.0.0.2 refuses: 503 with the reason).
    status, text = prog.route("GET /probe?rip=127.0.0.1&vip=127.0.0.2&port=9&timeout=1 HTTP/1.0", known, None)
    assert status == 503 and text.startswith("fail 127.0.0.2:9 via 127.0.0.1:"), text


def test_handshake_parser_reads_the_macs_of_syn_and_syn_ack() -> None:
    prog = _program()
    eth = bytes.fromhex("02d50300001102d5030000990800")
    ip = bytes([0x45]) + bytes(8) + bytes([6]) + bytes(10)
    syn = eth + ip + (40000).to_bytes(2, "big") + (80).to_bytes(2, "big") + bytes(9) + bytes([0x02]) + bytes(6)
    assert prog.tcp_handshake(syn) == ("syn", 40000, "02:d5:03:00:00:11")
    synack = eth + ip + (80).to_bytes(2, "big") + (40000).to_bytes(2, "big") + bytes(9) + bytes([0x12]) + bytes(6)
    assert prog.tcp_handshake(synack) == ("synack", 40000, "02:d5:03:00:00:99")
    assert prog.tcp_handshake(eth[:12] + b"\x08\x06" + bytes(40)) is None
