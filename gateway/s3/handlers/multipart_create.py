"""CreateMultipartUpload: parse the upload's headers (envelope and metadata, class, checksum
algorithm and type), start it through the data path (``actors.uploads.create_upload``),
answer ``InitiateMultipartUploadResult``.

Only COMPOSITE multipart checksums are offered: ``x-amz-checksum-type: FULL_OBJECT`` is
NotImplemented, an algorithm this gateway cannot compute InvalidRequest. Abandoned uploads are
aborted by the ``upload_expirer`` worker (``jobs/upload_expirer.py``) after
``upload_expiry_s``.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Response

from actors.uploads import create_upload
from core.checksums import supported_checksums
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import xml
from gateway.s3.call import S3Call
from gateway.s3.operations import CreateMultipartUpload
from gateway.s3.stored_headers import stored_headers
from gateway.s3.write_headers import object_metadata, requested_class

__all__ = ["checksum_algorithm", "create_multipart_upload"]


def checksum_algorithm(headers: Mapping[str, str]) -> str | None:
    """The upload's checksum algorithm (lower case), None without one."""
    raw = headers.get("x-amz-checksum-algorithm")
    kind = (headers.get("x-amz-checksum-type") or "").strip().upper()
    if kind not in ("", "COMPOSITE"):
        if kind == "FULL_OBJECT":
            raise s3e.NotImplemented(
                "FULL_OBJECT checksums of multipart uploads are not supported; use COMPOSITE"
            )
        raise s3e.InvalidRequest(f"Unknown x-amz-checksum-type {kind!r}")
    if raw is None or not raw.strip():
        return None
    algorithm = raw.strip().lower()
    if algorithm not in supported_checksums():
        raise s3e.InvalidRequest(
            f"Checksum algorithm {raw.strip()!r} is not supported by this gateway; use one of: "
            + ", ".join(sorted(a.upper() for a in supported_checksums()))
        )
    return algorithm


async def create_multipart_upload(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, CreateMultipartUpload) and auth.bucket is not None
    bucket, principal, headers = auth.bucket, auth.principal, call.headers
    envelope, meta = object_metadata(headers)
    algorithm = checksum_algorithm(headers)
    upload = await create_upload(
        ctx,
        caller=auth.caller(call.request_id),
        tenant_id=principal.tenant_id,
        bucket=bucket,
        key=op.key,
        initiator=principal.access_key_id,
        envelope=envelope,
        allow_plaintext=principal.allow_plaintext,
        requested_class=requested_class(ctx.policy, headers),
        checksum_algorithm=algorithm,
        user_metadata=meta,
        content_type=headers.get("content-type"),
        http_headers=stored_headers(headers),
    )
    answer = {}
    if algorithm:
        answer["x-amz-checksum-algorithm"] = algorithm.upper()
        answer["x-amz-checksum-type"] = "COMPOSITE"
    return Response(
        xml.initiate_multipart_upload_document(bucket.name, op.key, upload.upload_id),
        media_type="application/xml",
        headers=answer,
    )
