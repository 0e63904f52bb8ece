"""A SIMULATOR of the Kemp LoadMaster RESTful API (v1, XML), for tests only.

No LoadMaster runs here. This is written from Kemp's public documentation
(docs/kemp.md lists the pages) and answers what those pages show:

- ``/access/<command>`` by GET (query string) or POST (form body), HTTPS only;
- HTTP basic authentication or an ``apikey`` parameter, HTTP 401 otherwise;
- ``listvs``, ``showvs``, ``addvs``, ``modvs``, ``delvs``, ``showrs``,
  ``addrs``, ``modrs``, ``delrs``; Virtual Services named by ``vs``, ``port``,
  ``prot``, real servers by ``rs`` and ``rsport``;
- answers ``<Response stat="200" code="ok"><Success>...`` (reads inside
  ``<Data>``), errors ``<Response stat="400" code="fail"><Error>...``;
- a real server's ``Forward`` (nat by default, or route), ``Weight`` (1000 by
  default), ``Enable``; a Virtual Service's ``ForceL7`` (Y after addvs, as in
  the documented addvs answer) and, in ``firmware="modern"``, ``ForceL4`` as
  well (REFERENCES: newer firmware reports both); ``firmware="legacy"``
  reports and accepts only ``ForceL7``.

What it cannot know, and does differently on purpose:

- it REFUSES parameters it does not know (a real LoadMaster may ignore them,
  per Kemp's multi-tenant API description), so a misspelt parameter fails a
  test instead of passing silently;
- its error texts are its own ("Unknown VS" etc.), not the firmware's;
- it keeps state in memory, runs no health checks (every real server is
  "Up"), and forwards no traffic.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

YN = ("Y", "N")
SCHEDULES = ("rr", "wrr", "lc", "wlc", "fixed", "adaptive", "sh", "srcip", "rsip")
VS_ID = ("vs", "port", "prot")
RS_ID = ("rs", "rsport")
VS_SETTINGS = (
    "nickname",
    "enable",
    "schedule",
    "forcel7",
    "forcel4",
    "transparent",
    "persist",
    "persisttimeout",
    "sslacceleration",
    "sslreencrypt",
    "cache",
    "compress",
    "checktype",
    "checkport",
    "vstype",
    "idletime",
)
RS_SETTINGS = ("weight", "forward", "enable", "limit", "critical", "follow", "non_local")
# Canonical element names of the settings in showvs/showrs answers.
VS_ELEMENTS = {
    "nickname": "NickName",
    "enable": "Enable",
    "schedule": "Schedule",
    "forcel7": "ForceL7",
    "forcel4": "ForceL4",
    "transparent": "Transparent",
    "persist": "Persist",
    "persisttimeout": "PersistTimeout",
    "sslacceleration": "SSLAcceleration",
    "sslreencrypt": "SSLReencrypt",
    "cache": "Cache",
    "compress": "Compress",
    "checktype": "CheckType",
    "checkport": "CheckPort",
    "vstype": "VStype",
    "idletime": "Idletime",
}
RS_ELEMENTS = {
    "weight": "Weight",
    "forward": "Forward",
    "enable": "Enable",
    "limit": "Limit",
    "critical": "Critical",
    "follow": "Follow",
    "non_local": "Non_Local",
}


class ApiError(Exception):
    def __init__(self, message: str, stat: int = 400) -> None:
        super().__init__(message)
        self.stat = stat


# --------------------------------------------------------------------------
# certificates
# --------------------------------------------------------------------------


@dataclass
class SimPki:
    """A CA and a server certificate for 127.0.0.1, made at test time."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    fingerprint: str  # SHA-256 of the server certificate (DER), AB:CD:.. form


def make_pki(directory: Path, name: str = "Kemp simulator") -> SimPki:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = SimPki(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        ":".join(f"{b:02X}" for b in hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()),
    )
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pki.key_file.chmod(0o600)
    return pki


# --------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------


@dataclass
class RealServer:
    index: int
    addr: str
    port: int
    settings: dict[str, str] = field(default_factory=dict)


@dataclass
class VirtualService:
    index: int
    vip: str
    port: int
    prot: str
    settings: dict[str, str] = field(default_factory=dict)
    rs: list[RealServer] = field(default_factory=list)
    # Things the API of this simulator cannot set, for the L7 refusal tests.
    extra: dict[str, Any] = field(default_factory=dict)


class KempApiSimulator:
    """An HTTPS server on 127.0.0.1 that plays a LoadMaster's API (see the module docstring)."""

    def __init__(
        self,
        pki: SimPki,
        *,
        api_key: str = "sim-api-key-3f9c2a",
        user: str = "bal",
        password: str = "sim-password-71d0",
        firmware: str = "modern",
    ) -> None:
        if firmware not in ("modern", "legacy"):
            raise ValueError("firmware is modern or legacy")
        self.pki = pki
        self.api_key, self.user, self.password = api_key, user, password
        self.firmware = firmware
        self.vs: list[VirtualService] = []
        self.log: list[tuple[str, dict[str, str]]] = []  # (command, parameters without secrets)
        self._lock = threading.Lock()
        self._next_vs = 1
        self._next_rs = 1
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------

    def start(self) -> KempApiSimulator:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                sim._handle(self, urllib.parse.urlsplit(self.path).query)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("latin-1") if length else ""
                query = urllib.parse.urlsplit(self.path).query
                sim._handle(self, "&".join(q for q in (query, body) if q))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki.cert_file, self.pki.key_file)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="kemp-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- helpers for tests -------------------------------------------------

    def find(self, vip: str, port: int, prot: str = "tcp") -> VirtualService | None:
        want = str(ipaddress.ip_address(vip))
        return next((v for v in self.vs if v.vip == want and v.port == int(port) and v.prot == prot), None)

    def commands(self) -> list[str]:
        """The write commands received so far, in order."""
        return [c for c, _ in self.log if c in ("addvs", "modvs", "delvs", "addrs", "modrs", "delrs")]

    # -- HTTP --------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, query: str) -> None:
        path = urllib.parse.urlsplit(req.path).path
        try:
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False)
            params: dict[str, str] = {}
            for k, v in pairs:
                if k.lower() in params:
                    raise ApiError(f"{k}: given twice")
                params[k.lower()] = v
            if not self._authorised(req, params.pop("apikey", None)):
                self._send(
                    req, 401, '<Response stat="401" code="fail"><Error>Incorrect Username/Password</Error></Response>'
                )
                return
            if not path.startswith("/access/"):
                raise ApiError("Unknown command", 404)
            command = path[len("/access/") :]
            with self._lock:
                self.log.append((command, dict(params)))
                data = self._command(command, params)
            inner = f"<Data>{data}</Data>" if data is not None else "Command completed ok"
            self._send(req, 200, f'<Response stat="200" code="ok"><Success>{inner}</Success></Response>')
        except ApiError as exc:
            self._send(
                req, exc.stat, f'<Response stat="{exc.stat}" code="fail"><Error>{escape(str(exc))}</Error></Response>'
            )

    def _authorised(self, req: BaseHTTPRequestHandler, apikey: str | None) -> bool:
        if apikey is not None:
            return apikey == self.api_key
        auth = req.headers.get("Authorization") or ""
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.user and password == self.password

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: str) -> None:
        payload = f'<?xml version="1.0" encoding="ISO-8859-1"?>{body}'.encode("latin-1")
        req.send_response(status)
        req.send_header("Content-Type", "text/xml")
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)

    # -- commands ----------------------------------------------------------

    def _allow(self, params: dict[str, str], allowed: tuple[str, ...]) -> None:
        for k in params:
            if k not in allowed or (k == "forcel4" and self.firmware == "legacy"):
                raise ApiError(f"Unknown parameter: {k}")

    def _vs_id(self, params: dict[str, str]) -> tuple[str, int, str]:
        for k in VS_ID:
            if not params.get(k):
                raise ApiError(f"{k}: Value missing")
        try:
            vip = str(ipaddress.ip_address(params["vs"]))
        except ValueError:
            raise ApiError(f"vs: Invalid address {params['vs']}") from None
        port = _port(params["port"], "port")
        prot = params["prot"].lower()
        if prot not in ("tcp", "udp"):
            raise ApiError(f"prot: Invalid protocol {params['prot']}")
        return vip, port, prot

    def _get_vs(self, params: dict[str, str]) -> VirtualService:
        vs = self.find(*self._vs_id(params))
        if vs is None:
            raise ApiError("Unknown VS")
        return vs

    def _rs_id(self, params: dict[str, str]) -> tuple[str, int]:
        for k in RS_ID:
            if not params.get(k):
                raise ApiError(f"{k}: Value missing")
        try:
            addr = str(ipaddress.ip_address(params["rs"]))
        except ValueError:
            raise ApiError(f"rs: Invalid address {params['rs']}") from None
        return addr, _port(params["rsport"], "rsport")

    def _get_rs(self, vs: VirtualService, params: dict[str, str]) -> RealServer:
        addr, port = self._rs_id(params)
        rs = next((r for r in vs.rs if r.addr == addr and r.port == port), None)
        if rs is None:
            raise ApiError("Unknown Real Server")
        return rs

    def _command(self, command: str, params: dict[str, str]) -> str | None:
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise ApiError("Unknown command")
        result: str | None = handler(params)
        return result

    def _cmd_listvs(self, params: dict[str, str]) -> str:
        self._allow(params, ())
        return "".join(f"<VS>{self._vs_xml(v)}</VS>" for v in self.vs)

    def _cmd_showvs(self, params: dict[str, str]) -> str:
        self._allow(params, VS_ID)
        return self._vs_xml(self._get_vs(params))

    def _cmd_addvs(self, params: dict[str, str]) -> str:
        self._allow(params, VS_ID + VS_SETTINGS)
        key = self._vs_id(params)
        if self.find(*key) is not None:
            raise ApiError("Virtual Service already exists")
        settings = {
            "nickname": "",
            "enable": "Y",
            "schedule": "rr",
            "forcel7": "Y",
            "transparent": "Y",
            "sslacceleration": "N",
            "sslreencrypt": "N",
            "cache": "N",
            "compress": "N",
            "vstype": "http" if key[2] == "tcp" else "gen",
        }
        if self.firmware == "modern":
            settings["forcel4"] = "N"
        vs = VirtualService(self._next_vs, *key, settings)
        self._next_vs += 1
        self._apply_vs(vs, {k: v for k, v in params.items() if k not in VS_ID})
        self.vs.append(vs)
        return self._vs_xml(vs)

    def _cmd_modvs(self, params: dict[str, str]) -> str:
        self._allow(params, VS_ID + VS_SETTINGS)
        vs = self._get_vs(params)
        changes = {k: v for k, v in params.items() if k not in VS_ID}
        if not changes:
            raise ApiError("No parameters to change")
        self._apply_vs(vs, changes)
        return self._vs_xml(vs)

    def _cmd_delvs(self, params: dict[str, str]) -> None:
        self._allow(params, VS_ID)
        self.vs.remove(self._get_vs(params))
        return None

    def _apply_vs(self, vs: VirtualService, changes: dict[str, str]) -> None:
        new = dict(vs.settings)
        for k, v in changes.items():
            if k in ("enable", "forcel7", "forcel4", "transparent", "sslacceleration", "sslreencrypt", "cache",
                     "compress"):  # fmt: skip
                v = _yn(v, k)
            elif k == "schedule":
                if v not in SCHEDULES:
                    raise ApiError(f"schedule: Invalid value {v}")
            elif k == "persist":
                if v not in ("none", "src", "cookie", "active-cookie", "ssl", "header", "url", "rdp"):
                    raise ApiError(f"persist: Invalid value {v}")
            elif k in ("persisttimeout", "checkport", "idletime") and not v.isdigit():
                raise ApiError(f"{k}: Invalid value {v}")
            new[k] = v
        # One switch: forcing layer 4 turns layer 7 off and the other way round.
        if "forcel4" in changes and self.firmware == "modern":
            new["forcel7"] = "N" if new["forcel4"] == "Y" else "Y"
        elif "forcel7" in changes and self.firmware == "modern":
            new["forcel4"] = "N" if new["forcel7"] == "Y" else "Y"
        if new.get("sslacceleration") == "Y" and (new.get("forcel4") == "Y" or new.get("forcel7") == "N"):
            raise ApiError("SSL acceleration needs a layer 7 service")
        vs.settings = new

    def _cmd_showrs(self, params: dict[str, str]) -> str:
        self._allow(params, VS_ID + RS_ID)
        vs = self._get_vs(params)
        return f"<Rs>{self._rs_xml(vs, self._get_rs(vs, params))}</Rs>"

    def _cmd_addrs(self, params: dict[str, str]) -> str:
        self._allow(params, VS_ID + RS_ID + RS_SETTINGS)
        vs = self._get_vs(params)
        addr, port = self._rs_id(params)
        if any(r.addr == addr and r.port == port for r in vs.rs):
            raise ApiError("Real Server already exists")
        if addr == vs.vip:
            raise ApiError("Real Server address is the Virtual Service address")
        rs = RealServer(self._next_rs, addr, port, {"forward": "nat", "weight": "1000", "enable": "Y",
                                                     "limit": "0", "critical": "N", "follow": "0"})  # fmt: skip
        self._next_rs += 1
        self._apply_rs(rs, {k: v for k, v in params.items() if k not in VS_ID + RS_ID})
        vs.rs.append(rs)
        return f"<Rs>{self._rs_xml(vs, rs)}</Rs>"

    def _cmd_modrs(self, params: dict[str, str]) -> None:
        self._allow(params, VS_ID + RS_ID + RS_SETTINGS)
        vs = self._get_vs(params)
        rs = self._get_rs(vs, params)
        changes = {k: v for k, v in params.items() if k not in VS_ID + RS_ID}
        if not changes:
            raise ApiError("No parameters to change")
        self._apply_rs(rs, changes)
        return None

    def _cmd_delrs(self, params: dict[str, str]) -> None:
        self._allow(params, VS_ID + RS_ID)
        vs = self._get_vs(params)
        vs.rs.remove(self._get_rs(vs, params))
        return None

    def _apply_rs(self, rs: RealServer, changes: dict[str, str]) -> None:
        new = dict(rs.settings)
        for k, v in changes.items():
            if k in ("enable", "critical", "non_local"):
                v = _yn(v, k)
            elif k == "forward":
                v = v.lower()
                if v not in ("nat", "route"):
                    raise ApiError(f"forward: Invalid value {v} (nat or route)")
            elif k == "weight":
                if not v.isdigit() or not 1 <= int(v) <= 65535:
                    raise ApiError(f"weight: Invalid value {v} (1-65535)")
            elif not v.isdigit():
                raise ApiError(f"{k}: Invalid value {v}")
            new[k] = v
        rs.settings = new

    # -- XML ---------------------------------------------------------------

    def _vs_xml(self, vs: VirtualService) -> str:
        parts = [
            "<Status>Up</Status>" if vs.rs else "<Status>Down</Status>",
            f"<Index>{vs.index}</Index>",
            f"<VSAddress>{vs.vip}</VSAddress>",
            f"<VSPort>{vs.port}</VSPort>",
            f"<Protocol>{vs.prot}</Protocol>",
        ]
        for k, v in vs.settings.items():
            if k == "persist" and v == "none":
                continue  # omitted when persistence is off
            parts.append(f"<{VS_ELEMENTS[k]}>{escape(v)}</{VS_ELEMENTS[k]}>")
        for tag, value in vs.extra.items():
            if isinstance(value, list):
                parts.append(f"<{tag}>" + "".join(f"<Name>{escape(str(n))}</Name>" for n in value) + f"</{tag}>")
            else:
                parts.append(f"<{tag}>{escape(str(value))}</{tag}>")
        parts += [f"<Rs>{self._rs_xml(vs, r)}</Rs>" for r in vs.rs]
        return "".join(parts)

    @staticmethod
    def _rs_xml(vs: VirtualService, rs: RealServer) -> str:
        parts = [
            "<Status>Up</Status>",
            f"<VSIndex>{vs.index}</VSIndex>",
            f"<RsIndex>{rs.index}</RsIndex>",
            f"<Addr>{rs.addr}</Addr>",
            f"<Port>{rs.port}</Port>",
        ]
        parts += [f"<{RS_ELEMENTS[k]}>{escape(v)}</{RS_ELEMENTS[k]}>" for k, v in rs.settings.items()]
        return "".join(parts)


def _yn(value: str, name: str) -> str:
    v = value.strip().upper()
    v = {"1": "Y", "0": "N", "YES": "Y", "NO": "N", "TRUE": "Y", "FALSE": "N"}.get(v, v)
    if v not in YN:
        raise ApiError(f"{name}: Invalid value {value} (Y or N)")
    return v


def _port(value: str, name: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ApiError(f"{name}: Invalid port {value}")
    return int(value)
