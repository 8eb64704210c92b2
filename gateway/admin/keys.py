"""Admin operations on a tenant's SigV4 access keys: create (a tenant may hold several), list,
disable, enable, delete, and rotate a key's secret.

A secret is generated here, stored sealed with the master key and returned once, by the call
that made it. Every change is one transaction with its audit entry; after the commit the key's
cached identity is invalidated (``forget_identities``), so a disabled, deleted or re-keyed key
is refused by every gateway replica from the next request on. If the cache cannot be reached
the change stands but the call answers 503, saying so: repeating it invalidates again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from core.sealing import new_secret
from gateway.admin.route import AdminCall, operation
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e

__all__ = [
    "create_key",
    "delete_key",
    "disable_key",
    "enable_key",
    "forget_identities",
    "list_keys",
    "new_access_key_id",
    "rotate_key",
]


def new_access_key_id() -> str:
    return "BP" + secrets.token_hex(9).upper()


async def forget_identities(ctx: GatewayContext, key_ids: Iterable[str]) -> None:
    """Invalidate the cached identity of every key in ``key_ids`` (after the commit)."""
    failed = [k for k in key_ids if not await ctx.meta.invalidate_access_key(k)]
    if failed:
        raise s3e.ServiceUnavailable(
            f"the change is committed, but the identity cache could not be invalidated for "
            f"{len(failed)} key(s): gateway replicas may accept them until the cache expires; "
            f"repeat the request"
        )


@operation(body=False)
async def create_key(call: AdminCall) -> dict[str, Any]:
    ctx, tenant = call.ctx, call.path["tenant"]
    access_key_id, secret = new_access_key_id(), new_secret()
    async with ctx.store.db.transaction() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        await ctx.store.tenants.add_access_key(
            conn, owner.id, access_key_id, ctx.master_key.seal(secret.encode())
        )
        await call.audit(
            conn, "CreateAccessKey", f"tenant/{tenant}/key/{access_key_id}", tenant_id=owner.id
        )
    return {"tenant": tenant, "access_key_id": access_key_id, "secret_access_key": secret}


@operation(body=False)
async def list_keys(call: AdminCall) -> list[dict[str, Any]]:
    ctx = call.ctx
    async with ctx.store.db.connection() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, call.path["tenant"])
        keys = await ctx.store.tenants.access_keys(conn, owner.id)
    return [
        {
            "access_key_id": k.access_key_id,
            "created_at": k.created_at.isoformat(),
            "state": "disabled" if k.disabled else "active",
        }
        for k in keys
    ]


async def _set_disabled(call: AdminCall, disabled: bool) -> dict[str, Any]:
    ctx, tenant, key_id = call.ctx, call.path["tenant"], call.path["key"]
    async with ctx.store.db.transaction() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        await ctx.store.tenants.set_key_disabled(conn, owner.id, key_id, disabled)
        await call.audit(
            conn,
            "DisableAccessKey" if disabled else "EnableAccessKey",
            f"tenant/{tenant}/key/{key_id}",
            tenant_id=owner.id,
        )
    await forget_identities(ctx, [key_id])
    state = "disabled" if disabled else "active"
    return {"tenant": tenant, "access_key_id": key_id, "state": state}


@operation(body=False)
async def disable_key(call: AdminCall) -> dict[str, Any]:
    return await _set_disabled(call, True)


@operation(body=False)
async def enable_key(call: AdminCall) -> dict[str, Any]:
    return await _set_disabled(call, False)


@operation(body=False)
async def delete_key(call: AdminCall) -> dict[str, Any]:
    ctx, tenant, key_id = call.ctx, call.path["tenant"], call.path["key"]
    async with ctx.store.db.transaction() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        await ctx.store.tenants.delete_key(conn, owner.id, key_id)
        await call.audit(
            conn, "DeleteAccessKey", f"tenant/{tenant}/key/{key_id}", tenant_id=owner.id
        )
    await forget_identities(ctx, [key_id])
    return {"tenant": tenant, "access_key_id": key_id, "deleted": True}


@operation(body=False)
async def rotate_key(call: AdminCall) -> dict[str, Any]:
    """A new secret for the same access key id; the old secret is refused from the commit."""
    ctx, tenant, key_id = call.ctx, call.path["tenant"], call.path["key"]
    secret = new_secret()
    async with ctx.store.db.transaction() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        await ctx.store.tenants.replace_secret(
            conn, owner.id, key_id, ctx.master_key.seal(secret.encode())
        )
        await call.audit(
            conn, "RotateAccessKey", f"tenant/{tenant}/key/{key_id}", tenant_id=owner.id
        )
    await forget_identities(ctx, [key_id])
    return {"tenant": tenant, "access_key_id": key_id, "secret_access_key": secret}
