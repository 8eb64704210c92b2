"""Public keys tenants publish, and the extra recipients an object's data key is wrapped for.

Both are metadata only: the gateway stores public keys and wrapped data keys, never anything
that could unwrap them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from core.errors import Conflict, NoSuchKey

__all__ = ["KeyRepository", "PublishedKey", "Recipient"]


@dataclass(frozen=True)
class PublishedKey:
    key_id: str
    key_version: int
    wrap_alg: str
    public_key_pem: str


@dataclass(frozen=True)
class Recipient:
    key_id: str
    key_version: int
    wrap_alg: str
    wrapped_key: bytes


class KeyRepository:
    async def publish(self, conn: asyncpg.Connection, tenant_id: int, key: PublishedKey) -> None:
        try:
            await conn.execute(
                "INSERT INTO tenant_public_keys (tenant_id, key_id, key_version, wrap_alg,"
                " public_key_pem) VALUES ($1, $2, $3, $4, $5)",
                tenant_id,
                key.key_id,
                key.key_version,
                key.wrap_alg,
                key.public_key_pem,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"key {key.key_id} v{key.key_version} is already published") from exc

    async def published(self, conn: asyncpg.Connection, tenant_id: int) -> list[PublishedKey]:
        rows = await conn.fetch(
            "SELECT key_id, key_version, wrap_alg, public_key_pem FROM tenant_public_keys"
            " WHERE tenant_id = $1 ORDER BY created_at, key_id, key_version",
            tenant_id,
        )
        return [PublishedKey(**dict(r)) for r in rows]

    async def add_recipient(
        self, conn: asyncpg.Connection, bucket_id: int, key: str, recipient: Recipient
    ) -> int:
        """Add (or replace) a recipient of the current version; returns the version's id."""
        version_pk = await conn.fetchval(
            "SELECT id FROM object_versions WHERE bucket_id = $1 AND key = $2 AND is_latest"
            " AND NOT is_delete_marker AND encrypted FOR UPDATE",
            bucket_id,
            key,
        )
        if version_pk is None:
            raise NoSuchKey(f"no encrypted object {key!r}")
        await conn.execute(
            "INSERT INTO object_recipients (version_pk, key_id, key_version, wrap_alg, wrapped_key)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version_pk, key_id, key_version)"
            " DO UPDATE SET wrap_alg = EXCLUDED.wrap_alg, wrapped_key = EXCLUDED.wrapped_key,"
            " added_at = now()",
            version_pk,
            recipient.key_id,
            recipient.key_version,
            recipient.wrap_alg,
            recipient.wrapped_key,
        )
        return int(version_pk)

    async def add_recipients(
        self, conn: asyncpg.Connection, version_pk: int, recipients: Sequence[Recipient]
    ) -> None:
        """Further recipients of a version being committed (in its transaction: an imported
        object is readable by every recipient from the moment it is visible)."""
        await conn.executemany(
            "INSERT INTO object_recipients (version_pk, key_id, key_version, wrap_alg, wrapped_key)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version_pk, key_id, key_version)"
            " DO UPDATE SET wrap_alg = EXCLUDED.wrap_alg, wrapped_key = EXCLUDED.wrapped_key",
            [(version_pk, r.key_id, r.key_version, r.wrap_alg, r.wrapped_key) for r in recipients],
        )

    async def recipients(self, conn: asyncpg.Connection, version_pk: int) -> list[Recipient]:
        rows = await conn.fetch(
            "SELECT key_id, key_version, wrap_alg, wrapped_key FROM object_recipients"
            " WHERE version_pk = $1 ORDER BY added_at, key_id",
            version_pk,
        )
        return [
            Recipient(r["key_id"], r["key_version"], r["wrap_alg"], bytes(r["wrapped_key"]))
            for r in rows
        ]
