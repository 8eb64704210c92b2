"""The ``/admin`` API: backends added at run time, tenants and their keys, audit verification.

Authenticated with a bearer token (the bootstrap admin token; stored hashed). Input is JSON,
validated field by field here; errors use the same S3 XML error document as the S3 API.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from actors.backend_actor import BackendSpec, build_client, get_or_create_backend_actor
from actors.registry import spec_of
from cluster.errors import BulletproofError, Conflict
from cluster.sealing import new_secret
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from schema.audit import AuditEntry

__all__ = ["add_storage", "create_tenant", "list_backends", "parse_json", "verify_audit"]

_REQUIRED_S3 = ("endpoint", "bucket", "access_key", "secret_key")


def parse_json(body: bytes) -> dict[str, Any]:
    if len(body) > 64 * 1024:
        raise s3e.InvalidRequest("request document too large")
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise s3e.InvalidRequest("request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise s3e.InvalidRequest("request body must be a JSON object")
    return data


def _str(
    data: dict[str, Any], name: str, *, required: bool = True, default: str | None = None
) -> str | None:
    value = data.get(name, default)
    if value is None:
        if required:
            raise s3e.InvalidArgument(f"field {name!r} is required")
        return None
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise s3e.InvalidArgument(f"field {name!r} must be a non-empty string")
    return value


async def add_storage(ctx: GatewayContext, data: dict[str, Any], request_id: str) -> dict[str, Any]:
    """Register a backend after proving it is reachable and writable."""
    name = _str(data, "name")
    kind = _str(data, "type", default="s3")
    if kind not in ("s3", "local"):
        raise s3e.InvalidArgument("field 'type' must be 's3' or 'local'")
    sealed = None
    if kind == "s3":
        for field in _REQUIRED_S3:
            _str(data, field)
        sealed = ctx.master_key.seal(
            json.dumps(
                {"access_key": data["access_key"], "secret_key": data["secret_key"]}
            ).encode()
        )
    else:
        _str(data, "path")
    capacity = data.get("capacity_bytes")
    if capacity is not None and (not isinstance(capacity, int) or capacity <= 0):
        raise s3e.InvalidArgument("field 'capacity_bytes' must be a positive integer")
    assert name is not None and kind is not None
    spec = BackendSpec(
        name=name,
        kind=kind,
        endpoint=data.get("endpoint"),
        bucket=data.get("bucket"),
        path=data.get("path"),
        sealed_credentials=sealed,
        timeout_s=min(10.0, ctx.settings.backend_timeout_s),
    )
    try:
        client = build_client(spec, str(ctx.settings.master_key_path.resolve()))
        await asyncio.to_thread(client.ensure_ready)
        await asyncio.to_thread(client.ping)
    except BulletproofError as exc:
        raise s3e.InvalidRequest(f"backend {name!r} is not usable: {exc}") from exc
    try:
        async with ctx.store.db.transaction() as conn:
            record = await ctx.store.backends.add(
                conn,
                name=name,
                kind=kind,
                endpoint=data.get("endpoint"),
                bucket=data.get("bucket"),
                path=data.get("path"),
                sealed_credentials=sealed,
                region=_str(data, "region") or "",
                country=(_str(data, "country") or "").upper(),
                jurisdiction=(_str(data, "jurisdiction") or "").upper(),
                provider=_str(data, "provider", default=kind) or kind,
                capacity_bytes=capacity,
            )
            await ctx.store.audit.append(
                conn,
                AuditEntry(
                    actor="admin",
                    action="AddStorage",
                    resource=f"backend/{name}",
                    request_id=request_id,
                    result=f"ok region={record.region} country={record.country}",
                ),
            )
    except Conflict as exc:
        raise s3e.InvalidRequest(str(exc)) from exc
    get_or_create_backend_actor(
        spec_of(record, ctx.settings.backend_timeout_s), str(ctx.settings.master_key_path.resolve())
    )
    await ctx.registry.refresh()
    return {"name": record.name, "id": record.id, "region": record.region, "healthy": True}


async def list_backends(ctx: GatewayContext) -> list[dict[str, Any]]:
    handles = await ctx.registry.current()
    return [
        {
            "name": h.name,
            "kind": h.record.kind,
            "region": h.record.region,
            "country": h.record.country,
            "jurisdiction": h.record.jurisdiction,
            "state": h.record.state,
            "healthy": h.healthy,
            "rtt_ms": round(h.rtt_ms, 2),
            "used_bytes": h.record.used_bytes,
            "last_error": h.record.last_error,
        }
        for h in handles
    ]


async def create_tenant(
    ctx: GatewayContext, data: dict[str, Any], request_id: str
) -> dict[str, Any]:
    name = _str(data, "name")
    allow_plaintext = data.get("allow_plaintext", False)
    if not isinstance(allow_plaintext, bool):
        raise s3e.InvalidArgument("field 'allow_plaintext' must be true or false")
    assert name is not None
    access_key_id = "BP" + secrets.token_hex(9).upper()
    secret = new_secret()
    try:
        async with ctx.store.db.transaction() as conn:
            tenant = await ctx.store.tenants.create(conn, name, allow_plaintext=allow_plaintext)
            await ctx.store.tenants.add_access_key(
                conn, tenant.id, access_key_id, ctx.master_key.seal(secret.encode())
            )
            await ctx.store.audit.append(
                conn,
                AuditEntry(
                    actor="admin",
                    action="CreateTenant",
                    resource=f"tenant/{name}",
                    request_id=request_id,
                    result=f"ok allow_plaintext={allow_plaintext}",
                    tenant_id=tenant.id,
                ),
            )
    except Conflict as exc:
        raise s3e.InvalidRequest(str(exc)) from exc
    return {
        "tenant": name,
        "allow_plaintext": allow_plaintext,
        "access_key_id": access_key_id,
        "secret_access_key": secret,
    }


async def verify_audit(ctx: GatewayContext) -> dict[str, Any]:
    async with ctx.store.db.connection() as conn:
        try:
            count = await ctx.store.audit.verify(conn)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
    return {"ok": True, "entries": count}
