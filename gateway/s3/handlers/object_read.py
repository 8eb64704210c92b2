"""GetObject and HeadObject: metadata first, then verified bytes streamed part by part.

The first part is fetched and verified *before* the status line is sent, so a missing or
corrupt object is a clean S3 error; later parts stream with one part of read-ahead. If every
replica of a later part fails, the connection is cut short (the client sees a truncated body
against its Content-Length), never served wrong bytes.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from email.utils import format_datetime

from fastapi import Response
from fastapi.responses import StreamingResponse

from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.call import S3Call
from gateway.s3.operations import GetObject, HeadObject
from gateway.s3.ranges import parse_range
from schema.records import ObjectVersion

__all__ = ["get_object", "head_object", "object_headers", "latest_or_404"]


async def latest_or_404(ctx: GatewayContext, auth: Authorized, key: str) -> ObjectVersion:
    assert auth.bucket is not None
    version = await ctx.meta.latest(auth.bucket.id, key)
    if version is None or version.is_delete_marker:
        raise s3e.NoSuchKey(resource=f"/{auth.bucket.name}/{key}")
    return version


def object_headers(version: ObjectVersion) -> dict[str, str]:
    headers = {
        "ETag": f'"{version.etag}"',
        "Last-Modified": format_datetime(version.created_at, usegmt=True),
        "Accept-Ranges": "bytes",
        "Content-Type": version.content_type or "binary/octet-stream",
        # Not user metadata: a client copying metadata back would send it again, and every
        # x-amz-meta-bp-* name is reserved for the encryption envelope.
        "x-bp-redundancy-class": version.redundancy_class,
    }
    for name, value in version.user_metadata.items():
        headers[f"x-amz-meta-{name}"] = value
    if version.encrypted:
        assert version.wrapped_key is not None
        headers["x-amz-meta-bp-wrapped-key"] = base64.b64encode(version.wrapped_key).decode()
        headers["x-amz-meta-bp-key-id"] = version.key_id or ""
        headers["x-amz-meta-bp-key-version"] = str(version.key_version)
        headers["x-amz-meta-bp-wrap-alg"] = version.wrap_alg or ""
        if version.content_id:
            headers["x-amz-meta-bp-content-id"] = version.content_id
    return headers


def _range_headers(
    version: ObjectVersion, rng: tuple[int, int] | None
) -> tuple[int, dict[str, str]]:
    if rng is None:
        return 200, {"Content-Length": str(version.size)}
    first, last = rng
    return 206, {
        "Content-Length": str(last - first + 1),
        "Content-Range": f"bytes {first}-{last}/{version.size}",
    }


async def head_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, HeadObject)
    version = await latest_or_404(ctx, auth, op.key)
    rng = parse_range(op.range_header, version.size)
    status, extra = _range_headers(version, rng)
    return Response(status_code=status, headers={**object_headers(version), **extra})


async def stream_version(
    ctx: GatewayContext, version: ObjectVersion, rng: tuple[int, int] | None
) -> AsyncIterator[bytes]:
    """Verified bytes, with the first chunk already fetched (errors raise here, not mid-body)."""
    first, last = rng if rng is not None else (0, version.size - 1)
    source = ctx.reader.stream(version, first, last)
    try:
        head = await source.__anext__()
    except StopAsyncIteration:
        head = b""

    async def rest() -> AsyncIterator[bytes]:
        if head:
            yield head
        async for chunk in source:
            yield chunk

    return rest()


async def get_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, GetObject)
    version = await latest_or_404(ctx, auth, op.key)
    rng = parse_range(op.range_header, version.size)
    status, extra = _range_headers(version, rng)
    body = await stream_version(ctx, version, rng)
    return StreamingResponse(body, status_code=status, headers={**object_headers(version), **extra})
