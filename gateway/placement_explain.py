"""Where a PUT would be placed now and why: the one explanation behind ``bulletproof policy
explain`` (``POST /admin/policy/explain``) and the console's live explain (``/ui/api/explain``).

Both callers resolve the bucket their own way (the admin by tenant name or a unique bucket
name, a tenant only among its own buckets) and then ask ``explain_put``, so the answer for the
same bucket, key, class and size is the same text, line for line. ``import_region_lock`` adds
an import run's ``--region-lock`` exactly as the importer's writes add it
(``actors/writes.py``): it narrows the placement, never widens it.

It only reads: nothing is placed, marked or audited here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actors.writes import resolve_class
from core.errors import InsufficientCapacity, PolicyViolation
from core.placement import explain, place, rejection
from gateway.context import GatewayContext
from schema.records import Bucket

__all__ = ["explain_put"]


async def explain_put(
    ctx: GatewayContext,
    bucket: Bucket,
    key: str,
    *,
    requested_class: str | None = None,
    size: int | None = None,
    import_region_lock: Iterable[str] = (),
) -> dict[str, Any]:
    """Which backends a PUT of ``key`` into ``bucket`` would use now, and why; or which rule
    makes it impossible. For an existing object, also where its pieces are and whether each
    still complies with the bucket's and tenant's constraints and the region lock recorded
    with it (``version_region_locks``)."""
    policy = await ctx.current_policy()
    async with ctx.store.db.connection() as conn:
        settings = await ctx.policies.placement_settings(conn, bucket.id)
        version = await ctx.store.versions.get_latest(conn, bucket.id, key)
        locks = (
            {} if version is None else await ctx.policies.version_region_locks(conn, [version.id])
        )
    if version is not None and version.is_delete_marker:
        version = None
    requested = requested_class
    if requested is None and version is not None:
        requested = version.redundancy_class
    choice = resolve_class(policy, settings, requested)
    rc = choice.redundancy_class
    source = "the object's class" if requested and requested_class is None else choice.source
    constraints = settings.constraints
    if version is not None:  # an existing object also obeys the region lock recorded with it
        constraints = constraints.with_import_lock(locks.get(version.id, ()))
    constraints = constraints.with_import_lock(import_region_lock)
    object_size = size if size is not None else (version.size if version is not None else 0)
    handles = await ctx.registry.current()
    views = [h.view() for h in handles]
    lines = [
        f"policy version {ctx.policy_version}",
        f"tenant {settings.tenant.name}, bucket {settings.bucket_name}, key {key}",
        f"class {rc.name} from {source}; object size {object_size} bytes",
    ]
    lines += explain(rc, views, constraints, object_size=object_size)
    result: dict[str, Any] = {
        "tenant": settings.tenant.name,
        "bucket": settings.bucket_name,
        "key": key,
        "class": rc.name,
        "class_source": source,
        "constraints": constraints.describe(),
        "placeable": True,
        "targets": [],
        "error": None,
        "object": None,
    }
    try:
        placement = place(rc, views, constraints, object_size=object_size)
        result["targets"] = list(placement.targets)
    except (PolicyViolation, InsufficientCapacity) as exc:
        result["placeable"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
    if version is not None:
        by_id = {h.id: h for h in handles}
        pieces = []
        lines.append(f"stored: version {version.version_id}, class {version.redundancy_class}")
        for replica in version.replicas:
            handle = by_id.get(replica.backend_id)
            name = handle.name if handle else f"backend#{replica.backend_id}"
            why = rejection(handle.view(), constraints) if handle else "backend removed"
            pieces.append(
                {
                    "backend": name,
                    "part": replica.part_number,
                    "shard": replica.shard_index,
                    "status": replica.status,
                    "compliant": why is None,
                    "violation": why,
                }
            )
            shard = f" shard {replica.shard_index}" if replica.shard_index >= 0 else ""
            verdict = "complies" if why is None else f"VIOLATES: {why}"
            lines.append(
                f"stored: part {replica.part_number}{shard} on {name} ({replica.status}): {verdict}"
            )
        result["object"] = {
            "version_id": version.version_id,
            "class": version.redundancy_class,
            "size": version.size,
            "pieces": pieces,
        }
    result["lines"] = lines
    return result
