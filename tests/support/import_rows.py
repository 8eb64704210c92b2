"""Metadata rows an import test needs around its runs, written directly: a destination bucket,
a backend, and object versions with one replica each (as the write path would leave them).
Tests of the import tables use them instead of a running gateway. Also the source keys that
need URL encoding every import test lists (``SPECIAL_KEYS``)."""

from __future__ import annotations

import hashlib
import secrets

from schema.db import Database

__all__ = ["SPECIAL_KEYS", "destination", "stored_version"]

# moto cannot store a key with a newline (its router 404s), so none is here.
SPECIAL_KEYS = [
    "dir with space/ä ö ü.txt",
    "plus+sign&amp=1;x,y",
    "percent%2Fencoded%20%",
    "question?mark#hash",
    "unicode/日本語/ファイル.txt",
    "emoji/😀.bin",
    "tilde~star*'quote\"",
    "a/../b",  # would be normalised away by a careless URL builder
    "//double/slash",
    "./dot",
    "tab\tchar",
    "<xml>&entities;</xml>",
    "trailing/",
    "  leading spaces",
    "back\\slash",
]


async def destination(db: Database, tenant_id: int) -> tuple[int, int]:
    """A destination bucket and a backend, rows only."""
    async with db.transaction() as conn:
        bucket_id = await conn.fetchval(
            "INSERT INTO buckets (tenant_id, name) VALUES ($1, $2) RETURNING id",
            tenant_id,
            f"dest-{secrets.token_hex(3)}",
        )
        backend_id = await conn.fetchval(
            "INSERT INTO backends (name, kind, path, region, country, jurisdiction)"
            " VALUES ($1, 'local', '/x', 'eu-1', 'DE', 'EU') RETURNING id",
            f"b{secrets.token_hex(4)}",
        )
    return bucket_id, backend_id


async def stored_version(
    db: Database, tenant_id: int, bucket_id: int, backend_id: int, key: str, status: str = "ok"
) -> int:
    """An object version with one replica in ``status`` (as the write path would leave it)."""
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE object_versions SET is_latest = FALSE WHERE bucket_id = $1 AND key = $2",
            bucket_id,
            key,
        )
        pk = await conn.fetchval(
            "INSERT INTO object_versions (tenant_id, bucket_id, key, version_id, is_latest,"
            " redundancy_class, encrypted, null_version) VALUES ($1, $2, $3, $4, TRUE,"
            " 'RegionalClass', FALSE, FALSE) RETURNING id",
            tenant_id,
            bucket_id,
            key,
            secrets.token_hex(8),
        )
        await conn.execute(
            "INSERT INTO replicas (version_pk, backend_id, locator, part_number, size, sha256,"
            " status) VALUES ($1, $2, $3, 0, 1, $4, $5)",
            pk,
            backend_id,
            secrets.token_hex(16),
            hashlib.sha256(b"x").digest(),
            status,
        )
    return int(pk)
