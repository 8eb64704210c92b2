"""Admin operations on tenants: create one with its first access key, list, show, disable,
enable and delete them, show and set a tenant's placement (default class, region lock,
jurisdiction lists, backend allow-list). Its further keys are ``keys.py``'s.

A tenant and its key are created in one transaction with the audit entry; the secret is
stored sealed with the master key and returned once, here. Disabling a tenant refuses all its
keys; deleting one is refused while it holds buckets; both invalidate the cached identities of
its keys after the commit (``keys.forget_identities``). A placement change is one transaction
with its audit entry and the ``placement_check`` marks for the tenant's objects.
"""

from __future__ import annotations

from typing import Any

from core.errors import Conflict, NotFound
from core.sealing import new_secret
from gateway.admin.fields import names_list, optional_class, text
from gateway.admin.keys import forget_identities, new_access_key_id
from gateway.admin.route import AdminCall, operation
from gateway.s3 import errors as s3e
from schema.tenants import TenantPlacement, TenantSummary

__all__ = [
    "create_tenant",
    "delete_tenant",
    "disable_tenant",
    "enable_tenant",
    "list_tenants",
    "set_tenant_placement",
    "show_tenant",
    "tenant_placement",
]

_TENANT_FIELDS = (
    "default_class",
    "region_lock",
    "jurisdiction_allow",
    "jurisdiction_deny",
    "allowed_backends",
)


@operation(body=True)
async def create_tenant(call: AdminCall) -> dict[str, Any]:
    ctx, data = call.ctx, call.data
    name = text(data, "name")
    allow_plaintext = data.get("allow_plaintext", False)
    if not isinstance(allow_plaintext, bool):
        raise s3e.InvalidArgument("field 'allow_plaintext' must be true or false")
    access_key_id = new_access_key_id()
    secret = new_secret()
    try:
        async with ctx.store.db.transaction() as conn:
            tenant = await ctx.store.tenants.create(conn, name, allow_plaintext=allow_plaintext)
            await ctx.store.tenants.add_access_key(
                conn, tenant.id, access_key_id, ctx.master_key.seal(secret.encode())
            )
            await call.audit(
                conn,
                "CreateTenant",
                f"tenant/{name}",
                f"ok allow_plaintext={allow_plaintext}",
                tenant_id=tenant.id,
            )
    except Conflict as exc:
        raise s3e.InvalidRequest(str(exc)) from exc
    return {
        "tenant": name,
        "allow_plaintext": allow_plaintext,
        "access_key_id": access_key_id,
        "secret_access_key": secret,
    }


def _summary_json(summary: TenantSummary) -> dict[str, Any]:
    return {
        "tenant": summary.name,
        "id": summary.id,
        "state": "disabled" if summary.disabled else "active",
        "allow_plaintext": summary.allow_plaintext,
        "created_at": summary.created_at.isoformat(),
        "keys": summary.keys,
        "buckets": summary.buckets,
    }


@operation(body=False)
async def list_tenants(call: AdminCall) -> list[dict[str, Any]]:
    async with call.ctx.store.db.connection() as conn:
        return [_summary_json(s) for s in await call.ctx.store.tenants.summaries(conn)]


@operation(body=False)
async def show_tenant(call: AdminCall) -> dict[str, Any]:
    """The tenant, its access keys (ids and states, never secrets) and its placement."""
    ctx, name = call.ctx, call.path["tenant"]
    async with ctx.store.db.connection() as conn:
        (summary,) = await ctx.store.tenants.summaries(conn, name)
        keys = await ctx.store.tenants.access_keys(conn, summary.id)
        placement = await ctx.store.tenants.placement(conn, summary.id)
    return {
        **_summary_json(summary),
        "access_keys": [
            {
                "access_key_id": k.access_key_id,
                "created_at": k.created_at.isoformat(),
                "state": "disabled" if k.disabled else "active",
            }
            for k in keys
        ],
        "placement": _tenant_json(placement),
    }


async def _set_disabled(call: AdminCall, disabled: bool) -> dict[str, Any]:
    ctx, name = call.ctx, call.path["tenant"]
    async with ctx.store.db.transaction() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, name)
        await ctx.store.tenants.set_disabled(conn, owner.id, disabled)
        key_ids = await ctx.store.tenants.key_ids(conn, owner.id)
        await call.audit(
            conn,
            "DisableTenant" if disabled else "EnableTenant",
            f"tenant/{name}",
            f"ok keys={len(key_ids)}",
            tenant_id=owner.id,
        )
    await forget_identities(ctx, key_ids)
    return {"tenant": name, "state": "disabled" if disabled else "active"}


@operation(body=False)
async def disable_tenant(call: AdminCall) -> dict[str, Any]:
    """Refuse every key of the tenant (its data stays; ``enable`` undoes it)."""
    return await _set_disabled(call, True)


@operation(body=False)
async def enable_tenant(call: AdminCall) -> dict[str, Any]:
    return await _set_disabled(call, False)


@operation(body=False)
async def delete_tenant(call: AdminCall) -> dict[str, Any]:
    """Delete a tenant with no bucket, and its keys (409 while it has buckets)."""
    ctx, name = call.ctx, call.path["tenant"]
    try:
        async with ctx.store.db.transaction() as conn:
            owner = await ctx.store.tenants.get_by_name(conn, name)
            key_ids = await ctx.store.tenants.delete(conn, owner.id)
            await call.audit(
                conn,
                "DeleteTenant",
                f"tenant/{name}",
                f"ok keys={len(key_ids)}",
                tenant_id=owner.id,
            )
    except Conflict as exc:
        raise s3e.Conflict(f"tenant {name!r} cannot be deleted: {exc}") from exc
    await forget_identities(ctx, key_ids)
    return {"tenant": name, "deleted": True, "keys_deleted": len(key_ids)}


def _tenant_json(placement: TenantPlacement) -> dict[str, Any]:
    return {
        "tenant": placement.name,
        "default_class": placement.default_class,
        "region_lock": list(placement.region_lock),
        "jurisdiction_allow": list(placement.jurisdiction_allow),
        "jurisdiction_deny": list(placement.jurisdiction_deny),
        "allowed_backends": (
            None if placement.allowed_backends is None else list(placement.allowed_backends)
        ),
    }


@operation(body=False)
async def tenant_placement(call: AdminCall) -> dict[str, Any]:
    ctx = call.ctx
    async with ctx.store.db.connection() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, call.path["tenant"])
        return _tenant_json(await ctx.store.tenants.placement(conn, owner.id))


@operation(body=True)
async def set_tenant_placement(call: AdminCall) -> dict[str, Any]:
    """Set a tenant's default class, region lock, jurisdiction allow/deny lists and backend
    allow-list (absent fields stay; ``allowed_backends: null`` removes the allow-list). The
    tenant's objects are marked for the placement checker when anything changes."""
    ctx, data, tenant = call.ctx, call.data, call.path["tenant"]
    unknown = set(data) - set(_TENANT_FIELDS)
    if unknown:
        raise s3e.InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))}")
    await ctx.current_policy()
    async with ctx.store.db.transaction() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        current = await ctx.store.tenants.placement(conn, owner.id)
        default_class = (
            optional_class(ctx, data, "default_class")
            if "default_class" in data
            else current.default_class
        )
        lists: dict[str, tuple[str, ...]] = {}
        for name, lower in (
            ("region_lock", True),
            ("jurisdiction_allow", False),
            ("jurisdiction_deny", False),
        ):
            if name in data:
                values = names_list(data, name, lower=lower)
                lists[name] = tuple(v.upper() for v in values) if not lower else tuple(values)
            else:
                lists[name] = getattr(current, name)
        allowed_names = current.allowed_backends
        if "allowed_backends" in data:
            if data["allowed_backends"] is None:
                allowed_names = None
            else:
                allowed_names = tuple(names_list(data, "allowed_backends"))
                if not allowed_names:
                    raise s3e.InvalidArgument(
                        "field 'allowed_backends': an empty allow-list would refuse every "
                        "write; use null to remove the allow-list"
                    )
        allowed_ids = None
        if allowed_names is not None:
            allowed_ids = []
            for name in allowed_names:
                try:
                    allowed_ids.append((await ctx.store.backends.get(conn, name)).id)
                except NotFound as exc:
                    raise s3e.InvalidArgument(f"field 'allowed_backends': {exc}") from exc
        before, after = await ctx.store.tenants.set_placement(
            conn,
            owner.id,
            default_class=default_class,
            region_lock=lists["region_lock"],
            jurisdiction_allow=lists["jurisdiction_allow"],
            jurisdiction_deny=lists["jurisdiction_deny"],
            allowed_backend_ids=allowed_ids,
        )
        changed = [f for f in _TENANT_FIELDS if getattr(before, f) != getattr(after, f)]
        marked = 0
        if changed:
            marked = await ctx.policies.mark_tenant(
                conn, owner.id, f"tenant {tenant}: {', '.join(changed)} changed"
            )
        await call.audit(
            conn,
            "SetTenantPlacement",
            f"tenant/{tenant}",
            f"ok changed={','.join(changed) or '-'} marked={marked}",
            tenant_id=owner.id,
        )
    return {**_tenant_json(after), "marked_objects": marked}
