"""The owner's RSA key pair: made once on first start, kept in the database (backups carry it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fedistream.store import meta
from fedistream.store.db import Database

PRIVATE_KEY = "private_key_pem"
PUBLIC_KEY = "public_key_pem"


@dataclass(frozen=True, slots=True)
class KeyPair:
    private_pem: str
    public_pem: str


def _generate() -> KeyPair:
    # 2048 bits is what Mastodon generates and every peer accepts (R11).
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private_pem=private_pem, public_pem=public_pem)


async def ensure_keypair(db: Database) -> KeyPair:
    private_pem = await meta.get(db, PRIVATE_KEY)
    public_pem = await meta.get(db, PUBLIC_KEY)
    if private_pem and public_pem:
        return KeyPair(private_pem=private_pem, public_pem=public_pem)
    pair = await asyncio.to_thread(_generate)
    async with db.transaction() as conn:
        # INSERT OR IGNORE semantics: if another process won the race, keep its key.
        await conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?), (?, ?)",
            (PRIVATE_KEY, pair.private_pem, PUBLIC_KEY, pair.public_pem),
        )
    stored_private = await meta.get(db, PRIVATE_KEY)
    stored_public = await meta.get(db, PUBLIC_KEY)
    assert stored_private and stored_public
    return KeyPair(private_pem=stored_private, public_pem=stored_public)
