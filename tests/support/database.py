"""A private PostgreSQL database per test module: created, migrated, dropped (with FORCE).

Tests that need only the metadata store (no Ray, no gateway) use it so they never see each
other's rows. ``BP_TEST_PG`` names the server (default: the local one). ``restart_postgres``
restarts the machine's PostgreSQL cluster (fault tests; skipped when
``BP_TEST_SKIP_PG_RESTART`` is set, see ``PG_RESTART_SKIPPED``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import AsyncIterator

import asyncpg

from schema.db import Database, ensure_database
from schema.migrate import apply_migrations

__all__ = [
    "PG_BASE",
    "PG_RESTART_SKIPPED",
    "private_database",
    "private_database_url",
    "restart_postgres",
]

PG_BASE = os.environ.get("BP_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
#: Fault tests that restart the machine's PostgreSQL are skipped when this is true.
PG_RESTART_SKIPPED = bool(os.environ.get("BP_TEST_SKIP_PG_RESTART"))


def restart_postgres() -> None:
    """Restart the machine's PostgreSQL cluster, and make sure it is up again whatever happens:
    a stop that times out (many open connections) must not leave every later test without a
    database."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    base = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
    try:
        subprocess.run([*base, "stop", "-m", "fast"], check=False, capture_output=True, timeout=120)
    finally:
        started = subprocess.run([*base, "start"], check=False, capture_output=True, timeout=120)
        status = subprocess.run([*base, "status"], check=False, capture_output=True, timeout=30)
        assert status.returncode == 0, (started.stderr, status.stdout)


@contextlib.asynccontextmanager
async def private_database_url(prefix: str) -> AsyncIterator[str]:
    """The URL of a fresh, migrated database, dropped afterwards (for tests that also hand it
    to a subprocess)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    url = f"{PG_BASE}/{name}"
    await ensure_database(url)
    try:
        await apply_migrations(url)
        yield url
    finally:
        conn = await asyncpg.connect(f"{PG_BASE}/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def private_database(prefix: str, *, max_size: int = 12) -> AsyncIterator[Database]:
    async with private_database_url(prefix) as url:
        database = await Database.connect(url, max_size=max_size)
        try:
            yield database
        finally:
            await database.close()
