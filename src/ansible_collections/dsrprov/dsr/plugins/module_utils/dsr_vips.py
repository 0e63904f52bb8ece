"""The rules a VIP list must satisfy, shared by the CLI, the filters and the modules.

This file is the single source of these rules: ``plugin_utils/vips.py`` (the
CLI and the filters, on the controller) re-exports it, and the Linux
real-server module imports it on the managed host. So: standard library only,
no Ansible import, Python 3.8 or newer (Debian 11 has 3.9).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Union

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class VipError(ValueError):
    """A VIP list breaks one of the rules; the message is one readable line."""


def parse_vip(text: Any) -> Address:
    """Parse one VIP, given bare or with a host prefix (/32 or /128)."""
    if not isinstance(text, str) or not text.strip():
        raise VipError(f"invalid VIP {text!r}: expected an IPv4 or IPv6 address")
    raw = text.strip()
    addr_part, _sep, prefix_part = raw.partition("/")
    if "%" in addr_part:
        # Python's ipaddress takes a zone ("fe80::1%eth0"), and keeps it in
        # str(): it would reach the hook and the unit. A VIP is global.
        raise VipError(f"invalid VIP {raw!r}: a VIP takes no zone id (%...)")
    try:
        addr = ipaddress.ip_address(addr_part)
    except ValueError:
        raise VipError(f"invalid VIP {raw!r}: not an IPv4 or IPv6 address") from None
    if prefix_part and (not prefix_part.isdigit() or int(prefix_part) != addr.max_prefixlen):
        raise VipError(f"invalid VIP {raw!r}: a VIP must be a host address (/{addr.max_prefixlen}), not /{prefix_part}")
    if addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_link_local:
        raise VipError(
            f"invalid VIP {raw!r}: unspecified, loopback, multicast and link-local addresses cannot be a VIP"
        )
    if addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255"):
        raise VipError(f"invalid VIP {raw!r}: the broadcast address cannot be a VIP")
    return addr


def check_vips(
    vips: Iterable[Any],
    host_addresses: Iterable[str] = (),
    *,
    allow_empty: bool = False,
) -> list[str]:
    """Validate a VIP list and return it normalised (bare, compressed form).

    ``host_addresses`` are the host's own addresses (interface or management
    addresses); a VIP equal to one of them would cut the host off or make it
    answer ARP for the VIP, so it is refused.
    """
    if isinstance(vips, (str, bytes)) or vips is None:
        raise VipError("the VIP list must be a list of addresses, not a single string")
    given = list(vips)
    parsed = [parse_vip(v) for v in given]
    if not parsed and not allow_empty:
        raise VipError("no VIP given: state 'present' needs at least one VIP")
    seen: dict[Address, str] = {}
    for original, addr in zip(given, parsed):  # noqa: B905 - same length; strict= needs Python 3.10
        if addr in seen:
            raise VipError(f"duplicate VIP {addr} (given as {seen[addr]!r} and {original!r})")
        seen[addr] = original
    own: set[Address] = set()
    for host_addr in host_addresses:
        try:
            own.add(ipaddress.ip_address(str(host_addr).split("/", 1)[0].split("%", 1)[0]))
        except ValueError:
            continue
    for addr in parsed:
        if addr in own:
            raise VipError(
                f"VIP {addr} is one of the host's own addresses: a VIP must be an address the host does not already use"
            )
    return [str(a) for a in parsed]


def vip_prefix(vip: str) -> str:
    """Return ``vip`` with its host prefix, e.g. ``10.0.0.1/32``."""
    addr = parse_vip(vip)
    return f"{addr}/{addr.max_prefixlen}"


def vip_family(vip: str) -> int:
    """Return 4 or 6."""
    return parse_vip(vip).version
