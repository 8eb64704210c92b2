"""The console's own JSON routes, ``/ui/api/...``, for the signed-in tenant (SigV4 with a
signed body, JSON errors: ``gateway.tenant_json``, exactly as ``/import/...``). They live
under ``/ui/`` because ``ui`` is already a reserved bucket name: no tenant's bucket can be
shadowed by them.

| route | answer |
|---|---|
| GET /ui/api/whoami | tenant, access key id, buckets, published key ids (signing in) |
| GET /ui/api/policy | classes, the tenant's rules, the backends it may use |
| POST /ui/api/explain | ``{destination, class?, region_lock?, key?, size?}``: where it goes |
| GET /ui/api/overview | backends (health, RTT, the tenant's bytes), replica states, repairs |
| GET /ui/api/runs/N/throughput | the import's verified objects and bytes over time |

The handlers only route; ``ConsoleService`` does the work.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from gateway.console.service import ConsoleService
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.tenant_json import SignedJson, json_error, read_signed_json

__all__ = ["ConsoleApi"]

_MAX_BODY = 16 * 1024

_Op = Callable[[ConsoleService, GatewayContext, SignedJson, tuple[int, ...]], Awaitable[Any]]

_ROUTES: tuple[tuple[str, re.Pattern[str], _Op], ...] = (
    ("GET", re.compile(r"^whoami$"), lambda s, ctx, r, ids: s.whoami(ctx, r.principal)),
    ("GET", re.compile(r"^policy$"), lambda s, ctx, r, ids: s.policy(ctx, r.principal.tenant_id)),
    (
        "POST",
        re.compile(r"^explain$"),
        lambda s, ctx, r, ids: s.explain(ctx, r.principal.tenant_id, r.data),
    ),
    (
        "GET",
        re.compile(r"^overview$"),
        lambda s, ctx, r, ids: s.overview(ctx, r.principal.tenant_id),
    ),
    (
        "GET",
        re.compile(r"^runs/(\d{1,18})/throughput$"),
        lambda s, ctx, r, ids: s.throughput(ctx, r.principal.tenant_id, ids[0]),
    ),
)


class _NoRoute(s3e.S3Error):
    status = 404
    code = "NotFound"
    default_message = "No such console API resource."


def _match(method: str, path: str) -> tuple[_Op, tuple[int, ...]]:
    allowed = False
    for route_method, pattern, op in _ROUTES:
        found = pattern.match(path)
        if found is None:
            continue
        if route_method == method:
            return op, tuple(int(g) for g in found.groups())
        allowed = True
    if allowed:
        raise s3e.MethodNotAllowed(f"{method} is not allowed on this console resource")
    raise _NoRoute(f"no console API resource {path!r}")


class ConsoleApi:
    PREFIX = "/ui/api/"

    def __init__(self, service: ConsoleService | None = None) -> None:
        self.service = service or ConsoleService()

    async def handle(
        self, request: Request, ctx_of: Callable[[], Awaitable[GatewayContext]]
    ) -> Response:
        """Authenticate, route and answer one ``/ui/api/...`` request (module docstring)."""
        request_id = secrets.token_hex(8).upper()
        resource = request.url.path
        try:
            ctx = await ctx_of()
            signed = await read_signed_json(ctx, request, _MAX_BODY)
            op, ids = _match(request.method, resource[len(self.PREFIX) :])
            result = await op(self.service, ctx, signed, ids)
        except Exception as exc:
            return json_error(exc, request_id, resource)
        return JSONResponse(
            result,
            headers={"x-amz-request-id": request_id, "Cache-Control": "no-store"},
        )
