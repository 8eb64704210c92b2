"""Bucket imports in the metadata store: the only module that queries the ``import_*`` tables.

What it keeps true:

- **Tenants are isolated.** Every read and change of a source or run takes the caller's
  ``tenant_id`` and finds nothing (``NotFound``) outside it; ``tenant_id=None`` is the admin's
  view of every tenant.
- **The counters are what the rows say.** A run's ``objects_total``/``bytes_total`` grow in the
  transaction that adds the manifest segment listing those objects, and ``objects_done``,
  ``bytes_done`` (verified + skipped) and ``errors`` (failed) change in the same statement that
  moves objects between states, by exactly the rows it moved (``recount`` recomputes them).
- **The manifest has no gaps and no duplicates.** Segments are numbered 0, 1, 2, ... and each
  one's keys sort after the previous segment's last key; a segment and its ``import_objects``
  rows commit together, and only while the run is ``listing`` (a cancelled run stops its
  lister at its next segment).
- **A re-run copies only what changed.** An object whose key, ETag and size equal an object a
  previous run of the same source -> destination verified (or skipped), and whose version is
  still the latest at the destination, is inserted as ``skipped`` with that version.
- **State changes obey ``core.import_state``** (``check_transition``) under the run's row lock.
- **One lock order**: every change takes the run's row lock before touching its objects, so
  concurrent movers, listers and state changes of a run serialise instead of deadlocking.
- **A deletion manifest needs GREEN**: ``record_deletion_manifest`` refuses any other colour.

It stores the sealed credential blob and never opens it (it only checks its form:
``core.credential_seal.check_sealed``). It knows nothing of S3, Parquet or Ray.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from core.credential_seal import check_sealed
from core.errors import Conflict, InvalidInput, NotFound
from core.import_state import (
    DONE_OBJECT_STATES,
    FINAL_RUN_STATES,
    OBJECT_STATES,
    Color,
    ImportFacts,
    ImportStatus,
    check_transition,
    import_status,
)
from schema.import_records import (
    MARKER_ETAG,
    MARKER_RUN,
    ImportObject,
    ImportRun,
    ImportSource,
    KeyRef,
    ManifestEntry,
    ManifestSegment,
    MarkedObject,
    error_of,
    object_of,
    run_of,
    source_of,
)

__all__ = ["ImportRepository"]


def _tenant_filter(tenant_id: int | None, column: str = "tenant_id", n: int = 2) -> str:
    """``AND column = $n`` for a tenant, nothing for the admin's view."""
    return "" if tenant_id is None else f" AND {column} = ${n}"


_OBJECT_COLUMNS = (
    "run_id, key, size, etag, last_modified, checksum, state, attempts, error, version_pk,"
    " verify_problem"
)

# Insert a page of listed objects. An object identical (key, ETag, size) to one a previous run
# of the same route verified or skipped, whose version is still the latest at the destination,
# comes in as 'skipped' with that version. $2..$4: the route; $5..$9: the page, as arrays.
_INSERT_OBJECTS = """
WITH previous AS (
    SELECT id FROM import_runs
    WHERE source_id = $2 AND dest_bucket = $3 AND dest_prefix = $4 AND id <> $1
), listed AS (
    SELECT u.key COLLATE "C" AS key, u.size, u.etag, u.last_modified, u.checksum
    FROM unnest($5::text[], $6::bigint[], $7::text[], $8::timestamptz[], $9::text[])
        AS u(key, size, etag, last_modified, checksum)
)
INSERT INTO import_objects (run_id, key, size, etag, last_modified, checksum, state, version_pk)
SELECT $1, l.key, l.size, l.etag, l.last_modified, l.checksum,
       CASE WHEN same.version_pk IS NULL THEN 'pending' ELSE 'skipped' END, same.version_pk
FROM listed l
LEFT JOIN LATERAL (
    SELECT p.version_pk FROM import_objects p
    JOIN object_versions v ON v.id = p.version_pk AND v.is_latest AND NOT v.is_delete_marker
    WHERE p.run_id IN (SELECT id FROM previous) AND p.key = l.key AND p.etag = l.etag
      AND p.size = l.size AND p.state IN ('verified', 'skipped')
    ORDER BY p.run_id DESC LIMIT 1
) same ON TRUE
ON CONFLICT (run_id, key) DO NOTHING
RETURNING state, size
"""

# Move the listed objects of run $1 that are in one of the states $5 to state $6, spending $7
# attempts, with per-key version ($3, kept when NULL) and error ($4, cleared when NULL); then
# change the run's counters by exactly the rows moved. Returns how many moved. Run under the
# run's row lock (taken first); the object rows are locked before they are read (FOR UPDATE
# returns their newest state), so the deltas are exact.
_MOVE_OBJECTS = """
WITH input AS (
    SELECT u.key COLLATE "C" AS key, u.version_pk, u.error
    FROM unnest($2::text[], $3::bigint[], $4::text[]) AS u(key, version_pk, error)
), old AS (
    SELECT o.key, o.state AS was, i.version_pk, i.error
    FROM import_objects o JOIN input i ON i.key = o.key
    WHERE o.run_id = $1 AND o.state = ANY($5::text[])
    FOR UPDATE OF o
), moved AS (
    UPDATE import_objects o SET state = $6, attempts = o.attempts + $7,
        version_pk = COALESCE(old.version_pk, o.version_pk), error = old.error,
        updated_at = now()
    FROM old WHERE o.run_id = $1 AND o.key = old.key
    RETURNING old.was, o.size
), delta AS (
    SELECT count(*) AS n,
        COALESCE(sum((CASE WHEN $6 IN ('verified', 'skipped') THEN 1 ELSE 0 END)
                   - (CASE WHEN was IN ('verified', 'skipped') THEN 1 ELSE 0 END)), 0) AS done,
        COALESCE(sum(size * ((CASE WHEN $6 IN ('verified', 'skipped') THEN 1 ELSE 0 END)
                   - (CASE WHEN was IN ('verified', 'skipped') THEN 1 ELSE 0 END))), 0) AS bytes,
        COALESCE(sum((CASE WHEN $6 = 'failed' THEN 1 ELSE 0 END)
                   - (CASE WHEN was = 'failed' THEN 1 ELSE 0 END)), 0) AS errors
    FROM moved
)
UPDATE import_runs r SET objects_done = r.objects_done + delta.done,
    bytes_done = r.bytes_done + delta.bytes, errors = r.errors + delta.errors,
    updated_at = now()
FROM delta WHERE r.id = $1
RETURNING delta.n
"""


class ImportRepository:
    # -- sources -----------------------------------------------------------------------------
    async def create_source(
        self,
        conn: asyncpg.Connection,
        tenant_id: int,
        name: str,
        *,
        endpoint: str,
        bucket: str,
        sealed: str,
        region: str = "us-east-1",
        prefix: str = "",
    ) -> ImportSource:
        """Store a source with its sealed credentials (checked for form, never opened):
        ``SealOpenFailed`` for a malformed blob, ``Conflict`` if the tenant has the name."""
        check_sealed(sealed)
        try:
            row = await conn.fetchrow(
                "INSERT INTO import_sources (tenant_id, name, endpoint, region, bucket, prefix,"
                " sealed) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                tenant_id,
                name,
                endpoint,
                region,
                bucket,
                prefix,
                sealed,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"import source {name!r} already exists") from None
        except asyncpg.CheckViolationError as exc:
            raise InvalidInput(f"import source refused: {exc.constraint_name}") from None
        assert row is not None
        return source_of(row)

    async def get_source(
        self, conn: asyncpg.Connection, source_id: int, *, tenant_id: int | None = None
    ) -> ImportSource:
        row = await conn.fetchrow(
            "SELECT * FROM import_sources WHERE id = $1" + _tenant_filter(tenant_id),
            source_id,
            *(() if tenant_id is None else (tenant_id,)),
        )
        if row is None:
            raise NotFound(f"no import source {source_id}")
        return source_of(row)

    async def source_by_name(
        self, conn: asyncpg.Connection, tenant_id: int, name: str
    ) -> ImportSource:
        row = await conn.fetchrow(
            "SELECT * FROM import_sources WHERE tenant_id = $1 AND name = $2", tenant_id, name
        )
        if row is None:
            raise NotFound(f"no import source {name!r}")
        return source_of(row)

    async def list_sources(
        self, conn: asyncpg.Connection, *, tenant_id: int | None = None
    ) -> list[ImportSource]:
        if tenant_id is None:
            rows = await conn.fetch("SELECT * FROM import_sources ORDER BY id")
        else:
            rows = await conn.fetch(
                "SELECT * FROM import_sources WHERE tenant_id = $1 ORDER BY id", tenant_id
            )
        return [source_of(r) for r in rows]

    async def replace_sealed(
        self, conn: asyncpg.Connection, source_id: int, tenant_id: int, sealed: str
    ) -> None:
        """New sealed credentials for a source (rotated keys, a new passphrase)."""
        check_sealed(sealed)
        result = await conn.execute(
            "UPDATE import_sources SET sealed = $3 WHERE id = $1 AND tenant_id = $2",
            source_id,
            tenant_id,
            sealed,
        )
        if result == "UPDATE 0":
            raise NotFound(f"no import source {source_id}")

    # -- runs --------------------------------------------------------------------------------
    async def create_run(
        self,
        conn: asyncpg.Connection,
        tenant_id: int,
        source_id: int,
        dest_bucket: str,
        *,
        recipients: Sequence[KeyRef],
        dest_prefix: str = "",
        redundancy_class: str | None = None,
        region_lock: Sequence[str] = (),
    ) -> ImportRun:
        """A new run (``pending``) of the tenant's source into ``dest_bucket``/``dest_prefix``.
        At least one recipient: every imported object is encrypted to the tenant's keys."""
        if not recipients:
            raise InvalidInput("an import needs at least one recipient key")
        row = await conn.fetchrow(
            "INSERT INTO import_runs (tenant_id, source_id, dest_bucket, dest_prefix,"
            " redundancy_class, region_lock, recipients)"
            " SELECT tenant_id, id, $3, $4, $5, $6, $7::text::jsonb FROM import_sources"
            " WHERE id = $2 AND tenant_id = $1 RETURNING *",
            tenant_id,
            source_id,
            dest_bucket,
            dest_prefix,
            redundancy_class,
            list(region_lock),
            json.dumps([{"key_id": k.key_id, "key_version": k.key_version} for k in recipients]),
        )
        if row is None:
            raise NotFound(f"no import source {source_id}")
        return run_of(row)

    async def get_run(
        self, conn: asyncpg.Connection, run_id: int, *, tenant_id: int | None = None
    ) -> ImportRun:
        row = await conn.fetchrow(
            "SELECT * FROM import_runs WHERE id = $1" + _tenant_filter(tenant_id),
            run_id,
            *(() if tenant_id is None else (tenant_id,)),
        )
        if row is None:
            raise NotFound(f"no import {run_id}")
        return run_of(row)

    async def runs_by_state(self, conn: asyncpg.Connection) -> dict[str, int]:
        """How many import runs are in each state (all tenants): the operator's summary."""
        rows = await conn.fetch("SELECT state, count(*) AS n FROM import_runs GROUP BY state")
        return {r["state"]: int(r["n"]) for r in rows}

    async def list_runs(
        self,
        conn: asyncpg.Connection,
        *,
        tenant_id: int | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[ImportRun]:
        """Newest first; page with ``before_id`` (the last id of the previous page)."""
        rows = await conn.fetch(
            "SELECT * FROM import_runs WHERE ($1::bigint IS NULL OR tenant_id = $1)"
            " AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
            tenant_id,
            before_id,
            limit,
        )
        return [run_of(r) for r in rows]

    async def set_state(
        self,
        conn: asyncpg.Connection,
        run_id: int,
        state: str,
        *,
        tenant_id: int | None = None,
        error: str | None = None,
    ) -> ImportRun:
        """Move a run to ``state`` if ``core.import_state`` allows it from where it is
        (``Conflict`` otherwise). ``error`` becomes ``last_error``; going back to ``pending``
        clears it. ``started_at`` is the first time work began; ``finished_at`` is set in a
        final state and cleared outside one."""
        async with conn.transaction():
            current = await conn.fetchval(
                "SELECT state FROM import_runs WHERE id = $1"
                + _tenant_filter(tenant_id)
                + " FOR UPDATE",
                run_id,
                *(() if tenant_id is None else (tenant_id,)),
            )
            if current is None:
                raise NotFound(f"no import {run_id}")
            check_transition(current, state)
            row = await conn.fetchrow(
                "UPDATE import_runs SET state = $2,"
                " last_error = CASE WHEN $3::text IS NOT NULL THEN $3"
                "   WHEN $2 = 'pending' THEN NULL ELSE last_error END,"
                " started_at = CASE WHEN $2 IN ('listing', 'running', 'verifying')"
                "   THEN COALESCE(started_at, now()) ELSE started_at END,"
                " finished_at = CASE WHEN $2 = ANY($4::text[]) THEN now() END,"
                " updated_at = now() WHERE id = $1 RETURNING *",
                run_id,
                state,
                None if error is None else error_of(error),
                list(FINAL_RUN_STATES),
            )
        assert row is not None
        return run_of(row)

    async def set_submission(
        self, conn: asyncpg.Connection, run_id: int, submission_id: str
    ) -> None:
        """Record the Ray job submission id now in charge of the run."""
        try:
            result = await conn.execute(
                "UPDATE import_runs SET submission_id = $2, updated_at = now() WHERE id = $1",
                run_id,
                submission_id,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"submission id {submission_id!r} belongs to another import") from None
        if result == "UPDATE 0":
            raise NotFound(f"no import {run_id}")

    # -- the manifest ------------------------------------------------------------------------
    async def next_segment(self, conn: asyncpg.Connection, run_id: int) -> tuple[int, str | None]:
        """(the next segment's number, the last key listed so far or None): where a lister
        (re)starts."""
        row = await conn.fetchrow(
            "SELECT seq, last_key FROM import_manifest_segments WHERE run_id = $1"
            " ORDER BY seq DESC LIMIT 1",
            run_id,
        )
        return (0, None) if row is None else (row["seq"] + 1, row["last_key"])

    async def add_segment(
        self,
        conn: asyncpg.Connection,
        run_id: int,
        seq: int,
        parquet: bytes,
        entries: Sequence[ManifestEntry],
    ) -> tuple[int, int]:
        """Store segment ``seq`` (its Parquet bytes) and one ``import_objects`` row per entry,
        in one transaction, while the run is ``listing``; ``entries`` sorted by key, after the
        previous segment's last key. Returns (objects added, of which skipped)."""
        if not entries:
            raise InvalidInput("a manifest segment lists at least one object")
        keys = [e.key for e in entries]
        if any(a >= b for a, b in zip(keys, keys[1:], strict=False)):
            raise InvalidInput("a manifest segment's keys must be sorted and distinct")
        async with conn.transaction():
            run = await self._lock_run(conn, run_id)
            if run["state"] != "listing":
                raise Conflict(f"import {run_id} is {run['state']}, not listing")
            expected, last_key = await self.next_segment(conn, run_id)
            if seq != expected:
                raise Conflict(f"import {run_id} expects manifest segment {expected}, not {seq}")
            if last_key is not None and keys[0] <= last_key:  # code point order = C collation
                raise Conflict(f"manifest segment {seq} does not start after the previous one")
            await conn.execute(
                "INSERT INTO import_manifest_segments (run_id, seq, parquet, keys, bytes,"
                " first_key, last_key) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                run_id,
                seq,
                parquet,
                len(entries),
                sum(e.size for e in entries),
                keys[0],
                keys[-1],
            )
            rows = await conn.fetch(
                _INSERT_OBJECTS,
                run_id,
                run["source_id"],
                run["dest_bucket"],
                run["dest_prefix"],
                keys,
                [e.size for e in entries],
                [e.etag for e in entries],
                [e.last_modified for e in entries],
                [e.checksum for e in entries],
            )
            skipped = [r for r in rows if r["state"] == "skipped"]
            await conn.execute(
                "UPDATE import_runs SET objects_total = objects_total + $2,"
                " bytes_total = bytes_total + $3, objects_done = objects_done + $4,"
                " bytes_done = bytes_done + $5, updated_at = now() WHERE id = $1",
                run_id,
                len(rows),
                sum(r["size"] for r in rows),
                len(skipped),
                sum(r["size"] for r in skipped),
            )
        return len(rows), len(skipped)

    async def complete_manifest(self, conn: asyncpg.Connection, run_id: int) -> None:
        """The listing reached the end of the source: the manifest is complete."""
        result = await conn.execute(
            "UPDATE import_runs SET manifest_complete = TRUE, updated_at = now()"
            " WHERE id = $1 AND state = 'listing'",
            run_id,
        )
        if result == "UPDATE 0":
            raise Conflict(f"import {run_id} is not listing")

    async def segments(self, conn: asyncpg.Connection, run_id: int) -> list[ManifestSegment]:
        rows = await conn.fetch(
            "SELECT run_id, seq, keys, bytes, first_key, last_key FROM import_manifest_segments"
            " WHERE run_id = $1 ORDER BY seq",
            run_id,
        )
        return [ManifestSegment(**dict(r)) for r in rows]

    async def segment_parquet(self, conn: asyncpg.Connection, run_id: int, seq: int) -> bytes:
        data = await conn.fetchval(
            "SELECT parquet FROM import_manifest_segments WHERE run_id = $1 AND seq = $2",
            run_id,
            seq,
        )
        if data is None:
            raise NotFound(f"import {run_id} has no manifest segment {seq}")
        return bytes(data)

    # -- objects -----------------------------------------------------------------------------
    async def objects(
        self,
        conn: asyncpg.Connection,
        run_id: int,
        *,
        states: Sequence[str] = OBJECT_STATES,
        after: str = "",
        limit: int = 1000,
    ) -> list[ImportObject]:
        """Objects of the run in ``states``, in key order after ``after`` (keyset paging)."""
        rows = await conn.fetch(
            f"SELECT {_OBJECT_COLUMNS} FROM import_objects WHERE run_id = $1"
            " AND state = ANY($2::text[]) AND key > $3 ORDER BY key LIMIT $4",
            run_id,
            list(states),
            after,
            limit,
        )
        return [object_of(r) for r in rows]

    async def objects_named(
        self, conn: asyncpg.Connection, run_id: int, keys: Sequence[str]
    ) -> list[ImportObject]:
        """The run's objects with these source keys (a transfer job's batch), in key order."""
        rows = await conn.fetch(
            f"SELECT {_OBJECT_COLUMNS} FROM import_objects WHERE run_id = $1"
            " AND key = ANY($2::text[]) ORDER BY key",
            run_id,
            list(keys),
        )
        return [object_of(r) for r in rows]

    async def written_by_run(
        self,
        conn: asyncpg.Connection,
        run_id: int,
        bucket_id: int,
        wanted: Sequence[tuple[str, str, str]],
    ) -> dict[str, int]:
        """Of (source key, destination key, source ETag) triples, those whose destination's
        latest version this run already wrote from that very source object (its user
        metadata ``MARKER_RUN`` and ``MARKER_ETAG`` name the run and the ETag): source key ->
        version. A transfer killed after its commit but before its object row moved finds
        its version here instead of writing a duplicate."""
        if not wanted:
            return {}
        rows = await conn.fetch(
            "SELECT u.src, v.id"
            " FROM unnest($3::text[], $4::text[], $5::text[]) AS u(src, dst, etag)"
            " JOIN object_versions v ON v.bucket_id = $2 AND v.key = u.dst AND v.is_latest"
            "   AND NOT v.is_delete_marker"
            f" WHERE v.user_metadata->>'{MARKER_RUN}' = $1::bigint::text"
            f"   AND v.user_metadata->>'{MARKER_ETAG}' = u.etag",
            run_id,
            bucket_id,
            [w[0] for w in wanted],
            [w[1] for w in wanted],
            [w[2] for w in wanted],
        )
        return {r["src"]: int(r["id"]) for r in rows}

    async def pending_objects(
        self, conn: asyncpg.Connection, run_id: int, *, after: str = "", limit: int = 1000
    ) -> list[ImportObject]:
        """The next batch of objects still to copy, in key order after ``after``."""
        return await self.objects(conn, run_id, states=("pending",), after=after, limit=limit)

    async def _move(
        self,
        conn: asyncpg.Connection,
        run_id: int,
        keys: Sequence[str],
        *,
        from_states: Sequence[str],
        to_state: str,
        attempts: int = 0,
        version_pks: Sequence[int | None] | None = None,
        errors: Sequence[str | None] | None = None,
    ) -> int:
        if not keys:
            return 0
        async with conn.transaction():
            await self._lock_run(conn, run_id)
            moved = await conn.fetchval(
                _MOVE_OBJECTS,
                run_id,
                list(keys),
                list(version_pks) if version_pks is not None else [None] * len(keys),
                [None if e is None else error_of(e) for e in errors]
                if errors is not None
                else [None] * len(keys),
                list(from_states),
                to_state,
                attempts,
            )
        return int(moved or 0)

    async def _lock_run(self, conn: asyncpg.Connection, run_id: int) -> asyncpg.Record:
        """Lock the run's row: always before any of its objects' rows (one lock order, so
        movers, listers and state changes never deadlock; they serialise on the run)."""
        row = await conn.fetchrow(
            "SELECT state, source_id, dest_bucket, dest_prefix FROM import_runs"
            " WHERE id = $1 FOR UPDATE",
            run_id,
        )
        if row is None:
            raise NotFound(f"no import {run_id}")
        return row

    async def mark_copied(
        self, conn: asyncpg.Connection, run_id: int, copied: Sequence[tuple[str, int]]
    ) -> int:
        """(key, version written) of pending objects now stored; each spent an attempt.
        Returns how many were pending (others are left alone: a duplicate report)."""
        return await self._move(
            conn,
            run_id,
            [k for k, _ in copied],
            from_states=("pending",),
            to_state="copied",
            attempts=1,
            version_pks=[v for _, v in copied],
        )

    async def mark_done(
        self,
        conn: asyncpg.Connection,
        run_id: int,
        stored: Sequence[tuple[str, int]],
    ) -> int:
        """(key, version) of pending or copied objects stored and verified in one step (the
        transfer checked them against the source before its commit): ``copied`` (spending
        an attempt), then ``verified``, in the caller's transaction. Returns how many became
        verified."""
        async with conn.transaction():
            await self._move(
                conn,
                run_id,
                [k for k, _ in stored],
                from_states=("pending",),
                to_state="copied",
                attempts=1,
                version_pks=[v for _, v in stored],
            )
            return await self._move(
                conn,
                run_id,
                [k for k, _ in stored],
                from_states=("copied",),
                to_state="verified",
                version_pks=[v for _, v in stored],
            )

    async def mark_verified(
        self, conn: asyncpg.Connection, run_id: int, keys: Sequence[str]
    ) -> int:
        """Copied objects that matched the source: now done."""
        return await self._move(conn, run_id, keys, from_states=("copied",), to_state="verified")

    async def mark_failed(
        self,
        conn: asyncpg.Connection,
        run_id: int,
        failures: Sequence[tuple[str, str]],
        *,
        final: bool,
    ) -> int:
        """(key, reason) of pending or copied objects whose attempt failed. ``final``: given
        up (``failed``, counted in ``errors``); otherwise back to ``pending`` for a retry with
        the reason kept. A failed verification counts as a failed attempt."""
        return await self._move(
            conn,
            run_id,
            [k for k, _ in failures],
            from_states=("pending", "copied"),
            to_state="failed" if final else "pending",
            attempts=1,
            errors=[reason for _, reason in failures],
        )

    async def requeue_failed(self, conn: asyncpg.Connection, run_id: int) -> int:
        """Failed objects back to pending (``import resume``); they keep their last error."""
        rows = await conn.fetch(
            "SELECT key, error FROM import_objects WHERE run_id = $1 AND state = 'failed'",
            run_id,
        )
        return await self._move(
            conn,
            run_id,
            [r["key"] for r in rows],
            from_states=("failed",),
            to_state="pending",
            errors=[r["error"] for r in rows],
        )

    # -- import verify -------------------------------------------------------------------------
    async def clear_verify_problems(self, conn: asyncpg.Connection, run_id: int) -> int:
        """Forget the last verification's findings (a new verification starts)."""
        result = await conn.execute(
            "UPDATE import_objects SET verify_problem = NULL, updated_at = now()"
            " WHERE run_id = $1 AND verify_problem IS NOT NULL",
            run_id,
        )
        return int(result.split()[-1])

    async def set_verify_problems(
        self, conn: asyncpg.Connection, run_id: int, problems: Sequence[tuple[str, str]]
    ) -> int:
        """(source key, problem) found by ``import verify``; returns how many rows took one."""
        if not problems:
            return 0
        result = await conn.execute(
            "UPDATE import_objects o SET verify_problem = u.problem, updated_at = now()"
            " FROM unnest($2::text[], $3::text[]) AS u(key, problem)"
            ' WHERE o.run_id = $1 AND o.key = u.key COLLATE "C"',
            run_id,
            [k for k, _ in problems],
            [error_of(p) for _, p in problems],
        )
        return int(result.split()[-1])

    async def problem_objects(
        self, conn: asyncpg.Connection, run_id: int, *, after: str = "", limit: int = 1000
    ) -> list[ImportObject]:
        """Objects that failed or that the last verification found a problem with, in key
        order after ``after`` (the errors listing)."""
        rows = await conn.fetch(
            f"SELECT {_OBJECT_COLUMNS} FROM import_objects WHERE run_id = $1"
            " AND (state = 'failed' OR verify_problem IS NOT NULL) AND key > $2"
            " ORDER BY key LIMIT $3",
            run_id,
            after,
            limit,
        )
        return [object_of(r) for r in rows]

    async def recount(self, conn: asyncpg.Connection, run_id: int) -> ImportRun:
        """Recompute the run's counters from its rows (a check, and a repair)."""
        row = await conn.fetchrow(
            "UPDATE import_runs r SET objects_total = c.total, bytes_total = c.total_bytes,"
            " objects_done = c.done, bytes_done = c.done_bytes, errors = c.failed,"
            " updated_at = now()"
            " FROM (SELECT count(*) AS total, COALESCE(sum(size), 0) AS total_bytes,"
            "   count(*) FILTER (WHERE state IN ('verified', 'skipped')) AS done,"
            "   COALESCE(sum(size) FILTER (WHERE state IN ('verified', 'skipped')), 0)"
            "     AS done_bytes,"
            "   count(*) FILTER (WHERE state = 'failed') AS failed"
            "   FROM import_objects WHERE run_id = $1) c"
            " WHERE r.id = $1 RETURNING r.*",
            run_id,
        )
        if row is None:
            raise NotFound(f"no import {run_id}")
        return run_of(row)

    # -- status ------------------------------------------------------------------------------
    async def facts(
        self, conn: asyncpg.Connection, run_id: int, *, tenant_id: int | None = None
    ) -> ImportFacts:
        """What the rows of the run say, for ``core.import_state.import_status``."""
        run = await self.get_run(conn, run_id, tenant_id=tenant_id)
        counts = await conn.fetch(
            "SELECT state, count(*) AS n FROM import_objects WHERE run_id = $1 GROUP BY state",
            run_id,
        )
        done = list(DONE_OBJECT_STATES)
        degraded = await conn.fetchval(
            "SELECT count(DISTINCT o.key) FROM import_objects o"
            " JOIN replicas r ON r.version_pk = o.version_pk"
            " WHERE o.run_id = $1 AND o.state = ANY($2::text[])"
            " AND r.status IN ('pending', 'corrupt', 'missing')",
            run_id,
            done,
        )
        vanished = await conn.fetchval(
            "SELECT count(*) FROM import_objects WHERE run_id = $1"
            " AND state = ANY($2::text[]) AND version_pk IS NULL",
            run_id,
            done,
        )
        first_error = await conn.fetchval(
            "SELECT error FROM import_objects WHERE run_id = $1 AND state = 'failed'"
            " ORDER BY key LIMIT 1",
            run_id,
        )
        problems = await conn.fetchrow(
            "SELECT count(*) AS n, min(key) AS first FROM import_objects"
            " WHERE run_id = $1 AND verify_problem IS NOT NULL",
            run_id,
        )
        first_problem = None
        if problems["first"] is not None:
            problem = await conn.fetchval(
                "SELECT verify_problem FROM import_objects WHERE run_id = $1 AND key = $2",
                run_id,
                problems["first"],
            )
            first_problem = f"{problems['first']}: {problem}"
        return ImportFacts(
            state=run.state,
            manifest_complete=run.manifest_complete,
            objects={r["state"]: r["n"] for r in counts},
            degraded=int(degraded),
            vanished=int(vanished),
            last_error=run.last_error,
            first_error=first_error,
            verify_problems=int(problems["n"]),
            first_verify_problem=first_problem,
        )

    async def status(
        self, conn: asyncpg.Connection, run_id: int, *, tenant_id: int | None = None
    ) -> ImportStatus:
        """GREEN / YELLOW / RED of the run, from its rows."""
        return import_status(await self.facts(conn, run_id, tenant_id=tenant_id))

    async def throughput(
        self, conn: asyncpg.Connection, run_id: int, *, max_bins: int = 60
    ) -> tuple[float, list[tuple[float, int, int]]]:
        """How the run's copying went over time, from its rows: the objects it verified
        (skipped ones were never transferred) grouped by when they became verified into at
        most ``max_bins`` equal bins of at least one second. Returns (bin width in seconds,
        [(seconds from the first bin's start, objects, bytes)]) with empty bins included, so
        a chart shows a stall as a stall. Nothing is sampled: a resumed or verified-again run
        shows what its rows say now."""
        span = await conn.fetchrow(
            "SELECT min(updated_at) AS first, max(updated_at) AS last FROM import_objects"
            " WHERE run_id = $1 AND state = 'verified'",
            run_id,
        )
        if span is None or span["first"] is None:
            return 1.0, []
        seconds = (span["last"] - span["first"]).total_seconds()
        width = max(1.0, float(int(seconds / max_bins) + 1))
        rows = await conn.fetch(
            "SELECT floor(extract(epoch FROM updated_at - $2::timestamptz) / $3)::int AS bin,"
            " count(*) AS objects, COALESCE(sum(size), 0)::bigint AS bytes"
            " FROM import_objects WHERE run_id = $1 AND state = 'verified'"
            " GROUP BY 1 ORDER BY 1",
            run_id,
            span["first"],
            width,
        )
        counts = {int(r["bin"]): (int(r["objects"]), int(r["bytes"])) for r in rows}
        last = max(counts) if counts else 0
        return width, [(b * width, *counts.get(b, (0, 0))) for b in range(last + 1)]

    # -- mark-source -------------------------------------------------------------------------
    async def record_deletion_manifest(
        self, conn: asyncpg.Connection, run_id: int, *, tenant_id: int | None = None
    ) -> int:
        """Record every verified or skipped source object of a GREEN run as one the tenant may
        delete at the source (we never do). Idempotent; returns the manifest's size.
        ``Conflict`` naming the colour and why unless the run is GREEN."""
        async with conn.transaction():
            await self._lock_run(conn, run_id)
            status = await self.status(conn, run_id, tenant_id=tenant_id)
            if status.color is not Color.GREEN:
                raise Conflict(
                    f"import {run_id} is {status.color.value} ({status.reason}); only a GREEN"
                    " import may mark its source"
                )
            await conn.execute(
                "INSERT INTO import_deletion_manifest (run_id, key, size, etag, version_pk)"
                " SELECT run_id, key, size, etag, version_pk FROM import_objects"
                " WHERE run_id = $1 AND state = ANY($2::text[])"
                " ON CONFLICT (run_id, key) DO NOTHING",
                run_id,
                list(DONE_OBJECT_STATES),
            )
            await conn.execute(
                "UPDATE import_runs SET source_marked_at = COALESCE(source_marked_at, now()),"
                " updated_at = now() WHERE id = $1",
                run_id,
            )
            count = await conn.fetchval(
                "SELECT count(*) FROM import_deletion_manifest WHERE run_id = $1", run_id
            )
        return int(count)

    async def deletion_manifest(
        self, conn: asyncpg.Connection, run_id: int, *, after: str = "", limit: int = 1000
    ) -> list[MarkedObject]:
        rows = await conn.fetch(
            "SELECT key, size, etag, version_pk FROM import_deletion_manifest"
            " WHERE run_id = $1 AND key > $2 ORDER BY key LIMIT $3",
            run_id,
            after,
            limit,
        )
        return [MarkedObject(**dict(r)) for r in rows]
