"""The S3 front door: authenticate, parse, authorize, dispatch; one error seam.

Every request gets a request id; every authenticated one an audit entry
(``gateway/s3/access_log.py``). Every failure, whatever raised it, leaves as an S3 XML
error with the right status (``to_s3_error``); an unexpected exception is logged with its
traceback here and reaches the client only as ``InternalError`` without its text.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

from fastapi import Request, Response

from gateway.auth import Authorized, authenticate, authorize
from gateway.context import GatewayContext
from gateway.front_door import SIGNED_PATH_KEY
from gateway.s3 import access_log, xml
from gateway.s3 import operations as ops
from gateway.s3.call import S3Call
from gateway.s3.errors import S3Error, to_s3_error
from gateway.s3.handlers.acl import get_acl, put_acl
from gateway.s3.handlers.audit_log import list_audit_log
from gateway.s3.handlers.bucket import (
    create_bucket,
    delete_bucket,
    get_bucket_location,
    head_bucket,
    list_buckets,
)
from gateway.s3.handlers.copy import copy_object
from gateway.s3.handlers.delete_objects import delete_objects
from gateway.s3.handlers.keys import list_keys, list_recipients, publish_key, share_object
from gateway.s3.handlers.list import list_objects
from gateway.s3.handlers.multipart_complete import (
    abort_multipart_upload,
    complete_multipart_upload,
)
from gateway.s3.handlers.multipart_create import create_multipart_upload
from gateway.s3.handlers.multipart_list import list_multipart_uploads, list_parts
from gateway.s3.handlers.multipart_part import upload_part, upload_part_copy
from gateway.s3.handlers.object_delete import delete_object
from gateway.s3.handlers.object_put import put_object
from gateway.s3.handlers.object_read import get_object, head_object
from gateway.s3.handlers.rewrap import rewrap_object, rewrap_objects
from gateway.s3.handlers.versioning import (
    get_bucket_versioning,
    list_object_versions,
    put_bucket_versioning,
)
from gateway.s3.header_rules import refuse_unsupported_headers
from gateway.s3.sigv4 import HttpRequestView
from schema.audit import Caller

__all__ = ["error_response", "handle_s3", "request_view"]

log = logging.getLogger(__name__)

Handler = Callable[[GatewayContext, Authorized, S3Call], Awaitable[Response]]

HANDLERS: Mapping[type, Handler] = {
    ops.ListBuckets: list_buckets,
    ops.CreateBucket: create_bucket,
    ops.HeadBucket: head_bucket,
    ops.DeleteBucket: delete_bucket,
    ops.GetBucketLocation: get_bucket_location,
    ops.ListObjects: list_objects,
    ops.PutObject: put_object,
    ops.GetObject: get_object,
    ops.HeadObject: head_object,
    ops.DeleteObject: delete_object,
    ops.RewrapObject: rewrap_object,
    ops.RewrapObjects: rewrap_objects,
    ops.ShareObject: share_object,
    ops.ListRecipients: list_recipients,
    ops.PublishKey: publish_key,
    ops.ListKeys: list_keys,
    ops.ListAuditLog: list_audit_log,
    ops.CopyObject: copy_object,
    ops.CreateMultipartUpload: create_multipart_upload,
    ops.UploadPart: upload_part,
    ops.UploadPartCopy: upload_part_copy,
    ops.CompleteMultipartUpload: complete_multipart_upload,
    ops.AbortMultipartUpload: abort_multipart_upload,
    ops.ListParts: list_parts,
    ops.ListMultipartUploads: list_multipart_uploads,
    ops.PutBucketVersioning: put_bucket_versioning,
    ops.GetBucketVersioning: get_bucket_versioning,
    ops.ListObjectVersions: list_object_versions,
    ops.DeleteObjects: delete_objects,
    ops.GetAcl: get_acl,
    ops.PutAcl: put_acl,
}

MAX_HEADER_BYTES = 16 * 1024


def request_view(request: Request) -> HttpRequestView:
    """The request as the client signed it: for a virtual-hosted request, the path it sent
    (``gateway/front_door.py`` rewrote the routed path to path-style)."""
    scope = request.scope
    routed = bytes(scope.get("raw_path") or scope["path"].encode())
    raw_path = scope.get(SIGNED_PATH_KEY, "").encode("latin-1") or routed
    headers: dict[str, str] = {}
    total = 0
    for name_b, value_b in scope["headers"]:
        name = name_b.decode("latin-1").lower()
        value = value_b.decode("latin-1")
        total += len(name) + len(value)
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    if total > MAX_HEADER_BYTES:
        from gateway.s3.errors import RequestHeaderSectionTooLarge

        raise RequestHeaderSectionTooLarge()
    return HttpRequestView(
        method=request.method,
        raw_path=raw_path.decode("latin-1"),
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        routed_path=routed.decode("latin-1"),
    )


def error_response(err: S3Error, request_id: str, *, head: bool = False) -> Response:
    headers = {"x-amz-request-id": request_id}
    if head:
        return Response(status_code=err.status, headers=headers)
    return Response(
        xml.error_document(err, request_id),
        status_code=err.status,
        media_type="application/xml",
        headers=headers,
    )


async def handle_s3(
    ctx: GatewayContext,
    request: Request,
    *,
    parse: Callable[[HttpRequestView], ops.Operation] | None = None,
    handlers: Mapping[type, Handler] = HANDLERS,
) -> Response:
    request_id = secrets.token_hex(8).upper()
    resource = request.url.path
    caller: Caller | None = None
    op: ops.Operation | None = None
    try:
        view = request_view(request)
        principal = await authenticate(ctx, view)
        caller = Caller(principal.access_key_id, request_id, principal.tenant_id)
        if parse is None:
            routed = request.scope.get("raw_path") or request.scope["path"].encode()
            op = ops.parse_operation(
                view.method,
                bytes(routed).decode("latin-1"),
                parse_qsl(view.query_string, keep_blank_values=True),
                view.headers,
            )
        else:
            op = parse(view)
        handler = handlers.get(type(op))
        if handler is None:
            raise ops_not_implemented(op)
        refuse_unsupported_headers(view.headers)
        auth = await authorize(ctx, principal, op)
        response = await handler(ctx, auth, S3Call(view, request_id, request.stream()))
        response = await access_log.audited(ctx, caller, op, response, view.headers)
    except Exception as exc:
        err = to_s3_error(exc, resource=resource)
        if err.code == "InternalError":
            log.error("request %s failed", request_id, exc_info=exc)
        if caller is not None:  # authenticated: the refusal or failure is an access too
            action = type(op).__name__ if op is not None else request.method
            target = access_log.resource_of(op) if op is not None else resource
            await access_log.record(ctx, caller, action, target, f"{err.code} {err.status}", None)
        return error_response(err, request_id, head=request.method == "HEAD")
    response.headers["x-amz-request-id"] = request_id
    return response


def ops_not_implemented(op: ops.Operation) -> S3Error:
    from gateway.s3.errors import NotImplemented as S3NotImplemented

    return S3NotImplemented(f"{type(op).__name__} is not supported on this endpoint")
