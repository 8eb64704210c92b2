"""The driver of one import run: ``python -m jobs.importer --run-id N`` (a Ray job's entrypoint).

Nothing secret is on its command line or in its environment: it joins the Ray cluster
(``ray.init(address="auto")``, which honours ``RAY_ADDRESS`` as a submitted job has it), and
asks the keyholder (``actors.import_keyholder``) for the cluster's settings and the run's
passphrase. Without a held passphrase the run is marked ``failed`` with a clear error and
nothing starts. Then, in order (each step resumable, so a driver killed anywhere is simply
started again, ``import resume``):

1. Open the source (the sealed credentials, in memory) and probe it: an unreachable source,
   refused credentials or a missing bucket fail the run with that error.
2. List the source into the manifest (``ManifestLister``, resumes after the last stored page)
   while, concurrently, each stored segment is cut into copy jobs -- deterministic batches of
   up to ``BATCH_OBJECTS`` objects or ``BATCH_BYTES`` bytes within the segment, so a restarted
   driver enqueues the same jobs (same idempotency keys) and never two jobs holding one key --
   and a segment's jobs with work left are enqueued with ONE ``enqueue_many``.
3. Start the workers (``jobs.import_workers.ImportWorker``, ``num_cpus=0``, a fixed number per
   alive node: bytes in flight are bounded per node) and let them drain the run's jobs; log a
   progress line (bar, counts, rate, ETA) every few seconds and export the run's gauges.
4. Objects still pending once the queue is drained (their job died after its attempts) get
   one more round; what is left then is recorded ``failed``. The run goes ``verifying`` ->
   ``done``; its colour follows from the rows (GREEN once every replica is ``ok``; RED when
   any object failed, with the reasons per key). The passphrase is dropped at the end.

A run found ``verifying`` (``import verify`` took a done run back there) is verified instead
(``jobs.import_verifier``: the source re-listed and compared, every stored piece re-read) and
goes ``done`` again, RED if anything was found.

A cancelled run stops its lister (at its next page) and its workers (at their next job). A
metadata outage (PostgreSQL restarted) is waited out, for ``OUTAGE_S`` at most: the lister
resumes after its last stored page, the workers keep polling, and the end is tried again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.data_path import DataPath
from actors.import_keyholder import keyholder
from actors.node_roles import BACKEND_IO, nodes_for_role
from actors.source_bucket import SourceBucket, open_source
from core.credential_seal import SealOpenFailed
from core.errors import BulletproofError, Conflict, MetadataUnavailable
from core.import_source import SourceError
from core.import_state import FINAL_RUN_STATES, ProgressMeter, ProgressSample
from core.settings import Settings
from jobs.import_manifest import ManifestLister
from jobs.import_progress import progress_line
from jobs.import_verifier import ImportVerifier
from jobs.import_workers import LEASE_S, OUTAGE_S, ImportWorker
from jobs.metrics import import_metrics
from schema.db import Database
from schema.import_records import ImportRun, ManifestSegment
from schema.imports import ImportRepository
from schema.jobs import PRIORITY, JobKind, JobQueue, import_copy_key

__all__ = [
    "BATCH_BYTES",
    "BATCH_OBJECTS",
    "DriverOptions",
    "batches",
    "main",
    "run_import",
]

log = logging.getLogger("jobs.importer")
T = TypeVar("T")

#: A copy job holds at most this many objects, or this many bytes (one object may exceed it).
BATCH_OBJECTS = 64
BATCH_BYTES = 256 * 1024 * 1024
#: Leases a copy job may use before it is dead-lettered (a job that kills workers).
_JOB_ATTEMPTS = 5
#: Rounds of enqueueing the objects a drained queue left pending.
_ROUNDS = 2


@dataclass(frozen=True)
class DriverOptions:
    workers_per_node: int = 2
    #: Objects in flight per worker, and bytes in flight per node (split over its workers).
    concurrency: int = 16
    node_bytes: int = 256 * 1024 * 1024
    progress_every_s: float = 5.0
    #: Seconds a worker's job lease lasts unrenewed: how long a killed worker's jobs wait.
    lease_s: float = LEASE_S


def batches(rows: Sequence[tuple[str, int]]) -> list[list[str]]:
    """Cut a segment's (key, size) rows, in key order, into copy batches: a batch ends at
    ``BATCH_OBJECTS`` objects or once it holds ``BATCH_BYTES`` bytes. Deterministic: the
    same segment always gives the same batches."""
    out: list[list[str]] = []
    current: list[str] = []
    size = 0
    for key, length in rows:
        current.append(key)
        size += length
        if len(current) >= BATCH_OBJECTS or size >= BATCH_BYTES:
            out.append(current)
            current, size = [], 0
    if current:
        out.append(current)
    return out


class _Driver:
    def __init__(
        self, settings: Settings, db: Database, run: ImportRun, options: DriverOptions
    ) -> None:
        self.settings = settings
        self.db = db
        self.run = run
        self.options = options
        self.repo = ImportRepository()
        self.queue = JobQueue()
        self.metrics = import_metrics()
        self.meter = ProgressMeter()
        self._enqueued_through = -1  # highest manifest segment already cut into jobs

    # -- jobs ----------------------------------------------------------------------------------
    async def enqueue_segments(self, *, only_new: bool = True) -> int:
        """Cut the segments not yet handled into jobs and enqueue those with work left (one
        ``enqueue_many`` per segment); returns the jobs added."""
        run_id = self.run.id
        async with self.db.connection() as conn:
            segments = await self.repo.segments(conn, run_id)
        added = 0
        previous_last = ""
        for segment in segments:
            if only_new and segment.seq <= self._enqueued_through:
                previous_last = segment.last_key
                continue
            added += await self._enqueue_segment(segment, previous_last)
            previous_last = segment.last_key
            self._enqueued_through = max(self._enqueued_through, segment.seq)
        return added

    async def _enqueue_segment(self, segment: ManifestSegment, after: str) -> int:
        async with self.db.connection() as conn:
            rows = await self.repo.objects(conn, self.run.id, after=after, limit=segment.keys)
            wanted = []
            for batch in batches([(o.key, o.size) for o in rows]):
                states = {o.key: o.state for o in rows}
                if any(states[k] in ("pending", "copied") for k in batch):
                    payload = {"run_id": self.run.id, "keys": batch}
                    wanted.append((payload, import_copy_key(self.run.id, batch[0])))
            ids = await self.queue.enqueue_many(
                conn,
                JobKind.IMPORT_COPY,
                wanted,
                priority=PRIORITY[JobKind.IMPORT_COPY],
                max_attempts=_JOB_ATTEMPTS,
            )
        return len(ids)

    async def list_and_enqueue(self, source: SourceBucket) -> None:
        """The lister, with each new segment enqueued as soon as it is stored; through a
        metadata outage (the lister resumes after its last stored page)."""
        await through_outage("listing", lambda: self._list_and_enqueue(source))

    async def _list_and_enqueue(self, source: SourceBucket) -> None:
        lister = asyncio.ensure_future(ManifestLister(self.db).run(self.run.id, source))
        try:
            while not lister.done():
                await asyncio.wait({lister}, timeout=1.0)
                await self.enqueue_segments()
            lister.result()
        finally:
            if not lister.done():
                lister.cancel()
        await self.enqueue_segments()

    # -- progress ------------------------------------------------------------------------------
    async def report(self) -> ImportRun:
        async with self.db.connection() as conn:
            run = await self.repo.get_run(conn, self.run.id)
        self.meter.add(ProgressSample(time.monotonic(), run.objects_done, run.bytes_done))
        progress = self.meter.progress(objects_total=run.objects_total, bytes_total=run.bytes_total)
        line = progress_line(
            objects_done=run.objects_done,
            objects_total=run.objects_total,
            bytes_done=run.bytes_done,
            bytes_total=run.bytes_total,
            progress=progress,
        )
        errors = f" errors {run.errors}" if run.errors else ""
        print(f"import {run.id} {run.state}: {line}{errors}", flush=True)
        self.metrics.progress(
            run.id,
            objects_done=run.objects_done,
            objects_total=run.objects_total,
            bytes_done=run.bytes_done,
            bytes_total=run.bytes_total,
            eta_s=progress.eta_s,
        )
        return run

    async def watch(self, workers: list[Any]) -> None:
        """Report progress until the workers are done; a cancelled run stops them."""
        while True:
            await asyncio.sleep(self.options.progress_every_s)
            try:
                run = await self.report()
            except MetadataUnavailable as exc:
                log.warning("import %s: no progress now: %s", self.run.id, exc)
                continue
            if run.state == "cancelled":
                for worker in workers:
                    worker.stop.remote()
                return

    # -- workers -------------------------------------------------------------------------------
    def start_workers(self, submission_id: str) -> list[Any]:
        nodes = nodes_for_role(BACKEND_IO)
        per_node = self.options.workers_per_node
        budget = max(1, self.options.node_bytes // per_node)
        remote = ray.remote(ImportWorker)
        workers = []
        for node in nodes:
            for _ in range(per_node):
                workers.append(
                    remote.options(  # type: ignore[attr-defined]
                        num_cpus=0,
                        max_restarts=0,
                        scheduling_strategy=NodeAffinitySchedulingStrategy(
                            node["NodeID"], soft=True
                        ),
                    ).remote(
                        self.run.id,
                        submission_id,
                        budget_bytes=budget,
                        concurrency=self.options.concurrency,
                        lease_s=self.options.lease_s,
                    )
                )
        log.info("import %s: %d workers on %d nodes", self.run.id, len(workers), len(nodes))
        return workers

    async def drain(self, workers: list[Any], enqueue: Any) -> None:
        """Run the workers while ``enqueue`` (a coroutine) adds jobs; once it is done, they
        finish when the queue holds none of the run's jobs."""
        runs = [w.run.remote() for w in workers]
        watcher = asyncio.ensure_future(self.watch(workers))
        try:
            try:
                await enqueue
            finally:
                for worker in workers:
                    worker.finish.remote()
            results = await asyncio.gather(*runs, return_exceptions=True)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("import %s: a worker ended with %r", self.run.id, result)
            else:
                log.info("import %s: worker %s", self.run.id, result)

    async def leftover(self) -> list[str]:
        """Objects the drained queue left pending or copied."""
        return await through_outage("the leftover check", self._leftover)

    async def _leftover(self) -> list[str]:
        keys: list[str] = []
        after = ""
        async with self.db.connection() as conn:
            while True:
                page = await self.repo.objects(
                    conn, self.run.id, states=("pending", "copied"), after=after, limit=1000
                )
                if not page:
                    return keys
                keys += [o.key for o in page]
                after = page[-1].key


async def through_outage(
    what: str, attempt: Callable[[], Awaitable[T]], *, wait_s: float = OUTAGE_S
) -> T:
    """``attempt()``, tried again while the metadata database is unreachable (a restart), for
    ``wait_s`` at most; ``attempt`` must be safe to repeat."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await attempt()
        except MetadataUnavailable as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("import: %s waits for the metadata database: %s", what, exc)
            await asyncio.sleep(1.0)


async def _fail(db: Database, run_id: int, error: str) -> None:
    async with db.transaction() as conn:
        try:
            await ImportRepository().set_state(conn, run_id, "failed", error=error)
        except Conflict:
            log.warning("import %s: could not mark failed: %s", run_id, error)
    print(f"import {run_id} failed: {error}", flush=True)


async def run_import(
    run_id: int, options: DriverOptions | None = None, *, holder: Any | None = None
) -> int:
    """Run (or continue) import ``run_id`` to its end; returns a process exit code (0 when the
    run is done, whatever its colour; 1 when it failed or could not run). Needs ``ray.init``."""
    options = options or DriverOptions()
    if holder is None:
        try:
            holder = keyholder()
        except ValueError:  # no keyholder: nobody gave this cluster a passphrase (or settings)
            print(
                f"import {run_id} cannot start: this Ray cluster has no import keyholder, so no"
                " passphrase is held; start or resume the import through the gateway",
                flush=True,
            )
            return 1
    settings: Settings = await holder.settings.remote()
    passphrase: str | None = await holder.get.remote(run_id)
    db = await Database.connect(settings.database_url, max_size=4)
    repo = ImportRepository()
    try:
        async with db.connection() as conn:
            run = await repo.get_run(conn, run_id)
            source_row = await repo.get_source(conn, run.source_id)
        if run.state in FINAL_RUN_STATES:
            print(f"import {run_id} is {run.state}: nothing to do", flush=True)
            return 0 if run.state == "done" else 1
        if passphrase is None:
            await _fail(
                db,
                run_id,
                "no passphrase is held for this import (never given, expired, or the cluster"
                " restarted): resume it with the source passphrase",
            )
            return 1
        try:
            source = open_source(source_row, passphrase)
            del passphrase
            await asyncio.to_thread(source.probe)
        except SealOpenFailed:
            await _fail(db, run_id, "the passphrase does not open the source credentials")
            return 1
        except SourceError as exc:
            await _fail(db, run_id, str(exc))
            return 1
        if run.state == "verifying":  # `import verify` took a done run back here
            return await _verify(settings, db, run_id, source, holder)
        submission_id = run.submission_id or f"bp-import-{run_id}-1"
        driver = _Driver(settings, db, run, options)
        print(f"import {run_id}: {source!r} -> {run.dest_bucket}/{run.dest_prefix}", flush=True)
        workers = driver.start_workers(submission_id)
        try:
            try:
                await driver.drain(workers, driver.list_and_enqueue(source))
            except SourceError as exc:
                await _fail(db, run_id, str(exc))
                return 1
            except Conflict:  # cancelled while listing: the lister stopped
                pass
            for _ in range(_ROUNDS):
                if not await driver.leftover():
                    break
                if await through_outage("the state check", lambda: _state(db, run_id)) == (
                    "cancelled"
                ):
                    break
                log.info("import %s: enqueueing objects left pending", run_id)
                await driver.drain(workers, driver.enqueue_segments(only_new=False))
        finally:
            for worker in workers:
                with _quiet():
                    await worker.close.remote()
                with _quiet():
                    ray.kill(worker)
        return await through_outage("the end", lambda: _finish(db, driver, run_id, holder))
    except BulletproofError as exc:
        await _fail(db, run_id, str(exc))
        return 1
    finally:
        await db.close()


async def _state(db: Database, run_id: int) -> str:
    async with db.connection() as conn:
        return (await ImportRepository().get_run(conn, run_id)).state


async def _finish(db: Database, driver: _Driver, run_id: int, holder: Any) -> int:
    repo = ImportRepository()
    left = await driver.leftover()
    async with db.transaction() as conn:
        state = (await repo.get_run(conn, run_id)).state
        if state == "cancelled":
            print(f"import {run_id} cancelled", flush=True)
            return 1
        if left:
            await repo.mark_failed(
                conn,
                run_id,
                [(k, "not copied: its copy job failed on every attempt") for k in left],
                final=True,
            )
        await repo.set_state(conn, run_id, "verifying")
        await repo.set_state(conn, run_id, "done")
    await driver.report()
    status = await _settled_status(db, run_id)
    print(f"import {run_id} done: {status.color.value} ({status.reason})", flush=True)
    with _quiet():
        await holder.drop.remote(run_id)
    return 0


async def _verify(
    settings: Settings, db: Database, run_id: int, source: SourceBucket, holder: Any
) -> int:
    """``import verify``: the source compared again and every stored piece re-read
    (``ImportVerifier``); findings per key, then the run is ``done`` again (RED if any)."""
    repo = ImportRepository()
    ctx = await DataPath.open(settings, use_ray=True, serving=False, db_pool_size=4)
    try:
        report = await ImportVerifier(ctx, run_id, source).run()
    finally:
        await ctx.close()
    print(f"import {run_id} verified: {report.summary()}", flush=True)
    async with db.transaction() as conn:
        await repo.recount(conn, run_id)
        await repo.set_state(conn, run_id, "done")
        status = await repo.status(conn, run_id)
    print(f"import {run_id} done: {status.color.value} ({status.reason})", flush=True)
    with _quiet():
        await holder.drop.remote(run_id)
    return 0


async def _settled_status(db: Database, run_id: int, wait_s: float = 30.0) -> Any:
    """The run's status, after waiting (bounded) for replicas still being finished."""
    repo = ImportRepository()
    deadline = time.monotonic() + wait_s
    while True:
        async with db.connection() as conn:
            facts = await repo.facts(conn, run_id)
            status = await repo.status(conn, run_id)
        if not facts.degraded or time.monotonic() > deadline:
            return status
        await asyncio.sleep(1.0)


class _quiet:
    """Suppress any error of best-effort cleanup."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.importer", description=__doc__)
    parser.add_argument("--run-id", type=int, required=True)
    parser.add_argument("--workers-per-node", type=int, default=DriverOptions.workers_per_node)
    parser.add_argument("--concurrency", type=int, default=DriverOptions.concurrency)
    parser.add_argument("--lease-s", type=float, default=DriverOptions.lease_s)
    parser.add_argument("--progress-every-s", type=float, default=DriverOptions.progress_every_s)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ray.init(address="auto", namespace="bulletproof", log_to_driver=False)
    options = DriverOptions(
        workers_per_node=args.workers_per_node,
        concurrency=args.concurrency,
        lease_s=args.lease_s,
        progress_every_s=args.progress_every_s,
    )
    try:
        return asyncio.run(run_import(args.run_id, options))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
