"""UploadPart and UploadPartCopy: one part of a multipart upload, written through the data
path (``actors.uploads.write_part``: placed like an object, quorum-written, recorded in one
transaction), from the request body or from (a range of) a stored version.

A part holds at most ``actors.uploads.part_limit`` bytes. A copied part follows the copy
rules (``x-amz-copy-source-if-*``, ciphertext only under its own name) and must match the
upload's encryption (``check_part_source``). The answer carries the part's ETag and, when the
upload has a checksum algorithm, the part's checksum.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import Response

from actors.copies import refuse_unbound_copy, source_version
from actors.uploads import check_part_source, part_limit, upload_of, write_part
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import xml
from gateway.s3.body import declared_length, payload
from gateway.s3.call import S3Call
from gateway.s3.copy_source import check_copy_source_conditions, copy_range
from gateway.s3.operations import UploadPart, UploadPartCopy
from schema.uploads import Upload, UploadedPart

__all__ = ["upload_part", "upload_part_copy"]


def _part_headers(upload: Upload, part: UploadedPart) -> dict[str, str]:
    headers = {"ETag": f'"{part.etag}"'}
    if upload.checksum_algorithm and part.checksum_value:
        headers[f"x-amz-checksum-{upload.checksum_algorithm}"] = part.checksum_value
    return headers


async def upload_part(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, UploadPart) and auth.bucket is not None
    tenant_id = auth.principal.tenant_id
    upload = await upload_of(ctx, tenant_id, auth.bucket, op.key, op.upload_id)
    length = declared_length(auth.principal.verified, call.headers)
    limit = part_limit(ctx)
    if length > limit:
        raise s3e.EntityTooLarge(
            f"Your proposed part of {length} bytes exceeds the maximum of {limit} bytes."
        )
    part = await write_part(
        ctx,
        tenant_id=tenant_id,
        bucket=auth.bucket,
        upload=upload,
        part_number=op.part_number,
        body=payload(call.body, auth.principal.verified, call.headers),
        length=length,
    )
    return Response(status_code=200, headers=_part_headers(upload, part))


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def upload_part_copy(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, UploadPartCopy) and auth.bucket is not None
    assert auth.source_bucket is not None
    bucket, tenant_id = auth.bucket, auth.principal.tenant_id
    upload = await upload_of(ctx, tenant_id, bucket, op.key, op.upload_id)
    source = await source_version(ctx, auth.source_bucket, op.source.key, op.source.version_id)
    check_copy_source_conditions(call.headers, source)
    same_name = auth.source_bucket.id == bucket.id and op.source.key == op.key
    refuse_unbound_copy(source, same_name)
    check_part_source(upload, source)
    if source.size == 0 and op.range_header is None:
        first, last, body = 0, -1, _nothing()
    else:
        first, last = copy_range(op.range_header, source.size)
        body = ctx.reader.stream(source, first, last)
    length = last - first + 1
    limit = part_limit(ctx)
    if length > limit:
        raise s3e.EntityTooLarge(
            f"The part to copy has {length} bytes; a part holds at most {limit} bytes."
            " Use x-amz-copy-source-range to copy it in several parts."
        )
    part = await write_part(
        ctx,
        tenant_id=tenant_id,
        bucket=bucket,
        upload=upload,
        part_number=op.part_number,
        body=body,
        length=length,
    )
    checksum = (
        (upload.checksum_algorithm, part.checksum_value)
        if upload.checksum_algorithm and part.checksum_value
        else None
    )
    return Response(
        xml.copy_part_result_document(part.etag, datetime.now(UTC), checksum),
        media_type="application/xml",
        headers={"x-amz-copy-source-version-id": source.api_version_id},
    )
