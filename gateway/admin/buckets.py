"""Admin operations on a bucket's placement: show and set its default class and region lock,
and ``bucket_of``, how the admin API finds a bucket by name (with or without its tenant).

A change is one transaction with its audit entry and the ``placement_check`` marks for the
bucket's objects; the bucket's cached record is invalidated after it commits.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from gateway.admin.fields import names_list, optional_class
from gateway.admin.route import AdminCall, operation
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from schema.records import Bucket

__all__ = ["bucket_of", "bucket_placement", "set_bucket_placement"]


async def bucket_of(
    ctx: GatewayContext, conn: asyncpg.Connection, tenant: str | None, bucket: str
) -> Bucket:
    """The bucket called ``bucket`` of ``tenant``, or the only one of that name if no tenant."""
    if tenant is not None:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        return await ctx.store.buckets.get(conn, owner.id, bucket)
    found = await ctx.store.buckets.find_by_name(conn, bucket)
    if not found:
        raise s3e.NoSuchBucket(f"no tenant has a bucket {bucket!r}")
    if len(found) > 1:
        raise s3e.InvalidArgument(
            f"{len(found)} tenants have a bucket {bucket!r}; name the tenant (field 'tenant')"
        )
    return found[0]


@operation(body=False)
async def bucket_placement(call: AdminCall) -> dict[str, Any]:
    tenant, bucket = call.path["tenant"], call.path["bucket"]
    async with call.ctx.store.db.connection() as conn:
        found = await bucket_of(call.ctx, conn, tenant, bucket)
    return {
        "tenant": tenant,
        "bucket": found.name,
        "default_class": found.default_class,
        "region_lock": list(found.region_lock),
    }


@operation(body=True)
async def set_bucket_placement(call: AdminCall) -> dict[str, Any]:
    """Set a bucket's default class and/or region lock (absent fields stay as they are); its
    objects are marked for the placement checker when either changes."""
    ctx, data = call.ctx, call.data
    tenant, bucket = call.path["tenant"], call.path["bucket"]
    unknown = set(data) - {"default_class", "region_lock"}
    if unknown:
        raise s3e.InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))}")
    await ctx.current_policy()
    async with ctx.store.db.transaction() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        current = await ctx.store.buckets.get(conn, owner.id, bucket)
        default_class = (
            optional_class(ctx, data, "default_class")
            if "default_class" in data
            else current.default_class
        )
        region_lock = (
            tuple(names_list(data, "region_lock", lower=True))
            if "region_lock" in data
            else current.region_lock
        )
        before, after = await ctx.store.buckets.set_placement(
            conn, owner.id, bucket, default_class=default_class, region_lock=region_lock
        )
        marked = 0
        changes = []
        if before.default_class != after.default_class:
            changes.append(f"default class {before.default_class} -> {after.default_class}")
        if before.region_lock != after.region_lock:
            changes.append(
                f"region lock {','.join(before.region_lock) or '-'} -> "
                f"{','.join(after.region_lock) or '-'}"
            )
        if changes:
            marked = await ctx.policies.mark_bucket(
                conn, after.id, f"bucket {bucket}: {'; '.join(changes)}"
            )
        await call.audit(
            conn,
            "SetBucketPlacement",
            f"tenant/{tenant}/bucket/{bucket}",
            f"ok {'; '.join(changes) or 'unchanged'} marked={marked}",
            tenant_id=owner.id,
        )
    await ctx.meta.invalidate_bucket(owner.id, bucket)
    return {
        "tenant": tenant,
        "bucket": bucket,
        "default_class": after.default_class,
        "region_lock": list(after.region_lock),
        "marked_objects": marked,
    }
