"""Deleting a key or one version of it: one transaction changes the key's versions, with its
audit entry and changelog (``schema/versions.py`` decides what versioning means).

- Unversioned bucket: the current version is dropped, its backend objects go to ``garbage``.
- Versioning enabled: a delete marker becomes the latest version (a new version id).
- Versioning suspended: the delete marker is the key's null version, replacing the previous
  null version (whose backend objects go to ``garbage``).
- With a version id: that version (or delete marker) is removed permanently; if it was the
  latest, the next newest version becomes the latest.

Deleting what does not exist is a successful no-op, as in S3, and writes no audit entry.
"""

from __future__ import annotations

from actors.data_path import DataPath
from actors.garbage import collect_garbage
from actors.writes import new_version_id
from schema.audit import Caller
from schema.records import Bucket, DeleteOutcome

__all__ = ["remove_key"]


async def remove_key(
    ctx: DataPath,
    caller: Caller,
    tenant_id: int,
    bucket: Bucket,
    key: str,
    version_id: str | None = None,
    *,
    action: str = "DeleteObject",
    collect: bool = True,
) -> DeleteOutcome:
    """Delete ``key`` (or one version of it) as the bucket's versioning says, in one
    transaction with the audit entry; then invalidate the cache and (``collect``) delete the
    backend objects it sent to garbage, in the background.

    ``version_id`` must be well-formed: the caller decides which error a malformed one is.
    """
    async with ctx.store.db.transaction() as conn:
        if version_id is None:
            outcome = await ctx.store.versions.delete_current(
                conn, tenant_id, bucket.id, key, marker_version_id=new_version_id()
            )
        else:
            removed = await ctx.store.versions.delete_version(
                conn, tenant_id, bucket.id, key, version_id
            )
            outcome = DeleteOutcome(
                version_id, removed is not None and removed.is_delete_marker, removed
            )
        if outcome.removed is not None or outcome.delete_marker:
            await ctx.store.audit.append(
                conn, caller.entry(action, f"{bucket.name}/{key}", _result(outcome, version_id))
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
