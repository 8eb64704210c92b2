"""The admin view of the audit log: verify the whole hash chain.

Read-only: it recomputes every entry's hash (``schema.audit.AuditLog.verify``) and reports
the number of entries or the first break; it never repairs or rewrites the log.
"""

from __future__ import annotations

from typing import Any

from gateway.admin.route import AdminCall, operation

__all__ = ["verify_audit"]


@operation(body=False)
async def verify_audit(call: AdminCall) -> dict[str, Any]:
    async with call.ctx.store.db.connection() as conn:
        try:
            count = await call.ctx.store.audit.verify(conn)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
    return {"ok": True, "entries": count}
