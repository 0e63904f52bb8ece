"""A SIMULATOR of the Kemp LoadMaster RESTful API (v1, XML), for tests only.

No LoadMaster runs here. This plays what Kemp's documentation, Kemp's own
SDK and answers recorded from real firmware show; every rule below names its
source (the short names are expanded in docs/kemp.md, "Pages followed"):

- [PG]    Kemp RESTful API Programmer Guide (docs.progress.com), its examples
          and their XML answers;
- [WUI]   Kemp WUI Configuration Guide (Real Servers, health checking);
- [MT]    Kemp Multi-Tenant LoadMaster API description (error reports,
          unknown parameters, showiface answer);
- [PS]    KEMPtechnologies/powershell-sdk-vnext 7.2.60,
          kemp-powershell-vnext/Kemp.LoadBalancer.Powershell.psm1 (parameter
          names and their ValidateSet/ValidateRange);
- [PSDOC] Kemp PowerShell interface description, "Add a New Virtual Service"
          (the addvs answer of a current firmware);
- [REC]   mathlu/loadmaster-go-client test_data/*.xml, answers recorded from
          real firmware (addvs.xml, showvs.xml, modvs.xml, addrs.xml, ...);
- [GO]    mathlu/loadmaster-go-client client.go/vs.go/vs_test.go (how a v1
          client sends the API key);
- [DSR]   Kemp KB "Configuring DSR" (Force L4 first, then Direct return);
- [KEY]   Kemp KB "JSON based Input and Output for the LoadMaster RESTful
          API": ``POST /accessv2`` with a JSON object holding ``cmd``, the
          parameters and ``apikey`` (or ``apiuser``/``apipass``); [PGI] the
          Programmer Guide's introduction: 7.2.50 and later, Session
          Management enabled;
- [V2]    technicallyJack/terraform-provider-kemp internal/client/client.go
          (``/accessv2`` answers: ``code``, ``message``, ``status`` beside
          the data, ``{"VS": [...]}`` for listvs, ``Rs`` lists, 401 and 404
          as non-JSON pages), sub_virtual_services.go ("the parent treats
          each SubVS like a real server": ``VSIndex``, ``RsIndex``, ``Name``,
          no ``Addr``); virtual service settings: ``CheckUseGet`` 0 HEAD, 1
          GET, 2 POST (checked against 7.2.63);
- [RECPY] dgquaid/python-kemptech-api (a fork of Kemp's own SDK)
          tests/unit/test_virtual_service.py, showvs answers recorded from
          firmware: ``SSLReverse``, ``Intercept``, ``CheckUseGet`` 0,
          ``NRules``, ``NRequestRules``, ``NResponseRules``,
          ``NPreProcessRules``, ``MasterVS``; a parent with a SubVS lists it
          as ``<SubVS><VSIndex>..<RsIndex>..<Name>..`` without ``Addr``, with
          ``MasterVS`` 1;
- [SUBVS] Kemp KB "SubVSs": "Real Servers and SubVSs cannot be associated
          with the same Virtual Service".

Transport and answers:

- ``/access/<command>``, parameters in the query string or a form body [PG];
  HTTPS only;
- v1: HTTP basic authentication [PG, PS], or ``apikey`` in the query string,
  the form a third-party v1 client uses [GO] (accepted here; dsrprov never
  sends it); an ``apikey`` in a v1 form body is not an API key here (no
  source shows it): HTTP 401;
- v2: ``POST /accessv2``, a JSON object with ``cmd``, the parameters and
  ``apikey`` (or ``apiuser``/``apipass``) [KEY]; answered in JSON with
  ``code``, ``message``, ``status`` beside the data [V2]: nested elements
  as objects or lists of objects (``VS``, ``Rs``, ``Interface`` always
  lists), Y/N as booleans, digits as numbers (the JSON types are an
  assumption; the client reads them back as text); a wrong key is a 401
  page, not JSON [V2];
- everything that arrives (request line, headers, body) is kept in
  ``received``, so tests can look for secrets where they must not be;
- ``<Response stat="200" code="ok"><Success>`` (reads inside ``<Data>``),
  errors ``<Response stat="..." code="fail"><Error>`` [PG, MT];
- commands ``listvs``, ``showvs``, ``addvs``, ``modvs``, ``delvs``, ``showrs``,
  ``addrs``, ``modrs``, ``delrs`` addressed by ``vs``/``port``/``prot`` and
  ``rs``/``rsport`` [WUI Real Servers, PS]; ``showiface`` with an optional
  ``iface`` (all interfaces without it) [PS Get-NetworkInterface], answered
  ``<Interface><Id>..<IPAddress>a.b.c.d/nn</IPAddress>..`` [MT]; an
  interface's additional addresses as
  ``<AdditionalAddresses><Address>a.b.c.d/nn</Address>..`` (the element name
  is the issue's, from recorded firmware; the ``Address`` children and the
  prefix form, as ``addadditional addr=<IPAddress/Prefix>`` takes them [MT],
  are an assumption).

Firmware generations (``firmware=``):

- ``"modern"``: a Virtual Service reports ``Layer``, ``ForceL4`` and ``ForceL7``
  [REC addvs.xml: Layer 4 with ForceL4=Y ForceL7=N; showvs.xml: Layer 7 with
  ForceL4=N ForceL7=Y; PSDOC: a new service is Layer 7, ForceL4=N, ForceL7=Y].
  The two flags are independent parameters (no recording shows one changing
  the other). The effective layer is 7 while ``ForceL7=Y`` and 4 otherwise:
  Kemp's own PowerShell module for 7.2.60 sets the layer with ``ForceL7``
  alone [PS: New-/Set-AdcVirtualService know no ForceL4]. So ``ForceL4=Y`` on
  its own leaves a service at layer 7 here. Which layer real firmware gives
  ``ForceL4=Y ForceL7=Y`` or ``ForceL4=N ForceL7=N`` is NOT confirmed;
- ``"legacy"``: only ``ForceL7`` (N means layer 4), no ``Layer``, no ``ForceL4``
  [PG: the addvs and listvs answers of the Programmer Guide].

Defaults after ``addvs`` [REC, PG, PSDOC, RECPY]: ``SSLReverse`` N,
``Intercept`` N, ``CheckUseGet`` 0 (HEAD), the rule counters ``NRules``,
``NRequestRules``, ``NResponseRules``, ``NPreProcessRules`` 0 and
``MasterVS`` 0 (1 with SubVSs) [RECPY]; enabled, ``Schedule`` rr, ``ForceL7``
Y, ``VStype`` http (tcp), ``CheckType`` http on a tcp service, ``CheckPort`` 0,
``Idletime`` 660, ``SubnetOriginating`` Y, ``PersistTimeout`` 0 and no
``Persist`` element; ``CheckUrl``/``CheckCodes`` appear only once set [REC
showvs.xml lacks them, addvs.xml with them set shows them]. A udp service
gets ``CheckType`` icmp: Kemp's overview says UDP services get layer 3
checks by default (an assumption for the element value). Real servers:
``Forward`` nat, ``Weight`` 1000, ``Enable`` Y [REC addrs.xml].

Refused (400), each with its source:

- ``Weight`` outside 1-65530 [PS New-/Set-AdcRealServer ValidateRange(1, 65530)];
- ``forward`` other than nat or route [PS ValidateSet];
- ``forward=route`` on a layer-7 Virtual Service: Kemp's DSR procedure is
  "enable Force L4 ... and select Direct return" [DSR]. Whether real firmware
  refuses it or accepts it silently is NOT confirmed; refusing it here makes
  a client that gets the order wrong fail a test;
- ``checktype`` outside tcp, icmp, https, http, smtp, nntp, ftp, telnet,
  pop3, imap, rdp, ldap, none [PS ValidateSet];
- ``checkcodes`` other than codes 300-599, at most 127 characters [WUI "HTTP or
  HTTPS Protocol Health Checking"]; empty clears them (an assumption);
- ``persist`` outside [PS ValidateSet]; ``persisttimeout`` outside 0-604800
  [PS ValidateRange];
- ``limit``/``ratelimit`` outside 0-100000, ``newport`` outside 3-65530,
  ``follow`` outside 0-65535 [PS Set-AdcRealServer];
- SSL acceleration on a layer-4 service (it terminates TLS, which needs
  layer 7 [WUI SSL properties]);
- ``addrs`` on a Virtual Service with SubVSs [SUBVS].

Tests set what this API cannot (rules, WAF, SubVSs) in ``VirtualService.extra``
and ``VirtualService.subvs`` (rendered as ``<SubVS>`` [RECPY] or, with
``subvs_tag="Rs"``, as address-less ``<Rs>`` entries [V2]), and a real
server's rule counter in ``RealServer.nrules`` (``<Nrules>``, [REC]
addrs.xml/showrs.xml).

Accepted parameters are those of Kemp's own SDK [PS New-/Set-AdcVirtualService,
New-/Set-AdcRealServer] that this project might send, plus ``forcel4`` on modern
firmware [GO vs.go sends forcel4/forcel7; REC]. Stricter than a LoadMaster on
purpose: any OTHER parameter is refused ("Unknown parameter"), where real
firmware ignores unknown parameters [MT], so a misspelt parameter fails a
test. ``ignore=`` names parameters this simulated firmware silently drops,
as a real one does with those it does not know [MT]: that is how the tests
play firmware that ignores the Force L4 parameters.

Not simulated: the firmware's own error texts ("Unknown VS" etc. are this
file's), health checks (every real server is "Up"), traffic.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import ssl
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterable
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
FIRMWARES = ("modern", "legacy")
# [PS New-AdcVirtualService ValidateSet Schedule] (+ the wider list of the WUI).
SCHEDULES = ("rr", "wrr", "lc", "wlc", "fixed", "adaptive", "sh", "srcip", "rsip")
# [PS ValidateSet CheckType]
CHECK_TYPES = ("tcp", "icmp", "https", "http", "smtp", "nntp", "ftp", "telnet", "pop3", "imap", "rdp", "ldap", "none")
# [PS ValidateSet Persist]
PERSIST = ("ssl", "cookie", "active-cookie", "cookie-src", "active-cook-src", "cookie-hash", "url", "query-hash",
           "host", "header", "super", "super-src", "src", "rdp", "rdp-src", "rdp-sb", "udpsip", "none")  # fmt: skip
VS_ID = ("vs", "port", "prot")
RS_ID = ("rs", "rsport")
# Element names of the settings in showvs answers [REC, PG]; parameter -> element.
VS_ELEMENTS = {
    "nickname": "NickName",
    "enable": "Enable",
    "schedule": "Schedule",
    "forcel4": "ForceL4",
    "forcel7": "ForceL7",
    "transparent": "Transparent",
    "subnetoriginating": "SubnetOriginating",
    "persist": "Persist",
    "persisttimeout": "PersistTimeout",
    "sslacceleration": "SSLAcceleration",
    "sslreencrypt": "SSLReencrypt",
    "cache": "Cache",
    "compress": "Compress",
    "idletime": "Idletime",
    "vstype": "VStype",
    "sslreverse": "SSLReverse",
    "intercept": "Intercept",
    "checktype": "CheckType",
    "checkport": "CheckPort",
    "checkurl": "CheckUrl",
    "checkcodes": "CheckCodes",
    "checkhost": "CheckHost",
    "checkuseget": "CheckUseGet",
    "chkinterval": "ChkInterval",
    "chktimeout": "ChkTimeout",
    "chkretrycount": "ChkRetryCount",
    "defaultgw": "DefaultGW",
    "useforsnat": "UseforSnat",
}
VS_SETTINGS = tuple(VS_ELEMENTS)
VS_FLAGS = ("enable", "forcel4", "forcel7", "transparent", "subnetoriginating", "sslacceleration", "sslreencrypt",
            "cache", "compress", "useforsnat", "sslreverse", "intercept")  # fmt: skip
VS_NUMBERS = {"persisttimeout": (0, 604800), "idletime": (0, 86400), "checkport": (0, 65535),
              "checkuseget": (0, 2), "chkinterval": (0, 3600), "chktimeout": (0, 3600),
              "chkretrycount": (0, 100)}  # fmt: skip
# Real servers [REC addrs.xml element names; PS New-/Set-AdcRealServer parameters].
RS_ELEMENTS = {
    "forward": "Forward",
    "weight": "Weight",
    "limit": "Limit",
    "ratelimit": "RateLimit",
    "follow": "Follow",
    "enable": "Enable",
    "critical": "Critical",
}
RS_SETTINGS = (*RS_ELEMENTS, "non_local", "newport")
RS_NUMBERS = {"weight": (1, 65530), "limit": (0, 100000), "ratelimit": (0, 100000), "follow": (0, 65535),
              "newport": (3, 65530)}  # fmt: skip
# The simulated LoadMaster's interfaces: the networks the tests use (lab and client tests).
DEFAULT_INTERFACES = ("10.250.0.5/24", "10.0.0.5/24", "fd42:d5a:0:1::5/64")


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
    nrules: int = 0  # content rules on this real server ([REC] <Nrules>)


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
    # SubVSs as the parent lists them ([RECPY] <SubVS>, or [V2] address-less <Rs>).
    subvs: list[dict[str, str]] = field(default_factory=list)
    subvs_tag: str = "SubVS"


@dataclass
class Request:
    """What arrived, without values: the method, and the parameter names in the query and in the body."""

    method: str
    command: str
    query: list[str]
    body: list[str]
    basic_auth: bool


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
        interfaces: Iterable[str] = DEFAULT_INTERFACES,
        additional: dict[int, list[str]] | None = None,
        ignore: Iterable[str] = (),
    ) -> None:
        if firmware not in FIRMWARES:
            raise ValueError(f"firmware is one of {', '.join(FIRMWARES)}")
        self.pki = pki
        self.api_key, self.user, self.password = api_key, user, password
        self.firmware = firmware
        self.interfaces = [str(ipaddress.ip_interface(i)) for i in interfaces]
        self.additional = {
            i: [str(ipaddress.ip_interface(a)) for a in addrs] for i, addrs in (additional or {}).items()
        }
        self.ignore = {p.lower() for p in ignore}
        self.vs: list[VirtualService] = []
        self.log: list[tuple[str, dict[str, str]]] = []  # (command, parameters without secrets)
        self.requests: list[Request] = []
        self.received: list[str] = []  # every request as it arrived: request line, headers, body
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
                sim._handle(self, urllib.parse.urlsplit(self.path).query, "")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("latin-1") if length else ""
                if urllib.parse.urlsplit(self.path).path == "/accessv2":
                    sim._handle_v2(self, body)
                else:
                    sim._handle(self, urllib.parse.urlsplit(self.path).query, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki.cert_file, self.pki.key_file)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        # A short poll: stop() waits for the loop to notice, and tests stop two simulators per test.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kemp-simulator", daemon=True
        )
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

    def layer(self, vs: VirtualService) -> int:
        """The effective layer (see the module docstring: 7 while ForceL7=Y)."""
        return 7 if vs.settings.get("forcel7") == "Y" else 4

    # -- HTTP --------------------------------------------------------------

    def _keep(self, req: BaseHTTPRequestHandler, body: str) -> None:
        with self._lock:
            self.received.append(f"{req.requestline}\n{req.headers}\n{body}")

    def _handle_v2(self, req: BaseHTTPRequestHandler, body: str) -> None:
        """[KEY, V2]: one JSON object in, one JSON object out."""
        self._keep(req, body)
        try:
            sent = json.loads(body)
            if not isinstance(sent, dict):
                raise ValueError
        except ValueError:
            self._send_json(req, 400, {"code": 400, "message": "Invalid JSON", "status": "fail"})
            return
        params = {str(k).lower(): "" if v is None else str(v) for k, v in sent.items()}
        command = params.pop("cmd", "")
        key, user, password = params.pop("apikey", None), params.pop("apiuser", None), params.pop("apipass", None)
        with self._lock:
            self.requests.append(Request("POST", command, [], sorted(params), False))
        ok = key == self.api_key if key is not None else (user, password) == (self.user, self.password)
        if not ok:  # [V2]: authentication failures are pages, not JSON
            self._send(req, 401, "<html><body>Unauthorized</body></html>", raw=True)
            return
        try:
            with self._lock:
                self.log.append((command, dict(params)))
                for name in self.ignore:
                    params.pop(name, None)
                data = self._command(command, params)
        except ApiError as exc:
            self._send_json(req, exc.stat, {"code": exc.stat, "message": str(exc), "status": "fail"})
            return
        answer: dict[str, Any] = {"code": 200, "message": "Command completed ok", "status": "ok"}
        if data:
            answer.update(_json_data(command, data))
        self._send_json(req, 200, answer)

    @staticmethod
    def _send_json(req: BaseHTTPRequestHandler, status: int, answer: dict[str, Any]) -> None:
        payload = json.dumps(answer).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)

    def _handle(self, req: BaseHTTPRequestHandler, query: str, body: str) -> None:
        path = urllib.parse.urlsplit(req.path).path
        self._keep(req, body)
        try:
            from_query = urllib.parse.parse_qsl(query, keep_blank_values=True)
            from_body = urllib.parse.parse_qsl(body, keep_blank_values=True)
            auth = req.headers.get("Authorization") or ""
            command = path[len("/access/") :] if path.startswith("/access/") else path
            with self._lock:
                self.requests.append(Request(req.command or "", command, [k for k, _ in from_query],
                                             [k for k, _ in from_body], auth.startswith("Basic ")))  # fmt: skip
            params: dict[str, str] = {}
            for k, v in [*from_query, *from_body]:
                if k.lower() in params:
                    raise ApiError(f"{k}: given twice")
                params[k.lower()] = v
            # [GO]: a v1 client sends the key in the query string; nothing shows one in a body.
            key = dict((k.lower(), v) for k, v in from_query).get("apikey")
            params.pop("apikey", None)
            if not self._authorised(auth, key):
                self._send(
                    req, 401, '<Response stat="401" code="fail"><Error>Incorrect Username/Password</Error></Response>'
                )
                return
            if not path.startswith("/access/"):
                raise ApiError("Unknown command", 404)
            with self._lock:
                self.log.append((command, dict(params)))
                for name in self.ignore:  # [MT] parameters the firmware does not know are ignored
                    params.pop(name, None)
                data = self._command(command, params)
            inner = f"<Data>{data}</Data>" if data is not None else "Command completed ok"
            self._send(req, 200, f'<Response stat="200" code="ok"><Success>{inner}</Success></Response>')
        except ApiError as exc:
            self._send(
                req, exc.stat, f'<Response stat="{exc.stat}" code="fail"><Error>{escape(str(exc))}</Error></Response>'
            )

    def _authorised(self, auth: str, apikey: str | None) -> bool:
        if apikey is not None:
            return apikey == self.api_key
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.user and password == self.password

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: str, raw: bool = False) -> None:
        payload = (body if raw else f'<?xml version="1.0" encoding="ISO-8859-1"?>{body}').encode("latin-1")
        req.send_response(status)
        req.send_header("Content-Type", "text/html" if raw else "text/xml")
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
        port = _number(params["port"], "port", 1, 65535)
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
        return addr, _number(params["rsport"], "rsport", 1, 65535)

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
        # [REC addvs.xml, PG addvs answer, PSDOC]; udp check type: see the module docstring.
        settings = {"enable": "Y", "forcel7": "Y", "sslacceleration": "N", "sslreencrypt": "N", "transparent": "N",
                    "subnetoriginating": "Y", "idletime": "660", "cache": "N", "compress": "N", "useforsnat": "N",
                    "vstype": "http" if key[2] == "tcp" else "gen", "schedule": "rr",
                    "checktype": "http" if key[2] == "tcp" else "icmp", "persisttimeout": "0",
                    "checkport": "0", "sslreverse": "N", "intercept": "N", "checkuseget": "0"}  # fmt: skip
        if self.firmware == "modern":
            settings["forcel4"] = "N"
        vs = VirtualService(self._next_vs, *key, settings)
        # [RECPY] rule counters, 0 on a new service; tests raise them in extra.
        vs.extra.update(NRules="0", NRequestRules="0", NResponseRules="0", NPreProcessRules="0")
        self._apply_vs(vs, {k: v for k, v in params.items() if k not in VS_ID})
        self._next_vs += 1
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
            if k in VS_FLAGS:
                v = _yn(v, k)
            elif k in VS_NUMBERS:
                v = str(_number(v, k, *VS_NUMBERS[k]))
            elif k == "schedule" and v not in SCHEDULES:
                raise ApiError(f"schedule: Invalid value {v}")
            elif k == "persist":
                v = v.lower()
                if v not in PERSIST:
                    raise ApiError(f"persist: Invalid value {v}")
            elif k == "checktype":
                v = v.lower()
                if v not in CHECK_TYPES:
                    raise ApiError(f"checktype: Invalid value {v}")
            elif k == "checkcodes":
                v = " ".join(v.split())
                if len(v) > 127 or any(not c.isdigit() or not 300 <= int(c) <= 599 for c in v.split()):
                    raise ApiError(f"checkcodes: Invalid value {v} (codes 300-599)")
            new[k] = v
        trial = VirtualService(vs.index, vs.vip, vs.port, vs.prot, new, vs.rs)
        if new.get("sslacceleration") == "Y" and self.layer(trial) == 4:
            raise ApiError("SSL acceleration needs a layer 7 service")
        vs.settings = {k: v for k, v in new.items() if v != "" or k not in ("checkurl", "checkcodes")}

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
        if vs.subvs:  # [SUBVS]
            raise ApiError("Real Servers and SubVSs cannot be on the same Virtual Service")
        if addr == vs.vip:
            raise ApiError("Real Server address is the Virtual Service address")
        rs = RealServer(self._next_rs, addr, port, {"forward": "nat", "weight": "1000", "limit": "0", "ratelimit": "0",
                                                     "follow": "0", "enable": "Y", "critical": "N"})  # fmt: skip
        self._apply_rs(vs, rs, {k: v for k, v in params.items() if k not in VS_ID + RS_ID})
        self._next_rs += 1
        vs.rs.append(rs)
        return f"<Rs>{self._rs_xml(vs, rs)}</Rs>"

    def _cmd_modrs(self, params: dict[str, str]) -> None:
        self._allow(params, VS_ID + RS_ID + RS_SETTINGS)
        vs = self._get_vs(params)
        rs = self._get_rs(vs, params)
        changes = {k: v for k, v in params.items() if k not in VS_ID + RS_ID}
        if not changes:
            raise ApiError("No parameters to change")
        self._apply_rs(vs, rs, changes)
        return None

    def _cmd_delrs(self, params: dict[str, str]) -> None:
        self._allow(params, VS_ID + RS_ID)
        vs = self._get_vs(params)
        vs.rs.remove(self._get_rs(vs, params))
        return None

    def _apply_rs(self, vs: VirtualService, rs: RealServer, changes: dict[str, str]) -> None:
        new = dict(rs.settings)
        port = rs.port
        for k, v in changes.items():
            if k in ("enable", "critical", "non_local"):
                v = _yn(v, k)
            elif k == "forward":
                v = v.lower()
                if v not in ("nat", "route"):
                    raise ApiError(f"forward: Invalid value {v} (nat or route)")
                if v == "route" and self.layer(vs) != 4:
                    raise ApiError("forward: route (Direct return) needs a layer 4 service: force L4 first")
            elif k in RS_NUMBERS:
                v = str(_number(v, k, *RS_NUMBERS[k]))
            if k == "newport":
                port = int(v)
            elif k != "non_local":
                new[k] = v
        if port != rs.port and any(r.addr == rs.addr and r.port == port for r in vs.rs):
            raise ApiError("Real Server already exists")
        rs.settings, rs.port = new, port

    def _cmd_showiface(self, params: dict[str, str]) -> str:
        self._allow(params, ("iface",))
        ids = list(range(len(self.interfaces)))
        if "iface" in params:
            ids = [_number(params["iface"], "iface", 0, len(self.interfaces) - 1)]
        return "".join(
            f"<Interface><Id>{i}</Id><IPAddress>{self.interfaces[i]}</IPAddress><Mtu>1500</Mtu>"
            f"<InterfaceType>Port</InterfaceType><DefaultInterface>{'yes' if i == 0 else 'no'}</DefaultInterface>"
            + (
                "<AdditionalAddresses>"
                + "".join(f"<Address>{a}</Address>" for a in self.additional[i])
                + "</AdditionalAddresses>"
                if self.additional.get(i)
                else ""
            )
            + "</Interface>"
            for i in ids
        )

    # -- XML ---------------------------------------------------------------

    def _vs_xml(self, vs: VirtualService) -> str:
        parts = [
            "<Status>Up</Status>" if vs.rs else "<Status>Down</Status>",
            f"<Index>{vs.index}</Index>",
            f"<VSAddress>{vs.vip}</VSAddress>",
            f"<VSPort>{vs.port}</VSPort>",
        ]
        if self.firmware == "modern":
            parts.append(f"<Layer>{self.layer(vs)}</Layer>")  # [REC] right after VSPort
        parts.append(f"<Protocol>{vs.prot}</Protocol>")
        for k, v in vs.settings.items():
            if k == "persist" and v == "none":
                continue  # [REC] no Persist element when persistence is off
            parts.append(f"<{VS_ELEMENTS[k]}>{escape(v)}</{VS_ELEMENTS[k]}>")
        for tag, value in vs.extra.items():
            if isinstance(value, list):
                parts.append(f"<{tag}>" + "".join(f"<Name>{escape(str(n))}</Name>" for n in value) + f"</{tag}>")
            else:
                parts.append(f"<{tag}>{escape(str(value))}</{tag}>")
        parts.append(f"<MasterVS>{1 if vs.subvs else 0}</MasterVS>")  # [RECPY]
        parts += [f"<Rs>{self._rs_xml(vs, r)}</Rs>" for r in vs.rs]
        for sub in vs.subvs:  # [RECPY] <SubVS>, [V2] address-less <Rs>
            parts.append(f"<{vs.subvs_tag}>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in sub.items())
                         + f"</{vs.subvs_tag}>")  # fmt: skip
        return "".join(parts)

    @staticmethod
    def _rs_xml(vs: VirtualService, rs: RealServer) -> str:
        parts = [
            "<Status>Up</Status>",
            f"<VSIndex>{vs.index}</VSIndex>",
            f"<RsIndex>{rs.index}</RsIndex>",
            f"<Addr>{rs.addr}</Addr>",
            f"<Port>{rs.port}</Port>",
            "<DnsName></DnsName>",
        ]
        parts += [f"<{RS_ELEMENTS[k]}>{escape(v)}</{RS_ELEMENTS[k]}>" for k, v in rs.settings.items()]
        parts.append(f"<Nrules>{rs.nrules}</Nrules>")
        return "".join(parts)


def _yn(value: str, name: str) -> str:
    v = value.strip().upper()
    v = {"1": "Y", "0": "N", "YES": "Y", "NO": "N", "TRUE": "Y", "FALSE": "N"}.get(v, v)
    if v not in YN:
        raise ApiError(f"{name}: Invalid value {value} (Y or N)")
    return v


def _number(value: str, name: str, low: int, high: int) -> int:
    if not value.strip().isdigit() or not low <= int(value) <= high:
        raise ApiError(f"{name}: Invalid value {value} ({low}-{high})")
    return int(value)


# Elements a v2 answer always gives as lists [V2].
_JSON_LISTS = ("VS", "Rs", "SubVS", "Interface")


def _json_data(command: str, xml_data: str) -> dict[str, Any]:
    """The data of a v1 answer as a v2 JSON object (module docstring, "v2")."""
    root = ET.fromstring(f"<Data>{xml_data}</Data>")
    out = _json_element(root)
    return out if isinstance(out, dict) else {}


def _json_element(elem: ET.Element) -> Any:
    if not len(elem):
        text = (elem.text or "").strip()
        if text in YN:
            return text == "Y"
        return int(text) if text.isdigit() and len(text) < 10 else text
    out: dict[str, Any] = {}
    for child in elem:
        value = _json_element(child)
        if child.tag in _JSON_LISTS:
            out.setdefault(child.tag, []).append(value)
        elif child.tag in out:
            prev = out[child.tag]
            out[child.tag] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[child.tag] = value
    return out
