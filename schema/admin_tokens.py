"""Bootstrap admin tokens, stored as SHA-256 hashes only (``core.sealing.hash_token``).

One token is in force at a time once rotated: ``rotate`` revokes every token in force and
stores the successor's hash in the caller's transaction, so the old token stops working the
moment it commits, on every gateway replica (lookups are not cached). Rows are kept, revoked,
as the record of which tokens existed.
"""

from __future__ import annotations

import asyncpg

__all__ = ["AdminTokenRepository"]


class AdminTokenRepository:
    async def register_first(self, conn: asyncpg.Connection, token_hash: str) -> bool:
        """Store the bootstrap token of a first start: only when no token is in force (a
        token revoked by a rotation is never brought back by configuring it again). True when
        stored or already the one in force."""
        await conn.execute("LOCK TABLE admin_tokens IN SHARE ROW EXCLUSIVE MODE")
        active = await conn.fetch("SELECT token_hash FROM admin_tokens WHERE revoked_at IS NULL")
        if any(r["token_hash"] == token_hash for r in active):
            return True
        if active:
            return False
        revoked = await conn.fetchval(
            "SELECT 1 FROM admin_tokens WHERE token_hash = $1", token_hash
        )
        if revoked:
            return False
        await conn.execute(
            "INSERT INTO admin_tokens (token_hash, role) VALUES ($1, 'admin')", token_hash
        )
        return True

    async def rotate(self, conn: asyncpg.Connection, new_hash: str) -> int:
        """Revoke every token in force and store ``new_hash``; the number revoked."""
        await conn.execute("LOCK TABLE admin_tokens IN SHARE ROW EXCLUSIVE MODE")
        revoked = await conn.fetchval(
            "WITH r AS (UPDATE admin_tokens SET revoked_at = now() WHERE revoked_at IS NULL"
            " RETURNING 1) SELECT count(*) FROM r"
        )
        await conn.execute(
            "INSERT INTO admin_tokens (token_hash, role) VALUES ($1, 'admin')", new_hash
        )
        return int(revoked or 0)

    async def role(self, conn: asyncpg.Connection, token_hash: str) -> str | None:
        """The role of the token in force with this hash; None if unknown or revoked."""
        role: str | None = await conn.fetchval(
            "SELECT role FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            token_hash,
        )
        return role
