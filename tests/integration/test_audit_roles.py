"""The database roles ``bulletproof up`` creates on a fresh database (real PostgreSQL, no Ray):
migrations run as the owner role, the application connects as a role that may INSERT and
SELECT the audit tables, and whose UPDATE, DELETE, TRUNCATE and trigger changes are refused by
permission (the trigger is only the second line)."""

from __future__ import annotations

import secrets
from pathlib import Path

import asyncpg
import pytest

from cluster.bootstrap import prepare_database
from core.settings import Settings
from schema.audit import AuditEntry, AuditLog
from schema.db import ensure_database
from schema.migrate import apply_migrations
from tests.support.database import PG_BASE

pytestmark = pytest.mark.integration


async def test_the_app_role_may_only_append_to_the_audit_log(tmp_path: Path) -> None:
    name = f"bp_roles_{secrets.token_hex(4)}"
    configured = Settings(
        database_url=f"{PG_BASE}/{name}", state_dir=str(tmp_path), admin_token="t" * 32
    )
    try:
        app = await prepare_database(configured)
        assert app.database_url != configured.database_url
        assert "bulletproof_app:" in app.database_url
        assert (tmp_path / "db-app.password").stat().st_mode & 0o077 == 0
        # A restart finds the roles and connects as the app again.
        assert (await prepare_database(configured)).database_url == app.database_url
        conn = await asyncpg.connect(app.database_url)
        try:
            assert await conn.fetchval("SELECT current_user") == "bulletproof_app"
            owner = await conn.fetchval(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'audit_log'"
            )
            assert owner == "bulletproof_owner"
            async with conn.transaction():
                await AuditLog().append(conn, AuditEntry("AK", "GetObject", "b/k", "r", "ok", 1))
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == 1
            for statement in (
                "UPDATE audit_log SET result = 'forged'",
                "DELETE FROM audit_log",
                "TRUNCATE audit_log",
                "ALTER TABLE audit_log DISABLE TRIGGER ALL",
                "DELETE FROM audit_checkpoints",
                "UPDATE audit_archives SET size = 0",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
            # The rest of the metadata is the application's to change.
            await conn.execute("UPDATE jobs SET attempts = attempts WHERE false")
            await conn.execute("DELETE FROM garbage WHERE false")
            report = await AuditLog().verify(conn)
            assert report.ok and report.entries == 1
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(f"{PG_BASE}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_a_database_from_before_the_roles_keeps_its_user(tmp_path: Path) -> None:
    """A database the configured user created and owns (an older deployment, or a snapshot
    restored into a new database) keeps running as that user, password file or not."""
    name = f"bp_roles_{secrets.token_hex(4)}"
    url = f"{PG_BASE}/{name}"
    await ensure_database(url)
    await apply_migrations(url)
    (tmp_path / "db-app.password").write_text("x" * 32 + "\n")
    configured = Settings(database_url=url, state_dir=str(tmp_path), admin_token="t" * 32)
    try:
        assert (await prepare_database(configured)).database_url == url
    finally:
        admin = await asyncpg.connect(f"{PG_BASE}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
