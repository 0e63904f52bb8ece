"""A small client for the Kemp LoadMaster RESTful API, and the reconciler that
brings the inventory's services onto one LoadMaster.

Written from Kemp's public documentation and code (docs/kemp.md lists the
pages and what each confirms):

- HTTP basic authentication is the default and the recommended way: every
  command is ``POST https://LM/access/<command>`` (the v1 API, XML answers)
  with its ``name=value`` parameters in the form body, the user and password
  in the ``Authorization`` header. The Programmer Guide's "API Examples"
  recommend POST "because the parameters are not passed in the URL";
- an API key goes only where Kemp documents one: in the JSON body of the v2
  API, ``POST https://LM/accessv2`` with ``{"cmd": ..., "apikey": ...}``
  (Kemp KB "JSON based Input and Output for the LoadMaster RESTful API",
  firmware 7.2.50 and later; the Programmer Guide's introduction: Session
  Management must be enabled for it). No secret is ever put in a URL, and
  neither the body nor the Authorization header is ever logged or part of
  an error message;
- a v1 success is ``<Response stat="200" code="ok">`` holding ``<Success>``
  (with ``<Data>`` for reads), a failure ``<Response stat="..." code="fail">``
  holding ``<Error>text</Error>``; a v2 answer is a JSON object with
  ``code``, ``message`` and ``status`` beside the data. Both are read into
  the same shape: element (key) -> text, nested elements as lists of dicts,
  JSON booleans as ``Y``/``N`` and numbers as text;
- Virtual Services are named by ``vs`` (VIP), ``port`` and ``prot`` (tcp,
  udp); real servers additionally by ``rs`` (address) and ``rsport``.

HTTPS only, and the certificate is always checked: against a CA file, the
system's trust store, or a pinned SHA-256 fingerprint of the certificate
(LoadMasters often carry a self-signed one). The pin is compared right after
the TLS handshake, before any request, so credentials never reach a server
whose certificate does not match.

This file is the collection's ``module_utils/kemp_api.py``: the module
``dsr_kemp_services`` imports it, and so does the CLI (``dsrprov.loadmaster``,
as ``ansible_collections.dsrprov.dsr.plugins.module_utils.kemp_api``).
Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import os
import re
import ssl
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

# Virtual Service settings that DSR cannot honour: with "Direct return" the
# LoadMaster forwards at layer 4 and never sees the replies, so anything that
# needs the payload or the reply (SSL offload, content switching, header or
# body rules, caching, compression, WAF, L7 persistence) cannot work.
# Flags as showvs reports them (recorded answers: python-kemptech-api's test
# data and mathlu/loadmaster-go-client test_data carry SSLReverse,
# SSLReencrypt, Intercept, Cache, Compress, EspEnabled; SSLAcceleration
# appears once set).
L7_FLAGS = {
    "SSLAcceleration": "SSL acceleration (offload)",
    "SSLReencrypt": "SSL re-encryption",
    "SSLReverse": "reverse SSL (re-encryption towards the real servers)",
    "Cache": "caching",
    "Compress": "compression",
    "Intercept": "the web application firewall (Intercept)",
    "EspEnabled": "Edge Security Pack authentication",
}
# Numeric settings that are on when not 0: the WAF's mode (InterceptMode,
# firmware with the OWASP WAF).
L7_MODES = {"InterceptMode": "the web application firewall"}
# Rule counters firmware reports instead of the rule names (the recorded
# showvs answers: NRules, NRequestRules, NResponseRules, NPreProcessRules;
# NMatchBodyRules on firmware with body modification rules).
L7_COUNTERS = {
    "NRules": "content switching rules",
    "NRequestRules": "content rules on requests",
    "NResponseRules": "content rules on responses",
    "NMatchBodyRules": "body modification rules",
    "NPreProcessRules": "pre-processing content rules",
}
# Rule names, where a firmware lists them.
L7_RULES = {
    "RequestRules": "content rules on requests",
    "ResponseRules": "content rules on responses",
    "PreProcessRules": "pre-processing content rules",
    "MatchBodyRules": "body modification rules",
}
# Persistence modes that work without layer 7: none, or the client's source IP.
L4_PERSIST = ("", "none", "src")

_FINGERPRINT_RE = re.compile(r"^(?:sha256[:/ ]?)?([0-9A-Fa-f]{2}(?::?[0-9A-Fa-f]{2}){31})$")


class KempError(Exception):
    """The LoadMaster refused a command or could not be reached; the message is one line."""


class KempAuthError(KempError):
    """Wrong or missing credentials (HTTP 401)."""


class KempTlsError(KempError):
    """The LoadMaster's certificate is not the trusted or pinned one."""


def normalize_fingerprint(text: str) -> str:
    """``AB:CD:..`` (or bare hex, optionally prefixed ``sha256:``) as lower-case hex; ValueError if not SHA-256."""
    m = _FINGERPRINT_RE.match(str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    return m.group(1).replace(":", "").lower()


def format_fingerprint(hexdigest: str) -> str:
    return ":".join(hexdigest[i : i + 2] for i in range(0, len(hexdigest), 2)).upper()


def split_address(address: str, default_port: int = 443) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address."""
    text = str(address).strip()
    if not text:
        raise ValueError("no LoadMaster address given")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"LoadMaster address {address!r}: missing ']'")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") > 1:
        return text, default_port  # a bare IPv6 address
    else:
        host, _sep, port_text = text.partition(":")
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"LoadMaster address {address!r}: bad port {port_text!r}")
        port = int(port_text)
    return host, port


def _flag(value: Any) -> bool:
    return str(value or "").strip().lower() in ("y", "yes", "1", "true", "on")


def _element_dict(elem: ET.Element) -> dict[str, Any]:
    """Child elements as ``tag: text``; repeated or nested children as lists of dicts."""
    out: dict[str, Any] = {}
    for child in elem:
        if len(child):
            out.setdefault(child.tag, []).append(_element_dict(child))
        elif child.tag in out:
            prev = out[child.tag]
            out[child.tag] = [*prev, child.text or ""] if isinstance(prev, list) else [prev, child.text or ""]
        else:
            out[child.tag] = (child.text or "").strip()
    return out


def real_servers(vs: dict[str, Any]) -> list[dict[str, Any]]:
    """The real servers of a showvs answer: its ``<Rs>`` entries that have an address.

    A parent Virtual Service lists its SubVSs like real servers, with
    ``VSIndex``, ``RsIndex`` and ``Name`` but no ``Addr``: as ``<SubVS>``
    entries (python-kemptech-api's recorded parent answer) or as ``<Rs>``
    entries (technicallyJack/terraform-provider-kemp: "the parent treats each
    SubVS like a real server"). Those are not real servers (``subvs``)."""
    rs = vs.get("Rs") or []
    return [r for r in rs if isinstance(r, dict) and str(r.get("Addr") or "").strip()]


def subvs(vs: dict[str, Any]) -> list[dict[str, Any]]:
    """The SubVS entries of a showvs answer, in either shape (see ``real_servers``)."""
    found = [r for r in vs.get("SubVS") or [] if isinstance(r, dict)]
    found += [r for r in vs.get("Rs") or [] if isinstance(r, dict) and not str(r.get("Addr") or "").strip()]
    return found


def _count(value: Any) -> int:
    text = str(value or "0").strip()
    return int(text) if text.isdigit() else (0 if not text else 1)


def layer(vs: dict[str, Any]) -> str:
    """The layer a Virtual Service works at, "4" or "7".

    Current firmware says so itself in ``<Layer>`` (recorded answers in
    mathlu/loadmaster-go-client test_data: ``<Layer>4</Layer>`` with ForceL4=Y
    ForceL7=N, ``<Layer>7</Layer>`` with ForceL4=N ForceL7=Y); that is the
    answer wherever it is reported, whatever the flags say. Without it: both
    flags reported, layer 4 needs ForceL4=Y and ForceL7 off; only ``ForceL7``
    reported (older firmware, the Programmer Guide's answers), off means 4."""
    reported = str(vs.get("Layer", "")).strip()
    if reported:
        return reported
    if "ForceL4" in vs:
        return "4" if _flag(vs["ForceL4"]) and not _flag(vs.get("ForceL7")) else "7"
    return "7" if _flag(vs.get("ForceL7", "N")) else "4"


def force_l4(vs: dict[str, Any]) -> bool:
    """Does the Virtual Service work at layer 4 (see ``layer``)?"""
    return layer(vs) == "4"


def l7_problems(vs: dict[str, Any]) -> list[str]:
    """What on a Virtual Service DSR cannot honour, one phrase each (flags, counters, rules, persistence)."""
    problems = [f"{what} ({key}=Y)" for key, what in L7_FLAGS.items() if _flag(vs.get(key))]
    problems += [f"{what} ({key}={vs[key]})" for key, what in L7_MODES.items() if _count(vs.get(key))]
    problems += [f"{what} ({key}={vs[key]})" for key, what in L7_COUNTERS.items() if _count(vs.get(key))]
    counted = {what for key, what in L7_COUNTERS.items() if _count(vs.get(key))}
    for key, what in L7_RULES.items():
        value = vs.get(key)
        if value and value != "0" and what not in counted:
            names = value if isinstance(value, list) else [value]
            problems.append(f"{what} ({key}: {', '.join(str(n) for n in names)})")
    persist = str(vs.get("Persist") or "").strip().lower()
    if persist not in L4_PERSIST:
        problems.append(f"persistence {vs.get('Persist')!r} (only source IP persistence, Persist=src, works with DSR)")
    subs = subvs(vs)
    if subs or _count(vs.get("MasterVS")):
        problems.append(f"SubVSs (content switching; {len(subs) or 'some'} listed)")
    for r in real_servers(vs):
        rules = r.get("Nrules") or r.get("MatchRules") or r.get("Rules")
        if rules and (not isinstance(rules, str) or _count(rules)):
            problems.append(
                f"content rules on real server {_hostport(r.get('Addr', '?'), r.get('Port'))} (Nrules={rules})"
            )
    return problems


class Client:
    """One LoadMaster. Every method is one API call, or a read and a call."""

    def __init__(
        self,
        address: str,
        *,
        api_key: str | None = None,
        user: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        fingerprint: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.host, self.port = split_address(address)
        self.address = address
        if not api_key and not (user and password):
            raise KempError("no LoadMaster credentials: give a user and a password, or an API key")
        # Basic auth first: it is the v1 API every firmware has, and the
        # password travels in a header only. The key is used without them.
        self._auth = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii") if user and password else None
        )
        self._api_key = None if self._auth else api_key
        self._pin = normalize_fingerprint(fingerprint) if fingerprint else None
        self.timeout = timeout
        if self._pin and not ca_file:
            # The pin replaces chain and name validation; it is stricter.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=ca_file or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ctx = ctx

    # -- transport ---------------------------------------------------------

    def _connect(self) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._ctx)
        where = f"LoadMaster {self.address}"
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise KempTlsError(
                f"{where}: certificate not trusted ({exc.verify_message}); give its CA file "
                "(dsr_loadmaster_kemp_ca_file) or pin its SHA-256 fingerprint (dsr_loadmaster_kemp_fingerprint)"
            ) from None
        except ssl.SSLError as exc:
            conn.close()
            raise KempTlsError(f"{where}: TLS handshake failed: {exc.reason or exc}") from None
        except (TimeoutError, OSError) as exc:
            conn.close()
            raise KempError(f"{where}: cannot connect: {exc.strerror or exc}") from None
        if self._pin:
            if conn.sock is None:  # connect() succeeded, so never; for the type checker
                raise KempTlsError(f"{where}: no TLS socket to read the certificate from")
            der = conn.sock.getpeercert(binary_form=True)
            got = hashlib.sha256(der or b"").hexdigest()
            if got != self._pin:
                conn.close()
                raise KempTlsError(
                    f"{where}: certificate fingerprint mismatch: pinned SHA-256 {format_fingerprint(self._pin)}, "
                    f"the server presented {format_fingerprint(got)}; refused before sending credentials"
                )
        return conn

    @property
    def api(self) -> str:
        """Which API this client speaks: "v1" (basic auth, XML) or "v2" (API key in a JSON body)."""
        return "v2" if self._api_key else "v1"

    def call(self, command: str, **params: Any) -> dict[str, Any]:
        """Run one command; return its data (``<Data>`` or the JSON object), or raise KempError."""
        if not re.match(r"^[a-z0-9]+$", command):
            raise KempError(f"bad command name {command!r}")
        fields = {k: _param(v) for k, v in params.items() if v is not None}
        if self._api_key:
            # Kemp's documented form for a key: the v2 JSON body (module docstring).
            path, content = "/accessv2", "application/json"
            body = json.dumps({"cmd": command, **fields, "apikey": self._api_key})
        else:
            path, content = f"/access/{command}", "application/x-www-form-urlencoded"
            body = urllib.parse.urlencode(fields)
        headers = {"Content-Type": content, "Accept": "application/json" if self._api_key else "application/xml"}
        if self._auth:
            headers["Authorization"] = self._auth
        conn = self._connect()
        try:
            conn.request("POST", path, body=body.encode(), headers=headers)
            resp = conn.getresponse()
            status, text = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise KempError(
                f"LoadMaster {self.address}: {command}: {type(exc).__name__}: {_no_secret(str(exc))}"
            ) from None
        finally:
            conn.close()
        if self._api_key:
            return self._parse_json(command, status, text)
        root = self._parse(command, status, text)
        success = root.find("Success")
        data = success.find("Data") if success is not None else None
        return _element_dict(data) if data is not None else {}

    def _parse_json(self, command: str, status: int, text: bytes) -> dict[str, Any]:
        where = f"LoadMaster {self.address}: {command}"
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if status == 401 or (isinstance(answer, dict) and str(answer.get("code")) == "401"):
            raise KempAuthError(f"{where}: access denied (HTTP 401): wrong API key or user/password")
        if not isinstance(answer, dict):
            if status == 404:
                raise KempError(
                    f"{where}: HTTP 404 for /accessv2: is the API interface enabled, the firmware 7.2.50 or "
                    "later? (or use a user and password, the v1 API)"
                )
            raise KempError(f"{where}: HTTP {status}, not an API answer")
        code = str(answer.get("code", status))
        if code == "200" and str(answer.get("status", "ok")).lower() == "ok" and status == 200:
            return {k: _json_value(v) for k, v in answer.items() if k not in ("code", "message", "status")}
        message = " ".join(str(answer.get("message") or "").split())
        raise KempError(f"{where} failed ({code}): {message or 'no reason given'}")

    def _parse(self, command: str, status: int, text: bytes) -> ET.Element:
        where = f"LoadMaster {self.address}: {command}"
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            root = None
        error = ""
        if root is not None and root.tag == "Response":
            err = root.find("Error")
            error = " ".join((err.text or "").split()) if err is not None else ""
            stat = root.get("stat", str(status))
            if status == 401 or stat == "401":
                raise KempAuthError(f"{where}: access denied (HTTP 401): wrong API key or user/password")
            if stat == "200" and root.get("code", "ok").lower() == "ok" and status == 200:
                return root
            raise KempError(f"{where} failed ({stat}): {error or 'no reason given'}")
        if status == 401:
            raise KempAuthError(f"{where}: access denied (HTTP 401): wrong API key or user/password")
        raise KempError(f"{where}: HTTP {status}, not an API answer")

    # -- the LoadMaster's own networks --------------------------------------

    def interfaces(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        """The addresses of the LoadMaster's interfaces, with their prefixes, additional addresses included.

        ``showiface`` without ``iface`` answers for every interface (Kemp's
        PowerShell module, Get-NetworkInterface), each ``<Interface>`` with
        ``<IPAddress>a.b.c.d/nn</IPAddress>`` (the Multi-Tenant API
        description's answer) and, where an interface has them,
        ``<AdditionalAddresses>`` holding more ``a.b.c.d/nn`` (the form
        ``addadditional`` takes them in, Multi-Tenant API description);
        every text under it that is an address with a prefix is read."""
        data = self.call("showiface")
        ifaces = data.get("Interface") or []
        found = []
        for iface in ifaces if isinstance(ifaces, list) else [ifaces]:
            if not isinstance(iface, dict):
                continue
            texts = [str(iface.get("IPAddress") or ""), *_texts(iface.get("AdditionalAddresses"))]
            for text in texts:
                for word in text.replace(",", " ").split():
                    try:
                        found.append(ipaddress.ip_interface(word.strip()))
                    except ValueError:
                        continue
        return found

    # -- Virtual Services --------------------------------------------------

    def list_vs(self) -> list[dict[str, Any]]:
        found = self.call("listvs").get("VS") or []
        return [v for v in (found if isinstance(found, list) else [found]) if isinstance(v, dict)]

    def find_vs(self, vip: str, port: int, prot: str) -> dict[str, Any] | None:
        """The Virtual Service VIP:PORT/PROT with its real servers (showvs), or None."""
        want = _ip(vip)
        for vs in self.list_vs():
            if (
                _ip(vs.get("VSAddress", "")) == want
                and str(vs.get("VSPort")) == str(port)
                and str(vs.get("Protocol", "")).lower() == prot.lower()
            ):
                return self.show_vs(vip, port, prot)
        return None

    def show_vs(self, vip: str, port: int, prot: str) -> dict[str, Any]:
        return self.call("showvs", vs=vip, port=port, prot=prot)

    def add_vs(self, vip: str, port: int, prot: str, **settings: Any) -> None:
        self.call("addvs", vs=vip, port=port, prot=prot, **settings)

    def mod_vs(self, vip: str, port: int, prot: str, **settings: Any) -> None:
        self.call("modvs", vs=vip, port=port, prot=prot, **settings)

    def del_vs(self, vip: str, port: int, prot: str) -> None:
        self.call("delvs", vs=vip, port=port, prot=prot)

    # -- real servers ------------------------------------------------------

    def add_rs(self, vip: str, port: int, prot: str, rs: str, rsport: int, **settings: Any) -> None:
        self.call("addrs", vs=vip, port=port, prot=prot, rs=rs, rsport=rsport, **settings)

    def mod_rs(self, vip: str, port: int, prot: str, rs: str, rsport: int, **settings: Any) -> None:
        self.call("modrs", vs=vip, port=port, prot=prot, rs=rs, rsport=rsport, **settings)

    def del_rs(self, vip: str, port: int, prot: str, rs: str, rsport: int) -> None:
        self.call("delrs", vs=vip, port=port, prot=prot, rs=rs, rsport=rsport)


# --------------------------------------------------------------------------
# reconciling: the services of the inventory onto one LoadMaster
# --------------------------------------------------------------------------

# keepalived's lb_algo (the service model) as the LoadMaster's Schedule.
SCHEDULES = {"rr": "rr", "wrr": "wrr", "lc": "lc", "wlc": "wlc", "sh": "sh"}
FORCE_PARAMS = ("auto", "ForceL4", "ForceL7")
# Weights the LoadMaster takes: Kemp's PowerShell module (7.2.60) validates
# New-/Set-AdcRealServer -Weight with ValidateRange(1, 65530), where the
# service model allows 0-65535. 0 keeps its model meaning, "registered but no
# new connections": the real server is sent Enable=N and no weight.
WEIGHT_MAX = 65530
# The same module validates -PersistTimeout with ValidateRange(0, 604800).
PERSIST_TIMEOUT_MAX = 604800
# The service model's health_check type as the LoadMaster's CheckType. The
# LoadMaster has no check of a UDP port (Kemp's PowerShell module's CheckType
# set: tcp, icmp, https, http, smtp, nntp, ftp, telnet, pop3, imap, rdp,
# ldap, none); Kemp's overview: UDP services are checked at layer 3 (ICMP)
# by default, so a udp check is that: it sees a host go down, not a service.
HEALTH_CHECKS = {"tcp": "tcp", "http": "http", "udp": "icmp"}
# The check a service gets when its health_check names no type, per
# protocol: TCP on the service port for tcp (the directors' default; the
# LoadMaster's own, HTTP, would mark a TLS or database server down), and
# for udp what the LoadMaster itself does for a UDP service, a layer 3 check
# (never a TCP check: a UDP-only daemon, DNS or syslog, answers none).
DEFAULT_CHECKS = {"tcp": "tcp", "udp": "udp"}
# CheckUseGet: the HTTP method of an http check, 0 HEAD (the default in every
# recorded answer), 1 GET, 2 POST (technicallyJack/terraform-provider-kemp,
# checked against 7.2.63). keepalived's HTTP_GET sends GET; so does this.
CHECK_USE_GET = "1"
# Element of a showvs answer -> the modvs parameter that sets it.
VS_PARAMS = {
    "NickName": "nickname",
    "Enable": "enable",
    "Schedule": "schedule",
    "CheckType": "checktype",
    "CheckPort": "checkport",
    "CheckUrl": "checkurl",
    "CheckCodes": "checkcodes",
    "CheckUseGet": "checkuseget",
    "Persist": "persist",
    "PersistTimeout": "persisttimeout",
}
# Ownership, on the LoadMaster itself: a Virtual Service dsrprov created (or
# was handed with adopt) carries this prefix in its NickName, the only free
# text field a Virtual Service has that Kemp's API reads and sets
# (nickname); it survives a new controller. Real servers have no such field
# (showrs: Addr, Port, Forward, Weight, Limit, Enable, Critical, Follow,
# DnsName), so the real servers dsrprov registered are recorded in the
# ownership file (Reconciler, docs/kemp.md "Ownership").
OWNER_PREFIX = "dsrprov-"


def owner_nickname(svc: dict[str, Any]) -> str:
    return f"{OWNER_PREFIX}{svc['name']}"


def owned(svc: dict[str, Any], vs: dict[str, Any]) -> bool:
    """Did dsrprov create (or adopt) this Virtual Service? Its NickName says so."""
    return str(vs.get("NickName") or "").strip() == owner_nickname(svc)


def vs_label(svc: dict[str, Any]) -> str:
    return f"{svc['name']} ({_hostport(svc['vip'], svc['port'])}/{svc['protocol']})"


def _hostport(address: Any, port: Any) -> str:
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


def _health_check(svc: dict[str, Any]) -> dict[str, Any]:
    """The service's health_check; without a type, the protocol's default (DEFAULT_CHECKS)."""
    hc = dict(svc.get("health_check") or {})
    prot = str(svc.get("protocol", "tcp")).lower()
    hc["type"] = str(hc.get("type") or DEFAULT_CHECKS.get(prot, "tcp")).lower()
    hc["port"] = int(hc.get("port") or svc["port"])
    return hc


def service_problem(svc: dict[str, Any]) -> str:
    """What in the service model the LoadMaster cannot do, or "" (checked before any request)."""
    name = svc["name"]
    if not svc.get("real_servers") and not svc.get("allow_empty"):
        return (
            f"service {name}: no real server holds its VIP; refused, as it would drain and delete every real "
            "server dsrprov registered for it (set allow_empty: true on the service to empty it on purpose)"
        )
    if svc.get("lb_algo", "wlc") not in SCHEDULES:
        known = ", ".join(SCHEDULES)
        return f"service {name}: lb_algo {svc.get('lb_algo')!r} has no LoadMaster equivalent (known: {known})"
    for rs in svc.get("real_servers") or []:
        weight = int(rs.get("weight", 1))
        if not 0 <= weight <= WEIGHT_MAX:
            return (
                f"service {name}: real server {rs.get('name', rs['address'])} has dsr_weight {weight}; the LoadMaster "
                f"takes weights 1-{WEIGHT_MAX} (0 registers it disabled)"
            )
    timeout = svc.get("persistence_timeout")
    if timeout and int(timeout) > PERSIST_TIMEOUT_MAX:
        return (
            f"service {name}: persistence_timeout {timeout} is longer than the LoadMaster's longest "
            f"persistence ({PERSIST_TIMEOUT_MAX} seconds, 7 days)"
        )
    hc = _health_check(svc)
    if hc["type"] not in HEALTH_CHECKS:
        return f"service {name}: health_check type {hc['type']!r} has no LoadMaster equivalent"
    status = int(hc.get("status", 200))
    if hc["type"] == "http" and not 200 <= status <= 599:
        return (
            f"service {name}: health_check status {status}: the LoadMaster counts every 2xx answer as up and takes "
            "other codes from 300 to 599"
        )
    return ""


def vs_settings(svc: dict[str, Any]) -> dict[str, str]:
    """The Virtual Service settings the service model decides, as showvs reports them (layer aside)."""
    out = {"NickName": owner_nickname(svc), "Enable": "Y", "Schedule": SCHEDULES[svc.get("lb_algo", "wlc")]}
    hc = _health_check(svc)
    out["CheckType"] = HEALTH_CHECKS[hc["type"]]
    if hc["type"] != "udp":  # a ping has no port
        out["CheckPort"] = str(hc["port"])
    if hc["type"] == "http":
        out["CheckUseGet"] = CHECK_USE_GET
        out["CheckUrl"] = str(hc.get("path") or "/")
        # Without codes the LoadMaster counts 200-299, 301, 302 and 401 as up;
        # custom codes (300-599) replace that set, 2xx stay up (WUI guide).
        status = int(hc.get("status", 200))
        out["CheckCodes"] = "" if 200 <= status <= 299 else str(status)
    timeout = svc.get("persistence_timeout")
    # DSR keeps only source-IP persistence (the LoadMaster never sees a reply,
    # so no cookie); keepalived's persistence_timeout is exactly that.
    out.update({"Persist": "src", "PersistTimeout": str(int(timeout))} if timeout else {"Persist": "none"})
    return out


def _current(vs: dict[str, Any], key: str) -> str:
    value = str(vs.get(key, "") or "").strip()
    return "none" if key == "Persist" and not value else value


def _matches(svc: dict[str, Any], key: str, want: str, vs: dict[str, Any]) -> bool:
    have = _current(vs, key)
    if key == "CheckPort" and have in ("", "0"):
        have = str(svc["port"])  # 0: the real server's port, which is the service port under DSR
    if key == "CheckCodes":
        return have.split() == want.split()
    if key == "NickName":
        return have == want
    return have.lower() == want.lower()


def _layer_view(vs: dict[str, Any]) -> str:
    return " ".join(f"{k}={vs[k]}" for k in ("Layer", "ForceL4", "ForceL7") if k in vs) or "no layer reported"


def _rs_view(r: dict[str, Any]) -> dict[str, str]:
    return {
        "Forward": str(r.get("Forward", "")),
        "Weight": str(r.get("Weight", "")),
        "Enable": str(r.get("Enable", "")),
    }


def _vs_view(vs: dict[str, Any]) -> dict[str, str]:
    out = {"Enable": str(vs.get("Enable", "")), "Schedule": str(vs.get("Schedule", ""))}
    for key in ("Layer", "ForceL4", "ForceL7", "CheckType", "CheckPort"):
        if key in vs:
            out[key] = str(vs[key])
    if "CheckUseGet" in vs and str(vs.get("CheckType", "")).lower() in ("http", "https"):
        out["CheckUseGet"] = str(vs["CheckUseGet"])  # 0 HEAD, 1 GET
    for key in ("CheckUrl", "CheckCodes"):
        if vs.get(key):
            out[key] = str(vs[key])
    out["Persist"] = _current(vs, "Persist")
    if out["Persist"] != "none":
        out["PersistTimeout"] = str(vs.get("PersistTimeout", ""))
    return out


def describe(svc: dict[str, Any], vs: dict[str, Any] | None) -> list[str]:
    """The settings that matter for DSR, one line per Virtual Service and real server (for --diff)."""
    if vs is None:
        return [f"virtual service {vs_label(svc)}: absent"]
    view = _vs_view(vs)
    lines = [f"virtual service {vs_label(svc)}: " + " ".join(f"{k}={v}" for k, v in view.items())]
    for r in sorted(real_servers(vs), key=lambda r: (str(r.get("Addr")), str(r.get("Port")))):
        lines.append(
            f"  real server {_hostport(r.get('Addr', '?'), r.get('Port', '?'))}: "
            + " ".join(f"{k}={v}" for k, v in _rs_view(r).items())
        )
    return lines


class Reconciler:
    """Bring the services onto the LoadMaster: every read first, every check
    next, then the changes. Per service Kemp's order: the Virtual Service is
    forced to layer 4 and read back BEFORE any real server is added with
    "Direct return"; one this run created is deleted again if that fails.
    Real servers that leave are drained (disabled, so that no new connection
    reaches them) for ``drain_seconds`` before they are deleted. In check
    mode nothing is written and nothing waits.

    Ownership: a Virtual Service is changed or deleted only when dsrprov
    created it (``owned``: its NickName) or the service says ``adopt: true``;
    any other one at the service's VIP:port/protocol is refused, naming
    ``adopt``. Real servers are drained and deleted only when dsrprov
    registered them: those of the ownership file (``owner_file``, JSON, one
    list per Virtual Service, written after each run), or all of a service
    with ``adopt: true``. Others are left alone, with a warning."""

    def __init__(
        self,
        client: Client,
        *,
        check: bool = False,
        purge: bool = True,
        force_param: str = "auto",
        drain_seconds: float = 30,
        check_networks: bool = True,
        sleep: Any = None,
        add: bool = True,
        owner_file: str | None = None,
    ) -> None:
        if force_param not in FORCE_PARAMS:
            raise KempError(f"force parameter {force_param!r} must be one of {', '.join(FORCE_PARAMS)}")
        self.client = client
        self.check = check
        self.purge = purge
        self.force_param = force_param
        self.drain_seconds = drain_seconds
        self.check_networks = check_networks
        # False: only drain and delete the real servers that leave; create,
        # add and change nothing (site.yml's first play, before the real
        # servers change: a joining one is added once it holds its VIPs).
        self.add = add
        import time

        self._sleep = sleep or time.sleep
        self.actions: list[str] = []
        self.warnings: list[str] = []
        self.before: list[str] = []
        self.after: list[str] = []
        self.owner_file = owner_file
        self._owned_rs: dict[str, set[tuple[str, str]]] = self._read_owner_file()
        self._state = "present"

    # -- ownership ---------------------------------------------------------

    @staticmethod
    def _vs_key(svc: dict[str, Any]) -> str:
        return f"{_hostport(_ip(svc['vip']), svc['port'])}/{svc['protocol']}"

    def _read_owner_file(self) -> dict[str, set[tuple[str, str]]]:
        if not self.owner_file or not os.path.exists(self.owner_file):
            return {}
        try:
            with open(self.owner_file, encoding="utf-8") as fh:
                data = json.load(fh)
            return {
                str(vs): {(_ip(str(r).rpartition(":")[0].strip("[]")), str(r).rpartition(":")[2]) for r in rss}
                for vs, rss in (data.get("real_servers") or {}).items()
            }
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise KempError(f"ownership file {self.owner_file}: cannot read it ({exc}); fix or restore it") from None

    def _write_owner_file(self) -> None:
        if not self.owner_file or self.check:
            return
        data = {
            "comment": "real servers dsrprov registered at this LoadMaster, per virtual service (docs/kemp.md)",
            "version": 1,
            "real_servers": {vs: sorted(_hostport(a, p) for a, p in keys) for vs, keys in sorted(self._owned_rs.items())
                             if keys},
        }  # fmt: skip
        os.makedirs(os.path.dirname(os.path.abspath(self.owner_file)), exist_ok=True)
        tmp = f"{self.owner_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, self.owner_file)

    def _ours(self, svc: dict[str, Any], vs: dict[str, Any]) -> set[tuple[str, str]]:
        """The real servers of ``vs`` dsrprov registered (all of them with adopt)."""
        keys = {(_ip(r.get("Addr")), str(r.get("Port"))) for r in real_servers(vs)}
        if svc.get("adopt"):
            return keys
        return keys & self._owned_rs.get(self._vs_key(svc), set())

    def _refuse_foreign(self, svc: dict[str, Any], vs: dict[str, Any]) -> None:
        if owned(svc, vs) or svc.get("adopt"):
            return
        rs = ", ".join(_hostport(r.get("Addr"), r.get("Port")) for r in real_servers(vs)) or "none"
        raise KempError(
            f"virtual service {vs_label(svc)} on LoadMaster {self.client.address} was not created by dsrprov "
            f"(NickName {vs.get('NickName', '')!r}, real servers: {rs}); nothing was changed: set adopt: true on "
            f"the service (dsr_loadmaster_kemp_adopt: [{svc['name']}]) to hand it over, or give it another VIP"
        )

    # -- helpers -----------------------------------------------------------

    def _do(self, text: str, func: Any, *args: Any, **kwargs: Any) -> None:
        self.actions.append(text)
        if not self.check:
            func(*args, **kwargs)

    def _force(self, vs: dict[str, Any]) -> dict[str, str]:
        """What forces layer 4 on this firmware. Both flags where both are
        reported: the recorded layer-4 answer carries ForceL4=Y with ForceL7=N,
        and Kemp's PowerShell module (7.2.60) sets the layer with ForceL7
        alone, so ForceL4=Y by itself may leave ForceL7=Y (layer 7)."""
        if self.force_param == "ForceL4":
            return {"ForceL4": "Y"}
        if self.force_param == "ForceL7":
            return {"ForceL7": "N"}
        return {"ForceL4": "Y", "ForceL7": "N"} if "ForceL4" in vs else {"ForceL7": "N"}

    @staticmethod
    def _desired_rs(rs: dict[str, Any]) -> dict[str, str]:
        weight = int(rs.get("weight", 1))
        # Weight 0 means "no new connections", as in IPVS: the LoadMaster's
        # equivalent is a disabled real server (its weights start at 1).
        if weight == 0:
            return {"Forward": "route", "Enable": "N"}
        return {"Forward": "route", "Weight": str(weight), "Enable": "Y"}

    def _check_networks(self, services: list[dict[str, Any]]) -> None:
        """Route ("Direct return") rewrites only the destination MAC address
        (Kemp's "How DSR works"), so a real server must be on a subnet of the
        LoadMaster (an interface address or one of its additional addresses):
        refused otherwise. The VIP need not be there: Kemp's DSR works
        two-armed too (KB "Configuring DSR"; one-armed "does not automatically
        imply DSR"), so a VIP off its real servers' subnet is a warning only.
        Checked from the LoadMaster's own interface list, before any change."""
        where = f"LoadMaster {self.client.address}"
        skip = "set dsr_loadmaster_kemp_check_networks to false to skip this check"
        try:
            nets = self.client.interfaces()
        except KempError as exc:
            raise KempError(f"{exc}; the real servers' networks cannot be checked ({skip})") from None
        if not nets:
            raise KempError(f"{where}: showiface reported no interface address ({skip})")
        shown = ", ".join(str(n) for n in nets)
        for svc in services:
            vip = ipaddress.ip_address(svc["vip"])
            for rs in svc["real_servers"]:
                ip = ipaddress.ip_address(rs["address"])
                holding = [n for n in nets if n.version == ip.version and ip in n.network]
                label = f"real server {rs.get('name', rs['address'])} ({ip})"
                if not holding:
                    raise KempError(
                        f"service {svc['name']}: {label} is on no network of {where} ({shown}); Direct return "
                        f"(route) only changes the MAC address, so a real server must be on a LoadMaster subnet "
                        f"({skip})"
                    )
                if not any(n.version == vip.version and vip in n.network for n in holding):
                    self.warnings.append(
                        f"service {svc['name']}: VIP {vip} is not on the network of {label} at {where}; fine for a "
                        "two-armed LoadMaster, as long as the clients reach the VIP through it"
                    )

    def _vs_problems(self, svc: dict[str, Any], got: dict[str, Any], sent: dict[str, str] | None) -> list[str]:
        """What a read-back Virtual Service lacks; ``sent``: the force parameters just sent, if any."""
        problems = []
        if not force_l4(got):
            text = f"is at layer {layer(got)} ({_layer_view(got)})"
            if sent:
                text += f" after modvs {' '.join(f'{k}={v}' for k, v in sent.items())}: the firmware did not take it"
            problems.append(
                text + "; if this firmware takes only one of ForceL4/ForceL7, set dsr_loadmaster_kemp_force_parameter"
            )
        for key, want in vs_settings(svc).items():
            if not _matches(svc, key, want, got):
                problems.append(f"reports {key}={_current(got, key)!r} after the change, expected {want!r}")
        return problems

    def _rollback(self, svc: dict[str, Any], why: str) -> KempError:
        """Delete the Virtual Service this run created; the error to raise."""
        self.actions.append(f"delete virtual service {vs_label(svc)} again (created by this run, which failed)")
        try:
            self.client.del_vs(svc["vip"], svc["port"], svc["protocol"])
        except KempError as exc:
            return KempError(f"{why}; deleting the new virtual service again failed too: {exc}")
        return KempError(f"{why}; nothing was left of it: the new virtual service was deleted again")

    # -- the run -----------------------------------------------------------

    def run(self, services: list[dict[str, Any]], state: str = "present") -> bool:
        """Reconcile; True if something changed (or would change)."""
        self._state = state
        for svc in services:
            problem = service_problem(svc) if state == "present" else ""
            if problem:
                raise KempError(problem)
        current = {svc["name"]: self.client.find_vs(svc["vip"], svc["port"], svc["protocol"]) for svc in services}
        for svc in services:
            vs = current[svc["name"]]
            self.before += describe(svc, vs)
            if vs is None:
                continue
            self._refuse_foreign(svc, vs)
            if state == "present":
                problems = l7_problems(vs)
                if problems:
                    raise KempError(
                        f"virtual service {vs_label(svc)} on LoadMaster {self.client.address} uses "
                        f"{'; '.join(problems)}, which Direct Server Return cannot honour (the real servers answer "
                        "the clients directly, the LoadMaster sees only the requests at layer 4); turn it off "
                        "on the LoadMaster, or give the service another VIP"
                    )
            elif subvs(vs):
                raise KempError(
                    f"virtual service {vs_label(svc)} on LoadMaster {self.client.address} holds "
                    f"{len(subvs(vs))} SubVS(s), which dsrprov never makes; nothing was deleted: remove them on the "
                    "LoadMaster first"
                )
        if state == "present" and self.check_networks and self.add:
            with_rs = [svc for svc in services if svc.get("real_servers")]
            if with_rs:
                self._check_networks(with_rs)
        leaving: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (service, Rs entry)
        expected: dict[str, dict[str, Any] | None] = {}
        kept_vs: set[str] = set()
        for svc in services:
            vs = current[svc["name"]]
            if state == "absent":
                if vs is None:
                    expected[svc["name"]] = None
                    continue
                ours = self._ours(svc, vs)
                foreign = [r for r in real_servers(vs) if (_ip(r.get("Addr")), str(r.get("Port"))) not in ours]
                leaving += [(svc, r) for r in real_servers(vs) if r not in foreign]
                if foreign:
                    kept_vs.add(svc["name"])
                    self.warnings.append(
                        f"virtual service {vs_label(svc)} kept: it holds real servers dsrprov did not register "
                        f"({', '.join(_hostport(r.get('Addr', '?'), r.get('Port')) for r in foreign)}); only dsrprov's "
                        "left (adopt: true on the service hands the others over)"
                    )
                    expected[svc["name"]] = {**vs, "Rs": foreign}
                else:
                    expected[svc["name"]] = None
                continue
            expected[svc["name"]] = self._present(svc, vs, leaving) if self.add else self._leaving(svc, vs, leaving)
        if leaving:
            for svc, r in leaving:
                if str(r.get("Enable", "Y")).upper() != "N":
                    self._do(
                        f"drain {vs_label(svc)} real server {_hostport(r['Addr'], r['Port'])} (Enable=N)",
                        self.client.mod_rs, svc["vip"], svc["port"], svc["protocol"], r["Addr"], r["Port"],
                        enable="N",
                    )  # fmt: skip
            if self.drain_seconds > 0:
                self.actions.append(f"wait {self.drain_seconds:g}s for connections to drain")
                if not self.check:
                    self._sleep(self.drain_seconds)
            for svc, r in leaving:
                self._do(
                    f"delete {vs_label(svc)} real server {_hostport(r['Addr'], r['Port'])}",
                    self.client.del_rs, svc["vip"], svc["port"], svc["protocol"], r["Addr"], r["Port"],
                )  # fmt: skip
        if state == "absent":
            for svc in services:
                if current[svc["name"]] is not None and svc["name"] not in kept_vs:
                    self._do(f"delete virtual service {vs_label(svc)}", self.client.del_vs,
                             svc["vip"], svc["port"], svc["protocol"])  # fmt: skip
        for svc in services:
            if self.check:
                self.after += describe(svc, expected[svc["name"]])
                continue
            got = self.client.find_vs(svc["vip"], svc["port"], svc["protocol"])
            self._record(svc, current[svc["name"]], got)
            self._verify(svc, expected[svc["name"]], got)
            self.after += describe(svc, got)
        self._write_owner_file()
        return bool([a for a in self.actions if not a.startswith("wait ")])

    def _record(self, svc: dict[str, Any], before: dict[str, Any] | None, got: dict[str, Any] | None) -> None:
        """Which real servers of the service are dsrprov's after the run (the ownership file's entry)."""
        key = self._vs_key(svc)
        if got is None:
            self._owned_rs.pop(key, None)
            return
        present = {(_ip(r.get("Addr")), str(r.get("Port"))) for r in real_servers(got)}
        mine = self._ours(svc, before) if before is not None else set()
        if self.add:
            mine |= {(_ip(rs["address"]), str(svc["port"])) for rs in svc.get("real_servers") or []}
        self._owned_rs[key] = mine & present

    def _present(
        self, svc: dict[str, Any], vs: dict[str, Any] | None, leaving: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> dict[str, Any] | None:
        """Make one service's changes (queue them, in check mode); return the Virtual Service as it should be."""
        vip, port, prot = svc["vip"], svc["port"], svc["protocol"]
        label = vs_label(svc)
        if vs is None and not svc.get("real_servers"):
            return None  # no real server yet: no Virtual Service to create (an existing one stays)
        want_vs = vs_settings(svc)
        created = vs is None
        if vs is None:
            self._do(
                f"create virtual service {label}",
                self.client.add_vs, vip, port, prot,
                nickname=want_vs["NickName"], enable="Y", schedule=want_vs["Schedule"],
            )  # fmt: skip
            if self.check:
                # addvs's defaults are the firmware's (layer 7, an HTTP check); what is set after it is known.
                vs = {"VSAddress": vip, "VSPort": str(port), "Protocol": prot, "NickName": want_vs["NickName"],
                      "Enable": "Y",
                      "Schedule": want_vs["Schedule"], "ForceL7": "Y", "Rs": []}  # fmt: skip
                if self.force_param != "ForceL7":
                    vs["ForceL4"] = "N"
            else:
                vs = self.client.show_vs(vip, port, prot)
        have = {(_ip(r.get("Addr")), str(r.get("Port"))): r for r in real_servers(vs)}
        try:
            after = self._vs_first(svc, vs, want_vs, created)
            rs_after, wanted_keys = self._real_servers(svc, have)
        except KempError as exc:
            if created and not self.check:
                raise self._rollback(svc, str(exc)) from None
            raise
        ours = self._ours(svc, vs)
        for key, cur in have.items():
            if key not in wanted_keys:
                if self.purge and key in ours:
                    leaving.append((svc, cur))
                else:
                    self._foreign_kept(svc, cur, key in ours)
                    rs_after.append(cur)
        after["Rs"] = rs_after
        return after

    def _foreign_kept(self, svc: dict[str, Any], r: dict[str, Any], ours: bool) -> None:
        if not ours:
            self.warnings.append(
                f"virtual service {vs_label(svc)}: real server {_hostport(r.get('Addr', '?'), r.get('Port'))} is not "
                "in the inventory and was not registered by dsrprov: left as it is (adopt: true hands it over)"
            )

    def _leaving(
        self, svc: dict[str, Any], vs: dict[str, Any] | None, leaving: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> dict[str, Any] | None:
        """Only the real servers of an existing Virtual Service that leave (with purge); the rest stays as it is."""
        if vs is None:
            return None
        wanted = {(_ip(rs["address"]), str(svc["port"])) for rs in svc.get("real_servers") or []}
        ours = self._ours(svc, vs)
        keep = []
        for r in real_servers(vs):
            key = (_ip(r.get("Addr")), str(r.get("Port")))
            if self.purge and key not in wanted and key in ours:
                leaving.append((svc, r))
            else:
                if key not in wanted:
                    self._foreign_kept(svc, r, key in ours)
                keep.append(r)
        return {**vs, "Rs": keep}

    def _vs_first(
        self, svc: dict[str, Any], vs: dict[str, Any], want_vs: dict[str, str], created: bool
    ) -> dict[str, Any]:
        """The Virtual Service forced to layer 4 (Kemp: "enable Force L4 ... and select
        Direct return"), with its health check and persistence, and read back at once:
        nothing goes on to the real servers before it works at layer 4."""
        vip, port, prot = svc["vip"], svc["port"], svc["protocol"]
        changes = {VS_PARAMS[k]: v for k, v in want_vs.items() if not _matches(svc, k, v, vs)}
        force = {} if force_l4(vs) else self._force(vs)
        changes.update(force)
        after = {**vs, **want_vs, **force}
        if force and "Layer" in vs:
            after["Layer"] = "4"
        if changes:
            text = " ".join(f"{k}={v}" for k, v in changes.items())
            self._do(f"set virtual service {vs_label(svc)}: {text}", self.client.mod_vs, vip, port, prot, **changes)
        if not self.check and (changes or created):
            got = self.client.show_vs(vip, port, prot)
            problems = self._vs_problems(svc, got, force)
            if problems:
                raise KempError(
                    f"LoadMaster {self.client.address}: virtual service {vs_label(svc)} "
                    + "; ".join(problems)
                    + ("; no real server was added" if created else "; no real server was changed")
                )
            after = dict(got)
        return after

    def _real_servers(
        self, svc: dict[str, Any], have: dict[tuple[str, str], dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
        """Each real server by address and port (the service port: DSR cannot remap
        ports) with route, its weight, enabled; the Rs entries as they should be."""
        vip, port, prot = svc["vip"], svc["port"], svc["protocol"]
        rs_after: list[dict[str, Any]] = []
        wanted_keys = set()
        for rs in svc.get("real_servers") or []:
            key = (_ip(rs["address"]), str(port))
            wanted_keys.add(key)
            want = self._desired_rs(rs)
            rs_label = f"{vs_label(svc)} real server {rs.get('name', rs['address'])} ({_hostport(rs['address'], port)})"
            cur = have.get(key)
            if cur is None:
                self._do(
                    f"add {rs_label}: " + " ".join(f"{k}={v}" for k, v in want.items()),
                    self.client.add_rs, vip, port, prot, rs["address"], port,
                    **{k.lower(): v for k, v in want.items()},
                )  # fmt: skip
                rs_after.append({"Addr": rs["address"], "Port": str(port), **want})
                continue
            diff = {k: v for k, v in want.items() if str(cur.get(k, "")).strip().lower() != v.lower()}
            if diff:
                self._do(
                    f"set {rs_label}: " + " ".join(f"{k}={v}" for k, v in diff.items()),
                    self.client.mod_rs, vip, port, prot, cur["Addr"], cur["Port"],
                    **{k.lower(): v for k, v in diff.items()},
                )  # fmt: skip
            rs_after.append({**cur, **want})
        return rs_after, wanted_keys

    def _verify(self, svc: dict[str, Any], expected: dict[str, Any] | None, got: dict[str, Any] | None) -> None:
        """Read back: a firmware that silently ignores a parameter must not pass for a success."""
        where = f"LoadMaster {self.client.address}: virtual service {vs_label(svc)}"
        if expected is None:
            if got is not None:
                raise KempError(f"{where} still exists after delvs")
            return
        if got is None:
            raise KempError(f"{where} does not exist after addvs")
        # Draining only, the Virtual Service's settings are not ours to set yet.
        problems = self._vs_problems(svc, got, None) if self.add and self._state == "present" else []
        if problems:
            raise KempError(f"{where} " + "; ".join(problems))
        want = {(_ip(r["Addr"]), str(r["Port"])): r for r in real_servers(expected)}
        have = {(_ip(r.get("Addr")), str(r.get("Port"))): r for r in real_servers(got)}
        if set(want) != set(have):
            raise KempError(f"{where}: real servers {sorted(have)} after the changes, expected {sorted(want)}")
        for key, w in want.items():
            for k in ("Forward", "Enable", "Weight"):
                if k in w and str(have[key].get(k, "")).lower() != str(w[k]).lower():
                    raise KempError(
                        f"{where}: real server {key[0]}:{key[1]} reports {k}={have[key].get(k)!r} after the "
                        f"change, expected {w[k]!r}"
                    )


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def _json_value(value: Any) -> Any:
    """A v2 JSON value in the shape ``_element_dict`` gives a v1 answer: text, or lists of dicts."""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, dict):
        return [{k: _json_value(v) for k, v in value.items()}]
    if isinstance(value, list):
        items = [_json_value(v) for v in value]
        return [i for item in items for i in (item if isinstance(item, list) else [item])]
    return "" if value is None else str(value)


def _texts(value: Any) -> list[str]:
    """Every text in a nested answer value (strings, lists, dicts)."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return [str(value)] if value not in (None, "") else []


def _no_secret(text: str) -> str:
    """Transport errors name no URL or header, but be sure: nothing after a ``?`` or ``apikey``."""
    return re.sub(r"(\?\S*|apikey\S*|Authorization\S*)", "[...]", text)


def _ip(text: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(text).strip()))
    except ValueError:
        return str(text).strip().lower()


__all__ = [
    "DEFAULT_CHECKS",
    "FORCE_PARAMS",
    "HEALTH_CHECKS",
    "L7_FLAGS",
    "L7_RULES",
    "SCHEDULES",
    "Client",
    "KempAuthError",
    "KempError",
    "KempTlsError",
    "Reconciler",
    "force_l4",
    "format_fingerprint",
    "l7_problems",
    "layer",
    "normalize_fingerprint",
    "owned",
    "owner_nickname",
    "real_servers",
    "service_problem",
    "split_address",
    "subvs",
    "vs_settings",
]
