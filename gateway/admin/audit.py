"""The admin view of the audit log: verify every hash chain; read every tenant's entries.

Read-only: it recomputes every chain (``schema.audit.AuditLog.verify``) against the chain
heads and the newest signed checkpoint (``jobs``-independent: the checkpoints stored in the
database, checked with the deployment key), and reports each chain's first break as data; it
never repairs or rewrites the log. The external checkpoint copies and the archives are
checked by ``bulletproof audit verify``.
"""

from __future__ import annotations

from typing import Any

from gateway.admin.route import AdminCall, operation
from gateway.s3.handlers.audit_log import page_of
from gateway.s3.operations import list_audit_log_query

__all__ = ["list_audit_entries", "verify_audit"]


@operation(body=False)
async def verify_audit(call: AdminCall) -> dict[str, Any]:
    report = await call.ctx.audit_trail().verify()
    return report.as_dict()


@operation(body=False)
async def list_audit_entries(call: AdminCall) -> dict[str, Any]:
    """Every entry (or one tenant's: ``?tenant=NAME``), paged and filtered as a tenant's own
    ``GET /?bp-audit``, with the tenant id of each."""
    query = list_audit_log_query(call.query)
    name = call.query.get("tenant")
    tenant_id: int | None = None
    async with call.ctx.store.db.connection() as conn:
        if name:
            tenant_id = (await call.ctx.store.tenants.get_by_name(conn, name)).id
        rows = await call.ctx.store.audit.rows(
            conn,
            tenant_id=tenant_id,
            since=query.since,
            until=query.until,
            action=query.action,
            after_id=query.after_id,
            limit=query.limit + 1,
        )
    return page_of(rows, query.limit, with_tenant=True)
