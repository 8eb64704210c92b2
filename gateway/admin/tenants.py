"""Admin operations on tenants: create one with its first access key, show and set its
placement (default class, region lock, jurisdiction lists, backend allow-list).

A tenant and its key are created in one transaction with the audit entry; the secret is
stored sealed with the master key and returned once, here. A placement change is one
transaction with its audit entry and the ``placement_check`` marks for the tenant's objects.
"""

from __future__ import annotations

import secrets
from typing import Any

from core.errors import Conflict, NotFound
from core.sealing import new_secret
from gateway.admin.fields import names_list, optional_class, text
from gateway.admin.route import AdminCall, operation
from gateway.s3 import errors as s3e
from schema.tenants import TenantPlacement

__all__ = ["create_tenant", "set_tenant_placement", "tenant_placement"]

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
    access_key_id = "BP" + secrets.token_hex(9).upper()
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
