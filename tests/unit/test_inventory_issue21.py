"""The reproductions of issue 21 (the CLI must see the inventory as
ansible-playbook does, and change it only when the change worked), one test
each, plus the safety of edits (refusals, locks, round trips).

Unreachable hosts are closed ports on 127.0.0.x. Where a test stands in for
the probe of a host (no host can be probed here), its name says so."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import paramiko  # type: ignore[import-untyped]
import pytest

from dsrprov import enroll as enroll_mod
from dsrprov.checks import hostcheck
from dsrprov.cli import main
from dsrprov.connect import ssh
from dsrprov.connect.probe import ConnOptions
from dsrprov.errors import DsrError, UsageError
from dsrprov.model.inventory import Inventory
from dsrprov.report import HostReport
from dsrprov_lab.paths import checkout_root as project_root

CORPUS = Path(__file__).parents[1] / "data" / "inventories"


def corpus(case: str, tmp_path: Path) -> Path:
    dest = tmp_path / case
    shutil.copytree(CORPUS / case, dest)
    return dest


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def lab_copy(tmp_path: Path) -> Path:
    """The lab inventory, its addresses moved to closed ports on 127.0.0.x."""
    src = project_root() / "inventories" / "lab"
    dest = tmp_path / "lab"
    dest.mkdir()
    (dest / "hosts.yml").write_text((src / "hosts.yml").read_text().replace("10.250.0.", "127.0.0."))
    shutil.copytree(src / "group_vars", dest / "group_vars")
    return dest / "hosts.yml"


# 1 -------------------------------------------------------------------------
def test_repro1_a_directory_inventory_is_read_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = corpus("directory", tmp_path)
    main(["status", "-i", str(src), "--json", "--timeout", "1"])
    hosts = sorted(h["host"] for h in json.loads(capsys.readouterr().out)["hosts"])
    assert hosts == ["rs1", "rs2", "rs3"]


def test_repro1_the_playbook_gets_the_directory_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe is a stand-in here; the playbook's -i is recorded (a stand-in for the run)."""
    src = corpus("directory", tmp_path)
    seen: list[object] = []

    def fake_run_roles(inventory: object, hosts: list[str], **kw: object) -> dict[str, object]:
        seen.append(inventory)
        return {}

    monkeypatch.setattr(enroll_mod, "_prepare", _stand_in_prepare)
    monkeypatch.setattr(enroll_mod, "run_roles", fake_run_roles)
    main(["enroll", "rs9", "--address", "127.0.0.19", "--vip", "10.9.0.100", "-i", str(src), "--timeout", "1"])
    assert seen
    for inventory in seen:
        first = inventory[0] if isinstance(inventory, list) else inventory
        assert Path(str(first)) == src


# 2 -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["verify"],
        ["enroll", "rs1", "--vip", "10.9.0.100", "--check"],
        ["enroll", "rs1", "--vip", "10.9.0.100"],
    ],
    ids=["status", "verify", "enroll-check", "enroll"],
)
def test_repro2_code_in_inventory_values_never_runs(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = corpus("payload", tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    main([*argv, "-i", str(src), "--timeout", "1"])
    assert not list(work.glob("PWNED*")) and not list(tmp_path.rglob("PWNED*"))


# 3 -------------------------------------------------------------------------
def test_repro3_unenroll_of_a_host_in_a_child_group_takes_it_out(tmp_path: Path) -> None:
    src = corpus("children", tmp_path) / "hosts.yml"
    inv = Inventory(src)
    assert inv.remove_realserver("rs1")
    inv.save()
    again = Inventory(src)
    assert not again.has_host("rs1") or not again.host("rs1").is_realserver
    assert again.host("rs2").is_realserver


# 4 -------------------------------------------------------------------------
def _stand_in_prepare(inv: object, req: enroll_mod.Request, os_choice: str, opts: object, progress: object) -> object:
    """Stands in for the probe (no host can be probed here): the host is ready."""
    return enroll_mod._Plan(
        req, HostReport(req.host), name=req.host, os="linux", address=req.address, vips=list(req.vips)
    )


def test_repro4_a_failed_enroll_leaves_the_inventory_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe is a stand-in; the role run is real and fails (closed port)."""
    src = corpus("directory", tmp_path)
    before = snapshot(src)
    monkeypatch.setattr(enroll_mod, "_prepare", _stand_in_prepare)
    code = main(["enroll", "rs9", "--address", "127.0.0.19", "--vip", "10.9.0.100", "-i", str(src), "--timeout", "1"])
    assert code != 0
    assert snapshot(src) == before
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("dsrprov: rs9:")]
    assert len(err) == 1 and "inventory unchanged" in err[0]


# 5 -------------------------------------------------------------------------
def test_repro5_round_trip_of_the_last_host_is_byte_identical(lab_copy: Path) -> None:
    original = lab_copy.read_text()
    inv = Inventory(lab_copy)
    rs2 = inv.host("rs2")
    vips, address, real6 = rs2.vips, rs2.address, rs2.str_var("dsr_real_address6")
    assert inv.remove_realserver("rs2")
    inv.save()
    assert not Inventory(lab_copy).host("rs2").is_realserver
    back = Inventory(lab_copy)
    back.set_realserver("rs2", "linux", vips, address, real6)
    back.save()
    assert lab_copy.read_text() == original


def test_repro5_round_trip_keeps_the_hosts_other_variables(lab_copy: Path) -> None:
    inv = Inventory(lab_copy)
    rs1 = inv.host("rs1")
    vips, address = rs1.vips, rs1.address
    inv.remove_realserver("rs1")
    inv.save()
    back = Inventory(lab_copy)
    back.set_realserver("rs1", "linux", vips, address)
    back.save()
    again = Inventory(lab_copy).host("rs1")
    assert again.is_realserver
    assert again.vars.get("lab_mac") == "02:d5:a0:00:00:11"
    assert again.vars.get("lab_ip6") == "fd42:d5a:0:1::11"
    assert again.vips == vips


def test_repro5_a_failed_unenroll_leaves_the_inventory_byte_identical(
    lab_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The directors are unreachable (closed port): nothing may change."""
    before = snapshot(lab_copy.parent)
    code = main(["unenroll", "rs1", "-i", str(lab_copy), "--timeout", "1"])
    assert code != 0
    assert snapshot(lab_copy.parent) == before


# 6 -------------------------------------------------------------------------
def test_repro6_group_priority_decides(tmp_path: Path) -> None:
    rs1 = Inventory(corpus("priority", tmp_path) / "hosts.yml").host("rs1")
    assert rs1.vips == ["10.9.0.102"]
    assert rs1.vars.get("dsr_weight") == 9


# 7 -------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["rs2", "rs3", "rs4"])
def test_repro7_an_anchor_shared_with_others_is_refused(tmp_path: Path, host: str) -> None:
    src = corpus("anchors", tmp_path) / "hosts.yml"
    before = src.read_bytes()
    inv = Inventory(src)
    with pytest.raises(UsageError, match="anchors"):
        inv.set_realserver(host, "linux", ["10.9.0.105"])
        inv.save()
    assert src.read_bytes() == before


def test_repro7_a_host_without_anchors_is_edited_alone(tmp_path: Path) -> None:
    src = corpus("anchors", tmp_path) / "hosts.yml"
    inv = Inventory(src)
    with pytest.raises(UsageError, match="anchors"):
        inv.set_realserver("rs1", "linux", ["10.9.0.105"])  # rs1 holds the &vips anchor rs4 uses


# 8 -------------------------------------------------------------------------
def test_repro8_verify_reaches_directors_and_vantage_with_their_own_settings(
    lab_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SSH targets are recorded (stand-ins for the connections)."""
    targets: dict[str, ssh.SSHTarget] = {}

    def record(target: ssh.SSHTarget, *args: object) -> object:
        targets[target.name] = target
        raise DsrError("stand-in: not connected", target.name)

    monkeypatch.setattr(hostcheck, "probe_linux", record)
    monkeypatch.setattr(hostcheck, "neighbour_probe", record)
    monkeypatch.setattr(hostcheck, "_probe_one", _stand_in_probed)
    opts = ConnOptions(user="newuser", identity=Path("/nonexistent/new_key"), known_hosts=Path("/tmp/new_known"))
    opts.accept_new_host_key = True
    hostcheck.verify(Inventory(lab_copy), ["rs1"], opts)
    assert {"director", "client"} <= set(targets)
    for name in ("director", "client"):
        t = targets[name]
        assert t.user == "root"
        assert t.key_file == lab_copy.parent / ".state" / "id_ed25519"
        assert t.known_hosts == lab_copy.parent / ".state" / "known_hosts"
        assert not t.accept_new_host_key


def _stand_in_probed(host: object, opts: object, services: object) -> object:
    """Stands in for the probe of the enrolled host: reachable, facts read."""
    from dsrprov.connect.linux_facts import parse_probe

    facts = parse_probe((Path(__file__).parents[1] / "data" / "linux" / "probe_unconfigured.txt").read_text())
    return hostcheck.Probed(host, HostReport(host.name), facts)  # type: ignore[arg-type, attr-defined]


# 9 -------------------------------------------------------------------------
def test_repro9_save_keeps_owner_group_and_mode(lab_copy: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(lab_copy, 65534, 65534)
    os.chmod(lab_copy, 0o640)
    inv = Inventory(lab_copy)
    inv.set_realserver("rs2", "linux", ["127.0.0.200"])
    inv.save()
    st = lab_copy.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o640)


def test_repro9_known_hosts_without_final_newline(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    key = paramiko.RSAKey.generate(1024)
    known.write_text(f"other.example ssh-rsa {key.get_base64()}")  # no final newline
    ssh._AcceptNewPolicy(known).missing_host_key(paramiko.SSHClient(), "127.0.0.9", key)
    lines = known.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("127.0.0.9 ssh-rsa ")
    paramiko.HostKeys(str(known))  # readable


def test_repro9_an_invalid_known_hosts_line_is_one_line(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("127.0.0.9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5A\n")  # paramiko raises InvalidHostKey
    target = ssh.SSHTarget(name="rs1", address="127.0.0.9", port=22, user="root", known_hosts=known, timeout=1)
    with pytest.raises(DsrError) as err:
        ssh.connect(target)
    assert "known_hosts" in err.value.reason and "\n" not in err.value.reason


@pytest.mark.parametrize("name", ["!rs-web1", "rs&1", "rs[1]", "~rs.*", "a,b", "rs*"])
def test_repro9_host_names_that_are_patterns_are_refused(
    name: str, lab_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = lab_copy.read_bytes()
    code = main(["enroll", name, "--address", "127.0.0.30", "--vip", "10.250.0.200", "-i", str(lab_copy)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pattern" in err[0]
    assert lab_copy.read_bytes() == before


def test_repro9_document_end_marker_and_its_comment_are_kept(tmp_path: Path) -> None:
    src = corpus("children", tmp_path) / "hosts.yml"
    src.write_text(src.read_text() + "# the end of the inventory\n...\n")
    inv = Inventory(src)
    inv.set_realserver("rs2", "linux", ["10.9.0.105"])
    inv.save()
    text = src.read_text()
    assert text.endswith("# the end of the inventory\n...\n")
    assert Inventory(src).host("rs2").vips == ["10.9.0.105"]


def test_repro9_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    wanted = tomllib.loads((project_root() / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"dsrprov {wanted}"
    galaxy = (project_root() / "src" / "ansible_collections" / "dsrprov" / "dsr" / "galaxy.yml").read_text()
    assert f"version: {wanted}" in galaxy


# Safety of edits -------------------------------------------------------------
def test_a_host_defined_in_several_files_is_refused(tmp_path: Path) -> None:
    src = corpus("directory", tmp_path)
    (src / "dc3.yml").write_text("dsr_realservers_linux:\n  hosts:\n    rs2:\n      dsr_weight: 1\n")
    before = snapshot(src)
    inv = Inventory(src)
    with pytest.raises(UsageError, match="several inventory files"):
        inv.set_realserver("rs2", "linux", ["10.9.0.105"])
    assert snapshot(src) == before


@pytest.mark.parametrize("case", ["ini", "script"])
def test_an_ini_or_dynamic_source_is_refused(case: str, tmp_path: Path) -> None:
    src = corpus(case, tmp_path)
    source = next(p for p in src.iterdir() if p.is_file())
    inv = Inventory(source)
    with pytest.raises(UsageError, match="does not edit"):
        inv.set_realserver("rs1", "linux", ["10.9.0.105"])


def test_edit_goes_to_the_file_that_defines_the_host(tmp_path: Path) -> None:
    src = corpus("directory", tmp_path)
    hosts_before = (src / "hosts.yml").read_bytes()
    inv = Inventory(src)
    inv.set_realserver("rs3", "linux", ["10.9.0.105"])
    assert inv.save() == [src / "dc2.yml"]
    assert (src / "hosts.yml").read_bytes() == hosts_before
    assert Inventory(src).host("rs3").vips == ["10.9.0.105"]


def test_a_second_command_waits_then_is_refused(lab_copy: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from dsrprov.model.inventory import locked\n"
        "with locked(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(lab_copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        from dsrprov.model.inventory import locked

        start = time.monotonic()
        with pytest.raises(UsageError, match="locked by another dsrprov"), locked(lab_copy, wait=1.0):
            pass
        assert time.monotonic() - start >= 1.0
    finally:
        holder.kill()
        holder.wait()
    with locked(lab_copy, wait=1.0):
        pass  # free again


def test_the_cli_holds_the_lock_for_the_whole_command(
    lab_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSRPROV_LOCK_WAIT", "0.5")
    code = (
        "import sys, time; from pathlib import Path; from dsrprov.model.inventory import locked\n"
        "with locked(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(lab_copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        rc = main(["unenroll", "rs1", "-i", str(lab_copy), "--timeout", "1"])
    finally:
        holder.kill()
        holder.wait()
    assert rc == 2 and "locked by another dsrprov" in capsys.readouterr().err


def test_a_write_killed_at_any_point_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    """SIGKILL while write_atomic runs: the file is whole, old or new, never a mix."""
    target = tmp_path / "hosts.yml"
    old, new = "old: 1\n" * 20000, "new: 2\n" * 20000
    code = (
        "import sys; from pathlib import Path; from dsrprov.model.inventory import write_atomic\n"
        "print('go', flush=True)\n"
        "for _ in range(200):\n    write_atomic(Path(sys.argv[1]), sys.argv[2] * 20000)\n"
    )
    for delay in (0.0, 0.05, 0.1, 0.2, 0.3):
        target.write_text(old)
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(target), "new: 2\n"], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "go"
        time.sleep(delay)
        proc.kill()
        proc.wait()
        assert target.read_text() in (old, new)
