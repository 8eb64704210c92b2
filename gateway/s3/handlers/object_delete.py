"""DeleteObject: one transaction changes the key's versions, with its audit entry and changelog.

- Unversioned bucket: the current version is dropped, its backend objects go to ``garbage``.
- Versioning enabled: a delete marker becomes the latest version (a new version id).
- Versioning suspended: the delete marker is the key's null version, replacing the previous
  null version (whose backend objects go to ``garbage``).
- With ``versionId``: that version (or delete marker) is removed permanently; if it was the
  latest, the next newest version becomes the latest.

The response names what happened (``x-amz-version-id``, ``x-amz-delete-marker``). Deleting
what does not exist succeeds (204), as in S3. ``remove_key`` is shared with DeleteObjects.
"""

from __future__ import annotations

from fastapi import Response

from actors.garbage import collect_garbage
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.call import S3Call
from gateway.s3.handlers.object_put import new_version_id
from gateway.s3.handlers.object_read import is_version_id
from gateway.s3.operations import DeleteObject
from schema.audit import AuditEntry
from schema.records import DeleteOutcome

__all__ = ["delete_object", "outcome_headers", "remove_key", "remove_object"]


async def remove_key(
    ctx: GatewayContext,
    auth: Authorized,
    call: S3Call,
    key: str,
    version_id: str | None = None,
    *,
    action: str = "DeleteObject",
    collect: bool = True,
) -> DeleteOutcome:
    """Delete ``key`` (or one version of it) as the bucket's versioning says, in one
    transaction with the audit entry; then invalidate the cache and (``collect``) delete the
    backend objects it sent to garbage, in the background.

    ``version_id`` must be well-formed (``is_version_id``): the caller decides which error a
    malformed one is. A version that does not exist is a successful no-op.
    """
    bucket, principal = auth.bucket, auth.principal
    assert bucket is not None
    async with ctx.store.db.transaction() as conn:
        if version_id is None:
            outcome = await ctx.store.versions.delete_current(
                conn, principal.tenant_id, bucket.id, key, marker_version_id=new_version_id()
            )
        else:
            removed = await ctx.store.versions.delete_version(
                conn, principal.tenant_id, bucket.id, key, version_id
            )
            outcome = DeleteOutcome(
                version_id, removed is not None and removed.is_delete_marker, removed
            )
        if outcome.removed is not None or outcome.delete_marker:
            await ctx.store.audit.append(
                conn,
                AuditEntry(
                    actor=principal.access_key_id,
                    action=action,
                    resource=f"{bucket.name}/{key}",
                    request_id=call.request_id,
                    result=_result(outcome, version_id),
                    tenant_id=principal.tenant_id,
                ),
            )
    await ctx.meta.invalidate_object(bucket.id, key)
    if outcome.garbage and collect:
        ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return outcome


def _result(outcome: DeleteOutcome, version_id: str | None) -> str:
    removed = outcome.removed
    if version_id is not None:
        what = "delete marker" if outcome.delete_marker else "version"
        assert removed is not None
        return f"ok {what} removed version={removed.version_id}"
    if outcome.delete_marker:
        dropped = f" superseded={removed.version_id}" if removed is not None else ""
        return f"ok delete marker version={outcome.version_id}{dropped}"
    assert removed is not None
    return f"ok version={removed.version_id}"


async def remove_object(ctx: GatewayContext, auth: Authorized, call: S3Call, key: str) -> bool:
    """Delete the current version of ``key``; False when nothing changed (S3 still says 204)."""
    outcome = await remove_key(ctx, auth, call, key)
    return outcome.removed is not None or outcome.delete_marker


def outcome_headers(outcome: DeleteOutcome) -> dict[str, str]:
    headers: dict[str, str] = {}
    if outcome.version_id is not None:
        headers["x-amz-version-id"] = outcome.version_id
    if outcome.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    return headers


async def delete_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, DeleteObject)
    if op.version_id is not None and not is_version_id(op.version_id):
        raise s3e.InvalidArgument("Invalid version id specified")
    outcome = await remove_key(ctx, auth, call, op.key, op.version_id)
    return Response(status_code=204, headers=outcome_headers(outcome))
