"""Which network addresses an outgoing fetch may reach (the SSRF guard's rule book). Pure.

A peer controls the URLs we fetch (actor ids, key ids, inboxes, WebFinger domains), so without
this rule a hostile actor could make us GET our own admin pages, a cloud metadata service
(169.254.169.254) or anything else on the private network. The HTTP client checks every address
a host resolves to with `is_forbidden_address` before connecting (federation/http.py).
"""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address

# Written out instead of trusting `ip.is_global`, whose meaning has changed between Python
# releases (and which calls multicast "global"). Sources: the IANA special-purpose registries.
_FORBIDDEN_V4 = tuple(
    IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches localhost on Linux
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT (shared address space)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, home of cloud metadata services
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1 (documentation)
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
    )
)

# IPv6 is judged by allowlist: only 2000::/3 is global unicast today, so everything outside it
# (::, ::1, ::/96 IPv4-compatible, 100::/64 discard, fc00::/7 unique-local, fe80::/10 link-local,
# fec0::/10 site-local, ff00::/8 multicast, 64:ff9b:1::/48 local NAT64, 5f00::/16 SRv6) is
# refused, except the two prefixes that merely wrap an IPv4 address (judged by that address).
_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
_FORBIDDEN_V6 = tuple(
    IPv6Network(net)
    for net in (
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, benchmarking 2001:2::/48…)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
_IPV4_MAPPED = IPv6Network("::ffff:0:0/96")  # ::ffff:a.b.c.d — a plain IPv4 socket address
_NAT64 = IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: the gateway reaches a.b.c.d
_SIX_TO_FOUR = IPv6Network("2002::/16")  # 6to4: 2002:AABB:CCDD::/48 routes to aa.bb.cc.dd


def is_forbidden_address(ip: IPAddress) -> bool:
    """True when an outgoing request must not connect to `ip` (not a public unicast address)."""
    if isinstance(ip, IPv4Address):
        return any(ip in net for net in _FORBIDDEN_V4)
    ip = IPv6Address(ip.packed)  # drop any %scope: it does not change the address class
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return is_forbidden_address(embedded)
    if ip not in _GLOBAL_UNICAST_V6:
        return True
    return any(ip in net for net in _FORBIDDEN_V6)


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 address actually leads to."""
    if ip in _IPV4_MAPPED or ip in _NAT64:
        return IPv4Address(ip.packed[12:])
    if ip in _SIX_TO_FOUR:
        return IPv4Address(ip.packed[2:6])
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address `host` names literally, or None when it is a name to resolve.

    Accepts bracketed or bare IPv6 and every IPv4 spelling libc's inet_aton takes, because
    getaddrinfo() would connect to them: `2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return IPv6Address(text.replace("%25", "%"))  # URLs escape the zone's "%"
        except ValueError:
            return None
    return _inet_aton(text.removesuffix("."))  # a trailing dot is the FQDN spelling


def _inet_aton(text: str) -> IPv4Address | None:
    # inet_aton: 1–4 parts, each decimal, octal (leading 0) or hex (0x); the last part fills
    # all remaining bytes, so "127.1" is 127.0.0.1 and "2130706433" is 127.0.0.1 too.
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _inet_number(part)
        if value is None:
            return None
        values.append(value)
    *leading, last = values
    if any(v > 0xFF for v in leading):
        return None
    if last >= 1 << (8 * (4 - len(leading))):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (8 * (3 - index))
    return IPv4Address(number)


def _inet_number(part: str) -> int | None:
    # Strict character classes: Python's int() would also take "_", signs and spaces.
    if _HEX.fullmatch(part):
        return int(part[2:] or "0", 16)  # glibc reads a bare "0x" as zero
    if _OCTAL.fullmatch(part):
        return int(part, 8)
    if _DECIMAL.fullmatch(part):
        return int(part, 10)
    return None


_HEX = re.compile(r"0[xX][0-9a-fA-F]*", re.ASCII)
_OCTAL = re.compile(r"0[0-7]*", re.ASCII)
_DECIMAL = re.compile(r"[1-9][0-9]*", re.ASCII)


def ip_address(text: str) -> IPAddress:
    """The address in `text` (a getaddrinfo result), scope id dropped."""
    return ipaddress.ip_address(text.split("%", 1)[0])
