"""DeleteObject: one transaction drops the version and queues its backend objects as garbage."""

from __future__ import annotations

from fastapi import Response

from actors.garbage import collect_garbage
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3.call import S3Call
from gateway.s3.operations import DeleteObject
from schema.audit import AuditEntry

__all__ = ["delete_object", "remove_object"]


async def remove_object(ctx: GatewayContext, auth: Authorized, call: S3Call, key: str) -> bool:
    """Delete the current version of ``key``; False when there was none (S3 still says 204)."""
    bucket, principal = auth.bucket, auth.principal
    assert bucket is not None
    async with ctx.store.db.transaction() as conn:
        removed = await ctx.store.objects.delete_latest(conn, principal.tenant_id, bucket.id, key)
        if removed is not None:
            await ctx.store.audit.append(
                conn,
                AuditEntry(
                    actor=principal.access_key_id,
                    action="DeleteObject",
                    resource=f"{bucket.name}/{key}",
                    request_id=call.request_id,
                    result=f"ok version={removed.version_id}",
                    tenant_id=principal.tenant_id,
                ),
            )
    await ctx.meta.invalidate_object(bucket.id, key)
    if removed is not None:
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return removed is not None


async def delete_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, DeleteObject)
    await remove_object(ctx, auth, call, op.key)
    return Response(status_code=204)
