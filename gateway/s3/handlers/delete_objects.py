"""DeleteObjects (``POST /bucket?delete``): up to 1000 keys, each deleted like DeleteObject.

The request must carry ``Content-MD5`` or an ``x-amz-checksum-*`` (header or trailer), as S3
requires; ``gateway/s3/body.py`` verifies whichever it carries while the (size-capped) body is
read. The document is parsed with defusedxml (``gateway/s3/versioning_xml.py``).

Each key is its own transaction (``actors.deletes.remove_key``: versioning-aware, ``VersionId``
honoured, audited), so one key that fails is an ``<Error>`` entry and never fails the others;
an unexpected failure of one key is logged and reported as that key's ``InternalError``. The
keys run a few at a time and the answer lists them in request order. Garbage (backend objects
of removed versions) is collected once at the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from fastapi import Response

from actors.deletes import remove_key
from actors.garbage import collect_garbage
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.body import CHECKSUM_HEADERS, read_small_body
from gateway.s3.call import S3Call
from gateway.s3.operations import MAX_KEY_BYTES, DeleteObjects
from gateway.s3.versioning_xml import (
    MAX_DELETE_XML_BYTES,
    DeletedEntry,
    DeleteError,
    delete_result_document,
    parse_delete_request,
)
from gateway.s3.versions import is_version_id

__all__ = ["delete_objects", "has_integrity_header"]

log = logging.getLogger(__name__)

#: Keys deleted at the same time (each is a short transaction on the shared pool).
_CONCURRENCY = 4


def has_integrity_header(headers: Mapping[str, str]) -> bool:
    """Whether the request promises the body's integrity: Content-MD5, an x-amz-checksum-*
    header, or an x-amz-checksum-* trailer announced in x-amz-trailer."""
    if "content-md5" in headers:
        return True
    if any(name in headers for name in CHECKSUM_HEADERS):
        return True
    trailer = headers.get("x-amz-trailer", "").lower()
    return any(name in trailer for name in CHECKSUM_HEADERS)


async def _delete_one(
    ctx: GatewayContext, auth: Authorized, call: S3Call, key: str, version_id: str | None
) -> DeletedEntry | DeleteError:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return DeleteError(key, version_id, "KeyTooLongError", "Your key is too long")
    if version_id is not None and not is_version_id(version_id):
        return DeleteError(key, version_id, "InvalidArgument", "Invalid version id specified")
    try:
        assert auth.bucket is not None
        outcome = await remove_key(
            ctx,
            auth.caller(call.request_id),
            auth.principal.tenant_id,
            auth.bucket,
            key,
            version_id,
            action="DeleteObjects",
            collect=False,
        )
    except Exception as exc:
        err = s3e.to_s3_error(exc)
        if err.code == "InternalError":
            log.error("request %s: deleting one key failed", call.request_id, exc_info=exc)
        return DeleteError(key, version_id, err.code, err.message)
    if version_id is not None:
        return DeletedEntry(
            key,
            version_id=version_id,
            delete_marker=outcome.delete_marker,
            delete_marker_version_id=version_id if outcome.delete_marker else None,
        )
    if outcome.delete_marker:
        return DeletedEntry(key, delete_marker=True, delete_marker_version_id=outcome.version_id)
    return DeletedEntry(key)


async def delete_objects(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, DeleteObjects) and auth.bucket is not None
    if not has_integrity_header(call.headers):
        raise s3e.InvalidRequest("Missing required header for this request: Content-MD5")
    document = await read_small_body(
        call.body, auth.principal.verified, call.headers, MAX_DELETE_XML_BYTES
    )
    request = parse_delete_request(document)
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(key: str, version_id: str | None) -> DeletedEntry | DeleteError:
        async with gate:
            return await _delete_one(ctx, auth, call, key, version_id)

    results = await asyncio.gather(*(one(k, v) for k, v in request.objects))
    deleted = [r for r in results if isinstance(r, DeletedEntry)]
    errors = [r for r in results if isinstance(r, DeleteError)]
    ctx.spawn(collect_garbage(ctx.store, ctx.registry))
    body = delete_result_document(deleted, errors, quiet=request.quiet)
    return Response(body, media_type="application/xml")
