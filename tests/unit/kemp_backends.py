"""The LoadMasters the Kemp module and role tests drive: the Kemp API SIMULATOR
(tests/kemp_simulator.py) in both firmware generations and, when
DSRPROV_KEMP_HOST is set, a real LoadMaster (docs/kemp.md, "Against a real
LoadMaster"). Every assertion reads the LoadMaster back through its API, so the
same tests run against a real one; what only the simulator can show (the exact
command sequence) is asserted for the simulator only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.dsrprov.dsr.plugins.module_utils import kemp_api as kemp
from tests.kemp_simulator import KempApiSimulator, SimPki

VIP = "10.250.0.200"
RS = ["10.250.0.11", "10.250.0.12"]

REAL = os.environ.get("DSRPROV_KEMP_HOST")
NO_REAL = (
    "no real LoadMaster: set DSRPROV_KEMP_HOST, DSRPROV_KEMP_API_KEY (or _USER/_PASSWORD), "
    "DSRPROV_KEMP_CA or DSRPROV_KEMP_FINGERPRINT, DSRPROV_KEMP_TEST_VIP, DSRPROV_KEMP_TEST_RS (docs/kemp.md)"
)


@dataclass
class Lm:
    """One LoadMaster under test: its inventory name, where, how to log in, and which addresses to use."""

    name: str
    kind: str
    address: str
    auth: dict[str, str]  # inventory variables: api key or user/password
    tls: dict[str, str]  # inventory variables: ca_file and/or fingerprint
    vip: str
    rs: list[str]
    sim: KempApiSimulator | None = None
    secrets: list[str] = field(default_factory=list)

    def client(self) -> kemp.Client:
        return kemp.Client(
            self.address,
            api_key=self.auth.get("dsr_loadmaster_kemp_api_key"),
            user=self.auth.get("dsr_loadmaster_kemp_user"),
            password=self.auth.get("dsr_loadmaster_kemp_password"),
            ca_file=self.tls.get("dsr_loadmaster_kemp_ca_file"),
            fingerprint=self.tls.get("dsr_loadmaster_kemp_fingerprint"),
        )

    def vs(self, port: int = 80, prot: str = "tcp") -> dict[str, Any] | None:
        return self.client().find_vs(self.vip, port, prot)

    def writes(self) -> list[str]:
        """Write commands seen so far (simulator only; [] means unknown on a real LoadMaster)."""
        return self.sim.commands() if self.sim else []

    @property
    def legacy(self) -> bool:
        return self.sim is not None and self.sim.firmware == "legacy"

    def module_args(self) -> dict[str, Any]:
        """The module's address, credential and TLS options, as the role passes them (empty ones omitted)."""
        settings = {**self.auth, **self.tls}
        return {"address": self.address} | {k.removeprefix("dsr_loadmaster_kemp_"): v for k, v in settings.items() if v}


def simulated(name: str, sim: KempApiSimulator, pki: SimPki) -> Lm:
    return Lm(
        name,
        "simulator",
        sim.address,
        {"dsr_loadmaster_kemp_api_key": sim.api_key},
        {"dsr_loadmaster_kemp_fingerprint": pki.fingerprint},
        VIP,
        list(RS),
        sim,
        [sim.api_key, sim.password],
    )


def real_from_env(name: str = "lm1") -> Lm:
    """The real LoadMaster the environment names (docs/kemp.md)."""
    env = os.environ
    auth = (
        {"dsr_loadmaster_kemp_api_key": env["DSRPROV_KEMP_API_KEY"]}
        if env.get("DSRPROV_KEMP_API_KEY")
        else {"dsr_loadmaster_kemp_user": env.get("DSRPROV_KEMP_USER", "bal"),
              "dsr_loadmaster_kemp_password": env["DSRPROV_KEMP_PASSWORD"]}
    )  # fmt: skip
    tls = {}
    if env.get("DSRPROV_KEMP_CA"):
        tls["dsr_loadmaster_kemp_ca_file"] = env["DSRPROV_KEMP_CA"]
    if env.get("DSRPROV_KEMP_FINGERPRINT"):
        tls["dsr_loadmaster_kemp_fingerprint"] = env["DSRPROV_KEMP_FINGERPRINT"]
    rs = [a.strip() for a in env["DSRPROV_KEMP_TEST_RS"].split(",")]
    return Lm(name, "real", env["DSRPROV_KEMP_HOST"], auth, tls, env["DSRPROV_KEMP_TEST_VIP"], rs[:2],
              secrets=[v for k, v in auth.items() if k != "dsr_loadmaster_kemp_user"])  # fmt: skip


def clean_up(lm: Lm) -> None:
    """Leave nothing behind on a real LoadMaster."""
    client = lm.client()
    if client.find_vs(lm.vip, 80, "tcp"):
        client.del_vs(lm.vip, 80, "tcp")


def rs_view(vs: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {r["Addr"]: (r["Forward"], r["Weight"], r["Enable"]) for r in kemp.real_servers(vs)}


def check_view(vs: dict[str, Any], port: int = 80) -> dict[str, str]:
    """The health-check settings as the LoadMaster reports them (CheckPort 0: the real server's port)."""
    out = {k: str(vs.get(k, "")) for k in ("CheckType", "CheckPort", "CheckUrl", "CheckCodes")}
    if out["CheckPort"] == "0":
        out["CheckPort"] = str(port)
    return out
