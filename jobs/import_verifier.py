"""Verifying a done import again (``import verify``): the source re-listed and compared with
what was imported, and every stored piece of every imported version re-read and proven.

What it keeps true:

- **Findings are per key and current.** They go to ``import_objects.verify_problem``, cleared
  when a verification starts, so they are the last verification's; any finding makes the run
  RED, naming one (``core.import_state``), and the errors listing shows them all.
- **The source is compared as the transfer verified it**: size and ETag of each imported key
  against a fresh listing (both in key order, merged page by page: one listing page and one
  page of rows in memory). A key whose source object changed or vanished since it was imported
  is a finding; a key new at the source is only counted (a new run of the import copies it).
- **Stored bytes are proven, not assumed.** Every replica part or shard of each imported
  version is read back from its backend and its length and SHA-256 checked against its row
  (``actors.verified_reader.check_piece``, the scrubber's check: the gateway holds no data
  key, so it is the ciphertext that is checked). A corrupt or missing piece is marked and its
  repair queued in one transaction (``DataPath.mark_bad_many``, as the scrubber and the read
  path do); a piece already marked bad is a finding too; an unreachable backend is a finding
  (nothing could be proven) without a mark. Pieces still ``pending`` are the healers' (the
  run is YELLOW until they are ``ok``), not findings.

It changes no object's state and never writes bytes: repair is the agents' work.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from actors.data_path import BadReplica, DataPath
from actors.source_bucket import SourceBucket
from actors.verified_reader import check_piece
from core.import_state import DONE_OBJECT_STATES
from schema.db import Database
from schema.import_records import ImportObject
from schema.imports import ImportRepository
from schema.records import ObjectVersion, Replica

__all__ = ["ImportVerifier", "VerifyReport"]

log = logging.getLogger(__name__)

_PAGE = 500


@dataclass
class VerifyReport:
    """What one verification saw: ``problems`` maps a source key to its findings."""

    source_checked: int = 0
    source_new: int = 0
    versions_checked: int = 0
    pieces_checked: int = 0
    bytes_read: int = 0
    pieces_marked: int = 0
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> str:
        return (
            f"{self.source_checked} keys compared with the source ({self.source_new} new there),"
            f" {self.pieces_checked} pieces of {self.versions_checked} versions re-read"
            f" ({self.bytes_read} bytes, {self.pieces_marked} marked bad),"
            f" {len(self.problems)} objects with problems"
        )


class _DoneRows:
    """The run's done objects in key order, a page at a time (the merge's other side)."""

    def __init__(self, db: Database, run_id: int) -> None:
        self._db = db
        self._run_id = run_id
        self._page: list[ImportObject] = []
        self._after = ""
        self._exhausted = False

    async def peek(self) -> ImportObject | None:
        if not self._page and not self._exhausted:
            async with self._db.connection() as conn:
                self._page = await ImportRepository().objects(
                    conn, self._run_id, states=DONE_OBJECT_STATES, after=self._after, limit=_PAGE
                )
            if self._page:
                self._after = self._page[-1].key
            else:
                self._exhausted = True
        return self._page[0] if self._page else None

    async def pop(self) -> ImportObject | None:
        row = await self.peek()
        if row is not None:
            self._page.pop(0)
        return row


class ImportVerifier:
    """One verification of run ``run_id`` (see the module docstring)."""

    def __init__(
        self, ctx: DataPath, run_id: int, source: SourceBucket, *, concurrency: int = 8
    ) -> None:
        self.ctx = ctx
        self.run_id = run_id
        self.source = source
        self.repo = ImportRepository()
        self._gate = asyncio.Semaphore(concurrency)

    async def run(self) -> VerifyReport:
        """Clear the last findings, compare with the source, re-read the stored pieces, and
        record the findings; returns what was seen."""
        report = VerifyReport()
        async with self.ctx.store.db.transaction() as conn:
            await self.repo.clear_verify_problems(conn, self.run_id)
        await self._compare_with_source(report)
        await self._prove_stored(report)
        problems = [(key, "; ".join(found)) for key, found in sorted(report.problems.items())]
        for start in range(0, len(problems), _PAGE):
            async with self.ctx.store.db.transaction() as conn:
                await self.repo.set_verify_problems(
                    conn, self.run_id, problems[start : start + _PAGE]
                )
        return report

    # -- the source ----------------------------------------------------------------------------
    async def _compare_with_source(self, report: VerifyReport) -> None:
        rows = _DoneRows(self.ctx.store.db, self.run_id)
        pages = self.source.pages()
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            for entry in page:
                # Imported keys the listing passed without naming are gone at the source.
                while (row := await rows.peek()) is not None and row.key < entry.key:
                    report.problems[row.key].append("the source object no longer exists")
                    await rows.pop()
                if row is None or row.key != entry.key:
                    report.source_new += 1
                    continue
                report.source_checked += 1
                if (entry.size, entry.etag) != (row.size, row.etag):
                    report.problems[row.key].append(
                        "the source object changed since it was imported (size"
                        f" {row.size} -> {entry.size}, ETag {row.etag} -> {entry.etag})"
                    )
                await rows.pop()
        while (row := await rows.pop()) is not None:
            report.problems[row.key].append("the source object no longer exists")

    # -- the stored pieces -----------------------------------------------------------------------
    async def _prove_stored(self, report: VerifyReport) -> None:
        rows = _DoneRows(self.ctx.store.db, self.run_id)
        names = {h.id: h.name for h in await self.ctx.registry.current()}
        while True:
            page: list[ImportObject] = []
            while len(page) < _PAGE and (row := await rows.pop()) is not None:
                page.append(row)
            if not page:
                return
            await asyncio.gather(*(self._prove_object(row, names, report) for row in page))

    async def _prove_object(
        self, row: ImportObject, names: dict[int, str], report: VerifyReport
    ) -> None:
        version: ObjectVersion | None = None
        if row.version_pk is not None:
            async with self.ctx.store.db.connection() as conn:
                version = await self.ctx.store.versions.get_by_pk(conn, row.version_pk)
        if version is None or version.is_delete_marker:
            report.problems[row.key].append("no longer stored at the destination")
            return
        report.versions_checked += 1
        checks = await asyncio.gather(*(self._prove_piece(r) for r in version.replicas))
        bad: dict[str, list[BadReplica]] = defaultdict(list)
        proven: list[int] = []
        for replica, (outcome, length) in zip(version.replicas, checks, strict=True):
            report.bytes_read += length
            if outcome is None:
                continue
            report.pieces_checked += 1
            if outcome == "ok":
                proven.append(replica.id)
            where = f"part {replica.part_number} on {names.get(replica.backend_id, '?')}"
            if replica.shard_index >= 0:
                where = f"shard {replica.shard_index} of {where}"
            if outcome in ("corrupt", "missing"):
                bad[outcome].append(_bad(version, replica))
                report.problems[row.key].append(f"{where} is {outcome} (repair queued)")
            elif outcome == "unavailable":
                report.problems[row.key].append(f"{where} could not be read (backend unreachable)")
        if proven:  # re-read and matched: what a placement proof reports as verified_at
            async with self.ctx.store.db.connection() as conn:
                await self.ctx.store.replicas.touch_verified(conn, proven)
        for status, targets in bad.items():
            report.pieces_marked += await self.ctx.mark_bad_many(targets, status)

    async def _prove_piece(self, replica: Replica) -> tuple[str | None, int]:
        """(outcome, bytes read); outcome None for a piece not to judge (pending, deleting)."""
        if replica.status in ("pending", "deleting"):
            return None, 0
        if replica.status in ("corrupt", "missing"):
            return replica.status, 0  # known bad: its repair is queued already, still a finding
        async with self._gate:
            return await check_piece(
                self.ctx.registry,
                replica.backend_id,
                replica.locator,
                replica.size,
                replica.sha256,
            )


def _bad(version: ObjectVersion, replica: Replica) -> BadReplica:
    return BadReplica(
        version_pk=version.id,
        bucket_id=version.bucket_id,
        key=version.key,
        replica_id=replica.id,
        backend_id=replica.backend_id,
        part_number=replica.part_number,
        shard_index=replica.shard_index,
    )
