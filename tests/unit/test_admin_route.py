"""The one admin route shape (``gateway/admin/route.py``) without services: the token is
checked before the body is read or the operation runs, the body is parsed only for operations
that take one, errors render as the S3 XML document, and audit entries name the admin."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from gateway.admin import route
from gateway.admin.route import AdminCall, operation, respond
from gateway.s3 import errors as s3e
from schema.audit import AuditEntry


def _request(body: bytes, *, token: str | None, query: bytes = b"") -> Request:
    headers = [(b"host", b"gw")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    read: list[bool] = []

    async def receive() -> dict[str, Any]:
        read.append(True)
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "PUT",
        "scheme": "http",
        "server": ("gw", 80),
        "path": "/admin/tenants/acme/placement",
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "path_params": {"tenant": "acme"},
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


def _serve(request: Request, op: Any, ctx: _Ctx | None = None) -> Any:
    async def ctx_of() -> Any:
        return ctx or _Ctx()

    return asyncio.run(respond(request, ctx_of, op))


@pytest.fixture
def admin_token(monkeypatch: pytest.MonkeyPatch) -> str:
    async def authenticate(ctx: object, authorization: str | None) -> str:
        if authorization != "Bearer good":
            raise s3e.AccessDenied("The admin token is not valid")
        return "admin"

    monkeypatch.setattr(route, "authenticate_admin", authenticate)
    return "good"


def test_token_checked_before_body_or_operation() -> None:
    ran: list[AdminCall] = []

    @operation(body=True)
    async def op(call: AdminCall) -> dict[str, Any]:
        ran.append(call)
        return {}

    request = _request(b"not json", token=None)
    response = _serve(request, op)
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code>" in response.body
    assert response.headers["x-amz-request-id"]
    assert not ran and not request.state.read


def test_body_parsed_after_authentication(admin_token: str) -> None:
    @operation(body=True)
    async def op(call: AdminCall) -> dict[str, Any]:
        return {"data": call.data, "tenant": call.path["tenant"]}

    bad = _serve(_request(b"not json", token=admin_token), op)
    assert bad.status_code == 400 and b"not valid JSON" in bad.body
    big = _serve(_request(b" " * (64 * 1024 + 1), token=admin_token), op)
    assert big.status_code == 400 and b"request document too large" in big.body
    listed = _serve(_request(b"[1]", token=admin_token), op)
    assert listed.status_code == 400 and b"must be a JSON object" in listed.body
    ok = _serve(_request(b'{"a": 1}', token=admin_token), op)
    assert ok.status_code == 200
    assert ok.body == b'{"data":{"a":1},"tenant":"acme"}'


def test_operation_without_body_ignores_it(admin_token: str) -> None:
    @operation(body=False)
    async def op(call: AdminCall) -> dict[str, Any]:
        return {"data": call.data, "version": call.query.get("version")}

    request = _request(b"not json", token=admin_token, query=b"version=3")
    response = _serve(request, op)
    assert response.status_code == 200
    assert response.body == b'{"data":{},"version":"3"}'
    assert not request.state.read


def test_unexpected_error_is_internal_and_hides_its_text(admin_token: str) -> None:
    @operation(body=False)
    async def op(call: AdminCall) -> dict[str, Any]:
        raise RuntimeError("secret detail")

    response = _serve(_request(b"", token=admin_token), op)
    assert response.status_code == 500
    assert b"<Code>InternalError</Code>" in response.body
    assert b"secret detail" not in response.body


def test_audit_entry_names_the_admin_and_the_request(admin_token: str) -> None:
    ctx = _Ctx()
    seen: list[str] = []

    @operation(body=False)
    async def op(call: AdminCall) -> dict[str, Any]:
        seen.append(call.request_id)
        await call.audit(object(), "SetTenantPlacement", "tenant/acme", "ok x", tenant_id=7)
        return {}

    response = _serve(_request(b"", token=admin_token), op, ctx)
    assert response.status_code == 200
    assert ctx.entries == [
        AuditEntry(
            actor="admin",
            action="SetTenantPlacement",
            resource="tenant/acme",
            request_id=seen[0],
            result="ok x",
            tenant_id=7,
        )
    ]
    assert response.headers["x-amz-request-id"] == seen[0]
