"""The SSRF rule book: which addresses a fetch may reach, and IPv4 spellings libc accepts."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from fedistream.core.netsafety import is_forbidden_address, parse_ip_literal

FORBIDDEN = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "127.0.0.1",
    "127.255.0.9",
    "169.254.169.254",  # cloud metadata
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",  # TEST-NET-1
    "192.88.99.1",
    "192.168.0.1",
    "198.18.0.1",  # benchmarking
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",  # deprecated IPv4-compatible
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.1.1.1",
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "100::1",  # discard-only
    "2001::1",  # Teredo
    "2001:2::1",  # benchmarking
    "2001:db8::1",  # documentation
    "3fff::1",
    "fc00::1",
    "fd12:3456::1",  # unique-local
    "fe80::1",  # link-local
    "fe80::1%eth0",
    "fec0::1",  # site-local
    "ff02::1",  # multicast
    "5f00::1",  # SRv6 SIDs
]

ALLOWED = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above
    "169.253.255.255",
    "192.169.0.1",
    "198.20.0.1",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "2001:4860:4860::8888",  # outside 2001::/23
    "::ffff:1.1.1.1",  # IPv4-mapped public
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8 (DNS64 networks)
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("text", FORBIDDEN)
def test_forbidden(text: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(text)) is True


@pytest.mark.parametrize("text", ALLOWED)
def test_allowed(text: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(text)) is False


LITERALS = [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),  # one 32-bit number
    ("0177.0.0.1", "127.0.0.1"),  # octal
    ("0x7f.1", "127.0.0.1"),  # hex, last part fills three bytes
    ("0x7F000001", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0x7f.0.0.0x1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),  # glibc reads a bare 0x as zero
    ("169.254.43518", "169.254.169.254"),
    ("10.0.0.1.", "10.0.0.1"),  # FQDN trailing dot
    ("1.16777215", "1.255.255.255"),
    ("8.8.8.8", "8.8.8.8"),
    ("[::1]", "::1"),
    ("::1", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("[fe80::1%25eth0]", "fe80::1%eth0"),
]


@pytest.mark.parametrize(("host", "expected"), LITERALS)
def test_ip_literals_in_every_spelling(host: str, expected: str) -> None:
    assert parse_ip_literal(host) == ipaddress.ip_address(expected)


NOT_LITERALS = [
    "example.com",
    "localhost",
    "0x7f.example",
    "08.0.0.1",  # 8 is not an octal digit: inet_aton refuses
    "1_0.0.0.1",  # int() would take the underscore; inet_aton does not
    "+1.2.3.4",
    "1.2.3.4.5",
    "256.1.1.1",
    "1.2.3.256",
    "1.16777216",
    "4294967296",
    "1..2",
    "",
    "[not-ip]",
    "١٢٧.0.0.1",  # non-ASCII digits
]


@pytest.mark.parametrize("host", NOT_LITERALS)
def test_names_are_not_literals(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "0x7f.0.0.0x1", "10.0.0.1", "08.0.0.1"],
)
def test_agrees_with_libc_inet_aton(host: str) -> None:
    # The reason this parser exists: whatever libc would connect to, we classify the same.
    try:
        libc = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        libc = None
    assert parse_ip_literal(host) == libc
