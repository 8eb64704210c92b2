"""The one admin request shape (``gateway/admin/route.py``) without services: the token is
checked, the route found and the role compared before the body is read or the operation runs;
the body is read capped while it streams; errors render as the S3 XML document; audit entries
name the caller and its role."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.requests import Request

from core.admin_roles import Role
from gateway.admin import route
from gateway.admin.fields import MAX_BODY
from gateway.admin.identity import AdminPrincipal, InvalidToken
from gateway.admin.route import AdminCall, AdminOperation, operation, respond
from gateway.admin.router import AdminRoute, AdminRouter
from schema.audit import AuditEntry

TOKENS = {
    "good": AdminPrincipal("admin", Role.ADMIN),
    "op": AdminPrincipal("oidc:corp:olga", Role.OPERATOR),
    "view": AdminPrincipal("oidc:corp:vic", Role.VIEWER),
}


def _request(
    chunks: Iterator[bytes] | list[bytes],
    *,
    token: str | None,
    query: bytes = b"",
    method: str = "PUT",
    path: str = "/admin/tenants/acme/placement",
    content_length: int | None = None,
) -> Request:
    headers = [(b"host", b"gw")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    source = iter(chunks)
    read: list[int] = []

    async def receive() -> dict[str, Any]:
        chunk = next(source, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": True}

    scope = {
        "type": "http",
        "method": method,
        "scheme": "http",
        "server": ("gw", 80),
        "path": path,
        "root_path": "",
        "query_string": query,
        "headers": headers,
    }
    request = Request(scope, receive)
    request.state.read = read
    return request


class _Ctx:
    """Stands in for GatewayContext: only the audit log is touched here."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []
        ctx = self

        class _Audit:
            async def append(self, conn: object, entry: AuditEntry) -> int:
                ctx.entries.append(entry)
                return len(ctx.entries)

        class _Store:
            audit = _Audit()

        self.store = _Store()


def _router(op: AdminOperation, role: Role = Role.ADMIN) -> AdminRouter:
    return AdminRouter(
        [
            AdminRoute("PUT", "/admin/tenants/{tenant}/placement", role, op),
            AdminRoute("GET", "/admin/tenants/{tenant}/placement", Role.VIEWER, op),
        ]
    )


def _serve(request: Request, router: AdminRouter, ctx: _Ctx | None = None) -> Any:
    async def ctx_of() -> Any:
        return ctx or _Ctx()

    return asyncio.run(respond(request, ctx_of, router))


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Authentication by a fixed table; identity.py's own tests cover the real one."""

    async def authenticate(ctx: object, authorization: str | None) -> AdminPrincipal:
        token = (authorization or "").removeprefix("Bearer ")
        if token not in TOKENS:
            raise InvalidToken("The admin token is not valid")
        return TOKENS[token]

    monkeypatch.setattr(route, "authenticate_admin", authenticate)


@operation(body=True)
async def _echo(call: AdminCall) -> dict[str, Any]:
    return {"data": call.data, "tenant": call.path["tenant"]}


def test_token_checked_before_body_or_operation() -> None:
    ran: list[AdminCall] = []

    @operation(body=True)
    async def op(call: AdminCall) -> dict[str, Any]:
        ran.append(call)
        return {}

    for token in (None, "wrong"):
        request = _request([b"not json"], token=token)
        response = _serve(request, _router(op))
        assert response.status_code == 401
        assert b"<Code>InvalidToken</Code>" in response.body
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["x-amz-request-id"]
        assert not ran and not request.state.read


def test_role_checked_before_body_or_operation() -> None:
    ran: list[AdminCall] = []

    @operation(body=True)
    async def op(call: AdminCall) -> dict[str, Any]:
        ran.append(call)
        return {}

    for token in ("view", "op"):
        request = _request([b'{"a": 1}'], token=token)
        response = _serve(request, _router(op, Role.ADMIN))
        assert response.status_code == 403, token
        assert b"needs the admin role" in response.body
        assert not ran and not request.state.read
    # A lower role on its own route, and a higher role anywhere, pass.
    assert _serve(_request([], token="view", method="GET"), _router(op)).status_code == 200
    assert _serve(_request([b"{}"], token="op"), _router(op, Role.OPERATOR)).status_code == 200
    assert len(ran) == 2


def test_unknown_route_and_method_after_authentication() -> None:
    anonymous = _serve(_request([], token=None, path="/admin/nothing"), _router(_echo))
    assert anonymous.status_code == 401
    missing = _serve(_request([], token="good", path="/admin/nothing"), _router(_echo))
    assert missing.status_code == 404 and b"NoSuchAdminRoute" in missing.body
    wrong = _serve(_request([], token="good", method="DELETE"), _router(_echo))
    assert wrong.status_code == 405


def test_body_parsed_after_authentication() -> None:
    bad = _serve(_request([b"not json"], token="good"), _router(_echo))
    assert bad.status_code == 400 and b"not valid JSON" in bad.body
    listed = _serve(_request([b"[1]"], token="good"), _router(_echo))
    assert listed.status_code == 400 and b"must be a JSON object" in listed.body
    ok = _serve(_request([b'{"a":', b" 1}"], token="good"), _router(_echo))
    assert ok.status_code == 200
    assert ok.body == b'{"data":{"a":1},"tenant":"acme"}'


def test_declared_length_over_the_cap_is_refused_unread() -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b" " * 65536

    request = _request(endless(), token="good", content_length=5 * 1024**3)
    response = _serve(request, _router(_echo))
    assert response.status_code == 413 and b"EntityTooLarge" in response.body
    assert request.state.read == []


def test_streamed_body_is_abandoned_at_the_cap() -> None:
    """No Content-Length (chunked): reading stops at the first chunk past the cap, however
    much more the client would send."""
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        for _ in range(100_000):  # 6.5 GB if it were all read
            sent.append(1)
            yield b" " * 65536

    request = _request(endless(), token="good")
    response = _serve(request, _router(_echo))
    assert response.status_code == 413
    assert sum(request.state.read) <= MAX_BODY + 65536
    assert len(sent) <= MAX_BODY // 65536 + 1


def test_operation_without_body_ignores_it() -> None:
    @operation(body=False)
    async def op(call: AdminCall) -> dict[str, Any]:
        return {"data": call.data, "version": call.query.get("version")}

    request = _request([b"not json"], token="good", query=b"version=3")
    response = _serve(request, _router(op))
    assert response.status_code == 200
    assert response.body == b'{"data":{},"version":"3"}'
    assert not request.state.read


def test_unexpected_error_is_internal_and_hides_its_text() -> None:
    @operation(body=False)
    async def op(call: AdminCall) -> dict[str, Any]:
        raise RuntimeError("secret detail")

    response = _serve(_request([], token="good"), _router(op))
    assert response.status_code == 500
    assert b"<Code>InternalError</Code>" in response.body
    assert b"secret detail" not in response.body


def test_audit_entry_names_the_caller_and_its_role() -> None:
    ctx = _Ctx()
    seen: list[str] = []

    @operation(body=False)
    async def op(call: AdminCall) -> dict[str, Any]:
        seen.append(call.request_id)
        await call.audit(object(), "SetTenantPlacement", "tenant/acme", "ok x", tenant_id=7)
        return {}

    for token in ("good", "op"):
        response = _serve(_request([], token=token), _router(op, Role.OPERATOR), ctx)
        assert response.status_code == 200
        assert response.headers["x-amz-request-id"] == seen[-1]
    assert ctx.entries == [
        AuditEntry("admin", "SetTenantPlacement", "tenant/acme", seen[0], "ok x", 7, "admin"),
        AuditEntry(
            "oidc:corp:olga", "SetTenantPlacement", "tenant/acme", seen[1], "ok x", 7, "operator"
        ),
    ]
