"""scrypt password hashes."""

from __future__ import annotations

from fedistream.core.passwords import hash_password, verify_password


def test_round_trip_and_wrong_password() -> None:
    stored = hash_password("s3cret password", b"\x01" * 16)
    assert stored.startswith("scrypt$")
    assert "s3cret" not in stored
    assert verify_password("s3cret password", stored)
    assert not verify_password("s3cret passwore", stored)


def test_salt_changes_the_hash() -> None:
    assert hash_password("same", b"a" * 16) != hash_password("same", b"b" * 16)


def test_garbage_hash_never_verifies() -> None:
    for stored in ["", "plain", "scrypt$1$2$3", "bcrypt$x$y$z$a$b", "scrypt$x$8$1$AA==$AA=="]:
        assert not verify_password("anything", stored)
