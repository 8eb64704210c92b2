"""CopyObject: parse the copy's headers, copy through the data path (``actors.copies``:
shared backend objects when the target's rules allow, else the verified bytes rewritten),
answer ``CopyObjectResult``.

What this module decides is the protocol: which source version (``versionId`` in
``x-amz-copy-source``), its ``x-amz-copy-source-if-*`` preconditions, the metadata directive
(``COPY`` keeps the source's user metadata, content type and stored headers; ``REPLACE``
takes the request's, where ``x-amz-meta-bp-*`` is refused: the envelope of a copy is always
its source's), and S3's refusal of a copy onto itself that changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Response

from actors.copies import (
    CopiedMetadata,
    copy_version,
    refuse_plaintext_copy,
    refuse_unbound_copy,
    source_version,
)
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import xml
from gateway.s3.call import S3Call, user_metadata
from gateway.s3.conditions import write_condition
from gateway.s3.copy_source import check_copy_source_conditions
from gateway.s3.operations import CopyObject
from gateway.s3.stored_headers import stored_headers
from gateway.s3.versions import written_version_headers
from gateway.s3.write_headers import requested_class
from schema.records import ObjectVersion

__all__ = ["copy_object"]


def _metadata(headers: Mapping[str, str], source: ObjectVersion) -> CopiedMetadata:
    """User metadata, content type and stored headers as ``x-amz-metadata-directive`` says."""
    directive = headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise s3e.InvalidArgument("Unknown metadata directive.")
    if directive == "COPY":
        return CopiedMetadata.of(source)
    meta = user_metadata(headers)
    reserved = sorted(k for k in meta if k.startswith("bp-"))
    if reserved:
        raise s3e.InvalidArgument(
            f"x-amz-meta-{reserved[0]}: the encryption envelope of a copy is its source's;"
            " x-amz-meta-bp-* is reserved (docs/envelope.md section 8)"
        )
    return CopiedMetadata(meta, headers.get("content-type"), stored_headers(headers), True)


async def copy_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, CopyObject) and auth.bucket is not None
    assert auth.source_bucket is not None
    bucket, principal = auth.bucket, auth.principal
    source = await source_version(ctx, auth.source_bucket, op.source.key, op.source.version_id)
    check_copy_source_conditions(call.headers, source)
    same_key = auth.source_bucket.id == bucket.id and op.source.key == op.key
    refuse_unbound_copy(source, same_key)
    refuse_plaintext_copy(source, principal.allow_plaintext)
    copied_meta = _metadata(call.headers, source)
    wanted = requested_class(ctx.policy, call.headers)
    if (
        same_key
        and not copied_meta.replaced
        and wanted is None
        and (op.source.version_id is None or source.is_latest)
    ):
        raise s3e.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself"
            " without changing the object's metadata, storage class, website redirect location"
            " or encryption attributes."
        )
    copied = await copy_version(
        ctx,
        caller=auth.caller(call.request_id),
        tenant_id=principal.tenant_id,
        bucket=bucket,
        key=op.key,
        source=source,
        source_name=f"{op.source.bucket}/{op.source.key}",
        metadata=copied_meta,
        allow_plaintext=principal.allow_plaintext,
        requested_class=wanted,
        condition=write_condition(call.headers),
    )
    headers = {
        "x-amz-copy-source-version-id": source.api_version_id,
        **written_version_headers(copied),
    }
    return Response(
        xml.copy_result_document("CopyObjectResult", copied.etag, copied.created_at),
        media_type="application/xml",
        headers=headers,
    )
