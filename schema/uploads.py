"""Multipart uploads in progress: the upload, its parts and the backend pieces they are stored as.

Tables ``uploads``, ``upload_parts`` and ``upload_pieces`` (migrations 0006 and 0007). A part is
written like an object (placed by the upload's class, quorum-written in chunks of the
``part_size`` setting, every stored piece with its own SHA-256) and recorded here in one
transaction; nothing is visible to readers before CompleteMultipartUpload turns the listed
parts into one object version.

Every backend object an upload holds is named by an ``upload_pieces`` row until, in one
transaction each:

- a newer upload of the same part number replaces it (``put_part``: the old pieces go to
  ``garbage``; "newer" by when the write started, so an older attempt that finishes last
  goes to ``garbage`` itself),
- Complete turns it into a replica row (the listed parts) or hands it to ``garbage`` (the
  uploaded but unlisted parts), and deletes the upload,
- Abort or expiry hands every piece to ``garbage`` and deletes the upload (``discard``).

So no piece is ever forgotten on a backend, and none is deleted while a row names it: the
garbage collector and the vacuumer's orphan check both treat ``upload_pieces`` as references.
Callers serialise the changes of one upload by locking its row (``get(..., lock=True)``): part
commits, Complete, Abort and expiry, so of a concurrent Complete and Abort exactly one wins.

A completed upload is remembered (``completed_uploads``, migration 0011: the part list's digest,
the ETag and version answered) until it would have expired, so a retried Complete gets the
same answer (``remember_completed`` / ``completed``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from schema.db import jsonb_dict
from schema.garbage import queue_sql
from schema.records import envelope_of_row

__all__ = [
    "Chunk",
    "CompletedRecord",
    "NewUpload",
    "Upload",
    "UploadPiece",
    "UploadRepository",
    "UploadedPart",
]


@dataclass(frozen=True)
class NewUpload:
    upload_id: str
    tenant_id: int
    bucket_id: int
    key: str
    initiator: str
    content_type: str | None
    user_metadata: dict[str, str]
    redundancy_class: str
    encrypted: bool
    wrapped_key: bytes | None = None
    key_id: str | None = None
    key_version: int | None = None
    wrap_alg: str | None = None
    content_id: str | None = None
    checksum_algorithm: str | None = None
    #: Cache-Control, Content-Disposition, ... from CreateMultipartUpload (migration 0008).
    http_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Upload(NewUpload):
    id: int = 0
    created_at: datetime | None = None


@dataclass(frozen=True)
class Chunk:
    """One stored piece of a part as the quorum writer cut it: its length and SHA-256, and the
    code of an erasure-coded class (``k = m = 0`` for replication)."""

    size: int
    sha256: bytes
    k: int = 0
    m: int = 0


@dataclass(frozen=True)
class UploadedPart:
    part_number: int
    size: int
    etag: str
    sha256: bytes
    chunks: tuple[Chunk, ...]
    checksum_value: str | None = None
    #: Part 1 of an encrypted upload: the object's BP1 header.
    bp1_header: bytes | None = None
    #: ``placement_fingerprint`` of the rules the pieces were placed under.
    placement: str = "changed"
    created_at: datetime | None = None
    #: When its write started (``UploadRepository.clock``): of two uploads of one part number,
    #: the one started later is kept, whichever finishes last (migration 0012).
    started_at: datetime | None = None


@dataclass(frozen=True)
class UploadPiece:
    part_number: int
    chunk: int
    backend_id: int
    shard_index: int
    locator: str
    size: int
    sha256: bytes
    status: str


@dataclass(frozen=True)
class CompletedRecord:
    """What a completed upload answered: kept for a retried Complete."""

    upload_id: str
    tenant_id: int
    bucket_id: int
    key: str
    parts_digest: str
    etag: str
    version_id: str | None  # None: the null version (the answer named none)
    checksum_algorithm: str | None = None
    checksum_value: str | None = None


def _upload(row: asyncpg.Record) -> Upload:
    return Upload(
        id=row["id"],
        upload_id=row["upload_id"],
        tenant_id=row["tenant_id"],
        bucket_id=row["bucket_id"],
        key=row["key"],
        initiator=row["initiator"],
        content_type=row["content_type"],
        user_metadata=jsonb_dict(row["user_metadata"]),
        redundancy_class=row["redundancy_class"],
        **envelope_of_row(row),
        checksum_algorithm=row["checksum_algorithm"],
        http_headers=jsonb_dict(row["http_headers"]),
        created_at=row["created_at"],
    )


def _chunks(raw: Any) -> tuple[Chunk, ...]:
    if isinstance(raw, str):
        raw = json.loads(raw)
    return tuple(
        Chunk(int(c["size"]), bytes.fromhex(c["sha256"]), int(c.get("k", 0)), int(c.get("m", 0)))
        for c in raw
    )


def _part(row: asyncpg.Record) -> UploadedPart:
    return UploadedPart(
        part_number=row["part_number"],
        size=row["size"],
        etag=row["etag"],
        sha256=bytes(row["sha256"]),
        chunks=_chunks(row["chunks"]),
        checksum_value=row["checksum_value"],
        bp1_header=bytes(row["bp1_header"]) if row["bp1_header"] is not None else None,
        placement=row["placement"],
        created_at=row["created_at"],
        started_at=row.get("started_at"),
    )


class UploadRepository:
    async def open_uploads(
        self, conn: asyncpg.Connection, tenant_id: int
    ) -> tuple[int, int | None]:
        """How many uploads of the tenant are open (started, neither completed nor aborted),
        and the tenant's own limit on them (None: the deployment's). In a transaction: the
        tenant's row is locked first, so concurrent creations of one tenant count one after
        another and a limit checked on the count holds exactly."""
        limit = await conn.fetchval(
            "SELECT max_open_uploads FROM tenants WHERE id = $1 FOR NO KEY UPDATE", tenant_id
        )
        count = await conn.fetchval("SELECT count(*) FROM uploads WHERE tenant_id = $1", tenant_id)
        return int(count or 0), limit

    async def create(self, conn: asyncpg.Connection, new: NewUpload) -> Upload:
        row = await conn.fetchrow(
            "INSERT INTO uploads (upload_id, tenant_id, bucket_id, key, initiator, content_type,"
            " user_metadata, redundancy_class, encrypted, wrapped_key, key_id, key_version,"
            " wrap_alg, content_id, checksum_algorithm, http_headers)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            " RETURNING *",
            new.upload_id,
            new.tenant_id,
            new.bucket_id,
            new.key,
            new.initiator,
            new.content_type,
            new.user_metadata,
            new.redundancy_class,
            new.encrypted,
            new.wrapped_key,
            new.key_id,
            new.key_version,
            new.wrap_alg,
            new.content_id,
            new.checksum_algorithm,
            new.http_headers,
        )
        assert row is not None
        return _upload(row)

    async def get(
        self, conn: asyncpg.Connection, upload_id: str, *, lock: bool = False
    ) -> Upload | None:
        """The upload by its id; ``lock`` takes its row ``FOR UPDATE`` (in a transaction)."""
        row = await conn.fetchrow(
            "SELECT * FROM uploads WHERE upload_id = $1" + (" FOR UPDATE" if lock else ""),
            upload_id,
        )
        return _upload(row) if row is not None else None

    async def lock_expired(
        self, conn: asyncpg.Connection, upload_pk: int, older_than_s: float
    ) -> Upload | None:
        """The upload, locked, if it is still there and older than ``older_than_s``; None if
        it is gone, younger, or locked by a part commit, a Complete or an Abort right now."""
        row = await conn.fetchrow(
            "SELECT * FROM uploads WHERE id = $1"
            " AND created_at <= now() - $2::float8 * interval '1 second'"
            " FOR UPDATE SKIP LOCKED",
            upload_pk,
            older_than_s,
        )
        return _upload(row) if row is not None else None

    async def expired(
        self, conn: asyncpg.Connection, older_than_s: float, limit: int
    ) -> list[Upload]:
        """Uploads initiated more than ``older_than_s`` ago, oldest first."""
        rows = await conn.fetch(
            "SELECT * FROM uploads WHERE created_at <= now() - $1::float8 * interval '1 second'"
            " ORDER BY created_at, id LIMIT $2",
            older_than_s,
            limit,
        )
        return [_upload(r) for r in rows]

    async def listing(
        self,
        conn: asyncpg.Connection,
        bucket_id: int,
        *,
        prefix: str,
        after_key: str,
        after_upload_id: str | None,
        limit: int,
    ) -> list[Upload]:
        """Uploads of the bucket whose key has ``prefix``, in (key, upload id) order, after
        ``after_key`` (``after_upload_id`` None), or after (``after_key``, ``after_upload_id``)
        (``""``: every upload of ``after_key`` too). Upload ids are time-ordered, so the uploads
        of one key come in the order they were initiated."""
        rows = await conn.fetch(
            "SELECT * FROM uploads WHERE bucket_id = $1"
            " AND key >= $2 AND left(key, length($2)) = $2"
            " AND (key > $3 OR (key = $3 AND $4::text IS NOT NULL AND upload_id > $4))"
            " ORDER BY key, upload_id LIMIT $5",
            bucket_id,
            prefix,
            after_key,
            after_upload_id,
            limit,
        )
        return [_upload(r) for r in rows]

    async def parts(
        self,
        conn: asyncpg.Connection,
        upload_pk: int,
        *,
        after: int = 0,
        limit: int | None = None,
    ) -> list[UploadedPart]:
        """Parts numbered above ``after``, in order."""
        rows = await conn.fetch(
            "SELECT * FROM upload_parts WHERE upload_pk = $1 AND part_number > $2"
            " ORDER BY part_number LIMIT $3",
            upload_pk,
            after,
            limit,
        )
        return [_part(r) for r in rows]

    async def first_targets(self, conn: asyncpg.Connection, upload_pk: int) -> list[int]:
        """The backends holding the first chunk of the lowest-numbered part uploaded so far, in
        target order (shard index, for erasure codes): later parts go to the same ones."""
        rows = await conn.fetch(
            "SELECT backend_id FROM upload_pieces WHERE upload_pk = $1 AND chunk = 0"
            " AND part_number = (SELECT min(part_number) FROM upload_pieces WHERE upload_pk = $1)"
            " ORDER BY shard_index, backend_id",
            upload_pk,
        )
        return [r["backend_id"] for r in rows]

    async def pieces(self, conn: asyncpg.Connection, upload_pk: int) -> list[UploadPiece]:
        rows = await conn.fetch(
            "SELECT * FROM upload_pieces WHERE upload_pk = $1"
            " ORDER BY part_number, chunk, shard_index, backend_id",
            upload_pk,
        )
        return [
            UploadPiece(
                part_number=r["part_number"],
                chunk=r["chunk"],
                backend_id=r["backend_id"],
                shard_index=r["shard_index"],
                locator=r["locator"],
                size=r["size"],
                sha256=bytes(r["sha256"]),
                status=r["status"],
            )
            for r in rows
        ]

    async def clock(self, conn: asyncpg.Connection) -> datetime:
        """The database's clock: when a part's write starts (one clock for every gateway)."""
        now = await conn.fetchval("SELECT clock_timestamp()")
        assert isinstance(now, datetime)
        return now

    async def put_part(
        self,
        conn: asyncpg.Connection,
        upload_pk: int,
        part: UploadedPart,
        pieces: Sequence[UploadPiece],
    ) -> int:
        """Record a part and its pieces, replacing the part with the same number (its pieces
        go to ``garbage``) unless that one started later: a re-sent part that finished first
        stays, and the pieces of the older attempt go to ``garbage`` instead. Run it in a
        transaction holding the upload's row lock. Returns how many pieces were handed to
        garbage."""
        recorded = await conn.fetchrow(
            "SELECT started_at FROM upload_parts WHERE upload_pk = $1 AND part_number = $2",
            upload_pk,
            part.part_number,
        )
        if (
            recorded is not None
            and recorded["started_at"] is not None
            and part.started_at is not None
            and recorded["started_at"] > part.started_at
        ):
            await conn.executemany(
                queue_sql("VALUES ($1::bigint, $2::text, 'multipart part superseded')"),
                [(p.backend_id, p.locator) for p in pieces],
            )
            return len(pieces)
        replaced = await conn.fetchval(
            "WITH gone AS (DELETE FROM upload_pieces WHERE upload_pk = $1 AND part_number = $2"
            " RETURNING backend_id, locator),"
            " queued AS ("
            + queue_sql("SELECT backend_id, locator, 'multipart part replaced' FROM gone")
            + " RETURNING 1) SELECT count(*) FROM gone",
            upload_pk,
            part.part_number,
        )
        await conn.execute(
            "INSERT INTO upload_parts (upload_pk, part_number, size, etag, sha256, checksum_value,"
            " chunks, bp1_header, placement, started_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (upload_pk, part_number) DO UPDATE SET size = EXCLUDED.size,"
            " etag = EXCLUDED.etag, sha256 = EXCLUDED.sha256,"
            " checksum_value = EXCLUDED.checksum_value, chunks = EXCLUDED.chunks,"
            " bp1_header = EXCLUDED.bp1_header, placement = EXCLUDED.placement,"
            " started_at = EXCLUDED.started_at, created_at = now()",
            upload_pk,
            part.part_number,
            part.size,
            part.etag,
            part.sha256,
            part.checksum_value,
            [{"size": c.size, "sha256": c.sha256.hex(), "k": c.k, "m": c.m} for c in part.chunks],
            part.bp1_header,
            part.placement,
            part.started_at,
        )
        await conn.executemany(
            "INSERT INTO upload_pieces (upload_pk, part_number, chunk, backend_id, shard_index,"
            " locator, size, sha256, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [
                (
                    upload_pk,
                    p.part_number,
                    p.chunk,
                    p.backend_id,
                    p.shard_index,
                    p.locator,
                    p.size,
                    p.sha256,
                    p.status,
                )
                for p in pieces
            ],
        )
        return int(replaced or 0)

    async def settle_pieces(
        self, conn: asyncpg.Connection, backend_id: int, locators: Sequence[str]
    ) -> int:
        """Pieces committed ``pending`` whose write finished after all: ``ok`` now, and so are
        the replica rows they became if the upload completed meanwhile (its replication job
        then finds nothing to do)."""
        result = await conn.execute(
            "UPDATE upload_pieces SET status = 'ok' WHERE backend_id = $1"
            " AND locator = ANY($2::text[]) AND status = 'pending'",
            backend_id,
            list(locators),
        )
        await conn.execute(
            "UPDATE replicas SET status = 'ok', verified_at = now() WHERE backend_id = $1"
            " AND locator = ANY($2::text[]) AND status = 'pending'",
            backend_id,
            list(locators),
        )
        return int(result.split()[-1])

    async def discard(
        self,
        conn: asyncpg.Connection,
        upload_pk: int,
        reason: str,
        *,
        keep_parts: Collection[int] = (),
    ) -> int:
        """Hand the pieces of every part not in ``keep_parts`` to ``garbage`` and forget them;
        returns how many. Run it in a transaction holding the upload's row lock."""
        count = await conn.fetchval(
            "WITH gone AS (DELETE FROM upload_pieces WHERE upload_pk = $1"
            " AND NOT (part_number = ANY($3::int[])) RETURNING backend_id, locator),"
            " queued AS ("
            + queue_sql("SELECT backend_id, locator, $2 FROM gone")
            + " RETURNING 1) SELECT count(*) FROM gone",
            upload_pk,
            reason,
            list(keep_parts),
        )
        return int(count or 0)

    async def delete(self, conn: asyncpg.Connection, upload_pk: int) -> None:
        """Remove the upload with its parts and pieces (cascade). Its pieces must already be
        replica rows or garbage (``discard``)."""
        await conn.execute("DELETE FROM uploads WHERE id = $1", upload_pk)

    async def remember_completed(
        self,
        conn: asyncpg.Connection,
        record: CompletedRecord,
        initiated_at: datetime,
        keep_s: float,
    ) -> None:
        """Remember a completion (in its transaction) and forget those whose upload would
        have expired ``keep_s`` after it was initiated."""
        await conn.execute(
            "DELETE FROM completed_uploads"
            " WHERE initiated_at <= now() - $1::float8 * interval '1 second'",
            keep_s,
        )
        await conn.execute(
            "INSERT INTO completed_uploads (upload_id, tenant_id, bucket_id, key, parts_digest,"
            " etag, version_id, checksum_algorithm, checksum_value, initiated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            record.upload_id,
            record.tenant_id,
            record.bucket_id,
            record.key,
            record.parts_digest,
            record.etag,
            record.version_id,
            record.checksum_algorithm,
            record.checksum_value,
            initiated_at,
        )

    async def completed(
        self, conn: asyncpg.Connection, upload_id: str, keep_s: float
    ) -> CompletedRecord | None:
        """The remembered completion of ``upload_id``, if it is younger than ``keep_s``
        (counted from the upload's initiation)."""
        row = await conn.fetchrow(
            "SELECT * FROM completed_uploads WHERE upload_id = $1"
            " AND initiated_at > now() - $2::float8 * interval '1 second'",
            upload_id,
            keep_s,
        )
        if row is None:
            return None
        return CompletedRecord(
            upload_id=row["upload_id"],
            tenant_id=row["tenant_id"],
            bucket_id=row["bucket_id"],
            key=row["key"],
            parts_digest=row["parts_digest"],
            etag=row["etag"],
            version_id=row["version_id"],
            checksum_algorithm=row["checksum_algorithm"],
            checksum_value=row["checksum_value"],
        )

    async def abort(self, conn: asyncpg.Connection, upload_pk: int, reason: str) -> int:
        """Abort or expiry: every piece to ``garbage``, the upload gone; returns the piece
        count. Run it in a transaction holding the upload's row lock."""
        count = await self.discard(conn, upload_pk, reason)
        await self.delete(conn, upload_pk)
        return count
