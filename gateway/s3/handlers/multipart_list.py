"""ListParts and ListMultipartUploads.

ListParts pages through one upload's parts by part number (``part-number-marker``,
``max-parts``). ListMultipartUploads lists the bucket's open uploads by key, then by upload id
(ids are time-ordered, so one key's uploads come oldest first), with prefix, delimiter (common
prefixes are seeked past, ``gateway/s3/listing.py``), ``key-marker`` / ``upload-id-marker``
and ``max-uploads``; every upload and every common prefix counts towards ``max-uploads``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Response

from actors.uploads import upload_parts, uploads_page
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import xml
from gateway.s3.call import S3Call
from gateway.s3.listing import is_prefix_marker, past_prefix
from gateway.s3.operations import ListMultipartUploads, ListParts
from schema.uploads import Upload

__all__ = ["list_multipart_uploads", "list_parts"]

_LISTING_BATCH = 1000


async def list_parts(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, ListParts) and auth.bucket is not None
    upload, parts = await upload_parts(
        ctx,
        auth.principal.tenant_id,
        auth.bucket,
        op.key,
        op.upload_id,
        after=op.part_number_marker,
        limit=op.max_parts + 1,
    )
    truncated = len(parts) > op.max_parts
    parts = parts[: op.max_parts]
    return Response(
        xml.list_parts_document(
            bucket=auth.bucket.name,
            key=op.key,
            upload_id=upload.upload_id,
            owner=auth.principal.tenant_name,
            initiator=upload.initiator,
            part_number_marker=op.part_number_marker,
            next_part_number_marker=parts[-1].part_number if parts else None,
            max_parts=op.max_parts,
            is_truncated=truncated,
            checksum_algorithm=upload.checksum_algorithm,
            parts=[
                (p.part_number, p.created_at or datetime.now(UTC), p.etag, p.size, p.checksum_value)
                for p in parts
            ],
        ),
        media_type="application/xml",
    )


async def list_multipart_uploads(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, ListMultipartUploads) and auth.bucket is not None
    prefix, delimiter = op.prefix, op.delimiter
    # Where to start: after an upload (key and upload id), after every upload of a key, or
    # past a common prefix returned as NextKeyMarker.
    after_key = op.key_marker
    after_id: str | None = op.upload_id_marker if op.key_marker and op.upload_id_marker else None
    if after_id is None and is_prefix_marker(after_key, prefix, delimiter):
        after_key, after_id = past_prefix(after_key), ""
    uploads: list[Upload] = []
    prefixes: list[str] = []
    truncated = False
    next_key: str | None = None
    next_id: str | None = None
    exhausted = op.max_uploads == 0
    while not exhausted and not truncated:
        batch = await uploads_page(
            ctx,
            auth.bucket,
            prefix=prefix,
            after_key=after_key,
            after_upload_id=after_id,
            limit=_LISTING_BATCH,
        )
        exhausted = len(batch) < _LISTING_BATCH
        for upload in batch:
            if len(uploads) + len(prefixes) >= op.max_uploads:
                truncated = True
                break
            rest = upload.key[len(prefix) :]
            cut = rest.find(delimiter) if delimiter else -1
            if cut >= 0:
                common = prefix + rest[: cut + len(delimiter)]
                prefixes.append(common)
                next_key, next_id = common, None
                after_key, after_id = past_prefix(common), ""
                exhausted = False
                break
            uploads.append(upload)
            next_key, next_id = upload.key, upload.upload_id
            after_key, after_id = upload.key, upload.upload_id
    return Response(
        xml.list_multipart_uploads_document(
            bucket=auth.bucket.name,
            owner=auth.principal.tenant_name,
            prefix=prefix,
            delimiter=delimiter,
            key_marker=op.key_marker,
            upload_id_marker=op.upload_id_marker,
            next_key_marker=next_key if truncated else None,
            next_upload_id_marker=(next_id or "") if truncated else None,
            max_uploads=op.max_uploads,
            is_truncated=truncated,
            encoding_type=op.encoding_type,
            uploads=[
                (
                    u.key,
                    u.upload_id,
                    u.initiator,
                    u.created_at or datetime.now(UTC),
                    u.checksum_algorithm,
                )
                for u in uploads
            ],
            common_prefixes=prefixes,
        ),
        media_type="application/xml",
    )
