"""Admin operations that change a registered backend: update its settings, drain it, remove it.

- **update** (``PATCH /admin/backends/{name}``): credentials, signing region and addressing
  style are probed before they are stored (a failing probe changes nothing); a change of
  where the backend is, what provider it is or which tenants it serves marks every object
  with a piece on it for the placement checker, in the same transaction. A backend reached
  differently gets a new actor (its name carries a digest of the connection settings); the
  old one is stopped after ``OLD_ACTOR_GRACE_S``, once every process has reloaded.
- **drain** (``POST /admin/backends/{name}/drain``): the backend goes ``draining`` (no new
  writes from the next registry refresh: placement takes only active backends) and one
  ``move`` job per object version it holds is queued in the same transaction
  (``schema/drains.py``). Agents move each piece to a backend that keeps its class, region
  lock and jurisdiction; one that has none is reported blocked, never moved.
- **remove** (``DELETE /admin/backends/{name}``): refused (409) while any metadata references
  the backend (pieces, uploaded parts, snapshot parts, garbage still to delete); then the
  backend is marked removed, its sealed credentials are forgotten and its actor stopped.

All three need the ``operator`` role (their rows in ``ADMIN_ROUTES``, ``gateway/app.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from actors.backend_actor import stop_backend_actor
from actors.backend_transport import spec_of
from core.backend_definition import BackendChanges, parse_changes
from core.errors import Conflict
from gateway.admin.backend_views import describe
from gateway.admin.backends import activate, probe_client, probe_or_refuse
from gateway.admin.route import AdminCall, operation
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from schema.records import BackendRecord

__all__ = ["OLD_ACTOR_GRACE_S", "drain_backend", "remove_backend", "update_backend"]

log = logging.getLogger(__name__)


#: How long a replaced actor keeps serving processes that still hold it (they reload the
#: registry every few seconds).
OLD_ACTOR_GRACE_S = 30.0


def _columns(ctx: GatewayContext, record: BackendRecord, c: BackendChanges) -> dict[str, Any]:
    """The stored columns a PATCH sets."""
    columns: dict[str, Any] = {}
    if c.backend_type is not None:
        columns["backend_type"] = c.backend_type
    if c.provider is not None:
        columns["provider"] = c.provider
    if c.location is not None:
        columns.update(
            region=c.location.region,
            country=c.location.country,
            jurisdiction=c.location.jurisdiction,
        )
    if c.credentials:
        columns["sealed_credentials"] = ctx.master_key.seal(
            json.dumps({"access_key": c.access_key, "secret_key": c.secret_key}).encode()
        )
    if c.signing_region is not None:
        columns["signing_region"] = c.signing_region
    if c.addressing_style is not None:
        columns["addressing_style"] = c.addressing_style
    if c.sla is not None:  # the targets given; the other one is kept
        if c.sla.availability is not None:
            columns["sla_availability"] = c.sla.availability
        if c.sla.latency_ms is not None:
            columns["sla_latency_ms"] = c.sla.latency_ms
    elif "sla" in c.clear:
        columns.update(sla_availability=None, sla_latency_ms=None)
    if c.residency is not None:
        columns["residency"] = c.residency
    if c.supports_sse is not None:
        columns["supports_sse"] = c.supports_sse
    if c.capacity_bytes is not None or "capacity_bytes" in c.clear:
        columns["capacity_bytes"] = c.capacity_bytes
    return columns


def _placement_changes(record: BackendRecord, columns: dict[str, Any], c: BackendChanges) -> str:
    """Why the backend's objects must be re-checked by the placement checker ("" if not)."""
    why = []
    for column in ("region", "country", "jurisdiction", "provider"):
        if column in columns and columns[column] != getattr(record, column):
            why.append(f"{column} {getattr(record, column)} -> {columns[column]}")
    tenants = None if "tenants" in c.clear else c.tenants
    if (c.tenants is not None or "tenants" in c.clear) and tenants != record.tenants:
        why.append("tenants served changed")
    return f"backend {record.name}: " + ", ".join(why) if why else ""


async def _retire(old: Any) -> None:
    await asyncio.sleep(OLD_ACTOR_GRACE_S)
    with contextlib.suppress(Exception):
        await asyncio.to_thread(stop_backend_actor, old)


@operation(body=True)
async def update_backend(call: AdminCall) -> dict[str, Any]:
    ctx, name = call.ctx, call.path["name"]
    async with ctx.store.db.connection() as conn:
        record = await ctx.store.backends.get(conn, name)
        changes = parse_changes(call.data, kind=record.kind)
        missing = await ctx.store.backends.missing_tenants(conn, changes.tenants or ())
    if missing:
        raise s3e.InvalidArgument(f"field 'tenants': no tenant {missing[0]!r}")
    probe: dict[str, Any] | None = None
    if changes.reconnects:
        creds = {"access_key": changes.access_key, "secret_key": changes.secret_key}
        if not changes.credentials and record.sealed_credentials is not None:
            creds = json.loads(ctx.master_key.open(record.sealed_credentials))
        client = probe_client(
            ctx,
            kind=record.kind,
            endpoint=record.endpoint,
            bucket=record.bucket,
            path=record.path,
            access_key=creds["access_key"],
            secret_key=creds["secret_key"],
            signing_region=changes.signing_region or record.signing_region,
            addressing_style=changes.addressing_style or record.addressing_style,
        )
        probe = (await probe_or_refuse(name, client, create_bucket=False)).to_json()
    async with ctx.store.db.transaction() as conn:
        record = await ctx.store.backends.get(conn, name, lock=True)
        columns = _columns(ctx, record, changes)
        await ctx.store.backends.update(conn, record.id, columns)
        if changes.tenants is not None or "tenants" in changes.clear:
            await ctx.store.backends.set_tenants(conn, record.id, changes.tenants)
        reason = _placement_changes(record, columns, changes)
        marked = await ctx.policies.mark_backend(conn, record.id, reason) if reason else 0
        changed = sorted(
            {
                *("credentials" if c == "sealed_credentials" else c for c in columns),
                *(["tenants"] if changes.tenants is not None or "tenants" in changes.clear else []),
            }
        )
        await call.audit(
            conn, "UpdateBackend", f"backend/{name}", f"ok {','.join(changed)} marked={marked}"
        )
        updated = await ctx.store.backends.get_by_id(conn, record.id)
    old_spec = spec_of(record, ctx.settings.backend_timeout_s)
    if spec_of(updated, ctx.settings.backend_timeout_s) != old_spec:
        await activate(ctx, updated)
        if ctx.registry.transport.in_ray:
            ctx.spawn(_retire(old_spec))
    await ctx.registry.refresh()
    return {
        **describe(updated, ctx.registry.get(updated.id)),
        "changed": changed,
        "marked_objects": marked,
        "probe": probe,
    }


@operation(body=False)
async def drain_backend(call: AdminCall) -> dict[str, Any]:
    """Stop new writes to the backend and queue the moves of everything it holds (idempotent:
    draining again re-queues only the moves that are not queued)."""
    ctx, name = call.ctx, call.path["name"]
    async with ctx.store.db.transaction() as conn:
        record = await ctx.store.backends.get(conn, name, lock=True)
        started = await ctx.store.backends.start_drain(conn, record.id)
        queued = await ctx.store.drains.enqueue_moves(conn, record.id, f"backend {name} drained")
        await call.audit(
            conn,
            "DrainBackend",
            f"backend/{name}",
            f"ok {'started' if started else 'continued'} moves_queued={queued}",
        )
        record = await ctx.store.backends.get_by_id(conn, record.id)
        references = await ctx.store.backends.references(conn, record.id)
        progress = await ctx.store.drains.progress(conn, record.id, references=references)
    await ctx.registry.refresh()
    return {
        **describe(record, ctx.registry.get(record.id)),
        "moves_queued": queued,
        "drain": progress.to_json(),
    }


def _refusal(name: str, references: dict[str, int]) -> str:
    what = {
        "replicas": "stored pieces (drain it first: bulletproof backend drain)",
        "upload_pieces": "pieces of multipart uploads in progress (complete or abort them)",
        "snapshot_parts": "metadata snapshot parts (let the snapshotter rotate them out)",
        "garbage": "objects waiting for deletion (the vacuumer deletes them)",
    }
    listed = "; ".join(f"{n} {what.get(k, k)}" for k, n in sorted(references.items()))
    return f"backend {name!r} is still referenced by metadata: {listed}"


@operation(body=False)
async def remove_backend(call: AdminCall) -> dict[str, Any]:
    ctx, name = call.ctx, call.path["name"]
    async with ctx.store.db.transaction() as conn:
        record = await ctx.store.backends.get(conn, name, lock=True)
        references = await ctx.store.backends.references(conn, record.id)
        if references:
            raise Conflict(_refusal(name, references))
        await ctx.store.backends.remove(conn, record.id)
        await call.audit(conn, "RemoveBackend", f"backend/{name}", f"ok was={record.state}")
    if ctx.registry.transport.in_ray:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                stop_backend_actor, spec_of(record, ctx.settings.backend_timeout_s)
            )
    await ctx.registry.refresh()
    log.info("backend %s removed", name)
    return {"name": name, "id": record.id, "state": "removed", "credentials": "forgotten"}
