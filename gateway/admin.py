"""The ``/admin`` API: backends added at run time, tenants and their keys, audit verification,
and the policy engine's settings (policy documents, bucket and tenant placement, backend
location, placement explanations).

Authenticated with a bearer token (the bootstrap admin token; stored hashed). Input is JSON,
validated field by field here; errors use the same S3 XML error document as the S3 API.

Every change of where data may live is one transaction with its audit entry and the
``placement_check`` jobs for the objects it affects (``schema/policies.py``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from actors.backend_actor import BackendSpec, build_client, get_or_create_backend_actor
from actors.registry import spec_of
from core.errors import (
    BulletproofError,
    Conflict,
    InsufficientCapacity,
    InvalidInput,
    NotFound,
    PolicyViolation,
)
from core.placement import explain, place, rejection
from core.policy import builtin_policy, diff_policies, dump_policy
from core.sealing import new_secret
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.handlers.object_put import constraints_for, resolve_class
from schema.audit import AuditEntry
from schema.policies import StoredPolicy

__all__ = [
    "add_storage",
    "apply_policy",
    "bucket_placement",
    "create_tenant",
    "explain_placement",
    "list_backends",
    "parse_json",
    "policy_history",
    "relocate_backend",
    "set_bucket_placement",
    "set_tenant_placement",
    "show_policy",
    "tenant_placement",
    "verify_audit",
]

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


# --- policy engine ------------------------------------------------------------------------------

_MAX_LIST = 256


def _names_list(data: dict[str, Any], name: str, *, lower: bool = False) -> list[str]:
    """A JSON list of distinct non-empty strings (sorted), or InvalidArgument naming the field."""
    value = data[name]
    if not isinstance(value, list) or len(value) > _MAX_LIST:
        raise s3e.InvalidArgument(f"field {name!r} must be a list of at most {_MAX_LIST} strings")
    out: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > 64:
            raise s3e.InvalidArgument(f"field {name!r} must hold non-empty strings of <= 64 chars")
        out.add(item.strip().lower() if lower else item.strip())
    return sorted(out)


def _optional_class(ctx: GatewayContext, data: dict[str, Any], name: str) -> str | None:
    value = data[name]
    if value is None:
        return None
    if not isinstance(value, str) or value not in ctx.policy.classes:
        raise s3e.InvalidArgument(
            f"field {name!r}: unknown redundancy class {value!r} "
            f"(known: {', '.join(sorted(ctx.policy.classes))})"
        )
    return value


def _policy_json(stored: StoredPolicy | None, ctx: GatewayContext) -> dict[str, Any]:
    if stored is None:
        document = builtin_policy()
        info: dict[str, Any] = {
            "version": 0,
            "document": dump_policy(document),
            "source": None,
            "sha256": None,
            "applied_by": "built-in",
            "applied_at": None,
            "comment": "the built-in policy; no document has been applied",
        }
    else:
        document = stored.parsed()
        info = {
            "version": stored.version,
            "document": stored.document,
            "source": stored.source,
            "sha256": stored.sha256.hex(),
            "applied_by": stored.applied_by,
            "applied_at": stored.applied_at.isoformat(),
            "comment": stored.comment,
        }
    info["default_class"] = document.default_class
    info["classes"] = {name: rc.describe() for name, rc in sorted(document.classes.items())}
    info["in_force_here"] = ctx.policy_version == info["version"]
    return info


async def apply_policy(
    ctx: GatewayContext, data: dict[str, Any], request_id: str
) -> dict[str, Any]:
    """Validate and store a policy document as the next version (or report it unchanged).

    Refused (400, nothing stored) when the document is invalid, or when it drops a class that a
    bucket default, a tenant default or a stored object still uses. Objects of a class the
    document redefines are marked for the placement checker in the same transaction.
    """
    source = data.get("document")
    if not isinstance(source, str) or not source.strip():
        raise s3e.InvalidArgument("field 'document' must be the policy's YAML text")
    comment = data.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 1024:
        raise s3e.InvalidArgument("field 'comment' must be a string of at most 1024 characters")
    try:
        async with ctx.store.db.transaction() as conn:
            old_version, old_document = await ctx.policies.in_force(conn)
            stored, document = await ctx.policies.apply(
                conn, source, applied_by="admin", comment=comment
            )
            if old_version and dump_policy(old_document) == stored.document:
                raise _Unchanged(old_version)
            diff = diff_policies(old_document, document)
            uses = await ctx.policies.classes_in_use(conn, diff.removed)
            if uses:
                detail = "; ".join(f"{c} ({', '.join(u)})" for c, u in sorted(uses.items()))
                raise s3e.InvalidArgument(
                    f"classes: the document drops classes still in use: {detail}; "
                    f"keep them or move what uses them first"
                )
            marked = await ctx.policies.mark_classes(
                conn, diff.changed, f"policy version {stored.version} redefined the class"
            )
            await ctx.store.audit.append(
                conn,
                AuditEntry(
                    actor="admin",
                    action="ApplyPolicy",
                    resource=f"policy/{stored.version}",
                    request_id=request_id,
                    result=(
                        f"ok sha256={stored.sha256.hex()[:16]} added={','.join(diff.added)}"
                        f" removed={','.join(diff.removed)} changed={','.join(diff.changed)}"
                        f" marked={marked}"
                    ),
                ),
            )
    except _Unchanged as same:
        return {"version": same.version, "unchanged": True, "marked_objects": 0}
    except InvalidInput as exc:
        raise s3e.InvalidArgument(str(exc)) from exc
    except Conflict as exc:
        raise s3e.InvalidRequest(str(exc)) from exc
    ctx.use_policy(stored.version, document)
    return {
        "version": stored.version,
        "unchanged": False,
        "sha256": stored.sha256.hex(),
        "default_class": document.default_class,
        "added": list(diff.added),
        "removed": list(diff.removed),
        "changed": list(diff.changed),
        "marked_objects": marked,
    }


class _Unchanged(Exception):
    """The applied document equals the one in force: roll back, report the current version."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


async def show_policy(ctx: GatewayContext, version: str | None) -> dict[str, Any]:
    """The policy in force (or version ``version``), canonical text and classes."""
    async with ctx.store.db.connection() as conn:
        if version is None:
            stored = await ctx.policies.current(conn)
        else:
            if not (version.isascii() and version.isdigit()) or int(version) > 2**31 - 1:
                raise s3e.InvalidArgument("query parameter 'version' must be a version number")
            stored = None if int(version) == 0 else await ctx.policies.get(conn, int(version))
    return _policy_json(stored, ctx)


async def policy_history(ctx: GatewayContext) -> list[dict[str, Any]]:
    async with ctx.store.db.connection() as conn:
        rows = await ctx.policies.history(conn)
    return [
        {
            "version": r.version,
            "sha256": r.sha256.hex(),
            "applied_by": r.applied_by,
            "applied_at": r.applied_at.isoformat(),
            "comment": r.comment,
        }
        for r in rows
    ]


async def _bucket_of(ctx: GatewayContext, conn: Any, tenant: str | None, bucket: str) -> Any:
    """The bucket called ``bucket`` of ``tenant``, or the only one of that name if no tenant."""
    if tenant is not None:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        return await ctx.store.buckets.get(conn, owner.id, bucket)
    found = await ctx.store.buckets.find_by_name(conn, bucket)
    if not found:
        raise s3e.NoSuchBucket(f"no tenant has a bucket {bucket!r}")
    if len(found) > 1:
        raise s3e.InvalidArgument(
            f"{len(found)} tenants have a bucket {bucket!r}; name the tenant (field 'tenant')"
        )
    return found[0]


async def explain_placement(ctx: GatewayContext, data: dict[str, Any]) -> dict[str, Any]:
    """Which backends a PUT of ``key`` into ``bucket`` would use now, and why; or which rule
    makes it impossible. For an existing object, also where its pieces are and whether each
    still complies with the bucket's and tenant's constraints."""
    bucket_name = _str(data, "bucket")
    key = _str(data, "key")
    tenant_name = _str(data, "tenant", required=False)
    requested = _str(data, "class", required=False)
    size = data.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise s3e.InvalidArgument("field 'size' must be a non-negative integer")
    assert bucket_name is not None and key is not None
    policy = await ctx.current_policy()
    async with ctx.store.db.connection() as conn:
        bucket = await _bucket_of(ctx, conn, tenant_name, bucket_name)
        settings = await ctx.policies.placement_settings(conn, bucket.id)
        version = await ctx.store.versions.get_latest(conn, bucket.id, key)
    if version is not None and version.is_delete_marker:
        version = None
    if requested is None and version is not None:
        requested = version.redundancy_class
    choice = resolve_class(policy, settings, requested)
    rc = choice.redundancy_class
    source = "the object's class" if requested and data.get("class") is None else choice.source
    constraints = constraints_for(settings)
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
            piece = {
                "backend": name,
                "part": replica.part_number,
                "shard": replica.shard_index,
                "status": replica.status,
                "compliant": why is None,
                "violation": why,
            }
            pieces.append(piece)
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


async def bucket_placement(ctx: GatewayContext, tenant: str, bucket: str) -> dict[str, Any]:
    async with ctx.store.db.connection() as conn:
        found = await _bucket_of(ctx, conn, tenant, bucket)
    return {
        "tenant": tenant,
        "bucket": found.name,
        "default_class": found.default_class,
        "region_lock": list(found.region_lock),
    }


async def set_bucket_placement(
    ctx: GatewayContext, tenant: str, bucket: str, data: dict[str, Any], request_id: str
) -> dict[str, Any]:
    """Set a bucket's default class and/or region lock (absent fields stay as they are); its
    objects are marked for the placement checker when either changes."""
    unknown = set(data) - {"default_class", "region_lock"}
    if unknown:
        raise s3e.InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))}")
    await ctx.current_policy()
    async with ctx.store.db.transaction() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        current = await ctx.store.buckets.get(conn, owner.id, bucket)
        default_class = (
            _optional_class(ctx, data, "default_class")
            if "default_class" in data
            else current.default_class
        )
        region_lock = (
            tuple(_names_list(data, "region_lock", lower=True))
            if "region_lock" in data
            else current.region_lock
        )
        before, after = await ctx.store.buckets.set_placement(
            conn, owner.id, bucket, default_class=default_class, region_lock=region_lock
        )
        marked = 0
        changes = []
        if before.default_class != after.default_class:
            changes.append(f"default class {before.default_class} -> {after.default_class}")
        if before.region_lock != after.region_lock:
            changes.append(
                f"region lock {','.join(before.region_lock) or '-'} -> "
                f"{','.join(after.region_lock) or '-'}"
            )
        if changes:
            marked = await ctx.policies.mark_bucket(
                conn, after.id, f"bucket {bucket}: {'; '.join(changes)}"
            )
        await ctx.store.audit.append(
            conn,
            AuditEntry(
                actor="admin",
                action="SetBucketPlacement",
                resource=f"tenant/{tenant}/bucket/{bucket}",
                request_id=request_id,
                result=f"ok {'; '.join(changes) or 'unchanged'} marked={marked}",
                tenant_id=owner.id,
            ),
        )
    await ctx.meta.invalidate_bucket(owner.id, bucket)
    return {
        "tenant": tenant,
        "bucket": bucket,
        "default_class": after.default_class,
        "region_lock": list(after.region_lock),
        "marked_objects": marked,
    }


def _tenant_json(placement: Any) -> dict[str, Any]:
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


async def tenant_placement(ctx: GatewayContext, tenant: str) -> dict[str, Any]:
    async with ctx.store.db.connection() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        return _tenant_json(await ctx.store.tenants.placement(conn, owner.id))


_TENANT_FIELDS = (
    "default_class",
    "region_lock",
    "jurisdiction_allow",
    "jurisdiction_deny",
    "allowed_backends",
)


async def set_tenant_placement(
    ctx: GatewayContext, tenant: str, data: dict[str, Any], request_id: str
) -> dict[str, Any]:
    """Set a tenant's default class, region lock, jurisdiction allow/deny lists and backend
    allow-list (absent fields stay; ``allowed_backends: null`` removes the allow-list). The
    tenant's objects are marked for the placement checker when anything changes."""
    unknown = set(data) - set(_TENANT_FIELDS)
    if unknown:
        raise s3e.InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))}")
    await ctx.current_policy()
    async with ctx.store.db.transaction() as conn:
        owner = await ctx.store.tenants.get_by_name(conn, tenant)
        current = await ctx.store.tenants.placement(conn, owner.id)
        default_class = (
            _optional_class(ctx, data, "default_class")
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
                values = _names_list(data, name, lower=lower)
                lists[name] = tuple(v.upper() for v in values) if not lower else tuple(values)
            else:
                lists[name] = getattr(current, name)
        allowed_names = current.allowed_backends
        if "allowed_backends" in data:
            if data["allowed_backends"] is None:
                allowed_names = None
            else:
                allowed_names = tuple(_names_list(data, "allowed_backends"))
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
        await ctx.store.audit.append(
            conn,
            AuditEntry(
                actor="admin",
                action="SetTenantPlacement",
                resource=f"tenant/{tenant}",
                request_id=request_id,
                result=f"ok changed={','.join(changed) or '-'} marked={marked}",
                tenant_id=owner.id,
            ),
        )
    return {**_tenant_json(after), "marked_objects": marked}


async def relocate_backend(
    ctx: GatewayContext, name: str, data: dict[str, Any], request_id: str
) -> dict[str, Any]:
    """Record that a backend is now in another region, country or jurisdiction; every object
    with a piece on it is marked for the placement checker."""
    region = _str(data, "region")
    country = (_str(data, "country") or "").upper()
    jurisdiction = (_str(data, "jurisdiction") or "").upper()
    assert region is not None
    async with ctx.store.db.transaction() as conn:
        record, marked = await ctx.policies.relocate_backend(
            conn, name, region=region, country=country, jurisdiction=jurisdiction
        )
        await ctx.store.audit.append(
            conn,
            AuditEntry(
                actor="admin",
                action="RelocateBackend",
                resource=f"backend/{name}",
                request_id=request_id,
                result=f"ok {region}/{country}/{jurisdiction} marked={marked}",
            ),
        )
    await ctx.registry.refresh()
    return {
        "name": record.name,
        "region": record.region,
        "country": record.country,
        "jurisdiction": record.jurisdiction,
        "marked_objects": marked,
    }
