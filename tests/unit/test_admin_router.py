"""The ``/admin`` route table (``gateway/app.py``'s ``ADMIN_ROUTES``): the only way into
``/admin``, every row with a role, and read-only roles only on reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.routing import Route

from core.admin_roles import Role
from gateway.admin.route import operation
from gateway.admin.router import AdminRoute, AdminRouter, UnknownAdminRoute
from gateway.app import ADMIN_ROUTES, fastapi_app
from gateway.s3 import errors as s3e

#: Viewer routes that are POSTs but change nothing.
READ_ONLY_POSTS = {"/admin/policy/explain"}


def _paths(routes: list[Any]) -> Iterator[str]:
    """Every route path, also inside included routers (Serve's ingress includes one)."""
    for r in routes:
        if isinstance(r, Route):
            yield r.path
        inner = getattr(r, "original_router", None) or getattr(r, "routes", None)
        if inner is not None:
            yield from _paths(getattr(inner, "routes", inner))


def test_one_fastapi_route_serves_all_of_admin() -> None:
    """A route added to the app beside the table would skip authorization by role."""
    paths = list(_paths(fastapi_app.routes))
    assert "/health" in paths
    assert [p for p in paths if p.startswith("/admin")] == ["/admin/{path:path}"]


def test_every_row_has_a_role_and_viewers_only_read() -> None:
    assert len(ADMIN_ROUTES.routes) >= 30
    for row in ADMIN_ROUTES.routes:
        assert isinstance(row.role, Role)
        if row.role is Role.VIEWER:
            assert row.method == "GET" or row.path in READ_ONLY_POSTS, row
    roles = {(r.method, r.path): r.role for r in ADMIN_ROUTES.routes}
    assert roles["POST", "/admin/add-storage"] is Role.OPERATOR
    assert roles["POST", "/admin/tenants"] is Role.ADMIN
    assert roles["PUT", "/admin/policy"] is Role.ADMIN
    assert roles["POST", "/admin/token/rotate"] is Role.ADMIN
    assert roles["GET", "/admin/backends"] is Role.VIEWER


def test_matching() -> None:
    route, params = ADMIN_ROUTES.match("POST", "/admin/tenants/acme/keys/BPX/rotate")
    assert route.path == "/admin/tenants/{tenant}/keys/{key}/rotate"
    assert params == {"tenant": "acme", "key": "BPX"}
    route, params = ADMIN_ROUTES.match("GET", "/admin/tenants/acme/import/runs/3")
    assert params == {"tenant": "acme", "rest": "runs/3"} and route.role is Role.VIEWER
    assert ADMIN_ROUTES.match("POST", "/admin/tenants/acme/import/runs")[0].role is Role.ADMIN
    with pytest.raises(UnknownAdminRoute):
        ADMIN_ROUTES.match("GET", "/admin/nothing/here")
    with pytest.raises(s3e.MethodNotAllowed):
        ADMIN_ROUTES.match("PATCH", "/admin/tenants")


def test_a_row_needs_a_role_and_a_path_under_admin() -> None:
    @operation(body=False)
    async def op(call: object) -> None:
        return None

    with pytest.raises(TypeError):
        AdminRoute("GET", "/admin/x", op)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        AdminRoute("GET", "/admin/x", "admin", op)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AdminRoute("GET", "/other", Role.ADMIN, op)
    with pytest.raises(ValueError, match="twice"):
        AdminRouter([AdminRoute("GET", "/admin/x", Role.ADMIN, op)] * 2)
