"""CompleteMultipartUpload and AbortMultipartUpload: finish an upload through the data path
(``actors.upload_completion.complete_upload``, ``actors.uploads.abort_upload``).

Complete reads the (size-capped, verified) document listing the parts; its
``x-amz-checksum-*`` headers describe the object, not the document, so they are not checked
against the body but handed to the data path as the object checksum the client expects.
``x-amz-mp-object-size`` and ``If-Match`` / ``If-None-Match: *`` are honoured. The answer is
``CompleteMultipartUploadResult`` with the multipart ETag and, with an algorithm, the
COMPOSITE checksum; on a versioning-enabled bucket ``x-amz-version-id``. A retried Complete
of a completed upload (same parts) gets the first answer again (the data path remembers it).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from fastapi import Response

from actors.upload_completion import check_completable, complete_upload
from actors.uploads import abort_upload
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import xml
from gateway.s3.body import read_small_body
from gateway.s3.call import S3Call
from gateway.s3.conditions import write_condition
from gateway.s3.operations import AbortMultipartUpload, CompleteMultipartUpload

__all__ = ["abort_multipart_upload", "complete_multipart_upload", "object_checksums"]

_NOT_OBJECT_CHECKSUMS = ("x-amz-checksum-algorithm", "x-amz-checksum-type")


def _without_checksums(headers: Mapping[str, str]) -> dict[str, str]:
    """Complete's x-amz-checksum-* headers describe the object, not the XML document."""
    return {k: v for k, v in headers.items() if not k.startswith("x-amz-checksum-")}


def object_checksums(headers: Mapping[str, str]) -> dict[str, str]:
    """The object checksums a Complete request sends: algorithm -> value."""
    return {
        name.removeprefix("x-amz-checksum-"): value
        for name, value in headers.items()
        if name.startswith("x-amz-checksum-") and name not in _NOT_OBJECT_CHECKSUMS
    }


async def complete_multipart_upload(
    ctx: GatewayContext, auth: Authorized, call: S3Call
) -> Response:
    op = auth.op
    assert isinstance(op, CompleteMultipartUpload) and auth.bucket is not None
    bucket, principal = auth.bucket, auth.principal
    await check_completable(ctx, principal.tenant_id, bucket, op.key, op.upload_id)
    document = await read_small_body(
        call.body, principal.verified, _without_checksums(call.headers), xml.MAX_XML_BYTES
    )
    listed = xml.parse_complete_document(document)
    completed = await complete_upload(
        ctx,
        caller=auth.caller(call.request_id),
        tenant_id=principal.tenant_id,
        bucket=bucket,
        key=op.key,
        upload_id=op.upload_id,
        listed=listed,
        allow_plaintext=principal.allow_plaintext,
        condition=write_condition(call.headers),
        declared_size=call.headers.get("x-amz-mp-object-size"),
        requested_checksums=object_checksums(call.headers),
    )
    return Response(
        xml.complete_multipart_upload_document(
            location=f"{ctx.settings.endpoint}/{bucket.name}/{quote(op.key)}",
            bucket=bucket.name,
            key=op.key,
            etag=completed.etag,
            checksum=completed.checksum,
            checksum_type="COMPOSITE" if completed.checksum else None,
        ),
        media_type="application/xml",
        headers={"x-amz-version-id": completed.version_id} if completed.version_id else {},
    )


async def abort_multipart_upload(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, AbortMultipartUpload) and auth.bucket is not None
    await abort_upload(
        ctx,
        auth.caller(call.request_id),
        auth.principal.tenant_id,
        auth.bucket,
        op.key,
        op.upload_id,
    )
    return Response(status_code=204)
