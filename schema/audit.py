"""The append-only, hash-chained audit log (invariant 8), stored: one chain per tenant plus
``system`` (the rules are ``core/audit_chain.py``).

Appending locks only the head rows (``audit_heads``) of the chains it appends to, in chain
order, as the last statement of the caller's transaction; so writers of different tenants
never wait for each other, and a batch (a rewrap of 1,000 objects) holds only its own tenant's
head, and only from its append to its commit. The database refuses UPDATE, DELETE and
TRUNCATE of ``audit_log`` (trigger) and, where the application runs as its own role, by
permission too. ``verify`` recomputes every chain and reports the first break of each as data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from core.audit_chain import (
    GENESIS,
    AuditRow,
    ChainBreak,
    ChainCheck,
    ChainMark,
    chain_of,
    row_digest,
)
from schema.db import Database

log = logging.getLogger(__name__)

__all__ = [
    "AuditEntry",
    "AuditLog",
    "AuditReport",
    "Caller",
    "GroupAppender",
    "row_json",
    "row_of",
]


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    resource: str
    request_id: str
    result: str
    tenant_id: int | None = None
    role: str | None = None
    size: int | None = None  # stored as ``bytes``: what an access moved


@dataclass(frozen=True)
class Caller:
    """Who is acting, as the audit log names them: an S3 access key, an admin (``admin`` for the
    bootstrap token, ``oidc:<issuer>:<subject>`` for a bearer JWT, with its ``role``), a
    worker or an importer, with the request (or run) id and the tenant acted for.

    The one way an audit entry is built (``caller.entry(...)``): the S3 handlers, the admin
    routes, the data path and the workers all pass a ``Caller`` along instead of the HTTP
    request they may not have.
    """

    actor: str
    request_id: str
    tenant_id: int | None = None
    role: str | None = None

    def entry(
        self, action: str, resource: str, result: str = "ok", *, size: int | None = None
    ) -> AuditEntry:
        return AuditEntry(
            actor=self.actor,
            action=action,
            resource=resource,
            request_id=self.request_id,
            result=result,
            tenant_id=self.tenant_id,
            role=self.role,
            size=size,
        )


def row_of(record: asyncpg.Record) -> AuditRow:
    """An ``audit_log`` row as the chain rules read it."""
    return AuditRow(
        id=record["seq"],
        chain_id=record["chain_id"],
        chain_seq=record["chain_seq"],
        at=record["at"],
        tenant_id=record["tenant_id"],
        actor=record["actor"],
        action=record["action"],
        resource=record["resource"],
        request_id=record["request_id"],
        result=record["result"],
        role=record["role"],
        size=record["bytes"],
        prev_hash=bytes(record["prev_hash"]),
        entry_hash=bytes(record["entry_hash"]),
    )


def row_json(record: asyncpg.Record) -> dict[str, Any]:
    """An ``audit_log`` row as JSON (hashes in hex, times ISO 8601): what an export line and
    an archived segment's line hold, enough to recompute the chain elsewhere."""
    out: dict[str, Any] = {}
    for name, value in dict(record).items():
        if isinstance(value, bytes):
            out[name] = value.hex()
        elif isinstance(value, datetime):
            out[name] = value.isoformat()
        else:
            out[name] = value
    return out


@dataclass
class AuditReport:
    """What ``verify`` found: rows checked per chain and the first break of each broken chain
    (ordered by row id, so ``first`` is the earliest broken link in the log)."""

    chains: dict[str, int] = field(default_factory=dict)
    breaks: list[ChainBreak] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None  # the newest checkpoint compared, if any
    #: What could not be checked (an archive backend that did not answer): not proof of loss.
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def entries(self) -> int:
        return sum(self.chains.values())

    @property
    def first(self) -> ChainBreak | None:
        return self.breaks[0] if self.breaks else None

    def as_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "ok": self.ok,
            "entries": self.entries,
            "chains": len(self.chains),
            "checkpoint": self.checkpoint,
            "first_break": first.as_dict() if first else None,
            "breaks": [b.as_dict() for b in self.breaks],
            "unchecked": self.unchecked,
        }


#: The rows and the heads they advance, in one statement (one round trip under the lock).
_APPEND = (
    "WITH added AS (INSERT INTO audit_log (seq, chain_id, chain_seq, at, tenant_id, actor, action,"
    " resource, request_id, result, role, bytes, prev_hash, entry_hash)"
    " SELECT r.id, r.chain_id, r.chain_seq, $4, r.tenant_id, r.actor, r.action, r.resource,"
    " r.request_id, r.result, r.role, r.bytes, r.prev_hash, r.entry_hash"
    " FROM unnest($1::bigint[], $2::text[], $3::bigint[], $5::bigint[], $6::text[], $7::text[],"
    " $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bytea[], $14::bytea[])"
    " AS r(id, chain_id, chain_seq, tenant_id, actor, action, resource, request_id, result, role,"
    " bytes, prev_hash, entry_hash))"
    " UPDATE audit_heads h SET seq = u.seq, entry_hash = u.entry_hash"
    " FROM unnest($15::text[], $16::bigint[], $17::bytea[]) AS u(chain_id, seq, entry_hash)"
    " WHERE h.chain_id = u.chain_id"
)

#: The heads of the chains appended to, locked in chain order, with the entries' global ids.
_LOCK = (
    "WITH ids AS (SELECT array_agg(nextval('audit_log_id_seq')) AS ids"
    " FROM generate_series(1, $2))"
    " SELECT h.chain_id, h.seq, h.entry_hash, now() AS at, ids.ids FROM audit_heads h, ids"
    " WHERE h.chain_id = ANY($1::text[]) ORDER BY h.chain_id FOR UPDATE OF h"
)


class AuditLog:
    async def append(self, conn: asyncpg.Connection, entry: AuditEntry) -> int:
        """Append inside the caller's transaction; returns the entry's global id."""
        return await self.append_many(conn, [entry])

    async def append_many(self, conn: asyncpg.Connection, entries: Sequence[AuditEntry]) -> int:
        """Append ``entries`` in order inside the caller's transaction, each to its tenant's
        chain: one lock per chain touched (taken in chain order, so two batches never
        deadlock), one insert for them all. Returns the global id of the last entry (0 when
        ``entries`` is empty: nothing is locked)."""
        if not entries:
            return 0
        chains = sorted({chain_of(e.tenant_id, e.role) for e in entries})
        locked = await conn.fetch(_LOCK, chains, len(entries))
        if len(locked) < len(chains):  # a chain's first entry: create its head, then lock
            await conn.execute(
                "INSERT INTO audit_heads (chain_id, seq, entry_hash)"
                " SELECT c, 0, $2 FROM unnest($1::text[]) AS c ORDER BY c"
                " ON CONFLICT (chain_id) DO NOTHING",
                chains,
                GENESIS,
            )
            locked = await conn.fetch(_LOCK, chains, len(entries))
        heads = {r["chain_id"]: ChainMark(r["seq"], bytes(r["entry_hash"])) for r in locked}
        at: datetime = locked[0]["at"]
        ids: list[int] = list(locked[0]["ids"])
        columns: list[list[Any]] = [[] for _ in range(13)]
        for id_, entry in zip(ids, entries, strict=True):
            chain = chain_of(entry.tenant_id, entry.role)
            mark = heads[chain]
            row = AuditRow(
                id=id_,
                chain_id=chain,
                chain_seq=mark.seq + 1,
                at=at,
                tenant_id=entry.tenant_id,
                actor=entry.actor,
                action=entry.action,
                resource=entry.resource,
                request_id=entry.request_id,
                result=entry.result,
                role=entry.role,
                size=entry.size,
                prev_hash=mark.entry_hash,
                entry_hash=b"",
            )
            digest = row_digest(mark.entry_hash, row)
            heads[chain] = ChainMark(row.chain_seq, digest)
            values = (
                id_,
                chain,
                row.chain_seq,
                entry.tenant_id,
                entry.actor,
                entry.action,
                entry.resource,
                entry.request_id,
                entry.result,
                entry.role,
                entry.size,
                row.prev_hash,
                digest,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        await conn.execute(
            _APPEND,
            *columns[:3],
            at,
            *columns[3:],
            chains,
            [heads[c].seq for c in chains],
            [heads[c].entry_hash for c in chains],
        )
        return ids[-1]

    async def heads(self, conn: asyncpg.Connection) -> dict[str, ChainMark]:
        """Every chain's committed head (read without locking)."""
        rows = await conn.fetch("SELECT chain_id, seq, entry_hash FROM audit_heads")
        return {r["chain_id"]: ChainMark(r["seq"], bytes(r["entry_hash"])) for r in rows}

    async def rows(
        self,
        conn: asyncpg.Connection,
        *,
        tenant_id: int | None = None,
        chain_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        after_id: int = 0,
        limit: int = 1000,
    ) -> list[asyncpg.Record]:
        """Stored rows by global id, filtered (None: no filter; ``tenant_id`` also finds an
        admin's entries about the tenant, ``chain_id`` only the chain's), from ``after_id``
        on: the pages of an export, of a tenant's own log (its chain) or of the admin's view."""
        return list(
            await conn.fetch(
                "SELECT * FROM audit_log WHERE seq > $1"
                " AND ($2::bigint IS NULL OR tenant_id = $2)"
                " AND ($3::timestamptz IS NULL OR at >= $3)"
                " AND ($4::timestamptz IS NULL OR at < $4)"
                " AND ($5::text IS NULL OR action = $5)"
                " AND ($7::text IS NULL OR chain_id = $7)"
                " ORDER BY seq LIMIT $6",
                after_id,
                tenant_id,
                since,
                until,
                action,
                limit,
                chain_id,
            )
        )

    async def add_archive(
        self,
        conn: asyncpg.Connection,
        *,
        chain_id: str,
        first_seq: int,
        last_seq: int,
        last_hash: bytes,
        backend_id: int | None,
        locator: str,
        size: int,
        sha256: bytes,
    ) -> int:
        """Index a sealed segment (rows ``first_seq..last_seq`` of ``chain_id``)."""
        return int(
            await conn.fetchval(
                "INSERT INTO audit_archives (chain_id, first_seq, last_seq, last_hash,"
                " backend_id, locator, size, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " RETURNING id",
                chain_id,
                first_seq,
                last_seq,
                last_hash,
                backend_id,
                locator,
                size,
                sha256,
            )
        )

    async def archives(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        """The archive index, by chain and position."""
        return list(
            await conn.fetch("SELECT * FROM audit_archives ORDER BY chain_id, first_seq, id")
        )

    async def unarchived(self, conn: asyncpg.Connection) -> list[tuple[str, int, int]]:
        """(chain, first position not archived yet, head position) of every chain with rows
        past its last archived segment. The legacy chain is archived like any other."""
        rows = await conn.fetch(
            "SELECT h.chain_id, COALESCE(max(a.last_seq), 0) + 1 AS next, h.seq AS head"
            " FROM audit_heads h LEFT JOIN audit_archives a ON a.chain_id = h.chain_id"
            " GROUP BY h.chain_id, h.seq HAVING h.seq > COALESCE(max(a.last_seq), 0)"
            " ORDER BY h.chain_id"
        )
        return [(r["chain_id"], int(r["next"]), int(r["head"])) for r in rows]

    async def chain_rows(
        self, conn: asyncpg.Connection, chain_id: str, first: int, last: int
    ) -> list[asyncpg.Record]:
        """Rows ``first..last`` of one chain, in order."""
        return list(
            await conn.fetch(
                "SELECT * FROM audit_log WHERE chain_id = $1 AND chain_seq BETWEEN $2 AND $3"
                " ORDER BY chain_seq",
                chain_id,
                first,
                last,
            )
        )

    async def add_checkpoint(self, conn: asyncpg.Connection, signed: str) -> int:
        """Store a signed checkpoint (its JSON text, byte for byte); returns its id."""
        return int(
            await conn.fetchval(
                "INSERT INTO audit_checkpoints (signed) VALUES ($1) RETURNING id", signed
            )
        )

    async def newest_checkpoint(self, conn: asyncpg.Connection) -> tuple[int, str] | None:
        """The newest stored checkpoint: (id, signed JSON text)."""
        row = await conn.fetchrow(
            "SELECT id, signed FROM audit_checkpoints ORDER BY id DESC LIMIT 1"
        )
        return (int(row["id"]), str(row["signed"])) if row else None

    async def verify(
        self,
        conn: asyncpg.Connection,
        *,
        since: datetime | None = None,
        checkpoint: dict[str, ChainMark] | None = None,
    ) -> AuditReport:
        """Recompute every chain in one snapshot and compare each chain's newest row with its
        head and with ``checkpoint`` (the newest signed checkpoint's marks, checked by the
        caller). With ``since``, each chain is walked from its first row at or after that
        time (its link to the row before taken as stored), or from its newest row."""
        report = AuditReport()
        checkpoint = checkpoint or {}
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            heads = await self.heads(conn)
            starts: dict[str, int] = {}
            if since is not None:
                for r in await conn.fetch(
                    "SELECT chain_id, COALESCE(min(chain_seq) FILTER (WHERE at >= $1),"
                    " max(chain_seq)) AS start FROM audit_log GROUP BY chain_id",
                    since,
                ):
                    starts[r["chain_id"]] = r["start"]
                query = (
                    "SELECT l.* FROM audit_log l JOIN unnest($1::text[], $2::bigint[]) AS s(c, n)"
                    " ON l.chain_id = s.c AND l.chain_seq >= s.n ORDER BY l.chain_id, l.chain_seq"
                )
                args: tuple[Any, ...] = (list(starts), list(starts.values()))
            else:
                query = "SELECT * FROM audit_log ORDER BY chain_id, chain_seq"
                args = ()
            checks: dict[str, ChainCheck] = {}

            def check_of(chain: str) -> ChainCheck:
                if chain not in checks:
                    if chain in starts:
                        checks[chain] = ChainCheck(
                            chain, start=starts[chain], prev=None, checkpoint=checkpoint.get(chain)
                        )
                    else:
                        checks[chain] = ChainCheck(chain, checkpoint=checkpoint.get(chain))
                return checks[chain]

            async for record in conn.cursor(query, *args, prefetch=1000):
                check_of(record["chain_id"]).feed(row_of(record))
            for chain in sorted(set(heads) | set(checkpoint) | set(checks)):
                check = check_of(chain)
                broken = check.finish(heads.get(chain))
                report.chains[chain] = check.rows
                if broken is not None:
                    report.breaks.append(broken)
        report.breaks.sort(key=lambda b: (b.row_id is None, b.row_id or 0, b.chain_id))
        return report


class GroupAppender:
    """Appends entries that need no transaction of their own (pure accesses: reads, listings,
    part uploads, refusals) in transactions shared by the callers that arrive together: group
    commit. A caller's ``append`` returns once its entry is committed (or raises), so an
    answered request's entry is never lost to a crash; what is saved is the transaction per
    entry (BEGIN, head lock, insert, COMMIT). The first caller starts a flush at once (alone,
    it costs what its own transaction did); callers arriving while a flush runs queue up and
    are committed together by the next one, at most ``max_batch`` per transaction, with one
    ``AuditLog.append_many`` (so each tenant's chain gets them in arrival order, each chain's
    head locked once per flush). If a shared transaction fails, its entries are retried one by
    one, so one entry the database refuses does not take the others with it.

    One per process and event loop (a gateway replica holds one); changes never come here:
    they append in their own commit transaction."""

    def __init__(self, db: Database, audit: AuditLog, *, max_batch: int = 256) -> None:
        self._db = db
        self._audit = audit
        self.max_batch = max_batch
        self._queue: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Transactions committed and entries appended so far (tests, benchmarks).
        self.transactions = 0
        self.appended = 0

    async def append(self, entry: AuditEntry) -> None:
        """Append ``entry``; returns when it is committed, raises what the append raised."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): nothing of the old one is alive
            self._loop, self._queue, self._flusher = loop, [], None
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((entry, done))
        if self._flusher is None:
            self._flusher = loop.create_task(self._drain())
        # Shielded: a caller that goes away does not cancel its entry, which is flushed anyway.
        await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._flush(batch)
        finally:
            self._flusher = None

    async def _flush(self, batch: list[tuple[AuditEntry, asyncio.Future[None]]]) -> None:
        try:
            async with self._db.transaction() as conn:
                await self._audit.append_many(conn, [entry for entry, _ in batch])
        except Exception as exc:
            if len(batch) > 1:
                log.warning("shared audit append of %d entries failed (%s); one by one",
                            len(batch), type(exc).__name__)
                for item in batch:
                    await self._flush([item])
                return
            _, done = batch[0]
            if not done.done():
                done.set_exception(exc)
            return
        self.transactions += 1
        self.appended += len(batch)
        for _, done in batch:
            if not done.done():
                done.set_result(None)
