"""``GET /?bp-audit``: a tenant reads its own audit log (Bulletproof extension, JSON).

Paged by global id (``page-token`` is the last id of the previous page; ``next_page_token``
is null on the last page), filtered by time (``since`` inclusive, ``until`` exclusive, ISO
8601 with a zone) and by ``action``; at most ``max-entries`` (1..1000) per page. Only the
caller's tenant's chain is ever read (the tenant id comes from the authenticated key, never
from the request): every entry made by its keys and for it by the gateway, not those of
administrators, which are in the system chain. Hashes are included so a tenant can recompute
its own chain.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse

from core.audit_chain import chain_of
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3.call import S3Call
from gateway.s3.operations import ListAuditLog
from schema.audit import row_json

__all__ = ["list_audit_log", "page_of"]

_FIELDS = (
    "seq", "chain_id", "chain_seq", "at", "actor", "action", "resource", "request_id",
    "result", "role", "bytes", "prev_hash", "entry_hash",
)  # fmt: skip


def page_of(rows: list[Any], limit: int, *, with_tenant: bool = False) -> dict[str, Any]:
    """One page of entries from ``limit + 1`` rows read (the extra one says there is more)."""
    page = rows[:limit]
    fields = (*_FIELDS, "tenant_id") if with_tenant else _FIELDS
    entries = []
    for row in page:
        full = row_json(row)
        entries.append({("id" if f == "seq" else f): full[f] for f in fields})
    more = len(rows) > limit
    return {"entries": entries, "next_page_token": str(page[-1]["seq"]) if more and page else None}


async def list_audit_log(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, ListAuditLog)
    async with ctx.store.db.connection() as conn:
        rows = await ctx.store.audit.rows(
            conn,
            chain_id=chain_of(auth.principal.tenant_id),
            since=op.since,
            until=op.until,
            action=op.action,
            after_id=op.after_id,
            limit=op.limit + 1,
        )
    return JSONResponse(page_of(rows, op.limit))
