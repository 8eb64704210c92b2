"""Tenants, their SigV4 access keys (secrets sealed under the master key) and admin tokens."""

from __future__ import annotations

import asyncpg

from cluster.errors import Conflict, NotFound
from schema.records import AccessKey, Tenant

__all__ = ["TenantRepository"]


def _tenant(row: asyncpg.Record) -> Tenant:
    return Tenant(
        id=row["id"],
        name=row["name"],
        allow_plaintext=row["allow_plaintext"],
        region_lock=tuple(row["region_lock"]),
        default_class=row["default_class"],
    )


class TenantRepository:
    async def create(
        self,
        conn: asyncpg.Connection,
        name: str,
        *,
        allow_plaintext: bool = False,
        region_lock: tuple[str, ...] = (),
        default_class: str | None = None,
    ) -> Tenant:
        try:
            row = await conn.fetchrow(
                "INSERT INTO tenants (name, allow_plaintext, region_lock, default_class)"
                " VALUES ($1, $2, $3, $4) RETURNING *",
                name,
                allow_plaintext,
                list(region_lock),
                default_class,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"tenant {name!r} already exists") from exc
        except asyncpg.CheckViolationError as exc:
            raise Conflict(f"invalid tenant name {name!r}") from exc
        assert row is not None
        return _tenant(row)

    async def get_by_name(self, conn: asyncpg.Connection, name: str) -> Tenant:
        row = await conn.fetchrow("SELECT * FROM tenants WHERE name = $1", name)
        if row is None:
            raise NotFound(f"no tenant {name!r}")
        return _tenant(row)

    async def list(self, conn: asyncpg.Connection) -> list[Tenant]:
        return [_tenant(r) for r in await conn.fetch("SELECT * FROM tenants ORDER BY id")]

    async def add_access_key(
        self, conn: asyncpg.Connection, tenant_id: int, access_key_id: str, sealed_secret: bytes
    ) -> None:
        await conn.execute(
            "INSERT INTO access_keys (access_key_id, tenant_id, sealed_secret) VALUES ($1, $2, $3)",
            access_key_id,
            tenant_id,
            sealed_secret,
        )

    async def get_access_key(
        self, conn: asyncpg.Connection, access_key_id: str
    ) -> AccessKey | None:
        row = await conn.fetchrow(
            "SELECT k.access_key_id, k.tenant_id, k.sealed_secret, t.name, t.allow_plaintext"
            " FROM access_keys k JOIN tenants t ON t.id = k.tenant_id"
            " WHERE k.access_key_id = $1 AND k.revoked_at IS NULL",
            access_key_id,
        )
        if row is None:
            return None
        return AccessKey(
            access_key_id=row["access_key_id"],
            tenant_id=row["tenant_id"],
            sealed_secret=bytes(row["sealed_secret"]),
            tenant_name=row["name"],
            allow_plaintext=row["allow_plaintext"],
        )

    async def get(self, conn: asyncpg.Connection, tenant_id: int) -> Tenant:
        row = await conn.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)
        if row is None:
            raise NotFound(f"no tenant {tenant_id}")
        return _tenant(row)

    async def put_admin_token(self, conn: asyncpg.Connection, token_hash: str, role: str) -> None:
        await conn.execute(
            "INSERT INTO admin_tokens (token_hash, role) VALUES ($1, $2)"
            " ON CONFLICT (token_hash) DO UPDATE SET role = EXCLUDED.role",
            token_hash,
            role,
        )

    async def admin_role(self, conn: asyncpg.Connection, token_hash: str) -> str | None:
        role: str | None = await conn.fetchval(
            "SELECT role FROM admin_tokens WHERE token_hash = $1", token_hash
        )
        return role
