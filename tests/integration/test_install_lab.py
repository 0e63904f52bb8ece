"""dsrprov as its users get it, outside this checkout, against the lab:

- the collection, built with ``ansible-galaxy collection build`` and installed
  with ``ansible-galaxy collection install -p DIR``, used by a playbook and an
  inventory written as a user would write them (FQCN roles);
- the wheel, built and installed with pip into a fresh virtualenv, whose
  ``dsrprov`` enrolls, reads, verifies and unenrolls a lab host from another
  directory with an inventory written there.

Neither may reach this checkout: the checkout's ansible.cfg is not used, the
collection path names only the installed copy, and the venv is new."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import dsrprov_lab as labmod
from tests.support import ROOT, lab_vips

pytestmark = pytest.mark.lab

VIP = lab_vips()[0]
HOST = "rs2"


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of this checkout or its venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "DSRPROV_", "VIRTUAL_ENV"))}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def _user_inventory(lab: labmod.Lab, where: Path, vips: list[str]) -> Path:
    """An inventory as a user writes it: their hosts, their key and known_hosts."""
    rs = lab.host(HOST)
    doc = {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(lab.state_dir / "id_ed25519"),
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={lab.state_dir / 'known_hosts'} "
                "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
                "dsr_vantage_host": "client",
            },
            "children": {
                "dsr_realservers_linux": {"hosts": {HOST: {"ansible_host": rs.ip, "dsr_vips": vips}}},
                "clients": {"hosts": {"client": {"ansible_host": lab.host("client").ip}}},
            },
        }
    }
    path = where / "hosts.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _recap_changed(output: str, host: str) -> int:
    m = re.search(rf"^{host}\s*:.*changed=(\d+).*failed=(\d+)", output, re.M)
    assert m is not None and m.group(2) == "0", output[-3000:]
    return int(m.group(1))


def _lo(lab: labmod.Lab) -> str:
    return labmod.lab_exec(lab.host(HOST), "ip", "-o", "addr", "show", "dev", "lo")


def test_the_collection_tarball_installs_outside_the_checkout_and_configures_a_lab_host(
    lab: labmod.Lab, tmp_path: Path
) -> None:
    galaxy = str(Path(sys.executable).parent / "ansible-galaxy")
    playbook_cmd = str(Path(sys.executable).parent / "ansible-playbook")
    build = subprocess.run(
        [galaxy, "collection", "build", "--output-path", str(tmp_path / "dist")],
        cwd=ROOT / "src" / "ansible_collections" / "dsrprov" / "dsr",
        env=_clean_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    (tarball,) = (tmp_path / "dist").glob("dsrprov-dsr-*.tar.gz")
    collections = tmp_path / "collections"
    collections.mkdir()
    install = subprocess.run(
        # --force: this venv already sees the checkout's copy on sys.path, and
        # install would call the collection "already installed" and skip it.
        [galaxy, "collection", "install", "--force", "-p", str(collections), str(tarball)],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    assert (collections / "ansible_collections" / "dsrprov" / "dsr" / "MANIFEST.json").is_file()

    user = tmp_path / "ops-repo"
    user.mkdir()
    inventory = _user_inventory(lab, user, [VIP])
    play = [
        {
            "name": "DSR real servers",
            "hosts": "dsr_realservers_linux",
            "gather_facts": False,
            "roles": [{"role": "dsrprov.dsr.dsr_realserver_linux"}],
        }
    ]
    (user / "dsr.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    # Only the installed copy: no scan of this venv's sys.path (which holds src/).
    env = _clean_env(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False")

    def converge(*extra: str) -> str:
        proc = subprocess.run([playbook_cmd, "-i", str(inventory), "dsr.yml", *extra], cwd=user, env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        return proc.stdout

    try:
        assert _recap_changed(converge(), HOST) >= 1
        assert f"{VIP}/32" in _lo(lab)
        assert _recap_changed(converge(), HOST) == 0
    finally:
        converge("-e", "dsr_realserver_linux_state=absent")
    assert f"{VIP}/32" not in _lo(lab)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel built from this checkout, and nothing else of it."""
    where = tmp_path_factory.mktemp("wheel")
    pip = str(Path(sys.executable).parent / "pip")
    build = subprocess.run([pip, "wheel", "-q", "--no-deps", "-w", str(where / "dist"), str(ROOT)],
                           env=_clean_env(), capture_output=True, text=True, check=False)  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (where / "dist").glob("dsrprov-*.whl")
    venv = where / "venv"
    subprocess.run(["python3", "-m", "venv", str(venv)], env=_clean_env(), check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], env=_clean_env(),
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert install.returncode == 0, install.stderr
    return venv


def test_the_wheel_carries_the_collection_and_its_data_files(wheel_venv: Path) -> None:
    site = next((wheel_venv / "lib").glob("python3*/site-packages"))
    collection = site / "ansible_collections" / "dsrprov" / "dsr"
    for rel in (
        "galaxy.yml",
        "meta/runtime.yml",
        "playbooks/site.yml",
        "plugins/modules/dsr_win_loopback.ps1",
        "plugins/callback/events.py",
        "roles/dsr_director/templates/keepalived.conf.j2",
        "roles/dsr_realserver_linux/meta/argument_specs.yml",
    ):
        assert (collection / rel).is_file(), rel
    # The lab is test and demo equipment: not installed, and no `lab` command.
    assert not (site / "dsrprov_lab").exists() and not (site / "dsrprov" / "lab").exists()
    usage = subprocess.run([str(wheel_venv / "bin" / "dsrprov"), "lab", "up"], env=_clean_env(),
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert usage.returncode == 2 and "invalid choice: 'lab'" in usage.stderr, usage.stderr


def test_the_installed_cli_works_from_any_directory_with_the_users_inventory(
    lab: labmod.Lab, wheel_venv: Path, tmp_path: Path
) -> None:
    dsrprov = str(wheel_venv / "bin" / "dsrprov")
    user = tmp_path / "elsewhere"
    user.mkdir()
    inventory = _user_inventory(lab, user, [VIP])
    # A collection of the same name earlier on the user's path must not win.
    decoy = tmp_path / "decoy" / "ansible_collections" / "dsrprov" / "dsr"
    (decoy / "playbooks").mkdir(parents=True)
    (decoy / "galaxy.yml").write_text("namespace: dsrprov\nname: dsr\nversion: 0.0.1\nreadme: README.md\n"
                                      "authors: [x]\n")  # fmt: skip
    (decoy / "playbooks" / "site.yml").write_text("- hosts: all\n  tasks:\n    - ansible.builtin.fail: {msg: DECOY}\n")
    env = _clean_env(ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "decoy"))

    def cli(*args: str, **kw: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([dsrprov, *args], cwd=user, env={**env, **kw}, capture_output=True, text=True,
                              check=False, timeout=300)  # fmt: skip

    none = cli("status")
    assert none.returncode == 2 and none.stderr.strip() == (
        "dsrprov: no inventory: give -i INVENTORY or set DSRPROV_INVENTORY"
    ), none.stderr
    try:
        enrolled = cli("enroll", HOST, "--vip", VIP, "-i", "hosts.yml")
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        assert "DECOY" not in enrolled.stdout + enrolled.stderr
        assert re.search(rf"{HOST}\s+ok\s+(enrolled|unchanged)", enrolled.stdout), enrolled.stdout
        assert f"{VIP}/32" in _lo(lab)
        status = cli("status", "--json", DSRPROV_INVENTORY=str(inventory))
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["hosts"][0]["host"] == HOST
        verified = cli("verify", "-i", "hosts.yml")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "verified" in verified.stdout
    finally:
        gone = cli("unenroll", HOST, "-i", "hosts.yml")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert f"{VIP}/32" not in _lo(lab)
