"""Temporary credentials issued by the STS endpoint (``gateway/sts.py``): list them, revoke
one, or revoke every session of an OIDC subject.

Revocation is one transaction (``revoked_at`` set, the audit entry), then the revoked keys'
cached identities are invalidated (``keys.forget_identities``: the per-key generation every
request reads), so every gateway replica refuses them from that moment, not after the cache
TTL or the session's expiry.
"""

from __future__ import annotations

from typing import Any

from core.errors import NotFound
from gateway.admin.fields import text
from gateway.admin.keys import forget_identities
from gateway.admin.route import AdminCall, operation
from gateway.s3 import errors as s3e
from schema.sessions import SessionInfo

__all__ = ["list_sessions", "revoke_session", "revoke_subject_sessions"]


def _json(s: SessionInfo) -> dict[str, Any]:
    return {
        "access_key_id": s.access_key_id,
        "tenant": s.tenant,
        "issuer": s.issuer,
        "subject": s.subject,
        "created_at": s.created_at.isoformat(),
        "expires_at": s.expires_at.isoformat(),
        "revoked": s.revoked,
    }


@operation(body=False)
async def list_sessions(call: AdminCall) -> list[dict[str, Any]]:
    """``?tenant=``, ``?subject=`` filter; ``?all=true`` includes expired and revoked ones."""
    include = call.query.get("all", "false")
    if include not in ("true", "false"):
        raise s3e.InvalidArgument("all must be true or false")
    async with call.ctx.store.db.connection() as conn:
        found = await call.ctx.store.sessions.list(
            conn,
            tenant=call.query.get("tenant") or None,
            subject=call.query.get("subject") or None,
            include_ended=include == "true",
        )
    return [_json(s) for s in found]


@operation(body=False)
async def revoke_session(call: AdminCall) -> dict[str, Any]:
    ctx, key_id = call.ctx, call.path["key"]
    async with ctx.store.db.transaction() as conn:
        revoked = await ctx.store.sessions.revoke(conn, key_id)
        if not revoked:
            raise NotFound(f"no live session {key_id!r}")
        await call.audit(conn, "RevokeSession", f"session/{key_id}")
    await forget_identities(ctx, revoked)
    return {"revoked": revoked}


@operation(body=True)
async def revoke_subject_sessions(call: AdminCall) -> dict[str, Any]:
    """Body ``{"subject": S, "issuer": optional issuer URL}``: every session of S."""
    ctx = call.ctx
    subject = text(call.data, "subject")
    issuer = call.data.get("issuer")
    if issuer is not None and (not isinstance(issuer, str) or not issuer):
        raise s3e.InvalidArgument("field 'issuer' must be a non-empty string")
    async with ctx.store.db.transaction() as conn:
        revoked = await ctx.store.sessions.revoke_subject(conn, subject, issuer)
        await call.audit(
            conn, "RevokeSessions", f"subject/{subject}", f"ok {len(revoked)} session(s)"
        )
    await forget_identities(ctx, revoked)
    return {"subject": subject, "revoked": revoked}
