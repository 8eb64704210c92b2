"""The one shape of every ``/admin`` route: authenticate, parse, run, audit, respond.

``respond`` is the only way an admin operation is reached from HTTP, and it checks the admin
bearer token (``gateway.auth.authenticate_admin``) before it reads the body or runs anything,
so no route can forget authentication. Then it parses the JSON body (for operations declared
with ``body=True``; bounded, ``parse_json``), runs the operation with an ``AdminCall`` and
renders its result as JSON with the request id. Any exception becomes the S3 XML error
document the S3 API sends (``to_s3_error``); an unexpected one is logged and its text never
reaches the client.

An operation appends its audit entry with ``AdminCall.audit`` inside its own transaction, so
the change and its entry commit together; the entry is built from
``schema.audit.Caller(actor="admin", ...)`` there and nowhere else in the admin API.

Deliberately not here: field validation (``fields.py``) and anything an operation does.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from fastapi import Request, Response
from fastapi.responses import JSONResponse

from gateway.admin.fields import parse_json
from gateway.auth import authenticate_admin
from gateway.context import GatewayContext
from gateway.s3.dispatch import error_response
from gateway.s3.errors import to_s3_error
from schema.audit import Caller

__all__ = ["ADMIN_ACTOR", "AdminCall", "AdminOperation", "operation", "respond"]

log = logging.getLogger(__name__)

#: The actor every admin audit entry names (the only admin role there is).
ADMIN_ACTOR = "admin"


@dataclass(frozen=True)
class AdminCall:
    """One authenticated admin request, as an operation sees it: the replica's context, the
    request id, the parsed JSON body (``{}`` for operations that take none), the path
    parameters and the query string."""

    ctx: GatewayContext
    request_id: str
    data: dict[str, Any] = field(default_factory=dict)
    path: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)

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
        caller = Caller(actor=ADMIN_ACTOR, request_id=self.request_id, tenant_id=tenant_id)
        await self.ctx.store.audit.append(conn, caller.entry(action, resource, result))


Run = Callable[[AdminCall], Awaitable[Any]]


@dataclass(frozen=True)
class AdminOperation:
    """An admin operation and whether it reads a JSON body."""

    run: Run
    body: bool


def operation(*, body: bool) -> Callable[[Run], AdminOperation]:
    """Declare an admin operation; ``body=True`` parses the request body as a JSON object."""

    def declare(run: Run) -> AdminOperation:
        return AdminOperation(run=run, body=body)

    return declare


async def respond(
    request: Request,
    ctx_of: Callable[[], Awaitable[GatewayContext]],
    op: AdminOperation,
) -> Response:
    """Serve one admin request with ``op`` (see the module docstring for the order)."""
    request_id = secrets.token_hex(8).upper()
    try:
        ctx = await ctx_of()
        await authenticate_admin(ctx, request.headers.get("authorization"))
        data = parse_json(await request.body()) if op.body else {}
        call = AdminCall(
            ctx=ctx,
            request_id=request_id,
            data=data,
            path=dict(request.path_params),
            query=request.query_params,
        )
        result = await op.run(call)
    except Exception as exc:
        err = to_s3_error(exc, resource=request.url.path)
        if err.code == "InternalError":
            log.error("admin request %s failed", request_id, exc_info=exc)
        return error_response(err, request_id)
    return JSONResponse(result, headers={"x-amz-request-id": request_id})
