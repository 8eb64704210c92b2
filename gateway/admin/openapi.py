"""The OpenAPI 3.0 document of ``/admin``, generated from the route table itself.

The admin API has no FastAPI routes of its own (one catch-all hands every request to
``route.respond`` with ``ADMIN_ROUTES``), so FastAPI cannot describe it. This module writes the
document from the same rows that serve the requests, so it cannot drift from them: one path
item per row, its path parameters, the least role in the description, the bearer token as the
security scheme, a JSON object body for operations that read one (``AdminOperation.body``), and
the error document every failure answers. A ``{rest:path}`` row (the import API's admin
routes) is expanded into the concrete sub-paths its own table serves (``expansions``), with
``{id}`` as an integer parameter.

What it deliberately does not say: the fields of each body. They are validated one by one in
the operations (``fields.py``), not declared as models; the document lets a client (and
schemathesis, tests/fuzz) send any JSON object, and the API answers 4xx for what it refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway.admin.route import AdminCall, AdminOperation, operation
from gateway.admin.router import AdminRoute, AdminRouter

__all__ = ["OPENAPI_PATH", "document", "openapi_document", "openapi_operation", "operation_item"]

OPENAPI_PATH = "/admin/openapi.json"

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}")
_ERROR = {
    "description": "An S3-style XML error document (Code, Message, Resource, RequestId).",
    "content": {"application/xml": {"schema": {"type": "string"}}},
}


def _parameters(path: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0}
            if name == "id"
            else {"type": "string", "minLength": 1},
        }
        for name in _PARAM.findall(path)
    ]


def operation_item(
    method: str,
    path: str,
    *,
    summary: str,
    description: str,
    body: bool,
    security: str,
    error: Mapping[str, Any] = _ERROR,
) -> dict[str, Any]:
    """One OpenAPI operation: path parameters from ``path`` (``{id}`` an integer), a JSON
    result, ``error`` for 4xx/5xx, and an optional JSON object body."""
    item: dict[str, Any] = {
        "operationId": f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
        "summary": summary or f"{method} {path}",
        "description": description,
        "parameters": _parameters(path),
        "security": [{security: []}],
        "responses": {
            "200": {
                "description": "The operation's JSON result.",
                "content": {"application/json": {"schema": {}}},
            },
            "4XX": dict(error),
            "5XX": dict(error),
        },
    }
    if body:
        item["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return item


def document(
    title: str, description: str, paths: dict[str, Any], schemes: dict[str, Any]
) -> dict[str, Any]:
    """An OpenAPI 3.0.3 document around ``paths``."""
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": "1", "description": description},
        "paths": paths,
        "components": {"securitySchemes": schemes},
    }


def _operation_item(route: AdminRoute, path: str, method: str, body: bool) -> dict[str, Any]:
    target = route.target
    summary = ""
    if isinstance(target, AdminOperation) and target.run.__doc__:
        summary = target.run.__doc__.strip().splitlines()[0]
    return operation_item(
        method,
        path,
        summary=summary,
        description=f"Needs the {route.role.label} role (or higher).",
        body=body,
        security="bearer",
    )


def _rows(
    router: AdminRouter, expansions: Mapping[str, Iterable[tuple[str, str]]]
) -> Iterable[tuple[AdminRoute, str, str, bool]]:
    """(row, concrete path, method, reads a body) for every row; ``{rest:path}`` rows become
    one entry per sub-path their table serves for that method."""
    for route in router.routes:
        if "{rest:path}" not in route.path:
            body = isinstance(route.target, AdminOperation) and route.target.body
            yield route, route.path, route.method, body
            continue
        prefix = route.path.removesuffix("{rest:path}")
        for method, sub in expansions.get(route.path, ()):
            if method == route.method:
                yield route, prefix + sub, method, method == "POST"


def openapi_document(
    router: AdminRouter, expansions: Mapping[str, Iterable[tuple[str, str]]] | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of every row of ``router``."""
    paths: dict[str, dict[str, Any]] = {}
    for route, path, method, body in _rows(router, expansions or {}):
        template = _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)
        paths.setdefault(template, {})[method.lower()] = _operation_item(
            route, template, method, body
        )
    return document(
        "Bulletproof admin API",
        "Generated from the gateway's ADMIN_ROUTES table (docs/admin.md).",
        paths,
        {"bearer": {"type": "http", "scheme": "bearer"}},
    )


def openapi_operation(
    router_of: Callable[[], AdminRouter],
    expansions: Mapping[str, Iterable[tuple[str, str]]] | None = None,
) -> AdminOperation:
    """The admin operation serving the document (a row of the table it describes, so the
    table is read when a request comes, once it is complete)."""

    @operation(body=False)
    async def openapi(call: AdminCall) -> dict[str, Any]:
        """The OpenAPI document of this admin API."""
        return openapi_document(router_of(), expansions)

    return openapi
