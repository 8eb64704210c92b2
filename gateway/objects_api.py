"""The plain ``/objects/{bucket}/{key}`` API of the original design, over the same data path.

Same authentication (SigV4, signed over the /objects path), same validation, same quorum
write and verified read as the S3 API. The envelope travels in ``X-Encrypted-Key`` (base64
wrapped data key), ``X-Key-Id``, ``X-Key-Version`` and ``X-Encryption-Alg``; the class in
``X-Redundancy-Class``. GET and HEAD return the same headers with the ciphertext.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from actors.reads import latest_or_404, stream_version
from actors.writes import store_object
from core.envelope import envelope_from_metadata
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import operations as ops
from gateway.s3.body import declared_length, payload
from gateway.s3.call import S3Call
from gateway.s3.dispatch import Handler, handle_s3
from gateway.s3.handlers.object_delete import delete_object
from gateway.s3.ranges import parse_range
from gateway.s3.sigv4 import HttpRequestView
from gateway.s3.stored_headers import stored_headers
from gateway.s3.write_headers import requested_class
from schema.records import ObjectVersion

__all__ = ["PREFIX", "handle_objects_api"]

PREFIX = "/objects"

_ENVELOPE_HEADERS = {
    "x-encrypted-key": "bp-wrapped-key",
    "x-key-id": "bp-key-id",
    "x-key-version": "bp-key-version",
    "x-encryption-alg": "bp-wrap-alg",
    "x-content-id": "bp-content-id",
}


def _parse(view: HttpRequestView) -> ops.Operation:
    path = view.raw_path[len(PREFIX) :]
    bucket_and_key = path.lstrip("/")
    if "/" not in bucket_and_key or bucket_and_key.endswith("/"):
        raise s3e.InvalidRequest("Use /objects/{bucket}/{key}")
    if view.method not in ("PUT", "GET", "HEAD", "DELETE"):
        raise s3e.MethodNotAllowed()
    return ops.parse_operation(
        view.method, path, parse_qsl(view.query_string, keep_blank_values=True), view.headers
    )


def _headers(version: ObjectVersion) -> dict[str, str]:
    import base64

    headers = {
        "ETag": f'"{version.etag}"',
        "Content-Length": str(version.size),
        "Content-Type": version.content_type or "application/octet-stream",
        "X-Redundancy-Class": version.redundancy_class,
    }
    if version.encrypted and version.wrapped_key is not None:
        headers["X-Encrypted-Key"] = base64.b64encode(version.wrapped_key).decode()
        headers["X-Key-Id"] = version.key_id or ""
        headers["X-Key-Version"] = str(version.key_version)
        headers["X-Encryption-Alg"] = version.wrap_alg or ""
        if version.content_id:
            headers["X-Content-Id"] = version.content_id
    return headers


def _envelope_fields(headers: Mapping[str, str]) -> dict[str, str]:
    return {meta: headers[h] for h, meta in _ENVELOPE_HEADERS.items() if h in headers}


async def _put(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    assert isinstance(auth.op, ops.PutObject) and auth.bucket is not None
    principal, headers = auth.principal, call.headers
    envelope = envelope_from_metadata(_envelope_fields(headers))
    wanted = requested_class(ctx.policy, headers)
    verified: dict[str, str] = {}
    version = await store_object(
        ctx,
        caller=auth.caller(call.request_id),
        tenant_id=principal.tenant_id,
        bucket=auth.bucket,
        key=auth.op.key,
        body=payload(call.body, principal.verified, headers, checksums_out=verified),
        length=declared_length(principal.verified, headers),
        envelope=envelope,
        allow_plaintext=principal.allow_plaintext,
        requested_class=wanted,
        content_type=headers.get("content-type"),
        http_headers=stored_headers(headers),
        verified_checksums=verified,
    )
    return Response(
        status_code=200, headers={"ETag": f'"{version.etag}"', "X-Version-Id": version.version_id}
    )


async def _get(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    assert isinstance(auth.op, ops.GetObject) and auth.bucket is not None
    version = await latest_or_404(ctx, auth.bucket, auth.op.key)
    rng = parse_range(auth.op.range_header, version.size)
    headers = _headers(version)
    status = 200
    if rng is not None:
        status = 206
        headers["Content-Length"] = str(rng[1] - rng[0] + 1)
        headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{version.size}"
    return StreamingResponse(
        await stream_version(ctx, version, rng), status_code=status, headers=headers
    )


async def _head(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    assert isinstance(auth.op, ops.HeadObject) and auth.bucket is not None
    version = await latest_or_404(ctx, auth.bucket, auth.op.key)
    return Response(status_code=200, headers=_headers(version))


_HANDLERS: Mapping[type, Handler] = {
    ops.PutObject: _put,
    ops.GetObject: _get,
    ops.HeadObject: _head,
    ops.DeleteObject: delete_object,
}


async def handle_objects_api(ctx: GatewayContext, request: Request) -> Response:
    return await handle_s3(ctx, request, parse=_parse, handlers=_HANDLERS)
