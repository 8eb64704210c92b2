"""Policy documents, stored versioned, and the marks that send objects to the placement checker.

Invariants kept:

- A stored document is always valid: ``apply`` parses it with ``core.policy.load_policy``
  first, and stores the canonical text (``dump_policy``) beside the source, so what is in force
  is spelled out exactly and a reader never has to re-validate.
- Versions only grow: the new version is ``max + 1`` and the version is the primary key, so of
  two concurrent applies one commits and the other gets ``Conflict`` (no table lock, so this
  runs on CockroachDB too). Rows are never updated: the table is the history.
- Whatever changes where an object may live (a bucket's class or region lock, a tenant's
  lock, allow-list or jurisdiction lists, a backend's location, a class redefined by a new
  document) enqueues one ``placement_check`` job per affected object version, in the caller's
  transaction (the outbox of invariant 5). The job's payload is ``{"version_pk": ..., "reason":
  ...}`` and its idempotency key ``placement_check:<version_pk>``, so marking an object that is
  already waiting for a check is a no-op. The placement checker (self-healing work) consumes
  them; this module only marks.

- A region lock recorded with a version (``version_region_locks``: an import's
  ``--region-lock``) binds it for its whole life: ``version_constraints`` and
  ``version_region_locks`` add it to the bucket's and tenant's rules for every later placement
  of its pieces (repairs, moves, drains, the placement checker), as the write did.

What it does not do: audit (the caller appends the entry in the same transaction), decide what
a class means (``core.policy``) or where pieces go (``core.placement``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg

from core.errors import Conflict, NoSuchBucket, NotFound
from core.placement import PlacementConstraints
from core.policy import PolicyDocument, builtin_policy, dump_policy, load_policy
from schema.backends import BackendRepository
from schema.jobs import PRIORITY, JobKind, JobQueue, placement_check_key
from schema.records import BackendRecord
from schema.tenants import TENANT_PLACEMENT_COLUMNS, TenantPlacement, tenant_placement

__all__ = ["PlacementSettings", "PolicyRepository", "StoredPolicy"]


@dataclass(frozen=True)
class StoredPolicy:
    """One applied policy document and who applied it when."""

    version: int
    document: str
    source: str
    sha256: bytes
    applied_by: str
    comment: str
    applied_at: datetime

    def parsed(self) -> PolicyDocument:
        return load_policy(self.document)


def _stored(row: asyncpg.Record) -> StoredPolicy:
    return StoredPolicy(
        version=row["version"],
        document=row["document"],
        source=row["source"],
        sha256=bytes(row["sha256"]),
        applied_by=row["applied_by"],
        comment=row["comment"],
        applied_at=row["applied_at"],
    )


@dataclass(frozen=True)
class PlacementSettings:
    """Everything stored that decides where a bucket's objects may go: the bucket's default
    class and region lock, and its tenant's settings. Compared by value: a PUT reads it when it
    places and again, locked, when it commits, and marks its object for the placement checker
    if the two differ."""

    bucket_id: int
    bucket_name: str
    bucket_default_class: str | None
    bucket_region_lock: tuple[str, ...]
    tenant: TenantPlacement
    #: Backends that serve only other tenants (``backend_tenants``).
    reserved_backends: tuple[str, ...] = ()

    @property
    def constraints(self) -> PlacementConstraints:
        """Where the bucket's objects may live beyond their class: the bucket's region lock
        and its tenant's region lock, jurisdiction lists and backend allow-list, all at once.
        The write path, the repairer and the placement checker all ask this one question."""
        return replace(
            self.tenant.constraints,
            region_lock=frozenset(self.bucket_region_lock),
            reserved_backends=frozenset(self.reserved_backends),
        )


#: The names of live backends reserved for tenants other than ``{tenant}`` (an SQL expression).
_RESERVED_FOR_OTHERS = (
    "ARRAY(SELECT DISTINCT k.name FROM backend_tenants bt JOIN backends k"
    " ON k.id = bt.backend_id WHERE k.state <> 'removed' AND NOT EXISTS (SELECT 1"
    " FROM backend_tenants mine WHERE mine.backend_id = bt.backend_id"
    " AND mine.tenant_id = {tenant}) ORDER BY 1)"
)


class PolicyRepository:
    """The ``policies`` table and the placement-check marks (see the module docstring)."""

    def __init__(self) -> None:
        self._jobs = JobQueue()

    # -- documents -------------------------------------------------------------------------
    async def current(self, conn: asyncpg.Connection) -> StoredPolicy | None:
        row = await conn.fetchrow("SELECT * FROM policies ORDER BY version DESC LIMIT 1")
        return None if row is None else _stored(row)

    async def current_version(self, conn: asyncpg.Connection) -> int:
        """The version in force, 0 when no document was ever applied (the built-in policy)."""
        version: int | None = await conn.fetchval("SELECT max(version) FROM policies")
        return version or 0

    async def get(self, conn: asyncpg.Connection, version: int) -> StoredPolicy:
        row = await conn.fetchrow("SELECT * FROM policies WHERE version = $1", version)
        if row is None:
            raise NotFound(f"no policy version {version}")
        return _stored(row)

    async def history(self, conn: asyncpg.Connection, *, limit: int = 100) -> list[StoredPolicy]:
        rows = await conn.fetch("SELECT * FROM policies ORDER BY version DESC LIMIT $1", limit)
        return [_stored(r) for r in rows]

    async def in_force(self, conn: asyncpg.Connection) -> tuple[int, PolicyDocument]:
        """(version, document) in force; version 0 and the built-in policy before any apply."""
        stored = await self.current(conn)
        if stored is None:
            return 0, builtin_policy()
        return stored.version, stored.parsed()

    async def apply(
        self,
        conn: asyncpg.Connection,
        source: str,
        *,
        applied_by: str,
        comment: str = "",
    ) -> tuple[StoredPolicy, PolicyDocument]:
        """Validate ``source`` and store it as the next version; raises ``InvalidInput`` for a
        bad document (nothing stored) and ``Conflict`` when another apply won the race."""
        document = load_policy(source)
        canonical = dump_policy(document)
        try:
            row = await conn.fetchrow(
                "INSERT INTO policies (version, document, source, sha256, applied_by, comment)"
                " SELECT COALESCE(max(version), 0) + 1, $1, $2, $3, $4, $5 FROM policies"
                " RETURNING *",
                canonical,
                source,
                hashlib.sha256(canonical.encode()).digest(),
                applied_by,
                comment,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("another policy was applied at the same time; apply again") from exc
        assert row is not None
        return _stored(row), document

    async def classes_in_use(
        self, conn: asyncpg.Connection, names: Iterable[str]
    ) -> dict[str, list[str]]:
        """For each class in ``names`` that something still refers to, what refers to it."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        uses: dict[str, list[str]] = {}
        for query, what in (
            (
                "SELECT default_class AS c, count(*) AS n FROM buckets"
                " WHERE default_class = ANY($1::text[]) GROUP BY 1",
                "bucket default",
            ),
            (
                "SELECT default_class AS c, count(*) AS n FROM tenants"
                " WHERE default_class = ANY($1::text[]) GROUP BY 1",
                "tenant default",
            ),
            (
                "SELECT redundancy_class AS c, count(*) AS n FROM object_versions"
                " WHERE redundancy_class = ANY($1::text[]) AND NOT is_delete_marker GROUP BY 1",
                "object",
            ),
        ):
            for row in await conn.fetch(query, wanted):
                count = int(row["n"])
                uses.setdefault(row["c"], []).append(f"{count} {what}{'' if count == 1 else 's'}")
        return uses

    # -- placement settings ---------------------------------------------------------------------
    async def reserved_for_others(self, conn: asyncpg.Connection, tenant_id: int) -> frozenset[str]:
        """Backends that serve only other tenants (``backend_tenants``): never placed on for
        ``tenant_id``, and never shown to it."""
        names = await conn.fetchval("SELECT " + _RESERVED_FOR_OTHERS.format(tenant="$1"), tenant_id)
        return frozenset(names)

    async def placement_settings(
        self, conn: asyncpg.Connection, bucket_id: int, *, lock: bool = False
    ) -> PlacementSettings:
        """The bucket's and its tenant's placement settings, in one query. ``lock`` reads both
        rows ``FOR SHARE``: a change of either setting (which locks the row ``FOR UPDATE``)
        then commits entirely before or entirely after the caller's transaction."""
        row = await conn.fetchrow(
            "SELECT b.id AS b_id, b.name AS b_name, b.default_class AS b_default_class,"
            f" b.region_lock AS b_region_lock, {TENANT_PLACEMENT_COLUMNS},"
            f" {_RESERVED_FOR_OTHERS.format(tenant='t.id')} AS reserved_backends"
            " FROM buckets b JOIN tenants t ON t.id = b.tenant_id WHERE b.id = $1"
            + (" FOR SHARE OF b, t" if lock else ""),
            bucket_id,
        )
        if row is None:
            raise NoSuchBucket("the bucket no longer exists")
        return PlacementSettings(
            bucket_id=row["b_id"],
            bucket_name=row["b_name"],
            bucket_default_class=row["b_default_class"],
            bucket_region_lock=tuple(row["b_region_lock"]),
            tenant=tenant_placement(row),
            reserved_backends=tuple(row["reserved_backends"]),
        )

    # -- region locks bound to stored versions -------------------------------------------------
    async def lock_version_region(
        self,
        conn: asyncpg.Connection,
        version_pk: int,
        region_lock: Iterable[str],
        *,
        origin: str,
    ) -> None:
        """Record ``region_lock`` with the version (in the transaction that commits it); it
        holds for every later placement of the version's pieces. ``origin`` says who set it
        (e.g. ``import:12``)."""
        names = sorted({n.lower() for n in region_lock})
        if not names:
            return
        await conn.execute(
            "INSERT INTO version_region_locks (version_pk, region_lock, origin)"
            " VALUES ($1, $2, $3) ON CONFLICT (version_pk) DO UPDATE"
            " SET region_lock = EXCLUDED.region_lock, origin = EXCLUDED.origin",
            version_pk,
            names,
            origin,
        )

    async def version_region_locks(
        self, conn: asyncpg.Connection, version_pks: Iterable[int]
    ) -> dict[int, tuple[str, ...]]:
        """The region locks recorded with these versions (versions without one are absent)."""
        wanted = sorted(set(version_pks))
        if not wanted:
            return {}
        rows = await conn.fetch(
            "SELECT version_pk, region_lock FROM version_region_locks"
            " WHERE version_pk = ANY($1::bigint[])",
            wanted,
        )
        return {int(r["version_pk"]): tuple(r["region_lock"]) for r in rows}

    async def version_constraints(
        self, conn: asyncpg.Connection, bucket_id: int, version_pk: int
    ) -> PlacementConstraints:
        """Where a stored version's pieces may live: its bucket's and tenant's rules plus the
        region lock recorded with it."""
        settings = await self.placement_settings(conn, bucket_id)
        locks = await self.version_region_locks(conn, [version_pk])
        return settings.constraints.with_import_lock(locks.get(version_pk, ()))

    # -- placement-check marks ---------------------------------------------------------------
    async def _mark(self, conn: asyncpg.Connection, reason: str, query: str, *args: object) -> int:
        marked = 0
        for row in await conn.fetch(query, *args):
            job = await self._jobs.enqueue(
                conn,
                JobKind.PLACEMENT_CHECK,
                {"version_pk": row["id"], "reason": reason},
                idempotency_key=placement_check_key(row["id"]),
                priority=PRIORITY[JobKind.PLACEMENT_CHECK],
            )
            marked += job is not None
        return marked

    async def mark_version(self, conn: asyncpg.Connection, version_pk: int, reason: str) -> int:
        return await self._mark(conn, reason, "SELECT $1::bigint AS id", version_pk)

    async def mark_bucket(self, conn: asyncpg.Connection, bucket_id: int, reason: str) -> int:
        """Every object version of the bucket; returns how many were newly marked."""
        return await self._mark(
            conn,
            reason,
            "SELECT id FROM object_versions WHERE bucket_id = $1 AND NOT is_delete_marker"
            " ORDER BY id",
            bucket_id,
        )

    async def mark_tenant(self, conn: asyncpg.Connection, tenant_id: int, reason: str) -> int:
        return await self._mark(
            conn,
            reason,
            "SELECT id FROM object_versions WHERE tenant_id = $1 AND NOT is_delete_marker"
            " ORDER BY id",
            tenant_id,
        )

    async def mark_backend(self, conn: asyncpg.Connection, backend_id: int, reason: str) -> int:
        """Every object version with a piece on the backend."""
        return await self._mark(
            conn,
            reason,
            "SELECT DISTINCT version_pk AS id FROM replicas WHERE backend_id = $1"
            " AND status <> 'deleting' ORDER BY 1",
            backend_id,
        )

    async def mark_classes(
        self, conn: asyncpg.Connection, names: Iterable[str], reason: str
    ) -> int:
        wanted = sorted(set(names))
        if not wanted:
            return 0
        return await self._mark(
            conn,
            reason,
            "SELECT id FROM object_versions WHERE redundancy_class = ANY($1::text[])"
            " AND NOT is_delete_marker ORDER BY id",
            wanted,
        )

    # -- backend location ----------------------------------------------------------------------
    async def relocate_backend(
        self,
        conn: asyncpg.Connection,
        name: str,
        *,
        region: str,
        country: str,
        jurisdiction: str,
    ) -> tuple[BackendRecord, int]:
        """Change where a backend is (region, country, jurisdiction) and mark its objects.

        Here rather than in ``schema/backends.py`` because the update and the marks must be one
        transaction and a backend's location matters only to placement. Returns the updated
        record and how many object versions were marked.
        """
        old = await BackendRepository().get(conn, name)
        await conn.execute(
            "UPDATE backends SET region = $2, country = $3, jurisdiction = $4 WHERE id = $1",
            old.id,
            region,
            country,
            jurisdiction,
        )
        new = await BackendRepository().get(conn, name)
        marked = 0
        if (old.region, old.country, old.jurisdiction) != (region, country, jurisdiction):
            marked = await self.mark_backend(
                conn,
                old.id,
                f"backend {name} moved from {old.region}/{old.country}/{old.jurisdiction}"
                f" to {region}/{country}/{jurisdiction}",
            )
        return new, marked
