"""Public keys and sharing (Bulletproof extensions, SigV4-authenticated like the S3 API).

``POST /?publish-key`` registers a tenant public key ({key_id, key_version, public_key_pem});
``GET /?keys`` lists them. ``POST /{bucket}/{key}?share`` adds a recipient: the object's data
key wrapped for another public key by a client that can unwrap it ({wrapped_key, key_id,
key_version, wrap_alg}); ``GET /{bucket}/{key}?recipients`` returns every wrapped key of the
object. All metadata only, audited; no backend is touched.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse

from actors.reads import latest_or_404
from core.envelope import public_key_wrap_alg
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.body import read_json
from gateway.s3.call import S3Call
from gateway.s3.operations import ListRecipients, ShareObject
from gateway.s3.wrapped_keys import wrapped_key_fields
from schema.keys import KeyRepository, PublishedKey, Recipient

__all__ = ["list_keys", "list_recipients", "publish_key", "share_object"]

_keys = KeyRepository()
MAX_BODY = 64 * 1024


async def _json_object(call: S3Call, auth: Authorized) -> dict[str, Any]:
    document = await read_json(call.body, auth.principal.verified, call.headers, MAX_BODY)
    if not isinstance(document, dict):
        raise s3e.InvalidRequest("request body must be a JSON object")
    return document


async def publish_key(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    document = await _json_object(call, auth)
    key_id, version, pem = (
        document.get("key_id"),
        document.get("key_version"),
        document.get("public_key_pem"),
    )
    if not isinstance(key_id, str) or not key_id or len(key_id) > 128:
        raise s3e.InvalidRequest("'key_id' must be a string of at most 128 characters")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 2**31:
        raise s3e.InvalidRequest("'key_version' must be a positive integer")
    if not isinstance(pem, str):
        raise s3e.InvalidRequest("'public_key_pem' is required")
    wrap_alg, fingerprint = public_key_wrap_alg(pem)
    if key_id != fingerprint:
        raise s3e.InvalidRequest(
            f"'key_id' {key_id!r} is not this public key's id ({fingerprint}, docs/envelope.md 7.4)"
        )
    published = PublishedKey(key_id, version, wrap_alg, pem)
    principal = auth.principal
    async with ctx.store.db.transaction() as conn:
        await _keys.publish(conn, principal.tenant_id, published)
        await ctx.store.audit.append(
            conn,
            auth.caller(call.request_id).entry(
                "PublishKey", f"key/{key_id}/v{version}", f"ok {published.wrap_alg}"
            ),
        )
    return JSONResponse({"key_id": key_id, "key_version": version, "wrap_alg": published.wrap_alg})


async def list_keys(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    async with ctx.store.db.connection() as conn:
        keys = await _keys.published(conn, auth.principal.tenant_id)
    return JSONResponse({"keys": [k.__dict__ for k in keys]})


async def share_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, ShareObject) and auth.bucket is not None
    envelope = wrapped_key_fields(await _json_object(call, auth))
    recipient = Recipient(
        envelope.key_id, envelope.key_version, envelope.wrap_alg, envelope.wrapped_key
    )
    async with ctx.store.db.transaction() as conn:
        await _keys.add_recipient(conn, auth.bucket.id, op.key, recipient)
        await ctx.store.audit.append(
            conn,
            auth.caller(call.request_id).entry(
                "ShareObject",
                f"{auth.bucket.name}/{op.key}",
                f"ok recipient {envelope.key_id} v{envelope.key_version}",
            ),
        )
    return JSONResponse(
        {"key": op.key, "recipient": envelope.key_id, "key_version": envelope.key_version}
    )


async def list_recipients(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, ListRecipients) and auth.bucket is not None
    version = await latest_or_404(ctx, auth.bucket, op.key)
    if not version.encrypted or version.wrapped_key is None:
        raise s3e.InvalidRequest("the object is not encrypted")
    async with ctx.store.db.connection() as conn:
        others = await _keys.recipients(conn, version.id)
    entries = [
        {
            "key_id": version.key_id,
            "key_version": version.key_version,
            "wrap_alg": version.wrap_alg,
            "wrapped_key": base64.b64encode(version.wrapped_key).decode(),
            "primary": True,
        }
    ] + [
        {
            "key_id": r.key_id,
            "key_version": r.key_version,
            "wrap_alg": r.wrap_alg,
            "wrapped_key": base64.b64encode(r.wrapped_key).decode(),
            "primary": False,
        }
        for r in others
    ]
    return JSONResponse({"key": op.key, "content_id": version.content_id, "recipients": entries})
