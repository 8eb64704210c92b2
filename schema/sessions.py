"""Temporary credentials issued by the STS endpoint (``gateway/sts.py``): rows of
``access_keys`` with an expiry, the SHA-256 of their session token and the OIDC issuer and
subject they were issued to (migration 0018).

Authentication reads them like any access key (``TenantRepository.get_access_key``, through
the Redis cache); this module creates, lists and revokes them. Revocation sets ``revoked_at``
and returns the access key ids, which the caller invalidates in the cache after the commit
(``MetadataReader.invalidate_access_key``: the per-key generation every request reads), so a
revoked session is refused at once on every replica.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime

import asyncpg

__all__ = ["SessionInfo", "SessionRepository"]


@dataclass(frozen=True)
class SessionInfo:
    access_key_id: str
    tenant: str
    issuer: str
    subject: str
    created_at: datetime
    expires_at: datetime
    revoked: bool


class SessionRepository:
    async def create(
        self,
        conn: asyncpg.Connection,
        *,
        tenant_id: int,
        access_key_id: str,
        sealed_secret: bytes,
        token_sha256: bytes,
        expires_at: datetime,
        issuer: str,
        subject: str,
    ) -> None:
        await conn.execute(
            "INSERT INTO access_keys (access_key_id, tenant_id, sealed_secret, expires_at,"
            " session_token_sha256, session_issuer, session_subject)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            access_key_id,
            tenant_id,
            sealed_secret,
            expires_at,
            token_sha256,
            issuer,
            subject,
        )

    async def list(
        self,
        conn: asyncpg.Connection,
        *,
        tenant: str | None = None,
        subject: str | None = None,
        include_ended: bool = False,
        limit: int = 1000,
    ) -> builtins.list[SessionInfo]:
        """Sessions, newest first; by default only live ones (neither expired nor revoked)."""
        rows = await conn.fetch(
            "SELECT k.access_key_id, t.name AS tenant, k.session_issuer AS issuer,"
            " k.session_subject AS subject, k.created_at, k.expires_at,"
            " k.revoked_at IS NOT NULL AS revoked"
            " FROM access_keys k JOIN tenants t ON t.id = k.tenant_id"
            " WHERE k.expires_at IS NOT NULL AND ($1::text IS NULL OR t.name = $1)"
            " AND ($2::text IS NULL OR k.session_subject = $2)"
            " AND ($3 OR (k.revoked_at IS NULL AND k.expires_at > now()))"
            " ORDER BY k.created_at DESC LIMIT $4",
            tenant,
            subject,
            include_ended,
            limit,
        )
        return [SessionInfo(**dict(r)) for r in rows]

    async def revoke(self, conn: asyncpg.Connection, access_key_id: str) -> builtins.list[str]:
        """Revoke one session; its id, or [] if it is not a live session."""
        rows = await conn.fetch(
            "UPDATE access_keys SET revoked_at = now() WHERE access_key_id = $1"
            " AND expires_at IS NOT NULL AND revoked_at IS NULL RETURNING access_key_id",
            access_key_id,
        )
        return [r["access_key_id"] for r in rows]

    async def revoke_subject(
        self, conn: asyncpg.Connection, subject: str, issuer: str | None = None
    ) -> builtins.list[str]:
        """Revoke every unrevoked session of the subject (of one issuer, if given)."""
        rows = await conn.fetch(
            "UPDATE access_keys SET revoked_at = now() WHERE session_subject = $1"
            " AND ($2::text IS NULL OR session_issuer = $2) AND revoked_at IS NULL"
            " RETURNING access_key_id",
            subject,
            issuer,
        )
        return [r["access_key_id"] for r in rows]
