"""The one seam between asyncpg and the rest: pool creation, transactions, error mapping.

Every repository runs its SQL on a connection handed to it, so callers compose several
repositories in one transaction (the transactional outbox of invariant 5). Connection-level
failures surface as ``MetadataUnavailable`` (a 503), never as an asyncpg exception.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from core.errors import MetadataUnavailable

__all__ = ["Database", "count_tables", "ensure_database", "jsonb_dict", "translate_errors"]


def jsonb_dict(value: object) -> dict[str, str]:
    """A JSONB object column as a dict. Pools from ``Database`` decode JSONB already (see the
    codec below); a connection without the codec returns text, which is decoded here."""
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})  # type: ignore[call-overload]


_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)


@contextlib.asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise MetadataUnavailable(f"metadata database unavailable: {type(exc).__name__}") from exc


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Database:
    """An asyncpg pool plus the helpers every repository uses."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> Database:
        async with translate_errors():
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                command_timeout=30,
                max_inactive_connection_lifetime=60,
            )
        assert pool is not None
        return cls(pool)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside one transaction; commits on normal exit, rolls back on error."""
        async with translate_errors(), self.pool.acquire() as conn, conn.transaction():
            yield conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with translate_errors(), self.pool.acquire() as conn:
            yield conn

    async def now(self) -> datetime:
        """The database's clock (a start time comparable with the rows' own timestamps: a
        process's clock is not)."""
        async with self.connection() as conn:
            value: datetime = await conn.fetchval("SELECT now()")
        return value

    async def ping(self) -> None:
        """One round trip; raises (``MetadataUnavailable``) if the database does not answer."""
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        await self.pool.close()


async def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if it does not exist (connects to ``postgres``);
    whether this call created it."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    async with translate_errors():
        conn = await asyncpg.connect(admin_url)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                quoted = '"' + name.replace('"', '""') + '"'
                try:
                    await conn.execute(f"CREATE DATABASE {quoted}")
                except asyncpg.DuplicateDatabaseError:
                    return False
                return True
            return False
        finally:
            await conn.close()


async def count_tables(url: str) -> int:
    """How many tables the database at ``url`` has outside the system schemas."""
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
    finally:
        await conn.close()
    return count
