"""A small client for the Kemp LoadMaster RESTful API (v1: ``/access/<command>``, XML answers).

Written from Kemp's public documentation (docs/kemp.md lists the pages):

- every command is ``https://LM/access/<command>`` with ``name=value``
  parameters; the documentation shows them in the query string and notes that
  an HTTP POST with the same parameters as the body "is a more secure method
  because the parameters are not passed in the URL". This client POSTs its
  parameters in the body;
- authentication is HTTP basic (the ``bal`` user or another; the password
  travels in the Authorization header, never in a URL) or an API key. The
  key goes where the v1 API is shown to take it: the ``apikey`` parameter of
  the QUERY STRING (mathlu/loadmaster-go-client sends it so; no source found
  confirms a key in a form body, see docs/kemp.md). The URL is never logged
  and never part of an error message, here or in the role;
- a success is ``<Response stat="200" code="ok">`` holding ``<Success>``
  (with ``<Data>`` for reads), a failure ``<Response stat="..." code="fail">``
  holding ``<Error>text</Error>``;
- Virtual Services are named by ``vs`` (VIP), ``port`` and ``prot`` (tcp,
  udp); real servers additionally by ``rs`` (address) and ``rsport``.

HTTPS only, and the certificate is always checked: against a CA file, the
system's trust store, or a pinned SHA-256 fingerprint of the certificate
(LoadMasters often carry a self-signed one). The pin is compared right after
the TLS handshake, before any request, so credentials never reach a server
whose certificate does not match.

This file is shared, unchanged, by the CLI (``dsrprov.kemp``) and the Ansible
modules of the role ``dsr_loadmaster_kemp`` (its ``module_utils/dsr_kemp.py``
is a symlink to it): standard library only, no Ansible import.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import re
import ssl
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

# Virtual Service settings that DSR cannot honour: with "Direct return" the
# LoadMaster forwards at layer 4 and never sees the replies, so anything that
# needs the payload or the reply (SSL offload, content switching, header or
# body rules, caching, compression, WAF, L7 persistence) cannot work.
L7_FLAGS = {
    "SSLAcceleration": "SSL acceleration (offload)",
    "SSLReencrypt": "SSL re-encryption",
    "Cache": "caching",
    "Compress": "compression",
    "Intercept": "the web application firewall (Intercept)",
    "EspEnabled": "Edge Security Pack authentication",
}
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
        host, _, port_text = text.partition(":")
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
    """The ``<Rs>`` entries of a showvs answer."""
    rs = vs.get("Rs") or []
    return [r for r in rs if isinstance(r, dict)]


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
    """What on a Virtual Service DSR cannot honour, one phrase each."""
    problems = [f"{what} ({key}=Y)" for key, what in L7_FLAGS.items() if _flag(vs.get(key))]
    for key, what in L7_RULES.items():
        value = vs.get(key)
        if value and value != "0":
            names = value if isinstance(value, list) else [value]
            problems.append(f"{what} ({key}: {', '.join(str(n) for n in names)})")
    persist = str(vs.get("Persist") or "").strip().lower()
    if persist not in L4_PERSIST:
        problems.append(f"persistence {vs.get('Persist')!r} (only source IP persistence, Persist=src, works with DSR)")
    if vs.get("SubVS"):
        problems.append("SubVSs (content switching)")
    for r in real_servers(vs):
        rules = r.get("MatchRules") or r.get("Rules")
        if rules and rules != "0":
            problems.append(f"content rules on real server {r.get('Addr')}:{r.get('Port')}")
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
            raise KempError("no LoadMaster credentials: give an API key, or a user and a password")
        self._api_key = api_key or None
        self._auth = None if api_key else "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
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
            assert conn.sock is not None
            der = conn.sock.getpeercert(binary_form=True)
            got = hashlib.sha256(der or b"").hexdigest()
            if got != self._pin:
                conn.close()
                raise KempTlsError(
                    f"{where}: certificate fingerprint mismatch: pinned SHA-256 {format_fingerprint(self._pin)}, "
                    f"the server presented {format_fingerprint(got)}; refused before sending credentials"
                )
        return conn

    def call(self, command: str, **params: Any) -> ET.Element:
        """Run one command; return the ``<Success>`` element, or raise KempError with the ``<Error>`` text."""
        if not re.match(r"^[a-z0-9]+$", command):
            raise KempError(f"bad command name {command!r}")
        fields = {k: _param(v) for k, v in params.items() if v is not None}
        body = urllib.parse.urlencode(fields)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/xml"}
        path = f"/access/{command}"
        if self._api_key:
            # The documented place for the key (module docstring). This path
            # holds a secret: it is never logged nor put in a message.
            path += "?" + urllib.parse.urlencode({"apikey": self._api_key})
        if self._auth:
            headers["Authorization"] = self._auth
        conn = self._connect()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            status, text = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise KempError(f"LoadMaster {self.address}: {command}: {exc}") from None
        finally:
            conn.close()
        root = self._parse(command, status, text)
        success = root.find("Success")
        return success if success is not None else root

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
        """The addresses of the LoadMaster's interfaces, with their prefixes.

        ``showiface`` without ``iface`` answers for every interface (Kemp's
        PowerShell module, Get-NetworkInterface), each ``<Interface>`` with
        ``<IPAddress>a.b.c.d/nn</IPAddress>`` (the Multi-Tenant API
        description's answer; additional addresses are not read)."""
        data = self.call("showiface").find("Data")
        found = []
        for iface in data.iter("Interface") if data is not None else []:
            text = (iface.findtext("IPAddress") or "").strip()
            try:
                found.append(ipaddress.ip_interface(text))
            except ValueError:
                continue
        return found

    # -- Virtual Services --------------------------------------------------

    def list_vs(self) -> list[dict[str, Any]]:
        data = self.call("listvs").find("Data")
        return [_element_dict(v) for v in (data.findall("VS") if data is not None else [])]

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
        el = self.call("showvs", vs=vip, port=port, prot=prot)
        data = el.find("Data")
        return _element_dict(data if data is not None else el)

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
# LoadMaster has no check of a UDP port (the module's CheckType set: tcp,
# icmp, https, http, smtp, nntp, ftp, telnet, pop3, imap, rdp, ldap, none);
# Kemp checks UDP services at layer 3 (ICMP) by default, so that is the
# nearest: it sees a host go down, not a service (docs/kemp.md).
HEALTH_CHECKS = {"tcp": "tcp", "http": "http", "udp": "icmp"}
# Element of a showvs answer -> the modvs parameter that sets it.
VS_PARAMS = {
    "NickName": "nickname",
    "Enable": "enable",
    "Schedule": "schedule",
    "CheckType": "checktype",
    "CheckPort": "checkport",
    "CheckUrl": "checkurl",
    "CheckCodes": "checkcodes",
    "Persist": "persist",
    "PersistTimeout": "persisttimeout",
}


def vs_label(svc: dict[str, Any]) -> str:
    return f"{svc['name']} ({_hostport(svc['vip'], svc['port'])}/{svc['protocol']})"


def _hostport(address: str, port: Any) -> str:
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


def _health_check(svc: dict[str, Any]) -> dict[str, Any]:
    """The service's health_check; the model's default (tcp on the service port) when it has none."""
    hc = dict(svc.get("health_check") or {})
    hc["type"] = str(hc.get("type") or "tcp").lower()
    hc["port"] = int(hc.get("port") or svc["port"])
    return hc


def service_problem(svc: dict[str, Any]) -> str:
    """What in the service model the LoadMaster cannot do, or "" (checked before any request)."""
    name = svc["name"]
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
    out = {"NickName": svc["name"], "Enable": "Y", "Schedule": SCHEDULES[svc.get("lb_algo", "wlc")]}
    hc = _health_check(svc)
    out["CheckType"] = HEALTH_CHECKS[hc["type"]]
    if hc["type"] != "udp":  # a ping has no port
        out["CheckPort"] = str(hc["port"])
    if hc["type"] == "http":
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
    mode nothing is written and nothing waits."""

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
        self.before: list[str] = []
        self.after: list[str] = []

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
        """Route ("Direct return") rewrites only the destination MAC address, so
        a real server must be on a subnet of the LoadMaster; and Kemp's DSR is
        one-armed: the VIP on that same subnet. Checked from the LoadMaster's
        own interface list, before any change."""
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
                    raise KempError(
                        f"service {svc['name']}: VIP {vip} is not on the network of {label} at {where} ({shown}); "
                        f"Kemp's DSR works one-armed only, the VIP and its real servers on one subnet ({skip})"
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
        for svc in services:
            problem = service_problem(svc) if state == "present" else ""
            if problem:
                raise KempError(problem)
        current = {svc["name"]: self.client.find_vs(svc["vip"], svc["port"], svc["protocol"]) for svc in services}
        for svc in services:
            vs = current[svc["name"]]
            self.before += describe(svc, vs)
            if vs is not None and state == "present":
                problems = l7_problems(vs)
                if problems:
                    raise KempError(
                        f"virtual service {vs_label(svc)} on LoadMaster {self.client.address} uses "
                        f"{'; '.join(problems)}, which Direct Server Return cannot honour (the real servers answer "
                        "the clients directly, the LoadMaster sees only the requests at layer 4); turn it off "
                        "on the LoadMaster, or give the service another VIP"
                    )
        if state == "present" and self.check_networks and self.add:
            with_rs = [svc for svc in services if svc.get("real_servers")]
            if with_rs:
                self._check_networks(with_rs)
        leaving: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (service, Rs entry)
        expected: dict[str, dict[str, Any] | None] = {}
        for svc in services:
            vs = current[svc["name"]]
            if state == "absent":
                if vs is not None:
                    leaving += [(svc, r) for r in real_servers(vs)]
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
                if current[svc["name"]] is not None:
                    self._do(f"delete virtual service {vs_label(svc)}", self.client.del_vs,
                             svc["vip"], svc["port"], svc["protocol"])  # fmt: skip
        for svc in services:
            if self.check:
                self.after += describe(svc, expected[svc["name"]])
            else:
                got = self.client.find_vs(svc["vip"], svc["port"], svc["protocol"])
                self._verify(svc, expected[svc["name"]], got)
                self.after += describe(svc, got)
        return bool([a for a in self.actions if not a.startswith("wait ")])

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
                vs = {"VSAddress": vip, "VSPort": str(port), "Protocol": prot, "NickName": svc["name"], "Enable": "Y",
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
        for key, cur in have.items():
            if key not in wanted_keys:
                if self.purge:
                    leaving.append((svc, cur))
                else:
                    rs_after.append(cur)
        after["Rs"] = rs_after
        return after

    def _leaving(
        self, svc: dict[str, Any], vs: dict[str, Any] | None, leaving: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> dict[str, Any] | None:
        """Only the real servers of an existing Virtual Service that leave (with purge); the rest stays as it is."""
        if vs is None:
            return None
        wanted = {(_ip(rs["address"]), str(svc["port"])) for rs in svc.get("real_servers") or []}
        keep = []
        for r in real_servers(vs):
            if self.purge and (_ip(r.get("Addr")), str(r.get("Port"))) not in wanted:
                leaving.append((svc, r))
            else:
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
        problems = self._vs_problems(svc, got, None) if self.add else []
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


def _ip(text: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(text).strip()))
    except ValueError:
        return str(text).strip().lower()


__all__ = [
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
    "real_servers",
    "service_problem",
    "split_address",
    "vs_settings",
]
