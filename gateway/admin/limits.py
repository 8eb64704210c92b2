"""A tenant's own request limits (issue 14): request rate, byte rate and open multipart
uploads, each ``null`` for the deployment's setting (``BP_TENANT_REQUESTS_PER_S``,
``BP_TENANT_BYTES_PER_S``, ``BP_MAX_OPEN_UPLOADS``) or a number, ``0`` meaning no limit.

The rates travel with the tenant's cached identity, so a change invalidates the cached
identities of its keys after the commit (``keys.forget_identities``) and is in force on every
replica at once. One transaction with its audit entry.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.admin.keys import forget_identities
from gateway.admin.route import AdminCall, operation
from gateway.s3 import errors as s3e
from schema.tenants import TenantLimits

__all__ = ["set_tenant_limits", "tenant_limits"]

_FIELDS = ("requests_per_s", "bytes_per_s", "max_open_uploads")
#: PostgreSQL's BIGINT and INTEGER bounds (the columns of migration 0017).
_MAX = {"requests_per_s": 1e12, "bytes_per_s": 2**63 - 1, "max_open_uploads": 2**31 - 1}


def _limit(data: dict[str, Any], name: str, current: float | None) -> float | None:
    if name not in data:
        return current
    value = data[name]
    if value is None:
        return None
    integral = name != "requests_per_s"
    ok = isinstance(value, int) if integral else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        kind = "an integer" if integral else "a number"
        raise s3e.InvalidArgument(f"{name!r} must be {kind} or null")
    if not 0 <= value <= _MAX[name]:
        raise s3e.InvalidArgument(f"{name!r} must be between 0 and {_MAX[name]:.0f}")
    return value


def _json(name: str, limits: TenantLimits) -> dict[str, Any]:
    return {
        "tenant": name,
        "requests_per_s": limits.requests_per_s,
        "bytes_per_s": limits.bytes_per_s,
        "max_open_uploads": limits.max_open_uploads,
    }


@operation(body=False)
async def tenant_limits(call: AdminCall) -> dict[str, Any]:
    ctx, name = call.ctx, call.path["tenant"]
    async with ctx.store.db.connection() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, name)
        return _json(name, await ctx.store.tenants.limits(conn, owner.id))


@operation(body=True)
async def set_tenant_limits(call: AdminCall) -> dict[str, Any]:
    """Set the tenant's own limits (absent fields stay; ``null`` returns to the setting)."""
    ctx, data, name = call.ctx, call.data, call.path["tenant"]
    unknown = set(data) - set(_FIELDS)
    if unknown:
        raise s3e.InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))}")
    async with ctx.store.db.transaction() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, name)
        current = await ctx.store.tenants.limits(conn, owner.id)
        rps = _limit(data, "requests_per_s", current.requests_per_s)
        bps = _limit(data, "bytes_per_s", current.bytes_per_s)
        uploads = _limit(data, "max_open_uploads", current.max_open_uploads)
        limits = TenantLimits(
            requests_per_s=None if rps is None else float(rps),
            bytes_per_s=None if bps is None else int(bps),
            max_open_uploads=None if uploads is None else int(uploads),
        )
        await ctx.store.tenants.set_limits(conn, owner.id, limits)
        key_ids = await ctx.store.tenants.key_ids(conn, owner.id)
        await call.audit(
            conn,
            "SetTenantLimits",
            f"tenant/{name}",
            f"ok requests_per_s={limits.requests_per_s} bytes_per_s={limits.bytes_per_s}"
            f" max_open_uploads={limits.max_open_uploads}",
            tenant_id=owner.id,
        )
    await forget_identities(ctx, key_ids)
    return _json(name, limits)
