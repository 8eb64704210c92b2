"""The table of ``/admin`` routes: method, path, the least role it needs, and its operation.

The gateway has one FastAPI route for all of ``/admin`` (``gateway/app.py``); it hands every
request to ``route.respond`` with this router, so a path is reachable only as a row of the
table, and a row cannot be written without a role (``AdminRoute.role`` has no default). To add
a route, add one row::

    AdminRoute("POST", "/admin/backends/{name}/drain", Role.OPERATOR, backends.drain_backend)

Paths use Starlette's template syntax (``{name}``, ``{rest:path}``); the parameters reach the
operation as ``AdminCall.path``. ``target`` is an ``AdminOperation``, or a function of the
request that returns one (the import API picks its operation from the rest of the path).

Matching raises ``UnknownAdminRoute`` (404) for a path no row has and ``MethodNotAllowed``
(405) for a known path with another method; ``respond`` authenticates before matching, so an
anonymous caller learns nothing about the table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.routing import compile_path

from core.admin_roles import Role
from gateway.admin.route import AdminOperation
from gateway.s3 import errors as s3e

__all__ = ["AdminRoute", "AdminRouter", "UnknownAdminRoute"]

Target = AdminOperation | Callable[[Request], AdminOperation]


class UnknownAdminRoute(s3e.S3Error):
    status = 404
    code = "NoSuchAdminRoute"
    default_message = "No admin route has this path."


@dataclass(frozen=True)
class AdminRoute:
    method: str
    path: str
    role: Role
    target: Target
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _convertors: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method not in ("GET", "PUT", "POST", "DELETE", "PATCH"):
            raise ValueError(f"admin route {self.path}: unsupported method {self.method}")
        if not self.path.startswith("/admin/") or not isinstance(self.role, Role):
            raise ValueError(f"admin route {self.path}: must be under /admin/ with a Role")
        regex, _, convertors = compile_path(self.path)
        object.__setattr__(self, "_regex", regex)
        object.__setattr__(self, "_convertors", convertors)

    def match(self, path: str) -> dict[str, str] | None:
        found = self._regex.match(path)
        if found is None:
            return None
        return {
            name: str(self._convertors[name].convert(value))
            for name, value in found.groupdict().items()
        }

    def operation(self, request: Request) -> AdminOperation:
        return self.target if isinstance(self.target, AdminOperation) else self.target(request)


class AdminRouter:
    """Every ``/admin`` route; the first row whose path and method match serves a request."""

    def __init__(self, routes: Iterable[AdminRoute]) -> None:
        self.routes = tuple(routes)
        seen = set()
        for route in self.routes:
            if (route.method, route.path) in seen:
                raise ValueError(f"admin route {route.method} {route.path} declared twice")
            seen.add((route.method, route.path))

    def match(self, method: str, path: str) -> tuple[AdminRoute, dict[str, str]]:
        path_known = False
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if route.method == method:
                return route, params
            path_known = True
        if path_known:
            raise s3e.MethodNotAllowed(f"{method} is not allowed on {path}")
        raise UnknownAdminRoute()
