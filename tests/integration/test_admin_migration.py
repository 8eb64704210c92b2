"""Migration 0015 on a database that predates it: a policy in force with the old built-in
ColdArchiveClass (4 + 2, quorum 5) gets a successor version with the original design's 2-of-6,
a redefined class is left alone, and of the bootstrap tokens ever configured only the newest
stays in force. Real PostgreSQL; migrations before 0015 are applied first, rows written, then
the runner applies the rest."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.policy import COLD_ARCHIVE, dump_policy, load_policy
from schema.db import ensure_database
from schema.migrate import apply_migrations, available_migrations
from tests.support.database import PG_BASE

pytestmark = pytest.mark.integration

OLD_BUILTIN = """version: 1
default_class: StandardClass
classes:
  StandardClass:
    replication: {copies: 3, write_quorum: 2}
    min_regions: 2
  RegionalClass:
    replication: {copies: 2, write_quorum: 2}
    same_country: true
  ColdArchiveClass:
    erasure: {k: 4, m: 2, write_quorum: 5}
  Hot5:
    replication: {copies: 5, write_quorum: 3}
"""


@contextlib.asynccontextmanager
async def before_0015() -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    name = f"bp_mig_{os.getpid()}_{secrets.token_hex(3)}"
    url = f"{PG_BASE}/{name}"
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, mig_name, sql in available_migrations():
            if version < 15:
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    version,
                    mig_name,
                )
        yield url, conn
    finally:
        await conn.close()
        admin = await asyncpg.connect(f"{PG_BASE}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _store_policy(conn: asyncpg.Connection, version: int, document: str) -> None:
    await conn.execute(
        "INSERT INTO policies (version, document, source, sha256, applied_by)"
        " VALUES ($1, $2, $2, sha256(convert_to($2, 'UTF8')), 'admin')",
        version,
        document,
    )


async def test_stored_policy_with_the_old_builtin_is_migrated() -> None:
    assert dump_policy(load_policy(OLD_BUILTIN)) == OLD_BUILTIN  # it is a canonical document
    async with before_0015() as (url, conn):
        await _store_policy(conn, 1, "version: 1\n")  # history: never rewritten
        await _store_policy(conn, 2, OLD_BUILTIN)
        await conn.execute(
            "INSERT INTO admin_tokens (token_hash, role, created_at) VALUES"
            " ('old', 'admin', now() - interval '2 days'), ('new', 'admin', now())"
        )
        assert 15 in await apply_migrations(url)
        rows = await conn.fetch("SELECT * FROM policies ORDER BY version")
        assert [r["version"] for r in rows] == [1, 2, 3]
        assert rows[1]["document"] == OLD_BUILTIN
        migrated = rows[2]
        assert migrated["applied_by"] == "migration 0015"
        document = load_policy(migrated["document"])
        cold = document.get(COLD_ARCHIVE)
        assert (cold.k, cold.m, cold.write_quorum) == (2, 4, 4)
        assert document.get("Hot5").copies == 5  # the rest of the document is kept
        assert dump_policy(document) == migrated["document"]  # still canonical
        assert bytes(migrated["sha256"]) == hashlib.sha256(migrated["document"].encode()).digest()
        tokens = await conn.fetch(
            "SELECT token_hash, revoked_at IS NULL AS active FROM admin_tokens"
        )
        assert {r["token_hash"]: r["active"] for r in tokens} == {"old": False, "new": True}


async def test_a_redefined_cold_class_is_left_alone() -> None:
    custom = OLD_BUILTIN.replace(
        "    erasure: {k: 4, m: 2, write_quorum: 5}\n",
        "    erasure: {k: 4, m: 2, write_quorum: 5}\n    min_regions: 2\n",
    )
    assert dump_policy(load_policy(custom)) == custom
    async with before_0015() as (url, conn):
        await _store_policy(conn, 1, custom)
        await apply_migrations(url)
        assert await conn.fetchval("SELECT max(version) FROM policies") == 1
