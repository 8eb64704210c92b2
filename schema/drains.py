"""A backend's drain, as stored: the move jobs that empty it and how far they got.

``start`` runs in the transaction that marks the backend ``draining`` (so no new write lands on
it from then on: placement takes only ``active`` backends): it enqueues one ``move`` job per
object version holding a piece there (the outbox of invariant 5; idempotent by
``move_key``), in pages of ``page`` versions per statement. The replication agents then
move each piece to a backend that keeps the version's class, region lock and jurisdiction
(``actors/replica_repair.py``); a version with no compliant target is deferred with a
``blocked: <rule>`` reason and reported here, never moved out of its jurisdiction. Pieces a
move cannot reach (a version written to the backend while the drain started, found by the
placement checker's sweep) get their move the same way later.

``progress`` is what ``bulletproof backend show`` prints: pieces and bytes still on the
backend, versions left, the move queue, and the blocked versions with the rule that blocks
each. It is computed from the replica rows, the truth, not from counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from schema.jobs import BLOCKED_PREFIX, PRIORITY, JobKind, JobQueue, move_key

__all__ = ["BlockedObject", "DrainProgress", "DrainRepository"]


@dataclass(frozen=True)
class BlockedObject:
    tenant: str
    bucket: str
    key: str
    version_id: str
    rule: str

    def to_json(self) -> dict[str, str]:
        return {
            "tenant": self.tenant,
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "rule": self.rule,
        }


@dataclass(frozen=True)
class DrainProgress:
    pieces_left: int
    bytes_left: int
    objects_left: int
    moves: dict[str, int]
    blocked: list[BlockedObject] = field(default_factory=list)
    references: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Nothing of the drained objects is left on the backend."""
        return self.pieces_left == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "pieces_left": self.pieces_left,
            "bytes_left": self.bytes_left,
            "objects_left": self.objects_left,
            "moves": self.moves,
            "blocked_objects": self.moves.get("blocked", 0),
            "blocked": [b.to_json() for b in self.blocked],
            "done": self.done,
            "removable": not self.references,
            "references": self.references,
        }


class DrainRepository:
    def __init__(self) -> None:
        self._jobs = JobQueue()

    async def enqueue_moves(
        self, conn: asyncpg.Connection, backend_id: int, reason: str, *, page: int = 5000
    ) -> int:
        """One ``move`` job per version with a piece on the backend; returns how many were
        added (a version already being moved off it keeps its job)."""
        added, after = 0, 0
        while True:
            pks = [
                int(r["version_pk"])
                for r in await conn.fetch(
                    "SELECT DISTINCT version_pk FROM replicas WHERE backend_id = $1"
                    " AND version_pk > $2 ORDER BY version_pk LIMIT $3",
                    backend_id,
                    after,
                    page,
                )
            ]
            if not pks:
                return added
            ids = await self._jobs.enqueue_many(
                conn,
                JobKind.MOVE,
                [
                    (
                        {"version_pk": pk, "backend_id": backend_id, "reason": reason},
                        move_key(pk, backend_id),
                    )
                    for pk in pks
                ],
                priority=PRIORITY[JobKind.MOVE],
            )
            added += len(ids)
            after = pks[-1]

    async def progress(
        self, conn: asyncpg.Connection, backend_id: int, *, references: dict[str, int]
    ) -> DrainProgress:
        row = await conn.fetchrow(
            "SELECT count(*) AS pieces, COALESCE(sum(size), 0) AS bytes,"
            " count(DISTINCT version_pk) AS versions FROM replicas WHERE backend_id = $1",
            backend_id,
        )
        assert row is not None
        moves = await self._jobs.moves_of_backend(conn, backend_id)
        blocked: list[BlockedObject] = []
        listed = await self._jobs.blocked_moves(conn, backend_id)
        if listed:
            names = {
                r["id"]: r
                for r in await conn.fetch(
                    "SELECT v.id, t.name AS tenant, b.name AS bucket, v.key, v.version_id"
                    " FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
                    " JOIN tenants t ON t.id = v.tenant_id WHERE v.id = ANY($1::bigint[])",
                    [pk for pk, _ in listed],
                )
            }
            for pk, why in listed:
                found = names.get(pk)
                if found is None:
                    continue
                if why.startswith(BLOCKED_PREFIX):
                    rule = why[len(BLOCKED_PREFIX) :]
                else:
                    rule = f"move failed: {why}"
                blocked.append(
                    BlockedObject(
                        found["tenant"], found["bucket"], found["key"], found["version_id"], rule
                    )
                )
        return DrainProgress(
            pieces_left=int(row["pieces"]),
            bytes_left=int(row["bytes"]),
            objects_left=int(row["versions"]),
            moves=moves,
            blocked=blocked,
            references=references,
        )
