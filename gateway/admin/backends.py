"""Admin operations on backends: add one at run time, list them, ping them, record a move.

A backend is added only after it proved reachable and writable (``ensure_ready``, ``ping``);
its credentials are stored sealed with the master key. Adding it and recording where it now
is are each one transaction with the audit entry; a move also marks every object with a piece
on the backend for the placement checker (``schema/policies.py``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from actors.backend_actor import BackendSpec, build_client, get_or_create_backend_actor
from actors.backend_transport import spec_of
from core.errors import BulletproofError, Conflict
from gateway.admin.fields import text
from gateway.admin.route import AdminCall, operation
from gateway.s3 import errors as s3e

__all__ = ["add_storage", "list_backends", "ping_backends", "relocate_backend"]

_REQUIRED_S3 = ("endpoint", "bucket", "access_key", "secret_key")


@operation(body=True)
async def add_storage(call: AdminCall) -> dict[str, Any]:
    """Register a backend after proving it is reachable and writable."""
    ctx, data = call.ctx, call.data
    name = text(data, "name")
    kind = text(data, "type", default="s3")
    if kind not in ("s3", "local"):
        raise s3e.InvalidArgument("field 'type' must be 's3' or 'local'")
    sealed = None
    if kind == "s3":
        for field in _REQUIRED_S3:
            text(data, field)
        sealed = ctx.master_key.seal(
            json.dumps(
                {"access_key": data["access_key"], "secret_key": data["secret_key"]}
            ).encode()
        )
    else:
        text(data, "path")
    capacity = data.get("capacity_bytes")
    if capacity is not None and (not isinstance(capacity, int) or capacity <= 0):
        raise s3e.InvalidArgument("field 'capacity_bytes' must be a positive integer")
    # Where the backend is: the same values are probed and then stored.
    where: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "endpoint": data.get("endpoint"),
        "bucket": data.get("bucket"),
        "path": data.get("path"),
        "sealed_credentials": sealed,
    }
    spec = BackendSpec(**where, timeout_s=min(10.0, ctx.settings.backend_timeout_s))
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
                **where,
                region=text(data, "region"),
                country=text(data, "country").upper(),
                jurisdiction=text(data, "jurisdiction").upper(),
                provider=text(data, "provider", default=kind),
                capacity_bytes=capacity,
            )
            await call.audit(
                conn,
                "AddStorage",
                f"backend/{name}",
                f"ok region={record.region} country={record.country}",
            )
    except Conflict as exc:
        raise s3e.InvalidRequest(str(exc)) from exc
    get_or_create_backend_actor(
        spec_of(record, ctx.settings.backend_timeout_s), str(ctx.settings.master_key_path.resolve())
    )
    await ctx.registry.refresh()
    return {"name": record.name, "id": record.id, "region": record.region, "healthy": True}


@operation(body=False)
async def list_backends(call: AdminCall) -> list[dict[str, Any]]:
    handles = await call.ctx.registry.current()
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


@operation(body=False)
async def ping_backends(call: AdminCall) -> dict[str, dict[str, Any]]:
    """Ping every backend now and record the outcome (``BackendRegistry.ping_all``)."""
    return await call.ctx.registry.ping_all(record=True)


@operation(body=True)
async def relocate_backend(call: AdminCall) -> dict[str, Any]:
    """Record that a backend is now in another region, country or jurisdiction; every object
    with a piece on it is marked for the placement checker."""
    ctx, data, name = call.ctx, call.data, call.path["name"]
    region = text(data, "region")
    country = text(data, "country").upper()
    jurisdiction = text(data, "jurisdiction").upper()
    async with ctx.store.db.transaction() as conn:
        record, marked = await ctx.policies.relocate_backend(
            conn, name, region=region, country=country, jurisdiction=jurisdiction
        )
        await call.audit(
            conn,
            "RelocateBackend",
            f"backend/{name}",
            f"ok {region}/{country}/{jurisdiction} marked={marked}",
        )
    await ctx.registry.refresh()
    return {
        "name": record.name,
        "region": record.region,
        "country": record.country,
        "jurisdiction": record.jurisdiction,
        "marked_objects": marked,
    }
