"""The bootstrap admin token's rotation: a new random token replaces the one in force.

The successor's SHA-256 is stored and every token in force revoked in one transaction with
the audit entry (``schema/admin_tokens.py``); the new token is returned once, by this call,
and never stored. Token lookups are not cached, so the old token is refused on every replica
from the commit on.
"""

from __future__ import annotations

import secrets
from typing import Any

from core.sealing import hash_token
from gateway.admin.route import AdminCall, operation

__all__ = ["rotate_admin_token"]


@operation(body=False)
async def rotate_admin_token(call: AdminCall) -> dict[str, Any]:
    token = secrets.token_urlsafe(32)
    async with call.ctx.store.db.transaction() as conn:
        revoked = await call.ctx.store.admin_tokens.rotate(conn, hash_token(token))
        await call.audit(conn, "RotateAdminToken", "admin-token", f"ok revoked={revoked}")
    return {"token": token, "revoked": revoked}
