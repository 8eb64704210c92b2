"""GetObject and HeadObject: metadata first, then verified bytes streamed part by part.

The first part is fetched and verified *before* the status line is sent, so a missing or
corrupt object is a clean S3 error; later parts stream with one part of read-ahead. If every
replica of a later part fails, the connection is cut short (the client sees a truncated body
against its Content-Length), never served wrong bytes.

Versions: without ``versionId`` the latest version is served (through the cache); a latest
delete marker is a 404 ``NoSuchKey`` with ``x-amz-delete-marker: true``. With ``versionId`` the
version is read from PostgreSQL (``null`` names the null version); an unknown or malformed id
is ``NoSuchVersion``, a delete marker a 405 ``MethodNotAllowed``. On a bucket whose versioning
was ever turned on every answer names the version (``x-amz-version-id``).
Conditional headers (``gateway/s3/preconditions.py``) are evaluated on the version found,
before the Range. ``x-amz-checksum-mode: ENABLED`` returns the stored checksum of a whole
object. ``?partNumber=N`` serves one uploaded part of a multipart object (206, ``Content-Range``,
``x-amz-mp-parts-count``; part 1 of a one-part object is all of it; past the last: 416
``InvalidPartNumber``), as the SDKs' parallel downloads read them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from email.utils import format_datetime
from urllib.parse import parse_qsl

from fastapi import Response
from fastapi.responses import StreamingResponse

from actors.reads import current_version, named_version, stream_version
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import xml
from gateway.s3.call import S3Call
from gateway.s3.operations import GetObject, HeadObject
from gateway.s3.preconditions import Outcome, evaluate
from gateway.s3.ranges import parse_range
from gateway.s3.stored_headers import response_overrides
from gateway.s3.versions import is_version_id, version_headers
from schema.records import Bucket, ObjectVersion

__all__ = ["HeaderedError", "get_object", "head_object", "object_headers", "resolve_version"]

#: Bodies up to this length are answered whole, not streamed (``get_object``).
WHOLE_BODY_MAX = 1024 * 1024


class HeaderedError(Exception):
    """An S3 error whose response carries headers (``x-amz-delete-marker``...): rendered by
    the handler itself, since the dispatcher's error seam sends only the request id."""

    def __init__(self, error: s3e.S3Error, headers: Mapping[str, str]) -> None:
        super().__init__(error.message)
        self.error = error
        self.headers = dict(headers)

    def response(self, call: S3Call, *, head: bool) -> Response:
        if head:
            return Response(status_code=self.error.status, headers=self.headers)
        return Response(
            xml.error_document(self.error, call.request_id),
            status_code=self.error.status,
            media_type="application/xml",
            headers=self.headers,
        )


async def resolve_version(
    ctx: GatewayContext, auth: Authorized, key: str, version_id: str | None
) -> ObjectVersion:
    """The stored version a GET/HEAD addresses; raises HeaderedError (delete markers),
    NoSuchKey or NoSuchVersion."""
    bucket = auth.bucket
    assert bucket is not None
    resource = f"/{bucket.name}/{key}"
    if version_id is None:
        version = await current_version(ctx, bucket, key)
        if version is None:
            raise s3e.NoSuchKey(resource=resource)
        if version.is_delete_marker:
            raise HeaderedError(
                s3e.NoSuchKey(resource=resource),
                {"x-amz-delete-marker": "true", **_marker_headers(version)},
            )
        return version
    if not is_version_id(version_id):
        raise s3e.NoSuchVersion(resource=resource)
    found = await named_version(ctx, bucket, key, version_id)
    if found is None:
        raise s3e.NoSuchVersion(resource=resource)
    if found.is_delete_marker:
        raise HeaderedError(
            s3e.MethodNotAllowed(
                "The specified method is not allowed against a delete marker.", resource=resource
            ),
            {"x-amz-delete-marker": "true", "Allow": "DELETE", **_marker_headers(found)},
        )
    return found


def _marker_headers(marker: ObjectVersion) -> dict[str, str]:
    return {
        "x-amz-version-id": marker.api_version_id,
        "Last-Modified": format_datetime(marker.created_at, usegmt=True),
    }


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
    for name, value in version.http_headers.items():
        headers["-".join(part.capitalize() for part in name.split("-"))] = value
    for name, value in version.user_metadata.items():
        # Sent as UTF-8 bytes (the response encodes header text as latin-1, one byte each).
        headers[f"x-amz-meta-{name}"] = value.encode("utf-8").decode("latin-1")
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


def _part_headers(
    version: ObjectVersion, part_number: int
) -> tuple[tuple[int, int] | None, int, dict[str, str]]:
    """(range, status, headers) of ``?partNumber=N``: the uploaded part as a 206 with its
    ``Content-Range`` and the object's ``x-amz-mp-parts-count``; InvalidPartNumber (416)
    past the last part. An empty part (an empty object's part 1) is a 200 without a body."""
    span = version.upload_part_range(part_number)
    if span is None:
        raise s3e.InvalidPartNumber(
            f"The object has {version.upload_part_count} part(s); part {part_number} is not one"
        )
    count = {"x-amz-mp-parts-count": str(version.upload_part_count)}
    if version.upload_part_sizes is None:
        count = {}
    first, last = span
    if last < first:
        return (0, -1), 200, {"Content-Length": "0", **count}
    status, headers = _range_headers(version, span)
    return span, status, {**headers, **count}


def _checksum_headers(
    version: ObjectVersion, headers: Mapping[str, str], whole: bool
) -> dict[str, str]:
    """The stored ``x-amz-checksum-*`` on request (``x-amz-checksum-mode: ENABLED``), for a
    whole-object read only (S3 has no checksum of a range)."""
    if not whole or headers.get("x-amz-checksum-mode", "").strip().upper() != "ENABLED":
        return {}
    if not version.checksum_algorithm or not version.checksum_value:
        return {}
    return {
        f"x-amz-checksum-{version.checksum_algorithm.lower()}": version.checksum_value,
        "x-amz-checksum-type": version.checksum_type or "FULL_OBJECT",
    }


def _conditional(
    bucket: Bucket, version: ObjectVersion, headers: Mapping[str, str]
) -> Response | None:
    """A 304 to send, None to go on; raises PreconditionFailed (412)."""
    outcome = evaluate(headers, version.etag, version.created_at)
    if outcome is Outcome.PRECONDITION_FAILED:
        raise s3e.PreconditionFailed()
    if outcome is Outcome.NOT_MODIFIED:
        return Response(
            status_code=304,
            headers={
                "ETag": f'"{version.etag}"',
                "Last-Modified": format_datetime(version.created_at, usegmt=True),
                **version_headers(bucket, version),
            },
        )
    return None


async def _prepare(
    ctx: GatewayContext, auth: Authorized, call: S3Call, op: GetObject | HeadObject
) -> tuple[ObjectVersion, tuple[int, int] | None, int, dict[str, str]] | Response:
    """The version, range, status and headers of a GET/HEAD, or the response that ends it
    early (304, or an error that carries headers)."""
    bucket = auth.bucket
    assert bucket is not None
    head = isinstance(op, HeadObject)
    try:
        version = await resolve_version(ctx, auth, op.key, op.version_id)
    except HeaderedError as exc:
        return exc.response(call, head=head)
    early = _conditional(bucket, version, call.headers)
    if early is not None:
        return early
    if op.part_number is None:
        rng = parse_range(op.range_header, version.size)
        status, extra = _range_headers(version, rng)
    else:
        rng, status, extra = _part_headers(version, op.part_number)
    whole = op.range_header is None and op.part_number is None
    headers = {
        **object_headers(version),
        **extra,
        **version_headers(bucket, version),
        **_checksum_headers(version, call.headers, whole),
        **response_overrides(dict(parse_qsl(call.view.query_string, keep_blank_values=True))),
    }
    return version, rng, status, headers


async def head_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, HeadObject)
    prepared = await _prepare(ctx, auth, call, op)
    if isinstance(prepared, Response):
        return prepared
    _, _, status, headers = prepared
    return Response(status_code=status, headers=headers)


async def get_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, GetObject)
    prepared = await _prepare(ctx, auth, call, op)
    if isinstance(prepared, Response):
        return prepared
    version, rng, status, headers = prepared
    body = await stream_version(ctx, version, rng)
    length = rng[1] - rng[0] + 1 if rng is not None else version.size
    if length <= WHOLE_BODY_MAX:
        # A small body leaves in one message: a stream costs the replica and the proxy a
        # streaming call with a message per chunk (issue 16 measured the 4 KiB GET's CPU).
        whole = b"".join([chunk async for chunk in body])
        return Response(whole, status_code=status, headers=headers)
    return StreamingResponse(body, status_code=status, headers=headers)
