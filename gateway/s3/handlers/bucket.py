"""Bucket operations: create, head, delete (empty only), list buckets, location.

Creating a bucket the caller already owns answers as S3 does: 200 with the bucket untouched
in us-east-1 (S3's legacy behaviour there), ``BucketAlreadyOwnedByYou`` (409) in any other
region. Bucket names are per tenant, so no other tenant's bucket is ever in the way.
"""

from __future__ import annotations

from fastapi import Response

from actors.garbage import collect_garbage
from core.errors import BucketAlreadyExists
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import xml
from gateway.s3.body import read_small_body
from gateway.s3.call import S3Call
from gateway.s3.operations import CreateBucket, DeleteBucket

__all__ = ["create_bucket", "delete_bucket", "get_bucket_location", "head_bucket", "list_buckets"]

_XML = "application/xml"


async def list_buckets(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    async with ctx.store.db.connection() as conn:
        buckets = await ctx.store.buckets.list(conn, auth.principal.tenant_id)
    body = xml.list_buckets_document(
        auth.principal.tenant_name, [(b.name, b.created_at) for b in buckets]
    )
    return Response(body, media_type=_XML)


def _region_lock(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(sorted({part.strip().lower() for part in value.split(",") if part.strip()}))


async def create_bucket(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, CreateBucket)
    principal = auth.principal
    document = await read_small_body(call.body, principal.verified, call.headers, 64 * 1024)
    if document.strip():
        root = xml.parse_xml(document)
        if xml.local_name(root) != "CreateBucketConfiguration":
            raise s3e.MalformedXML()
    acl = call.headers.get("x-amz-acl")
    if acl not in (None, "private"):
        raise s3e.AccessDenied(f"Canned ACL {acl!r} is not supported; buckets are private")
    default_class = call.headers.get("x-redundancy-class")
    if default_class is not None and default_class not in ctx.policy.classes:
        raise s3e.InvalidArgument(f"Unknown redundancy class {default_class!r}")
    try:
        async with ctx.store.db.transaction() as conn:
            await ctx.store.buckets.create(
                conn,
                principal.tenant_id,
                op.bucket,
                default_class=default_class,
                region_lock=_region_lock(call.headers.get("x-bp-region-lock")),
            )
            await ctx.store.audit.append(
                conn, auth.caller(call.request_id).entry("CreateBucket", op.bucket)
            )
    except BucketAlreadyExists as exc:
        if ctx.settings.region != "us-east-1":
            raise s3e.BucketAlreadyOwnedByYou(resource=f"/{op.bucket}") from exc
        # S3's legacy us-east-1 answer: 200, and the bucket stays exactly as it was.
        return Response(status_code=200, headers={"Location": f"/{op.bucket}"})
    await ctx.meta.invalidate_bucket(principal.tenant_id, op.bucket)
    return Response(status_code=200, headers={"Location": f"/{op.bucket}"})


async def head_bucket(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    return Response(status_code=200, headers={"x-amz-bucket-region": ctx.settings.region})


async def get_bucket_location(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    region = "" if ctx.settings.region == "us-east-1" else ctx.settings.region
    return Response(xml.location_document(region), media_type=_XML)


async def delete_bucket(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, DeleteBucket)
    principal = auth.principal
    async with ctx.store.db.transaction() as conn:
        await ctx.store.buckets.delete(conn, principal.tenant_id, op.bucket)
        await ctx.store.audit.append(
            conn, auth.caller(call.request_id).entry("DeleteBucket", op.bucket)
        )
    await ctx.meta.invalidate_bucket(principal.tenant_id, op.bucket)
    # Uploads still open in the bucket were aborted in that transaction: free their pieces now.
    ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    return Response(status_code=204)
