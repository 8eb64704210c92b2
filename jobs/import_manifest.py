"""The import's first phase: list the source into a manifest stored in PostgreSQL.

``ManifestLister.run`` reads the source page by page (``SourceBucket.pages``) and stores each
page as one manifest segment -- an Arrow record batch written as a Parquet file (key, size,
ETag, last-modified, checksum) -- together with that page's ``import_objects`` rows, in one
transaction (``ImportRepository.add_segment``). What it keeps true:

- **Memory is one page** (two while the next page is fetched during the commit of this one),
  never the listing: millions of keys cost nothing more than thousands.
- **Any node can continue.** The manifest lives in PostgreSQL, not on a node's disk. A lister
  that is killed at any point restarts from the last stored segment's last key (``StartAfter``):
  a page either committed with its rows or not at all, so there are no gaps and no duplicates.
- **A re-run copies only what changed**: the repository inserts objects identical to ones a
  previous run of the same route verified as ``skipped``.
- **The run's state says where it is**: ``pending`` -> ``listing`` when it starts; at the end
  of the source the manifest is complete and the run ``running``, in one transaction. A
  cancelled run stops the lister at its next page (``Conflict``).

Source failures surface as ``core.import_source`` errors (``SourceUnreachable``,
``SourceAccessDenied``, ``SourceBucketMissing``); the lister does not change the run's state
on them: the driver decides whether to retry or fail the run with the error's text. Logs carry
counts, never keys (they are the tenant's data).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from actors.source_bucket import SourceBucket
from core.errors import Conflict, InvalidInput
from schema.db import Database
from schema.import_records import ManifestEntry
from schema.imports import ImportRepository

__all__ = [
    "MANIFEST_SCHEMA",
    "ManifestLister",
    "ManifestReport",
    "read_segment",
    "segment_bytes",
]

log = logging.getLogger(__name__)

#: The columns of every manifest segment. ``checksum`` is ``ALG:value`` or ``ALG:`` (the
#: listing names the algorithm only), null when the source has none.
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("etag", pa.string(), nullable=False),
        pa.field("last_modified", pa.timestamp("ms", tz="UTC")),
        pa.field("checksum", pa.string()),
    ],
    metadata={"bulletproof.manifest": "1"},
)


def segment_bytes(entries: Sequence[ManifestEntry], *, run_id: int, seq: int) -> bytes:
    """One page of the listing as a Parquet file (one record batch, zstd), labelled with its
    run and sequence number."""
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([e.key for e in entries], pa.string()),
            pa.array([e.size for e in entries], pa.int64()),
            pa.array([e.etag for e in entries], pa.string()),
            pa.array([e.last_modified for e in entries], pa.timestamp("ms", tz="UTC")),
            pa.array([e.checksum for e in entries], pa.string()),
        ],
        schema=MANIFEST_SCHEMA.with_metadata(
            {"bulletproof.manifest": "1", "run_id": str(run_id), "seq": str(seq)}
        ),
    )
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_batches([batch]), sink, compression="zstd")
    return sink.getvalue()


def read_segment(data: bytes) -> list[ManifestEntry]:
    """The entries of a stored segment, in key order."""
    table = pq.read_table(io.BytesIO(data))
    if table.schema.metadata is None or b"bulletproof.manifest" not in table.schema.metadata:
        raise InvalidInput("not a Bulletproof manifest segment")
    return [
        ManifestEntry(r["key"], r["size"], r["etag"], r["last_modified"], r["checksum"])
        for r in table.to_pylist()
    ]


@dataclass(frozen=True)
class ManifestReport:
    """What one ``run`` did: segments and objects added now (skipped ones included), whether
    it resumed after a stored key, and whether the manifest is complete."""

    run_id: int
    segments: int
    objects: int
    skipped: int
    resumed: bool
    complete: bool


class ManifestLister:
    """Lists one run's source into its manifest. Safe to run again at any point."""

    def __init__(
        self, db: Database, *, repository: ImportRepository | None = None, page_size: int = 1000
    ) -> None:
        if not 1 <= page_size <= 1000:
            raise InvalidInput("page_size must be in 1..1000 (the S3 maximum)")
        self.db = db
        self.repository = repository or ImportRepository()
        self.page_size = page_size

    async def run(self, run_id: int, source: SourceBucket) -> ManifestReport:
        repo = self.repository
        async with self.db.transaction() as conn:
            run = await repo.get_run(conn, run_id)
            if run.manifest_complete:
                return ManifestReport(run_id, 0, 0, 0, resumed=False, complete=True)
            if run.state == "pending":
                await repo.set_state(conn, run_id, "listing")
            elif run.state != "listing":
                raise Conflict(f"import {run_id} is {run.state}; only a pending run is listed")
            seq, last_key = await repo.next_segment(conn, run_id)
        if last_key is not None:
            log.info("import %s: listing resumes after segment %s", run_id, seq - 1)
        pages = source.pages(start_after=last_key, page_size=self.page_size)
        segments = objects = skipped = 0
        fetch = asyncio.ensure_future(asyncio.to_thread(_next_page, pages))
        try:
            while (page := await fetch) is not None:
                # fetch the next page while this one is stored
                fetch = asyncio.ensure_future(asyncio.to_thread(_next_page, pages))
                parquet = await asyncio.to_thread(segment_bytes, page, run_id=run_id, seq=seq)
                async with self.db.transaction() as conn:
                    added, skipped_now = await repo.add_segment(conn, run_id, seq, parquet, page)
                segments, objects, skipped, seq = (
                    segments + 1,
                    objects + added,
                    skipped + skipped_now,
                    seq + 1,
                )
                log.info(
                    "import %s: manifest segment %s stored (%s objects, %s unchanged)",
                    run_id,
                    seq - 1,
                    added,
                    skipped_now,
                )
        finally:
            if not fetch.done():  # stopped early: drop the page being fetched (its thread ends
                fetch.cancel()  # by itself, bounded by the source's timeout)
                await asyncio.gather(fetch, return_exceptions=True)
        async with self.db.transaction() as conn:
            await repo.complete_manifest(conn, run_id)
            await repo.set_state(conn, run_id, "running")
        log.info(
            "import %s: manifest complete (%s segments, %s objects added now)",
            run_id,
            seq,
            objects,
        )
        return ManifestReport(
            run_id, segments, objects, skipped, resumed=last_key is not None, complete=True
        )


def _next_page(pages: Iterator[list[ManifestEntry]]) -> list[ManifestEntry] | None:
    return next(pages, None)
