"""Tenants and their SigV4 access keys (secrets sealed under the master key): create, list,
show, disable/enable, delete; several keys per tenant, each disabled, deleted or given a new
secret on its own.

A disabled tenant's keys and a disabled key are refused by ``get_access_key`` (the one lookup
authentication uses); the caller of a change invalidates the cached identities
(``schema.cache.CachedReader.invalidate_access_key``) after the commit. A tenant is deleted
only when it holds no bucket (``Conflict`` otherwise).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core.errors import Conflict, NotFound
from core.placement import PlacementConstraints
from schema.records import AccessKey, Tenant

__all__ = [
    "TENANT_PLACEMENT_COLUMNS",
    "AccessKeyInfo",
    "TenantPlacement",
    "TenantRepository",
    "TenantSummary",
    "tenant_placement",
]


@dataclass(frozen=True)
class TenantSummary:
    """A tenant as the admin API lists it."""

    id: int
    name: str
    allow_plaintext: bool
    disabled: bool
    created_at: datetime
    keys: int
    buckets: int


@dataclass(frozen=True)
class AccessKeyInfo:
    """An access key as the admin API lists it (never its secret)."""

    access_key_id: str
    created_at: datetime
    disabled: bool


@dataclass(frozen=True)
class TenantPlacement:
    """Where a tenant's data may go, as stored: every field constrains every bucket of the
    tenant, on top of the bucket's own lock. ``allowed_backends`` is None when the tenant has no
    allow-list (any backend), otherwise the names of the backends it may use."""

    tenant_id: int
    name: str
    default_class: str | None
    region_lock: tuple[str, ...]
    jurisdiction_allow: tuple[str, ...]
    jurisdiction_deny: tuple[str, ...]
    allowed_backends: tuple[str, ...] | None

    @property
    def constraints(self) -> PlacementConstraints:
        """The tenant's own rules as placement constraints (no bucket's lock): what every
        bucket of the tenant obeys, and what decides which backends the tenant may use."""
        return PlacementConstraints(
            tenant_region_lock=frozenset(self.region_lock),
            jurisdiction_allow=frozenset(self.jurisdiction_allow),
            jurisdiction_deny=frozenset(self.jurisdiction_deny),
            allowed_backends=(
                None if self.allowed_backends is None else frozenset(self.allowed_backends)
            ),
        )


def _tenant(row: asyncpg.Record) -> Tenant:
    return Tenant(
        id=row["id"],
        name=row["name"],
        allow_plaintext=row["allow_plaintext"],
        region_lock=tuple(row["region_lock"]),
        default_class=row["default_class"],
    )


#: The columns ``tenant_placement`` reads, for a query with the tenants table aliased ``t``.
TENANT_PLACEMENT_COLUMNS = (
    "t.id AS t_id, t.name AS t_name, t.default_class AS t_default_class,"
    " t.region_lock AS t_region_lock, t.jurisdiction_allow AS t_jurisdiction_allow,"
    " t.jurisdiction_deny AS t_jurisdiction_deny,"
    " ARRAY(SELECT bk.name FROM tenant_backends tb JOIN backends bk ON bk.id = tb.backend_id"
    " WHERE tb.tenant_id = t.id ORDER BY bk.name) AS t_allowed_backends"
)


def tenant_placement(row: asyncpg.Record) -> TenantPlacement:
    allowed = tuple(row["t_allowed_backends"])
    return TenantPlacement(
        tenant_id=row["t_id"],
        name=row["t_name"],
        default_class=row["t_default_class"],
        region_lock=tuple(row["t_region_lock"]),
        jurisdiction_allow=tuple(row["t_jurisdiction_allow"]),
        jurisdiction_deny=tuple(row["t_jurisdiction_deny"]),
        allowed_backends=allowed or None,
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
            " WHERE k.access_key_id = $1 AND k.revoked_at IS NULL AND k.disabled_at IS NULL"
            " AND t.disabled_at IS NULL",
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

    # -- administration (issue 13) --------------------------------------------------------------
    async def summaries(
        self, conn: asyncpg.Connection, name: str | None = None
    ) -> builtins.list[TenantSummary]:
        """Every tenant (or the one called ``name``) with its key and bucket counts."""
        rows = await conn.fetch(
            "SELECT t.id, t.name, t.allow_plaintext, t.disabled_at IS NOT NULL AS disabled,"
            " t.created_at,"
            " (SELECT count(*) FROM access_keys k WHERE k.tenant_id = t.id) AS keys,"
            " (SELECT count(*) FROM buckets b WHERE b.tenant_id = t.id) AS buckets"
            " FROM tenants t WHERE $1::text IS NULL OR t.name = $1 ORDER BY t.name",
            name,
        )
        if name is not None and not rows:
            raise NotFound(f"no tenant {name!r}")
        return [TenantSummary(**dict(r)) for r in rows]

    async def set_disabled(self, conn: asyncpg.Connection, tenant_id: int, disabled: bool) -> None:
        await conn.execute(
            "UPDATE tenants SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now())"
            " END WHERE id = $1",
            tenant_id,
            disabled,
        )

    async def delete(self, conn: asyncpg.Connection, tenant_id: int) -> builtins.list[str]:
        """Delete a tenant that holds no bucket, with its keys, allow-list and published
        public keys; the deleted access key ids (for the cache). ``Conflict`` while it has
        buckets or other records (import history) refer to it."""
        await conn.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant_id)
        buckets = await conn.fetchval(
            "SELECT count(*) FROM buckets WHERE tenant_id = $1", tenant_id
        )
        if buckets:
            raise Conflict(f"the tenant still has {buckets} bucket(s); delete them first")
        keys = await conn.fetch(
            "DELETE FROM access_keys WHERE tenant_id = $1 RETURNING access_key_id", tenant_id
        )
        await conn.execute("DELETE FROM tenant_backends WHERE tenant_id = $1", tenant_id)
        await conn.execute("DELETE FROM tenant_public_keys WHERE tenant_id = $1", tenant_id)
        try:
            async with conn.transaction():  # a savepoint: the FK error names what is left
                await conn.execute("DELETE FROM tenants WHERE id = $1", tenant_id)
        except asyncpg.ForeignKeyViolationError as exc:
            raise Conflict(
                f"records in {exc.table_name or 'another table'} still refer to the tenant"
            ) from exc
        return [r["access_key_id"] for r in keys]

    async def access_keys(
        self, conn: asyncpg.Connection, tenant_id: int
    ) -> builtins.list[AccessKeyInfo]:
        rows = await conn.fetch(
            "SELECT access_key_id, created_at, disabled_at IS NOT NULL AS disabled"
            " FROM access_keys WHERE tenant_id = $1 AND revoked_at IS NULL"
            " ORDER BY created_at, access_key_id",
            tenant_id,
        )
        return [AccessKeyInfo(**dict(r)) for r in rows]

    async def key_ids(self, conn: asyncpg.Connection, tenant_id: int) -> builtins.list[str]:
        """Every access key id of the tenant, whatever its state (for the cache)."""
        rows = await conn.fetch(
            "SELECT access_key_id FROM access_keys WHERE tenant_id = $1", tenant_id
        )
        return [r["access_key_id"] for r in rows]

    async def _key_row(self, conn: asyncpg.Connection, tenant_id: int, key_id: str) -> None:
        found = await conn.fetchval(
            "SELECT 1 FROM access_keys WHERE tenant_id = $1 AND access_key_id = $2"
            " AND revoked_at IS NULL FOR UPDATE",
            tenant_id,
            key_id,
        )
        if not found:
            raise NotFound(f"the tenant has no access key {key_id!r}")

    async def set_key_disabled(
        self, conn: asyncpg.Connection, tenant_id: int, key_id: str, disabled: bool
    ) -> None:
        await self._key_row(conn, tenant_id, key_id)
        await conn.execute(
            "UPDATE access_keys SET disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, now())"
            " END WHERE tenant_id = $1 AND access_key_id = $2",
            tenant_id,
            key_id,
            disabled,
        )

    async def delete_key(self, conn: asyncpg.Connection, tenant_id: int, key_id: str) -> None:
        await self._key_row(conn, tenant_id, key_id)
        await conn.execute(
            "DELETE FROM access_keys WHERE tenant_id = $1 AND access_key_id = $2",
            tenant_id,
            key_id,
        )

    async def replace_secret(
        self, conn: asyncpg.Connection, tenant_id: int, key_id: str, sealed_secret: bytes
    ) -> None:
        """Give a key a new (sealed) secret; the old one stops working at the commit."""
        await self._key_row(conn, tenant_id, key_id)
        await conn.execute(
            "UPDATE access_keys SET sealed_secret = $3 WHERE tenant_id = $1 AND access_key_id = $2",
            tenant_id,
            key_id,
            sealed_secret,
        )

    # -- placement settings (policy engine) ---------------------------------------------------
    async def placement(
        self, conn: asyncpg.Connection, tenant_id: int, *, lock: bool = False
    ) -> TenantPlacement:
        """The tenant's placement settings, in one query. ``lock`` reads the row ``FOR SHARE``
        (serialises with a concurrent ``set_placement``)."""
        row = await conn.fetchrow(
            f"SELECT {TENANT_PLACEMENT_COLUMNS} FROM tenants t WHERE t.id = $1"
            + (" FOR SHARE" if lock else ""),
            tenant_id,
        )
        if row is None:
            raise NotFound(f"no tenant {tenant_id}")
        return tenant_placement(row)

    async def set_placement(
        self,
        conn: asyncpg.Connection,
        tenant_id: int,
        *,
        default_class: str | None,
        region_lock: Sequence[str],
        jurisdiction_allow: Sequence[str],
        jurisdiction_deny: Sequence[str],
        allowed_backend_ids: Sequence[int] | None,
    ) -> tuple[TenantPlacement, TenantPlacement]:
        """Replace the tenant's placement settings; returns (before, after).

        ``allowed_backend_ids=None`` removes the allow-list. The tenant row is locked first
        (see ``placement(lock=True)``).
        """
        await conn.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant_id)
        before = await self.placement(conn, tenant_id)
        await conn.execute(
            "UPDATE tenants SET default_class = $2, region_lock = $3, jurisdiction_allow = $4,"
            " jurisdiction_deny = $5 WHERE id = $1",
            tenant_id,
            default_class,
            list(region_lock),
            list(jurisdiction_allow),
            list(jurisdiction_deny),
        )
        await conn.execute("DELETE FROM tenant_backends WHERE tenant_id = $1", tenant_id)
        if allowed_backend_ids:
            await conn.executemany(
                "INSERT INTO tenant_backends (tenant_id, backend_id) VALUES ($1, $2)",
                [(tenant_id, b) for b in sorted(set(allowed_backend_ids))],
            )
        return before, await self.placement(conn, tenant_id)
