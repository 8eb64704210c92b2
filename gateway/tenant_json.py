"""The tenant's JSON APIs under SigV4 (``/import/...`` and the console's ``/ui/api/...``):
authentication, the signed JSON body and the JSON error document, in one place.

A tenant's JSON request authenticates exactly as an S3 request does
(``gateway.auth.authenticate`` over the request as signed, ``gateway.s3.dispatch.request_view``)
before anything is parsed or run. A request with a body (a sealed blob, a passphrase) must
sign it: ``x-amz-content-sha256`` is the body's SHA-256 (``UNSIGNED-PAYLOAD`` is refused), so
a passphrase travels only in a request whose every byte the tenant's key vouched for.

Errors are ``{"error": CODE, "message": ..., "request_id": ...}`` with the error's status; an
unexpected exception is logged here (with the request id, never the body) and leaves as a
message-less 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from core import errors as domain
from core.request_limits import BodyPace
from gateway.admission import admit
from gateway.auth import Principal, authenticate
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.body import paced, read_json
from gateway.s3.dispatch import request_view
from gateway.s3.sigv4 import PayloadMode

__all__ = ["SignedJson", "json_error", "read_signed_json"]

log = logging.getLogger(__name__)

# Domain errors the JSON API names by their kind (the S3 codes, e.g. NoSuchKey, would mislead).
_JSON_CODES: tuple[tuple[type[Exception], int, str], ...] = (
    (domain.NoSuchBucket, 404, "NoSuchBucket"),
    (domain.NotFound, 404, "NotFound"),
    (domain.Conflict, 409, "Conflict"),
    (domain.InvalidInput, 400, "InvalidArgument"),
)


class SignedJson:
    """One authenticated tenant request: who signed it and its JSON object body ({} if none)."""

    def __init__(self, principal: Principal, data: dict[str, Any]) -> None:
        self.principal = principal
        self.data = data


async def read_signed_json(ctx: GatewayContext, request: Request, max_body: int) -> SignedJson:
    """Authenticate ``request`` and read its signed JSON object body (POST only)."""
    view = request_view(request)
    principal = await authenticate(ctx, view)
    await admit(ctx, principal, view)
    data: dict[str, Any] = {}
    if request.method == "POST" and view.headers.get("content-length", "1") != "0":
        if principal.verified.payload_mode is PayloadMode.UNSIGNED:
            raise s3e.InvalidRequest(
                "this API needs a signed body: send x-amz-content-sha256 with"
                " the body's SHA-256, not UNSIGNED-PAYLOAD"
            )
        raw = paced(request.stream(), BodyPace.from_settings(ctx.settings))
        body = await read_json(raw, principal.verified, view.headers, max_body)
        if not isinstance(body, dict):
            raise s3e.InvalidRequest("the request body must be a JSON object")
        data = body
    return SignedJson(principal, data)


def json_error(exc: BaseException, request_id: str, resource: str) -> Response:
    """The JSON error document and status for ``exc``."""
    status, code, message = 500, "InternalError", "We encountered an internal error."
    retry_after: int | None = None
    for kind, kind_status, kind_code in _JSON_CODES:
        if isinstance(exc, kind):
            status, code, message = kind_status, kind_code, str(exc)
            break
    else:
        err = s3e.to_s3_error(exc, resource=resource)
        status, code, message = err.status, err.code, err.message
        retry_after = err.retry_after_s
    if code == "InternalError":
        log.error("tenant JSON request %s failed", request_id, exc_info=exc)
    return JSONResponse(
        {"error": code, "message": message, "request_id": request_id},
        status_code=status,
        headers={"x-amz-request-id": request_id}
        | ({} if retry_after is None else {"Retry-After": str(retry_after)}),
    )
