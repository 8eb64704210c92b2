"""Admin operations that register and read backends: add one at run time (validate -> probe ->
activate), list, show (with drain progress), ping, and record a move of location.

Adding follows three steps and registers nothing unless all pass:

1. **validate** the declared fields (``core/backend_definition.py``) and that the name is free
   and the tenants exist;
2. **probe** the backend with a client built for the probe (``actors/backend_probe.py``:
   write, read back and compare, delete a probe object; RTT and throughput). A failure is a
   400 naming the step; the bucket is created only if the request says ``create_bucket``;
3. **activate**: one transaction stores the backend (credentials sealed with the master key),
   its tenants and the audit entry; then its actor starts and the registry reloads, so
   placement may use it at once, here and (within one refresh) on every replica and agent.

Each operation's role is its row in ``ADMIN_ROUTES`` (``gateway/app.py``): reads are
``viewer``, changes ``operator``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any

from actors.backend_actor import get_or_create_backend_actor
from actors.backend_client import LocalDirectoryClient, S3BackendClient
from actors.backend_probe import ProbeFailed, ProbeReport, probe_backend, probe_local_on_node
from actors.backend_transport import spec_of
from actors.node_roles import current_node_label
from core.backend_definition import BackendDefinition, parse_definition
from core.errors import Conflict, NotFound
from core.health import BackendHealth
from gateway.admin.backend_views import describe
from gateway.admin.fields import text
from gateway.admin.route import AdminCall, operation
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from schema.records import BackendRecord

__all__ = [
    "activate",
    "add_storage",
    "list_backends",
    "ping_backends",
    "probe_client",
    "probe_or_refuse",
    "relocate_backend",
    "show_backend",
]


#: The longest an onboarding probe may take before it counts as unreachable.
PROBE_TIMEOUT_S = 60.0
#: How long activation waits for a new backend actor's first answer.
ACTOR_START_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


def probe_client(
    ctx: GatewayContext,
    *,
    kind: str,
    endpoint: str | None,
    bucket: str | None,
    path: str | None,
    access_key: str | None,
    secret_key: str | None,
    signing_region: str,
    addressing_style: str,
) -> S3BackendClient | LocalDirectoryClient:
    """A client for the probe only: plain credentials, never creating the bucket itself."""
    if kind == "local":
        assert path is not None
        return LocalDirectoryClient(path)
    assert endpoint and bucket and access_key and secret_key
    return S3BackendClient(
        endpoint=endpoint,
        bucket=bucket,
        access_key=access_key,
        secret_key=secret_key,
        region=signing_region,
        addressing_style=addressing_style,
        timeout_s=min(10.0, ctx.settings.backend_timeout_s),
    )


async def probe_or_refuse(
    name: str, client: S3BackendClient | LocalDirectoryClient, *, create_bucket: bool
) -> ProbeReport:
    """Run the probe in a thread; a failure is the 400 naming its step."""
    return await _refused_on_failure(
        name, asyncio.to_thread(probe_backend, client, create_bucket=create_bucket)
    )


async def _refused_on_failure(name: str, probe: Awaitable[ProbeReport]) -> ProbeReport:
    """``probe``'s report, within ``PROBE_TIMEOUT_S``; a failure is the 400 naming its step."""
    try:
        return await asyncio.wait_for(probe, timeout=PROBE_TIMEOUT_S)
    except ProbeFailed as exc:
        raise s3e.InvalidRequest(f"backend {name!r} is not usable: {exc}") from exc
    except TimeoutError as exc:
        raise s3e.InvalidRequest(
            f"backend {name!r} is not usable: probe failed at step 'unreachable':"
            f" no answer within {PROBE_TIMEOUT_S:.0f} s"
        ) from exc


def _first_health(report: ProbeReport) -> dict[str, Any]:
    """The probe as the first health sample: answered, with its RTT and throughput."""
    return BackendHealth(
        rtt_ms=report.rtt_ms,
        throughput_mbps=report.throughput_mbps,
        ok_streak=1,
        samples=1,
    ).to_json()


async def activate(ctx: GatewayContext, record: BackendRecord) -> None:
    """Start the backend's actor (Ray transport) and wait until it answers, so the first
    write placed on it does not wait for (or fail on) the actor's start; the registry then
    connects to it."""
    if not ctx.registry.transport.in_ray:
        return
    handle = get_or_create_backend_actor(
        spec_of(record, ctx.settings.backend_timeout_s),
        str(ctx.settings.master_key_path.resolve()),
    )
    try:
        await asyncio.wait_for(handle.ping.remote(), timeout=ACTOR_START_TIMEOUT_S)
    except Exception:  # the health sweep reports it; the backend is registered either way
        log.warning("backend %s: its actor did not answer within %.0f s", record.name,
                    ACTOR_START_TIMEOUT_S)  # fmt: skip


@operation(body=True)
async def add_storage(call: AdminCall) -> dict[str, Any]:
    """Register a backend after it passed the probe (see the module docstring)."""
    ctx = call.ctx
    definition = parse_definition(call.data)
    name = definition.name
    async with ctx.store.db.connection() as conn:
        try:
            await ctx.store.backends.get(conn, name)
        except NotFound:
            pass
        else:
            raise s3e.InvalidRequest(f"backend {name!r} already exists")
        missing = await ctx.store.backends.missing_tenants(conn, definition.tenants or ())
    if missing:
        raise s3e.InvalidArgument(f"field 'tenants': no tenant {missing[0]!r}")
    node = current_node_label() if definition.kind == "local" else None
    if definition.node is not None and definition.node != node:
        node = definition.node
        report = await _probe_elsewhere(name, node, definition.path)
    else:
        report = await probe_or_refuse(name, _definition_client(ctx, definition),
                                       create_bucket=definition.create_bucket)  # fmt: skip
    try:
        async with ctx.store.db.transaction() as conn:
            record = await _store(ctx, conn, definition, report, node)
            await call.audit(
                conn,
                "AddStorage",
                f"backend/{name}",
                f"ok type={record.backend_type} region={record.region}"
                f" country={record.country} rtt_ms={report.rtt_ms:.1f}",
            )
    except Conflict as exc:
        raise s3e.InvalidRequest(str(exc)) from exc
    await activate(ctx, record)
    await ctx.registry.refresh()
    return {
        **describe(record, ctx.registry.get(record.id)),
        "probe": report.to_json(),
    }


def _definition_client(
    ctx: GatewayContext, d: BackendDefinition
) -> S3BackendClient | LocalDirectoryClient:
    return probe_client(
        ctx,
        kind=d.kind,
        endpoint=d.endpoint,
        bucket=d.bucket,
        path=d.path,
        access_key=d.access_key,
        secret_key=d.secret_key,
        signing_region=d.signing_region,
        addressing_style=d.addressing_style,
    )


async def _probe_elsewhere(name: str, node: str, path: str | None) -> ProbeReport:
    """Probe a local directory on the node it is declared on; a failure is the 400."""
    assert path is not None
    return await _refused_on_failure(name, probe_local_on_node(node, path))


async def _store(
    ctx: GatewayContext,
    conn: Any,
    d: BackendDefinition,
    report: ProbeReport,
    node: str | None,
) -> BackendRecord:
    sealed = None
    if d.kind == "s3":
        sealed = ctx.master_key.seal(
            json.dumps({"access_key": d.access_key, "secret_key": d.secret_key}).encode()
        )
    record = await ctx.store.backends.add(
        conn,
        name=d.name,
        kind=d.kind,
        endpoint=d.endpoint,
        bucket=d.bucket,
        path=d.path,
        sealed_credentials=sealed,
        region=d.location.region,
        country=d.location.country,
        jurisdiction=d.location.jurisdiction,
        provider=d.provider,
        capacity_bytes=d.capacity_bytes,
        settings={
            "backend_type": d.backend_type,
            "signing_region": d.signing_region,
            "addressing_style": d.addressing_style,
            "manage_bucket": d.create_bucket,
            "sla_availability": d.sla.availability,
            "sla_latency_ms": d.sla.latency_ms,
            "residency": d.residency,
            "supports_sse": d.supports_sse,
            "archive": d.archive,
            "rtt_ms": report.rtt_ms,
            "throughput_mbps": report.throughput_mbps,
            "node_label": node,
        },
        health=_first_health(report),
    )
    if d.tenants is not None:
        await ctx.store.backends.set_tenants(conn, record.id, d.tenants)
        record = await ctx.store.backends.get_by_id(conn, record.id)
    return record


@operation(body=False)
async def list_backends(call: AdminCall) -> list[dict[str, Any]]:
    handles = await call.ctx.registry.current()
    return [describe(h.record, h) for h in handles]


@operation(body=False)
async def show_backend(call: AdminCall) -> dict[str, Any]:
    """One backend, with its drain progress (pieces and bytes left, blocked objects with the
    rule that blocks each) and what still references it."""
    ctx, name = call.ctx, call.path["name"]
    async with ctx.store.db.connection() as conn:
        record = await ctx.store.backends.get(conn, name)
        references = await ctx.store.backends.references(conn, record.id)
        progress = await ctx.store.drains.progress(conn, record.id, references=references)
    return {**describe(record, ctx.registry.get(record.id)), "drain": progress.to_json()}


@operation(body=False)
async def ping_backends(call: AdminCall) -> dict[str, dict[str, Any]]:
    """Ping every backend now and record the outcome; the operator's ping vouches for a
    backend that answers (``BackendRegistry.ping_all``)."""
    return await call.ctx.registry.ping_all(record=True, vouched=True)


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
