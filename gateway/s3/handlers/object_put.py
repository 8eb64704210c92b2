"""PutObject: parse the write's headers, store the body through the data path
(``actors.writes.store_object``: validate, place, quorum-write, commit once), answer the ETag.

The body is the request's, verified as it streams (``gateway.s3.body.payload``: signed
SHA-256, aws-chunked framing, ``x-amz-checksum-*``, Content-MD5); the checksums it verified
are stored with the version (type ``FULL_OBJECT``) and answered. A versioned bucket's answer
names the new version (``x-amz-version-id``). Conditional writes (``If-Match`` /
``If-None-Match: *``) are checked in the commit transaction.
"""

from __future__ import annotations

from fastapi import Response

from actors.writes import store_object
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3.body import declared_length, payload
from gateway.s3.call import S3Call
from gateway.s3.conditions import write_condition
from gateway.s3.operations import PutObject
from gateway.s3.stored_headers import stored_headers
from gateway.s3.versions import written_version_headers
from gateway.s3.write_headers import object_metadata, requested_class

__all__ = ["put_object"]


async def put_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, PutObject) and auth.bucket is not None
    principal, headers = auth.principal, call.headers
    envelope, plain_meta = object_metadata(headers)
    wanted = requested_class(ctx.policy, headers)
    condition = write_condition(headers)
    length = declared_length(principal.verified, headers)
    verified: dict[str, str] = {}
    version = await store_object(
        ctx,
        caller=auth.caller(call.request_id),
        tenant_id=principal.tenant_id,
        bucket=auth.bucket,
        key=op.key,
        body=payload(call.body, principal.verified, headers, checksums_out=verified),
        length=length,
        envelope=envelope,
        allow_plaintext=principal.allow_plaintext,
        requested_class=wanted,
        user_metadata=plain_meta,
        content_type=headers.get("content-type"),
        http_headers=stored_headers(headers),
        condition=condition,
        verified_checksums=verified,
    )
    answer = {"ETag": f'"{version.etag}"', **written_version_headers(version)}
    if version.checksum_algorithm and version.checksum_value:
        answer[f"x-amz-checksum-{version.checksum_algorithm}"] = version.checksum_value
    return Response(status_code=200, headers=answer)
