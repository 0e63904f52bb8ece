"""Facts of a Windows host, read over WinRM (HTTPS, certificate validated).

One PowerShell script prints one JSON document (:data:`PROBE_PS`);
:func:`parse_windows_facts` turns it into :class:`WindowsFacts`. The parser
accepts what Windows PowerShell 5.1 and PowerShell 7 really emit: a UTF-8 BOM,
CRLF, a single-element array flattened into an object, enums as names or as
numbers. Nothing here changes the host.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsrprov.connect.linux_facts import Listener
from dsrprov.errors import ConnectError, FailedError

PASSWORD_ENV = "DSRPROV_WINRM_PASSWORD"
LOOPBACK_HWID = "*msloop"

PROBE_PS = r"""
$ErrorActionPreference = 'SilentlyContinue'
$ProgressPreference = 'SilentlyContinue'
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$r = [ordered]@{
    hostname = [string]$env:COMPUTERNAME
    os_caption = [string]$os.Caption
    os_build = [int][System.Environment]::OSVersion.Version.Build
    adapters = @(Get-NetAdapter -IncludeHidden | ForEach-Object { [ordered]@{
        name = [string]$_.Name; ifindex = [int]$_.ifIndex; description = [string]$_.InterfaceDescription
        component_id = [string]$_.ComponentID; mac = [string]$_.MacAddress; status = [string]$_.Status } })
    addresses = @(Get-NetIPAddress | ForEach-Object { [ordered]@{
        ifindex = [int]$_.InterfaceIndex; alias = [string]$_.InterfaceAlias
        address = ([string]$_.IPAddress -split '%')[0]; prefix = [int]$_.PrefixLength
        family = [string]$_.AddressFamily; skip_as_source = [bool]$_.SkipAsSource } })
    interfaces = @(Get-NetIPInterface | ForEach-Object { [ordered]@{
        ifindex = [int]$_.ifIndex; alias = [string]$_.InterfaceAlias; family = [string]$_.AddressFamily
        metric = [int]$_.InterfaceMetric; automatic_metric = [string]$_.AutomaticMetric
        weak_host_send = [string]$_.WeakHostSend; weak_host_receive = [string]$_.WeakHostReceive } })
    listeners = @(@(Get-NetTCPConnection -State Listen | ForEach-Object { [ordered]@{
        protocol = 'tcp'; address = [string]$_.LocalAddress; port = [int]$_.LocalPort } }) +
        @(Get-NetUDPEndpoint | ForEach-Object { [ordered]@{
        protocol = 'udp'; address = [string]$_.LocalAddress; port = [int]$_.LocalPort } }))
    profiles = @(Get-NetConnectionProfile | ForEach-Object { [ordered]@{
        ifindex = [int]$_.InterfaceIndex; category = [string]$_.NetworkCategory } })
    dns = @(Get-DnsClient | ForEach-Object { [ordered]@{
        ifindex = [int]$_.InterfaceIndex; register = [bool]$_.RegisterThisConnectionsAddress } })
    public_firewall = [string](Get-NetFirewallProfile -Name Public).Enabled
    firewall_rules = @(Get-NetFirewallRule -Direction Inbound -Action Allow -Enabled True |
        Where-Object { $_.Name -like 'dsrprov*' } | ForEach-Object { [ordered]@{
        name = [string]$_.Name; profile = [string]$_.Profile } })
}
$r | ConvertTo-Json -Depth 4 -Compress
"""

_FAMILY = {"2": "IPv4", "23": "IPv6", "ipv4": "IPv4", "ipv6": "IPv6"}
_SWITCH = {"0": "Disabled", "1": "Enabled", "disabled": "Disabled", "enabled": "Enabled", "false": "Disabled"}


@dataclass
class WinAdapter:
    name: str
    ifindex: int
    description: str = ""
    component_id: str = ""
    mac: str = ""

    @property
    def is_loopback(self) -> bool:
        return self.component_id.lower() == LOOPBACK_HWID or self.description.startswith(
            "Microsoft KM-TEST Loopback Adapter"
        )


@dataclass
class WinAddress:
    ifindex: int
    alias: str
    address: str
    prefix: int
    family: str
    skip_as_source: bool = False


@dataclass
class WinInterface:
    ifindex: int
    alias: str
    family: str
    metric: int
    automatic_metric: str
    weak_host_send: str
    weak_host_receive: str


@dataclass
class WindowsFacts:
    hostname: str = ""
    os: str = ""
    os_build: int = 0
    adapters: list[WinAdapter] = field(default_factory=list)
    addresses: list[WinAddress] = field(default_factory=list)
    interfaces: list[WinInterface] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    # Read by doctor; empty when the probe (or a recording) did not say.
    profiles: dict[int, str] = field(default_factory=dict)  # ifindex -> Public, Private, DomainAuthenticated
    dns_register: dict[int, bool] = field(default_factory=dict)  # ifindex -> RegisterThisConnectionsAddress
    public_firewall: str = ""  # "True" / "False" (GpoBoolean), "" unknown
    firewall_rules: list[tuple[str, str]] = field(default_factory=list)  # (name, profile) of dsrprov's allow rules

    @property
    def loopbacks(self) -> list[WinAdapter]:
        return [a for a in self.adapters if a.is_loopback]

    @property
    def loopback_indexes(self) -> set[int]:
        return {a.ifindex for a in self.loopbacks}

    @property
    def own_addresses(self) -> list[str]:
        """Addresses outside the KM-TEST loopback (those are VIPs), 127.0.0.1/::1 excluded."""
        out = []
        for a in self.addresses:
            if a.ifindex in self.loopback_indexes:
                continue
            if ipaddress.ip_address(a.address).is_loopback:
                continue
            out.append(a.address)
        return out

    def loopback_vips(self) -> list[str]:
        return [
            a.address
            for a in self.addresses
            if a.ifindex in self.loopback_indexes and a.prefix == (32 if a.family == "IPv4" else 128)
        ]

    def interface(self, ifindex: int, family: str) -> WinInterface | None:
        for i in self.interfaces:
            if i.ifindex == ifindex and i.family == family:
                return i
        return None

    def adapter_holding(self, address: str) -> WinAdapter | None:
        for a in self.addresses:
            if a.address == address:
                for ad in self.adapters:
                    if ad.ifindex == a.ifindex:
                        return ad
        return None

    @property
    def macs(self) -> dict[str, str]:
        return {a.name: a.mac for a in self.adapters if a.mac and not a.is_loopback}


def _items(value: Any) -> list[dict[str, Any]]:
    """PowerShell 5.1 may flatten a one-element array into the object itself."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)]


def _family(value: Any) -> str:
    return _FAMILY.get(str(value).strip().lower(), str(value))


def _switch(value: Any) -> str:
    return _SWITCH.get(str(value).strip().lower(), str(value))


def _mac(value: Any) -> str:
    return str(value or "").replace("-", ":").lower()


def parse_windows_facts(text: str) -> WindowsFacts:
    """The probe's JSON (as received over WinRM) to facts; FailedError if it is no JSON."""
    cleaned = text.lstrip("\ufeff").strip()
    start = cleaned.find("{")
    try:
        data = json.loads(cleaned[start:] if start >= 0 else cleaned)
    except json.JSONDecodeError as exc:
        raise FailedError(f"the Windows probe did not return JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(data, dict):
        raise FailedError("the Windows probe returned JSON that is not an object")
    listeners = []
    for item in _items(data.get("listeners")):
        addr = str(item.get("address", "")).split("%")[0]
        listeners.append(Listener(str(item.get("protocol", "tcp")).lower(), addr or "*", int(item.get("port", 0))))
    return WindowsFacts(
        hostname=str(data.get("hostname", "")),
        os=str(data.get("os_caption", "")),
        os_build=int(data.get("os_build") or 0),
        adapters=[
            WinAdapter(
                str(a.get("name", "")),
                int(a.get("ifindex", 0)),
                str(a.get("description", "")),
                str(a.get("component_id", "")),
                _mac(a.get("mac")),
            )
            for a in _items(data.get("adapters"))
        ],
        addresses=[
            WinAddress(
                int(a.get("ifindex", 0)),
                str(a.get("alias", "")),
                str(a.get("address", "")).split("%")[0],
                int(a.get("prefix", 0)),
                _family(a.get("family")),
                bool(a.get("skip_as_source", False)),
            )
            for a in _items(data.get("addresses"))
        ],
        interfaces=[
            WinInterface(
                int(i.get("ifindex", 0)),
                str(i.get("alias", "")),
                _family(i.get("family")),
                int(i.get("metric", 0)),
                _switch(i.get("automatic_metric")),
                _switch(i.get("weak_host_send")),
                _switch(i.get("weak_host_receive")),
            )
            for i in _items(data.get("interfaces"))
        ],
        listeners=listeners,
        profiles={int(p.get("ifindex", 0)): str(p.get("category", "")) for p in _items(data.get("profiles"))},
        dns_register={int(d.get("ifindex", 0)): bool(d.get("register", False)) for d in _items(data.get("dns"))},
        public_firewall=str(data.get("public_firewall", "") or ""),
        firewall_rules=[
            (str(r.get("name", "")), str(r.get("profile", ""))) for r in _items(data.get("firewall_rules"))
        ],
    )


@dataclass
class WinRMTarget:
    name: str
    address: str
    port: int = 5986
    user: str = ""
    transport: str = "ntlm"
    ca_trust_path: Path | None = None
    timeout: float = 10.0
    password: str | None = None

    def __repr__(self) -> str:
        return (
            f"WinRMTarget(name={self.name!r}, address={self.address!r}, port={self.port}, user={self.user!r}, "
            f"transport={self.transport!r}, ca_trust_path={self.ca_trust_path!r}, "
            f"password={'<set>' if self.password else None})"
        )

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}/wsman"


def probe(target: WinRMTarget) -> WindowsFacts:
    """Run the probe over WinRM/HTTPS; certificate validation is never turned off."""
    import requests
    import winrm
    import winrm.exceptions

    if not target.user or not target.password:
        raise ConnectError(
            f"no WinRM credentials: set ansible_user and the password in {PASSWORD_ENV} (or type it at the prompt)",
            target.name,
        )
    if target.ca_trust_path is not None and not target.ca_trust_path.exists():
        raise ConnectError(f"CA bundle {target.ca_trust_path} does not exist", target.name)
    ca: Any = str(target.ca_trust_path) if target.ca_trust_path else "legacy_requests"
    session = winrm.Session(
        target.endpoint,
        auth=(target.user, target.password),
        transport=target.transport,
        server_cert_validation="validate",
        ca_trust_path=ca,
        read_timeout_sec=target.timeout + 20,
        operation_timeout_sec=target.timeout + 10,
    )
    try:
        result = session.run_ps(PROBE_PS)
    except requests.exceptions.SSLError:
        raise ConnectError(
            f"the certificate of {target.endpoint} is not trusted (CA: {target.ca_trust_path or 'system store'}): "
            "refused",
            target.name,
        ) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
        raise ConnectError(f"unreachable: {target.endpoint}", target.name) from None
    except winrm.exceptions.InvalidCredentialsError:
        raise ConnectError(f"authentication failed for {target.user} at {target.endpoint}", target.name) from None
    except winrm.exceptions.WinRMError as exc:
        raise ConnectError(f"WinRM error at {target.endpoint}: {str(exc).splitlines()[0]}", target.name) from None
    if result.status_code != 0:
        raise FailedError(f"the Windows probe failed (exit {result.status_code})", target.name)
    facts = parse_windows_facts(result.std_out.decode("utf-8", errors="replace"))
    return facts
