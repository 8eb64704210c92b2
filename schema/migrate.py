"""Applies ``schema/migrations/NNNN_verb_noun.sql`` in order, each once, each in a transaction.

Applied versions are recorded in ``schema_migrations``; a concurrent runner blocks on the
table lock and then finds the work done, so two gateways starting together are safe.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

from schema.db import translate_errors

__all__ = ["apply_migrations", "available_migrations"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def available_migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration file, ordered by version."""
    found = []
    for entry in resources.files("schema.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError("two migrations share a version number")
    return found


async def apply_migrations(url: str, *, role: str | None = None) -> list[int]:
    """Apply what is missing; returns the versions applied now. ``role``: run them as this
    role (the owner role, ``schema/roles.py``), so what they create is the owner's."""
    applied_now: list[int] = []
    async with translate_errors():
        conn = await asyncpg.connect(url)
        try:
            if role is not None:
                await conn.execute(f'SET ROLE "{role}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            for version, name, sql in available_migrations():
                async with conn.transaction():
                    await conn.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                    done = await conn.fetchval(
                        "SELECT 1 FROM schema_migrations WHERE version = $1", version
                    )
                    if done:
                        continue
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        name,
                    )
                    applied_now.append(version)
        finally:
            await conn.close()
    return applied_now
