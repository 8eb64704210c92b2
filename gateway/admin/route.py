"""The one shape of every ``/admin`` request: authenticate, route, authorize, read, run, audit.

``respond`` is the only way an admin operation is reached from HTTP (``gateway/app.py`` sends
all of ``/admin`` to it), in this order:

1. authenticate the bearer token (``identity.authenticate_admin``) from the headers alone:
   an anonymous or bad token is refused before a byte of the body is read;
2. find the route (``router.AdminRouter``: 404 / 405);
3. authorize: the caller's role must be at least the route's (403 otherwise), still before
   the body is read;
4. for operations declared with ``body=True``, read the body capped while it is read
   (``read_document``: a declared ``Content-Length`` over the cap is refused unread, a
   streamed body is abandoned at the first byte past it) and parse it as a JSON object;
5. run the operation with an ``AdminCall`` and render its result as JSON with the request id.

Any exception becomes the S3 XML error document the S3 API sends (``to_s3_error``); an
unexpected one is logged and its text never reaches the client.

An operation appends its audit entry with ``AdminCall.audit`` inside its own transaction, so
the change and its entry commit together; the entry names the caller and its role
(``AdminCall.caller``) and is built there and nowhere else in the admin API.

Deliberately not here: field validation (``fields.py``) and anything an operation does.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from fastapi import Request, Response
from fastapi.responses import JSONResponse

from core.admin_roles import Role
from core.wire_numbers import parse_decimal
from gateway.admin.fields import MAX_BODY, parse_json
from gateway.admin.identity import (
    BOOTSTRAP_ACTOR,
    AdminPrincipal,
    InvalidToken,
    authenticate_admin,
)
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.dispatch import error_response
from gateway.s3.errors import to_s3_error
from schema.audit import Caller

if TYPE_CHECKING:
    from gateway.admin.router import AdminRouter

__all__ = [
    "AdminCall",
    "AdminOperation",
    "DocumentTooLarge",
    "operation",
    "read_document",
    "respond",
]

log = logging.getLogger(__name__)

#: The principal of calls made without HTTP (tests, tools): the bootstrap admin.
_BOOTSTRAP = AdminPrincipal(BOOTSTRAP_ACTOR, Role.ADMIN)


class DocumentTooLarge(s3e.S3Error):
    status = 413
    code = "EntityTooLarge"
    default_message = f"The admin request document is larger than {MAX_BODY} bytes."


@dataclass(frozen=True)
class AdminCall:
    """One authenticated admin request, as an operation sees it: the replica's context, the
    request id, the parsed JSON body (``{}`` for operations that take none), the path
    parameters, the query string and the caller."""

    ctx: GatewayContext
    request_id: str
    data: dict[str, Any] = field(default_factory=dict)
    path: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    principal: AdminPrincipal = _BOOTSTRAP

    def caller(self, tenant_id: int | None = None) -> Caller:
        """This request's caller as the audit log names it: subject, role, request id."""
        return Caller(
            actor=self.principal.actor,
            request_id=self.request_id,
            tenant_id=tenant_id,
            role=self.principal.role.label,
        )

    async def audit(
        self,
        conn: asyncpg.Connection,
        action: str,
        resource: str,
        result: str = "ok",
        *,
        tenant_id: int | None = None,
    ) -> None:
        """Append this request's audit entry inside the caller's transaction."""
        entry = self.caller(tenant_id).entry(action, resource, result)
        await self.ctx.store.audit.append(conn, entry)


Run = Callable[[AdminCall], Awaitable[Any]]


@dataclass(frozen=True)
class AdminOperation:
    """An admin operation and whether it reads a JSON body. Its role is the route's
    (``router.AdminRoute``): one operation may serve several routes."""

    run: Run
    body: bool


def operation(*, body: bool) -> Callable[[Run], AdminOperation]:
    """Declare an admin operation; ``body=True`` parses the request body as a JSON object."""

    def declare(run: Run) -> AdminOperation:
        return AdminOperation(run=run, body=body)

    return declare


async def read_document(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, read only while it stays within ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    without one (chunked) is read chunk by chunk and abandoned at the first chunk past the
    limit, so memory and time stay bounded by the limit, not by what the client sends."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise s3e.InvalidRequest("Content-Length must be a number")
        if parse_decimal(declared, maximum=limit) is None:
            raise DocumentTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise DocumentTooLarge()
    return bytes(body)


async def respond(
    request: Request,
    ctx_of: Callable[[], Awaitable[GatewayContext]],
    router: AdminRouter,
) -> Response:
    """Serve one admin request through ``router`` (see the module docstring for the order)."""
    request_id = secrets.token_hex(8).upper()
    try:
        ctx = await ctx_of()
        principal = await authenticate_admin(ctx, request.headers.get("authorization"))
        route, params = router.match(request.method, request.url.path)
        if not principal.role.allows(route.role):
            raise s3e.AccessDenied(
                f"{request.method} {route.path} needs the {route.role.label} role; "
                f"this caller is {principal.role.label}"
            )
        op = route.operation(request)
        data = parse_json(await read_document(request)) if op.body else {}
        call = AdminCall(
            ctx=ctx,
            request_id=request_id,
            data=data,
            path=params,
            query=request.query_params,
            principal=principal,
        )
        result = await op.run(call)
    except Exception as exc:
        err = to_s3_error(exc, resource=request.url.path)
        if err.code == "InternalError":
            log.error("admin request %s failed", request_id, exc_info=exc)
        response = error_response(err, request_id)
        if isinstance(err, InvalidToken):
            response.headers["www-authenticate"] = 'Bearer error="invalid_token"'
        return response
    return JSONResponse(result, headers={"x-amz-request-id": request_id})
