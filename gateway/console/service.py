"""What the console shows a signed-in tenant, beyond the import API it also calls: who it is,
the policy and the backends it may use, a live placement explanation, the overview of its
part of the federation, and an import's throughput over time.

What it keeps true:

- **Scoped to the tenant.** Every answer is about the signed-in tenant only: its buckets, its
  replicas, the healing jobs of its objects, its imports. Backends are listed only when the
  tenant's own rules (region lock, jurisdiction allow/deny, backend allow-list) let it use
  them, and then only by name, location and health: never an endpoint or a credential, never
  how much another tenant stores.
- **One explanation.** The live explain is ``gateway.placement_explain.explain_put``, the same
  function behind ``bulletproof policy explain``, so both give the same lines for the same
  question.
- **Nothing made up.** Throughput comes from the import's own rows
  (``ImportRepository.throughput``); health and RTT from the live backend registry.

Read-only: nothing here changes state or writes an audit entry.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from core.placement import rejection
from gateway.admin.fields import names_list, optional_class, optional_text, text
from gateway.auth import Principal
from gateway.context import GatewayContext
from gateway.imports.wire import split_destination
from gateway.placement_explain import explain_put
from gateway.s3 import errors as s3e
from schema.imports import ImportRepository
from schema.keys import KeyRepository
from schema.tenant_overview import TenantOverviewRepository

__all__ = ["ConsoleService", "EXAMPLE_KEY"]

_IMPORTS = ImportRepository()
_KEYS = KeyRepository()
_OVERVIEW = TenantOverviewRepository()
#: The key the explain names when the page gives none: one object under the destination prefix.
EXAMPLE_KEY = "example-object"


class ConsoleService:
    """The console's read-only operations for one signed-in tenant."""

    async def whoami(self, ctx: GatewayContext, principal: Principal) -> dict[str, Any]:
        async with ctx.store.db.connection() as conn:
            buckets = await ctx.store.buckets.list(conn, principal.tenant_id)
            keys = await _KEYS.published(conn, principal.tenant_id)
        return {
            "tenant": principal.tenant_name,
            "access_key_id": principal.access_key_id,
            "buckets": [
                {
                    "name": b.name,
                    "default_class": b.default_class,
                    "region_lock": list(b.region_lock),
                }
                for b in buckets
            ],
            "published_keys": sorted({k.key_id for k in keys}),
        }

    async def _usable_backends(self, ctx: GatewayContext, tenant_id: int) -> list[Any]:
        async with ctx.store.db.connection() as conn:
            placement = await ctx.store.tenants.placement(conn, tenant_id)
            reserved = await ctx.policies.reserved_for_others(conn, tenant_id)
        # Backends reserved for other tenants are neither usable nor shown.
        constraints = replace(placement.constraints, reserved_backends=reserved)
        return [
            h
            for h in await ctx.registry.current()
            if h.view().state == "active" and rejection(h.view(), constraints) is None
        ]

    async def policy(self, ctx: GatewayContext, tenant_id: int) -> dict[str, Any]:
        """The classes of the policy in force, the tenant's rules, and the backends it may
        use with their location and health."""
        document = await ctx.current_policy()
        async with ctx.store.db.connection() as conn:
            placement = await ctx.store.tenants.placement(conn, tenant_id)
        backends = await self._usable_backends(ctx, tenant_id)
        return {
            "version": ctx.policy_version,
            "default_class": placement.default_class or document.default_class,
            "classes": {name: rc.describe() for name, rc in sorted(document.classes.items())},
            "tenant_rules": placement.constraints.describe(),
            "backends": [_backend_json(h.view()) for h in backends],
        }

    async def explain(
        self, ctx: GatewayContext, tenant_id: int, data: dict[str, Any]
    ) -> dict[str, Any]:
        """Where an object the import would write to ``destination`` (``bucket[/prefix]``)
        would go with the chosen class and region lock: ``explain_put`` on the tenant's own
        bucket, the run's region lock added as the importer adds it."""
        bucket_name, prefix = split_destination(text(data, "destination"))
        key = prefix + (optional_text(data, "key") or EXAMPLE_KEY)
        requested = optional_class(ctx, data, "class") if data.get("class") else None
        region_lock = names_list(data, "region_lock") if data.get("region_lock") else []
        size = data.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise s3e.InvalidArgument("field 'size' must be a non-negative integer")
        async with ctx.store.db.connection() as conn:
            bucket = await ctx.store.buckets.get(conn, tenant_id, bucket_name)
        return await explain_put(
            ctx,
            bucket,
            key,
            requested_class=requested,
            size=size,
            import_region_lock=region_lock,
        )

    async def overview(self, ctx: GatewayContext, tenant_id: int) -> dict[str, Any]:
        """The tenant's view of the federation: the backends it may use (health, RTT, the
        bytes of its own replicas there), its replicas by state, the healing jobs queued for
        its objects, and the policy in force."""
        async with ctx.store.db.connection() as conn:
            states = await _OVERVIEW.replica_states(conn, tenant_id)
            usage = await _OVERVIEW.usage_by_backend(conn, tenant_id)
            queue = await _OVERVIEW.healing_queue(conn, tenant_id)
        policy = await self.policy(ctx, tenant_id)
        backends = await self._usable_backends(ctx, tenant_id)
        return {
            "backends": [
                {**_backend_json(h.view()), "tenant_bytes": usage.get(h.id, 0)} for h in backends
            ],
            "replicas": {
                "ok": states.get("ok", 0),
                "pending": states.get("pending", 0),
                "corrupt": states.get("corrupt", 0),
                "missing": states.get("missing", 0),
            },
            "repair_queue": {"total": sum(queue.values()), "by_kind": queue},
            "policy": {k: policy[k] for k in ("version", "default_class", "tenant_rules")},
        }

    async def throughput(self, ctx: GatewayContext, tenant_id: int, run_id: int) -> dict[str, Any]:
        async with ctx.store.db.connection() as conn:
            run = await _IMPORTS.get_run(conn, run_id, tenant_id=tenant_id)
            width, bins = await _IMPORTS.throughput(conn, run.id)
        return {
            "id": run.id,
            "bin_seconds": width,
            "samples": [
                {
                    "t": t,
                    "objects": objects,
                    "bytes": size,
                    "bytes_per_s": round(size / width, 1),
                }
                for t, objects, size in bins
            ],
        }


def _backend_json(view: Any) -> dict[str, Any]:
    return {
        "name": view.name,
        "region": view.region,
        "country": view.country,
        "jurisdiction": view.jurisdiction,
        "healthy": view.healthy,
        "rtt_ms": round(view.rtt_ms, 1),
    }
