"""The S3 front door: authenticate, parse, authorize, dispatch; one error seam.

Every request gets a request id; every authenticated one an audit entry
(``gateway/s3/access_log.py``). Every failure, whatever raised it, leaves as an S3 XML
error with the right status (``to_s3_error``); an unexpected exception is logged with its
traceback here and reaches the client only as ``InternalError`` without its text.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

from fastapi import Request, Response

from core.errors import LimitExceeded
from core.request_context import bind_request_id, usable_request_id
from core.request_limits import BodyPace
from gateway.admission import Admitted, admit, charge_response, release
from gateway.auth import Authorized, authenticate, authorize
from gateway.context import GatewayContext
from gateway.front_door import SIGNED_PATH_KEY
from gateway.metrics import count_admission, record_request
from gateway.s3 import access_log, xml
from gateway.s3 import operations as ops
from gateway.s3.body import paced
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
from gateway.s3.handlers.envelopes import get_envelopes
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
from gateway.s3.handlers.placement_proof import get_placement_proof
from gateway.s3.handlers.rewrap import rewrap_object, rewrap_objects
from gateway.s3.handlers.versioning import (
    get_bucket_versioning,
    list_object_versions,
    put_bucket_versioning,
)
from gateway.s3.header_rules import refuse_unsupported_headers
from gateway.s3.sigv4 import HttpRequestView
from gateway.sts import handle_sts, is_sts_request
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
    ops.GetEnvelopes: get_envelopes,
    ops.ShareObject: share_object,
    ops.ListRecipients: list_recipients,
    ops.GetPlacementProof: get_placement_proof,
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
    if err.retry_after_s is not None:
        headers["Retry-After"] = str(err.retry_after_s)
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
    request_id = usable_request_id(serve_request_id()) or secrets.token_hex(8).upper()
    bind_request_id(request_id)
    resource = request.url.path
    started = time.monotonic()
    operation, code = "Unparsed", "OK"
    admitted: Admitted | None = None
    caller: Caller | None = None
    op: ops.Operation | None = None
    try:
        view = request_view(request)
        if is_sts_request(view):  # unsigned by design: the web identity token is the credential
            return await handle_sts(ctx, request, view, request_id)
        principal = await authenticate(ctx, view)
        caller = Caller(principal.access_key_id, request_id, principal.tenant_id)
        admitted = await admit(ctx, principal, view)
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
        operation = type(op).__name__
        handler = handlers.get(type(op))
        if handler is None:
            raise ops_not_implemented(op)
        refuse_unsupported_headers(view.headers)
        auth = await authorize(ctx, principal, op)
        body = paced(request.stream(), BodyPace.from_settings(ctx.settings))
        response = await handler(ctx, auth, S3Call(view, request_id, body))
        charge_response(ctx, principal, view.method, response)
        if response.status_code >= 400:
            await release(ctx, admitted)
        response = await access_log.audited(ctx, caller, op, response, view.headers)
    except Exception as exc:
        await release(ctx, admitted)
        err = to_s3_error(exc, resource=resource)
        if isinstance(exc, LimitExceeded):
            count_admission("uploads_limit")
        if err.code == "InternalError":
            log.error("request %s failed", request_id, exc_info=exc)
        if caller is not None:  # authenticated: the refusal or failure is an access too
            action = type(op).__name__ if op is not None else request.method
            target = access_log.resource_of(op) if op is not None else resource
            await access_log.record(ctx, caller, action, target, f"{err.code} {err.status}", None)
        code = err.code
        response = error_response(err, request_id, head=request.method == "HEAD")
    else:
        response.headers["x-amz-request-id"] = request_id
    record_request(
        operation,
        code,
        time.monotonic() - started,
        _length(request.headers.get("content-length")),
        _length(response.headers.get("content-length")) if code == "OK" else 0,
    )
    return response


def serve_request_id() -> str | None:
    """The id Ray Serve's proxy gave this HTTP request (its access log and the replica's JSON
    log lines carry it): used as ``x-amz-request-id`` so one id names the request everywhere.
    None outside Serve (tests calling ``handle_s3`` directly)."""
    try:
        from ray.serve.context import _get_serve_request_context

        return _get_serve_request_context().request_id or None
    except Exception:  # a Serve internals change must not fail a request
        return None


def _length(value: str | None) -> int:
    """A declared body length for the byte counters (0 when absent or not a number)."""
    return int(value) if value is not None and value.isdigit() and len(value) <= 18 else 0


def ops_not_implemented(op: ops.Operation) -> S3Error:
    from gateway.s3.errors import NotImplemented as S3NotImplemented

    return S3NotImplemented(f"{type(op).__name__} is not supported on this endpoint")
