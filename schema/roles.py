"""The database roles: migrations run as an owner role; the application connects as a role that
may read and write the metadata but may only INSERT into (and SELECT) the audit tables.

So a compromised gateway process cannot rewrite history even by SQL it chooses: UPDATE, DELETE
and TRUNCATE of ``audit_log``, ``audit_checkpoints`` and ``audit_archives`` are refused by
permission, and the append-only triggers stay as the second line (only an owner or superuser
may disable a trigger). The chain heads (``audit_heads``) stay writable: appending moves them,
and a rewound head is what checkpoints catch.

``create_roles`` runs once, as the configured (superuser) connection, on a database that
``bulletproof up`` has just created; ``grant_app`` after every migration run, as the owner, so
tables added later get the same rights.
"""

from __future__ import annotations

import contextlib
import re

import asyncpg

__all__ = ["AUDIT_TABLES", "create_roles", "grant_app"]

AUDIT_TABLES = ("audit_log", "audit_checkpoints", "audit_archives")

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PASSWORD = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


def _role(name: str) -> str:
    if not _ROLE.match(name):
        raise ValueError(f"not a role name this gateway creates: {name!r}")
    return f'"{name}"'


def _database(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_roles(
    conn: asyncpg.Connection, *, database: str, owner: str, app: str, app_password: str
) -> None:
    """Create ``owner`` (no login; owns the database, so what migrations create is its) and
    ``app`` (login with ``app_password``), and let the connecting user act as the owner."""
    if not _PASSWORD.match(app_password):
        raise ValueError("the application role's password must be 16-128 URL-safe characters")
    for name, login in ((owner, False), (app, True)):
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name)
        if not exists:
            # another gateway starting on the same server may create it meanwhile
            with contextlib.suppress(asyncpg.DuplicateObjectError):
                await conn.execute(f"CREATE ROLE {_role(name)} {'LOGIN' if login else 'NOLOGIN'}")
    # the password is checked against a URL-safe alphabet above: no quote can reach the SQL
    await conn.execute(f"ALTER ROLE {_role(app)} LOGIN PASSWORD '{app_password}'")
    await conn.execute(f"GRANT {_role(owner)} TO CURRENT_USER")
    await conn.execute(f"ALTER DATABASE {_database(database)} OWNER TO {_role(owner)}")


async def grant_app(conn: asyncpg.Connection, *, database: str, owner: str, app: str) -> None:
    """The application's rights on every table and sequence, minus changing the audit tables."""
    a = _role(app)
    await conn.execute(f"GRANT CONNECT ON DATABASE {_database(database)} TO {a}")
    await conn.execute(f"GRANT USAGE ON SCHEMA public TO {a}")
    await conn.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {a}"
    )
    await conn.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {a}")
    await conn.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {', '.join(AUDIT_TABLES)} FROM {a}")
    await conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {_role(owner)} IN SCHEMA public"
                       f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {a}")  # fmt: skip
