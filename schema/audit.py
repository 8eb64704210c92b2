"""The append-only, hash-chained audit log (invariant 8).

``entry_hash = SHA-256(prev_hash || canonical JSON of the row)``. The admin ``role`` an entry
was made under is part of the canonical row only when there is one (so entries written before
the column existed hash as they did). Appenders lock the single
``audit_head`` row, so the chain stays linear under concurrency; the lock is taken last in a
transaction to keep it short. The database refuses UPDATE, DELETE and TRUNCATE (trigger).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

__all__ = ["AuditEntry", "AuditLog", "Caller", "canonical_entry", "chain_hash"]


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    resource: str
    request_id: str
    result: str
    tenant_id: int | None = None
    role: str | None = None


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

    def entry(self, action: str, resource: str, result: str = "ok") -> AuditEntry:
        return AuditEntry(
            actor=self.actor,
            action=action,
            resource=resource,
            request_id=self.request_id,
            result=result,
            tenant_id=self.tenant_id,
            role=self.role,
        )


def canonical_entry(seq: int, at: datetime, entry: AuditEntry) -> bytes:
    row: dict[str, object] = {
        "seq": seq,
        "at": at.isoformat(),
        "tenant_id": entry.tenant_id,
        "actor": entry.actor,
        "action": entry.action,
        "resource": entry.resource,
        "request_id": entry.request_id,
        "result": entry.result,
    }
    if entry.role is not None:
        row["role"] = entry.role
    return json.dumps(
        row,
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def chain_hash(prev_hash: bytes, seq: int, at: datetime, entry: AuditEntry) -> bytes:
    return hashlib.sha256(prev_hash + canonical_entry(seq, at, entry)).digest()


class AuditLog:
    async def append(self, conn: asyncpg.Connection, entry: AuditEntry) -> int:
        """Append inside the caller's transaction; returns the entry's sequence number."""
        return await self.append_many(conn, [entry])

    async def append_many(self, conn: asyncpg.Connection, entries: Sequence[AuditEntry]) -> int:
        """Append ``entries`` in order inside the caller's transaction: the chain is the same
        as from one ``append`` each, with one lock of the head and one insert for them all
        (a batch of writes committed together holds the head as briefly as one write).
        Returns the sequence number of the last entry (the head's when ``entries`` is empty)."""
        if not entries:  # nothing to chain: no lock of the head
            return int(await conn.fetchval("SELECT seq FROM audit_head"))
        head = await conn.fetchrow("SELECT seq, entry_hash, now() AS at FROM audit_head FOR UPDATE")
        assert head is not None
        seq: int = head["seq"]
        at: datetime = head["at"]
        prev = bytes(head["entry_hash"])
        rows = []
        for entry in entries:
            seq += 1
            digest = chain_hash(prev, seq, at, entry)
            rows.append(
                (
                    seq,
                    at,
                    entry.tenant_id,
                    entry.actor,
                    entry.action,
                    entry.resource,
                    entry.request_id,
                    entry.result,
                    prev,
                    digest,
                    entry.role,
                )
            )
            prev = digest
        await conn.executemany(
            "INSERT INTO audit_log (seq, at, tenant_id, actor, action, resource, request_id,"
            " result, prev_hash, entry_hash, role)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            rows,
        )
        await conn.execute("UPDATE audit_head SET seq = $1, entry_hash = $2", seq, prev)
        return seq

    async def verify(self, conn: asyncpg.Connection) -> int:
        """Recompute the whole chain; the number of entries, or ValueError at the first break."""
        prev = bytes(32)
        count = 0
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            async for row in conn.cursor("SELECT * FROM audit_log ORDER BY seq"):
                count += 1
                if row["seq"] != count:
                    raise ValueError(f"audit chain gap at seq {count}")
                if bytes(row["prev_hash"]) != prev:
                    raise ValueError(f"audit chain broken at seq {row['seq']}: prev_hash differs")
                entry = AuditEntry(
                    actor=row["actor"],
                    action=row["action"],
                    resource=row["resource"],
                    request_id=row["request_id"],
                    result=row["result"],
                    tenant_id=row["tenant_id"],
                    role=row["role"],
                )
                digest = chain_hash(prev, row["seq"], row["at"], entry)
                if digest != bytes(row["entry_hash"]):
                    raise ValueError(f"audit chain broken at seq {row['seq']}: entry_hash differs")
                prev = digest
        return count
