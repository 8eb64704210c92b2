"""The import API's routes: ``/import/...`` for tenants (SigV4, JSON) and
``/admin/imports/...``, ``/admin/tenants/{tenant}/import/...`` for administrators (bearer
token; reading needs the viewer role, changing the admin role: ``gateway/app.py``'s table).

Tenant requests authenticate exactly as S3 requests do, before anything is parsed or run
(``gateway.tenant_json``, shared with the console's API).
A request with a body (a sealed blob, a passphrase) must sign it: ``x-amz-content-sha256`` is
the body's SHA-256 (``UNSIGNED-PAYLOAD`` is refused), so the passphrase travels only in a
request whose every byte the tenant's key vouched for. Answers and errors are JSON:
``{"error": CODE, "message": ..., "request_id": ...}`` with the error's status; an unexpected
exception is logged here and leaves as a message-less 500.

Admin requests go through ``gateway.admin.respond`` like every ``/admin`` route (token first,
S3 XML errors) and reach the same ``ImportService`` operations with no tenant restriction.

Routes (``N`` an import id, ``S`` a source id; POST bodies are JSON objects):

| tenant | admin | operation |
|---|---|---|
| POST /import/sources | POST /admin/tenants/T/import/sources | create source |
| GET /import/sources | GET /admin/tenants/T/import/sources | list sources |
| GET /import/sources/S | GET /admin/import-sources/S | show source |
| POST /import/sources/S/test | POST /admin/import-sources/S/test | test connection |
| POST /import/runs | POST /admin/tenants/T/import/runs | create import |
| GET /import/runs | GET /admin/imports[?tenant=T] | list imports |
| GET /import/runs/N | GET /admin/imports/N | status |
| GET /import/runs/N/errors | GET /admin/imports/N/errors | failed keys, paged |
| POST /import/runs/N/start | POST /admin/imports/N/start | start (passphrase) |
| POST /import/runs/N/cancel | POST /admin/imports/N/cancel | cancel |
| POST /import/runs/N/resume | POST /admin/imports/N/resume | resume |
| POST /import/runs/N/verify | POST /admin/imports/N/verify | verify again |
| POST /import/runs/N/mark-source | POST /admin/imports/N/mark-source | deletion manifest |
| GET /import/runs/N/deletion-manifest | GET /admin/imports/N/deletion-manifest | download |
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from core.wire_numbers import INT64_MAX, parse_decimal
from gateway.admin.openapi import document, operation_item
from gateway.admin.route import AdminCall, AdminOperation, operation
from gateway.context import GatewayContext
from gateway.imports.service import ImportService
from gateway.s3 import errors as s3e
from gateway.tenant_json import json_error, read_signed_json
from schema.audit import Caller

__all__ = ["ImportApi"]

_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class _Call:
    """One import request as an operation sees it, whoever made it."""

    ctx: GatewayContext
    caller: Caller
    #: The tenant acted for; None for the admin's operations on any tenant's import.
    tenant_id: int | None
    data: dict[str, Any]
    ids: tuple[int, ...]
    query: Mapping[str, str]


_Op = Callable[[ImportService, _Call], Awaitable[Any]]


def _tenant(call: _Call) -> int:
    assert call.tenant_id is not None
    return call.tenant_id


# (method, path below the prefix, operation). ``\d+`` groups become ``_Call.ids``.
_SOURCE_OPS: tuple[tuple[str, str, _Op], ...] = (
    ("GET", r"(\d+)", lambda s, c: s.show_source(c.ctx, c.tenant_id, c.ids[0])),
    (
        "POST",
        r"(\d+)/test",
        lambda s, c: s.test_source(c.ctx, c.tenant_id, c.caller, c.ids[0], c.data),
    ),
)
_TENANT_SCOPED: tuple[tuple[str, str, _Op], ...] = (
    ("POST", r"sources", lambda s, c: s.create_source(c.ctx, _tenant(c), c.caller, c.data)),
    ("GET", r"sources", lambda s, c: s.list_sources(c.ctx, _tenant(c))),
    ("POST", r"runs", lambda s, c: s.create_import(c.ctx, _tenant(c), c.caller, c.data)),
)
_RUN_OPS: tuple[tuple[str, str, _Op], ...] = (
    ("GET", r"(\d+)", lambda s, c: s.status(c.ctx, c.tenant_id, c.ids[0])),
    (
        "GET",
        r"(\d+)/errors",
        lambda s, c: s.errors(
            c.ctx, c.tenant_id, c.ids[0], after=c.query.get("after"), limit=c.query.get("limit")
        ),
    ),
    ("POST", r"(\d+)/start", lambda s, c: s.start(c.ctx, c.tenant_id, c.caller, c.ids[0], c.data)),
    ("POST", r"(\d+)/cancel", lambda s, c: s.cancel(c.ctx, c.tenant_id, c.caller, c.ids[0])),
    (
        "POST",
        r"(\d+)/resume",
        lambda s, c: s.resume(c.ctx, c.tenant_id, c.caller, c.ids[0], c.data),
    ),
    (
        "POST",
        r"(\d+)/verify",
        lambda s, c: s.verify(c.ctx, c.tenant_id, c.caller, c.ids[0], c.data),
    ),
    (
        "POST",
        r"(\d+)/mark-source",
        lambda s, c: s.mark_source(c.ctx, c.tenant_id, c.caller, c.ids[0]),
    ),
    (
        "GET",
        r"(\d+)/deletion-manifest",
        lambda s, c: s.deletion_manifest(c.ctx, c.tenant_id, c.ids[0]),
    ),
)
_LIST_RUNS: _Op = lambda s, c: s.list_imports(  # noqa: E731
    c.ctx, c.tenant_id, before=c.query.get("before"), limit=c.query.get("limit")
)


def _table(prefix: str, ops: tuple[tuple[str, str, _Op], ...]) -> list[tuple[str, Any, _Op]]:
    return [(method, re.compile(f"^{prefix}{path}$"), op) for method, path, op in ops]


def tenant_openapi() -> dict[str, Any]:
    """The tenant import API (``/import/...``) as an OpenAPI document, from the same tables
    that route its requests (``GET /import/openapi.json``; tests/fuzz runs schemathesis on
    it). Every request is SigV4-signed like an S3 request, bodies with their SHA-256."""
    rows = [
        *((m, p) for m, p, _ in _TENANT_SCOPED),
        ("GET", "runs"),
        *((m, "sources/" + p) for m, p, _ in _SOURCE_OPS),
        *((m, "runs/" + p) for m, p, _ in _RUN_OPS),
    ]
    paths: dict[str, Any] = {}
    for method, sub in rows:
        path = "/import/" + sub.replace(r"(\d+)", "{id}")
        paths.setdefault(path, {})[method.lower()] = operation_item(
            method,
            path,
            summary=f"{method} {path}",
            description="Signed with AWS SigV4 by the tenant's access key (docs/import.md).",
            body=method == "POST",
            security="sigv4",
            error=_JSON_ERROR,
        )
    return document(
        "Bulletproof import API (tenant)",
        "Generated from gateway/imports/routes.py's route tables.",
        paths,
        {"sigv4": {"type": "apiKey", "in": "header", "name": "Authorization"}},
    )


_JSON_ERROR = {
    "description": "The JSON error document: error, message, request_id.",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


async def _openapi(service: ImportService, call: _Call) -> dict[str, Any]:
    return tenant_openapi()


_TENANT_ROUTES = [
    ("GET", re.compile(r"^openapi\.json$"), _openapi),
    *_table("", _TENANT_SCOPED),
    ("GET", re.compile(r"^runs$"), _LIST_RUNS),
    *_table("sources/", _SOURCE_OPS),
    *_table("runs/", _RUN_OPS),
]


def _match(
    routes: list[tuple[str, Any, _Op]], method: str, path: str
) -> tuple[_Op, tuple[int, ...]]:
    allowed = False
    for route_method, pattern, op in routes:
        found = pattern.match(path)
        if found is None:
            continue
        if route_method == method:
            # Ids are BIGINT: a longer number names nothing (and must not reach int() or SQL).
            ids = [parse_decimal(g, maximum=INT64_MAX) for g in found.groups()]
            if any(i is None for i in ids):
                break
            return op, tuple(i for i in ids if i is not None)
        allowed = True
    if allowed:
        raise s3e.MethodNotAllowed(f"{method} is not allowed on this import resource")
    raise _NoRoute(f"no import API resource {path!r}")


class _NoRoute(s3e.S3Error):
    status = 404
    code = "NotFound"
    default_message = "No such import API resource."


def _render(result: Any, request_id: str) -> Response:
    headers = {"x-amz-request-id": request_id}
    if isinstance(result, AsyncIterator):
        headers["Content-Disposition"] = 'attachment; filename="deletion-manifest.json"'
        return StreamingResponse(result, media_type="application/json", headers=headers)
    return JSONResponse(result, headers=headers)


class ImportApi:
    """The import routes of one gateway replica, over its ``ImportService``."""

    PREFIX = "/import/"

    def __init__(self, service: ImportService | None = None) -> None:
        self.service = service or ImportService()

    async def tenant(
        self, request: Request, ctx_of: Callable[[], Awaitable[GatewayContext]]
    ) -> Response:
        """Serve one ``/import/...`` request of a tenant (module docstring)."""
        request_id = secrets.token_hex(8).upper()
        resource = request.url.path
        try:
            ctx = await ctx_of()
            signed = await read_signed_json(ctx, request, _MAX_BODY)
            principal = signed.principal
            op, ids = _match(_TENANT_ROUTES, request.method, resource[len(self.PREFIX) :])
            data = signed.data
            call = _Call(
                ctx=ctx,
                caller=Caller(principal.access_key_id, request_id, principal.tenant_id),
                tenant_id=principal.tenant_id,
                data=data,
                ids=ids,
                query=request.query_params,
            )
            result = await op(self.service, call)
        except Exception as exc:
            return json_error(exc, request_id, resource)
        return _render(result, request_id)

    @staticmethod
    def admin_paths() -> dict[str, list[tuple[str, str]]]:
        """The sub-paths each admin ``{rest:path}`` row serves, as OpenAPI templates (``{id}``
        for a number), from the same tables ``admin_operation`` matches with."""

        def templates(ops: tuple[tuple[str, str, _Op], ...]) -> list[tuple[str, str]]:
            return [(method, path.replace(r"(\d+)", "{id}")) for method, path, _ in ops]

        return {
            "/admin/imports/{rest:path}": templates(_RUN_OPS),
            "/admin/import-sources/{rest:path}": templates(_SOURCE_OPS),
            "/admin/tenants/{tenant}/import/{rest:path}": templates(_TENANT_SCOPED),
        }

    def admin_operation(self, request: Request) -> AdminOperation:
        """The admin operation a ``/admin/imports/...``, ``/admin/import-sources/...`` or
        ``/admin/tenants/{tenant}/import/...`` request names (run by ``admin.respond`` after
        the token is checked)."""
        service = self.service
        path = request.url.path
        method = request.method

        @operation(body=method == "POST")
        async def run(admin: AdminCall) -> Any:
            tenant_id: int | None = None
            if path.startswith("/admin/tenants/"):
                tenant_name = admin.path.get("tenant", "")
                async with admin.ctx.store.db.connection() as conn:
                    tenant_id = (await admin.ctx.store.tenants.get_by_name(conn, tenant_name)).id
                op, ids = _match(_table("", _TENANT_SCOPED), method, admin.path.get("rest", ""))
            elif path.startswith("/admin/import-sources/"):
                op, ids = _match(_table("", _SOURCE_OPS), method, admin.path.get("rest", ""))
            else:
                rest = admin.path.get("rest", "")
                if rest == "" and method == "GET":
                    name = admin.query.get("tenant")
                    if name:
                        async with admin.ctx.store.db.connection() as conn:
                            tenant_id = (await admin.ctx.store.tenants.get_by_name(conn, name)).id
                    op, ids = _LIST_RUNS, ()
                else:
                    op, ids = _match(_table("", _RUN_OPS), method, rest)
            call = _Call(
                ctx=admin.ctx,
                caller=admin.caller(tenant_id),
                tenant_id=tenant_id,
                data=admin.data,
                ids=ids,
                query=admin.query,
            )
            result = await op(service, call)
            if isinstance(result, AsyncIterator):  # the deletion manifest, whole, for the CLI
                return json.loads(b"".join([chunk async for chunk in result]))
            return result

        return run
