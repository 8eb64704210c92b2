"""The workers of an import: Ray actors that lease the run's ``import_copy`` jobs from the
PostgreSQL queue and copy their objects, with bounded bytes in flight.

What they keep true:

- **Only the run's own workers copy its objects.** A worker leases with
  ``match={"run_id": N}`` (replication agents never lease ``import_copy``), and it fetches the
  run's passphrase and the cluster's settings from the keyholder itself: nothing secret is in
  its constructor arguments, which Ray keeps and shows.
- **A killed worker loses only its lease.** Every job is leased for ``LEASE_S`` seconds and
  renewed while it runs (``heartbeat``); a worker that dies lets the lease expire and another
  worker (or the next driver's) takes the job again. Each object is looked up first
  (``written_by_run``): one a killed worker already committed is adopted, not copied twice.
- **Results land in batches, fenced.** A job's outcomes (stored objects ``verified`` with their
  versions, given-up objects ``failed`` with their reasons) and the job's completion commit in
  one transaction, only while the worker still holds the lease; the run's counters move in
  that statement. So counters change once per job (up to ~64 objects), not per object.
- **Bounded memory.** A worker holds at most ``budget_bytes`` of objects in flight
  (``ByteBudget``: each object reserves what its stream holds at once, at most one window
  plus the stored parts in flight, ``bytes_held``) and at most ``concurrency`` objects; the
  driver starts a fixed number of workers per node, so bytes in flight are bounded per node.
- **Retries with backoff, reasons kept.** An object whose copy fails is tried again after
  0.5 s, 1 s, 2 s (``OBJECT_ATTEMPTS`` in all), then recorded ``failed`` with the last reason.
  A refused placement (``PolicyViolation``: the rule is named), an object changed at the
  source since listing, or an impossible destination key fail at once: retrying cannot help,
  and nothing is ever placed elsewhere. Before a retry, the object is looked up again: an
  attempt that failed after its commit (the connection lost during COMMIT) is adopted, never
  written twice.
- **A metadata outage is nobody's fault.** While PostgreSQL is unreachable (a restart), a
  worker keeps polling the queue and an object waits for it without spending an attempt (for
  ``OUTAGE_S`` at most; then it is left pending for the driver's next round).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actors.data_path import DataPath
from actors.import_keyholder import keyholder
from actors.source_bucket import SourceBucket, open_source
from actors.writes import WrittenObject, discard_written, store_objects
from core.errors import InvalidInput, MetadataUnavailable, PolicyViolation
from core.import_source import SourceAccessDenied, SourceBucketMissing, SourceObjectChanged
from jobs.import_transfer import (
    BATCHED_MAX,
    ImportTarget,
    bytes_held,
    load_target,
    transfer_object,
    write_small_object,
)
from jobs.metrics import import_metrics
from schema.import_records import ImportObject
from schema.imports import ImportRepository
from schema.jobs import Backoff, Job, JobKind

__all__ = [
    "LEASE_S",
    "OBJECT_ATTEMPTS",
    "OUTAGE_S",
    "ByteBudget",
    "ImportWorker",
    "JobOutcome",
    "final_reason",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Seconds a worker's lease on a job lasts without renewal (renewed every third of it).
LEASE_S = 60.0
#: Tries per object inside one job before it is recorded failed.
OBJECT_ATTEMPTS = 4
_RETRY_DELAYS_S = (0.5, 1.0, 2.0)
#: Seconds between polls of the queue when it has nothing ready for this worker.
_IDLE_S = 0.5
#: Jobs one worker runs at once (each up to ``concurrency`` objects, sharing the budget).
_JOB_SLOTS = 4
#: Seconds an object waits for an unreachable metadata database before it is left pending.
OUTAGE_S = 120.0
_OUTAGE_PAUSE_S = 1.0


class ByteBudget:
    """At most ``limit`` bytes reserved at once; a reservation larger than the limit is cut
    to it (it then runs alone)."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise InvalidInput("a byte budget must be positive")
        self.limit = limit
        self.used = 0
        self._changed = asyncio.Condition()

    async def acquire(self, size: int) -> int:
        size = max(1, min(size, self.limit))
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + size <= self.limit)
            self.used += size
        return size

    async def release(self, size: int) -> None:
        async with self._changed:
            self.used -= size
            self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def reserve(self, size: int) -> Any:
        taken = await self.acquire(size)
        try:
            yield taken
        finally:
            await self.release(taken)


def final_reason(exc: BaseException) -> str | None:
    """The reason to give up on an object at once, or None when a retry may help."""
    if isinstance(exc, PolicyViolation):
        return f"placement refused by policy: {exc}"
    if isinstance(exc, SourceObjectChanged | SourceAccessDenied | SourceBucketMissing):
        return str(exc)
    if isinstance(exc, InvalidInput):
        return f"cannot be imported: {exc}"
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, PolicyViolation) else text


@dataclass
class JobOutcome:
    stored: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    adopted: int = 0
    bytes: int = 0


class ImportWorker:
    """One worker of one run (a Ray actor with ``num_cpus=0``; see the module docstring)."""

    def __init__(
        self,
        run_id: int,
        submission_id: str,
        *,
        budget_bytes: int,
        concurrency: int,
        lease_s: float = LEASE_S,
    ) -> None:
        self.run_id = run_id
        self.submission_id = submission_id
        self.owner = f"import:{run_id}:{socket.gethostname()}:{os.getpid()}"
        self.budget = ByteBudget(budget_bytes)
        self.slots = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.repo = ImportRepository()
        self.metrics = import_metrics()
        self._finishing = False
        self._stopping = False
        self._ctx: DataPath | None = None
        self._source: SourceBucket | None = None
        self._target: ImportTarget | None = None
        self._in_flight = 0
        self._totals = {"jobs": 0, "objects": 0, "adopted": 0, "failed": 0, "bytes": 0}

    async def _setup(self) -> tuple[DataPath, SourceBucket, ImportTarget]:
        if self._ctx is not None and self._source is not None and self._target is not None:
            return self._ctx, self._source, self._target
        holder = keyholder()
        settings = await holder.settings.remote()
        passphrase = await holder.get.remote(self.run_id)
        if passphrase is None:
            raise RuntimeError(f"no passphrase is held for import {self.run_id}")
        ctx = await DataPath.open(settings, use_ray=True, serving=False, db_pool_size=4)
        async with ctx.store.db.connection() as conn:
            run = await self.repo.get_run(conn, self.run_id)
            source_row = await self.repo.get_source(conn, run.source_id)
        source = open_source(source_row, passphrase, max_connections=self.concurrency + 4)
        del passphrase
        self._target = await load_target(ctx, run, source_row.prefix, self.submission_id)
        self._ctx, self._source = ctx, source
        return ctx, source, self._target

    # -- control (called by the driver while ``run`` runs) -------------------------------------
    def finish(self) -> None:
        """No more jobs will be enqueued: stop once the run has no queued or leased job."""
        self._finishing = True

    def stop(self) -> None:
        """Stop leasing now (the run was cancelled); jobs being run finish."""
        self._stopping = True

    def node(self) -> str:
        return socket.gethostname()

    async def run(self) -> dict[str, int]:
        """Lease and run the run's jobs until told to finish and none is left; then wait for
        background work (replicas still being written) and return what was done."""
        ctx, source, target = await self._setup()
        await asyncio.gather(*(self._slot(ctx, source, target) for _ in range(_JOB_SLOTS)))
        tasks = list(ctx._tasks)  # stragglers finishing replicas: done before we report
        if tasks:
            await asyncio.wait(tasks, timeout=120)
        return dict(self._totals)

    async def close(self) -> None:
        if self._ctx is not None:
            await self._ctx.close()
            self._ctx = None

    async def _slot(self, ctx: DataPath, source: SourceBucket, target: ImportTarget) -> None:
        queue = ctx.store.jobs
        match = {"run_id": self.run_id}
        while not self._stopping:
            try:
                async with ctx.store.db.connection() as conn:
                    jobs = await queue.lease(
                        conn,
                        self.owner,
                        kinds=(JobKind.IMPORT_COPY,),
                        lease_s=self.lease_s,
                        limit=1,
                        match=match,
                    )
                    if not jobs:
                        left = await queue.active_count(conn, JobKind.IMPORT_COPY, match=match)
            except MetadataUnavailable as exc:  # a restart: keep polling, nothing is lost
                log.warning("import %s: queue unreachable: %s", self.run_id, exc)
                await asyncio.sleep(_OUTAGE_PAUSE_S)
                continue
            if not jobs:
                if self._finishing and not left:
                    return
                await asyncio.sleep(_IDLE_S)
                continue
            await self._run_job(ctx, source, target, jobs[0])

    async def _run_job(
        self, ctx: DataPath, source: SourceBucket, target: ImportTarget, job: Job
    ) -> None:
        queue = ctx.store.jobs
        lost = asyncio.Event()
        beat = asyncio.ensure_future(self._heartbeat(ctx, job, lost))
        try:
            outcome = await self._copy_batch(ctx, source, target, job, lost)
            async with ctx.store.db.transaction() as conn:
                if not await queue.complete(conn, job, self.owner):
                    raise _LeaseLost()
                await self.repo.mark_done(conn, self.run_id, outcome.stored)
                if outcome.failed:
                    await self.repo.mark_failed(conn, self.run_id, outcome.failed, final=True)
        except _LeaseLost:
            log.warning(
                "import %s: lost the lease of job %s; its next holder goes on", self.run_id, job.id
            )
            return
        except Exception as exc:
            log.exception("import %s: job %s failed", self.run_id, job.id)
            with contextlib.suppress(Exception):
                async with ctx.store.db.connection() as conn:
                    await queue.fail(
                        conn, job, self.owner, _reason(exc), backoff=Backoff(2.0, 60.0)
                    )
            return
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        copied = len(outcome.stored) - outcome.adopted
        self._totals["jobs"] += 1
        self._totals["objects"] += copied
        self._totals["adopted"] += outcome.adopted
        self._totals["failed"] += len(outcome.failed)
        self._totals["bytes"] += outcome.bytes
        if outcome.failed:
            self.metrics.failed(self.run_id, len(outcome.failed))

    async def _heartbeat(self, ctx: DataPath, job: Job, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                async with ctx.store.db.connection() as conn:
                    held = await ctx.store.jobs.heartbeat(
                        conn, job, self.owner, lease_s=self.lease_s
                    )
            except Exception:  # the database may be back before the lease ends
                log.warning("import %s: heartbeat of job %s failed", self.run_id, job.id)
                continue
            if not held:
                lost.set()
                return

    async def _copy_batch(
        self,
        ctx: DataPath,
        source: SourceBucket,
        target: ImportTarget,
        job: Job,
        lost: asyncio.Event,
    ) -> JobOutcome:
        keys = [str(k) for k in job.payload.get("keys", [])]
        async with ctx.store.db.connection() as conn:
            objects = [
                o
                for o in await self.repo.objects_named(conn, self.run_id, keys)
                if o.state in ("pending", "copied")
            ]
            done = await self.repo.written_by_run(
                conn,
                self.run_id,
                target.bucket.id,
                [(o.key, target.key_of(o.key), o.etag) for o in objects if _mappable(target, o)],
            )
        outcome = JobOutcome()
        for key, adopted in done.items():
            outcome.stored.append((key, adopted))
            outcome.adopted += 1
        todo = [o for o in objects if o.key not in done]
        small = [o for o in todo if o.size <= BATCHED_MAX and _mappable(target, o)]
        batched = {o.key for o in small}
        large = [o for o in todo if o.key not in batched]
        started = time.monotonic()
        large_results, small_results = await asyncio.gather(
            asyncio.gather(*(self._copy_one(ctx, source, target, o, lost) for o in large)),
            self._copy_small(ctx, source, target, small, lost),
        )
        results = dict(zip([o.key for o in large], large_results, strict=True))
        results.update(zip([o.key for o in small], small_results, strict=True))
        for obj in todo:
            if lost.is_set():
                raise _LeaseLost()
            version_pk, reason = results[obj.key]
            if version_pk is not None:
                outcome.stored.append((obj.key, version_pk))
                outcome.bytes += obj.size
            elif reason is not None:
                outcome.failed.append((obj.key, reason))
        copied = len(outcome.stored) - outcome.adopted
        self.metrics.copied(self.run_id, copied, outcome.bytes, time.monotonic() - started)
        return outcome

    async def _copy_small(
        self,
        ctx: DataPath,
        source: SourceBucket,
        target: ImportTarget,
        objects: list[ImportObject],
        lost: asyncio.Event,
    ) -> list[tuple[int | None, str | None]]:
        """Write the job's small objects concurrently, then commit them in ONE transaction
        (``store_objects``). If that commit fails, nothing of it is visible: the written
        pieces go to garbage and each object takes the path of a large one (written and
        committed alone, with its retries)."""
        if not objects:
            return []
        async with ctx.store.db.connection() as conn:
            settings = await ctx.policies.placement_settings(conn, target.bucket.id)

        def writer(obj: ImportObject) -> Callable[[], Awaitable[WrittenObject]]:
            return lambda: write_small_object(ctx, source, target, obj, settings)

        written = await asyncio.gather(
            *(self._attempt(ctx, obj, lost, writer(obj)) for obj in objects)
        )
        ready = [w for w, _ in written if w is not None]
        if lost.is_set() or self._stopping:
            for item in ready:
                discard_written(ctx, item)
            return [(None, None)] * len(objects)
        try:
            versions = iter(await store_objects(ctx, ready))
        except asyncio.CancelledError:
            for item in ready:  # nothing of it was committed
                discard_written(ctx, item)
            raise
        except Exception as exc:
            log.warning(
                "import %s: committing %d objects together failed (%s); committing each alone",
                self.run_id,
                len(ready),
                _reason(exc),
            )
            for item in ready:
                discard_written(ctx, item)
            return list(
                await asyncio.gather(
                    *(
                        # The failed commit may have committed after all (an ambiguous
                        # COMMIT): each copy first adopts what it finds committed.
                        self._copy_one(ctx, source, target, obj, lost, adopt_first=True)
                        if item is not None
                        else _as_result(reason)
                        for obj, (item, reason) in zip(objects, written, strict=True)
                    )
                )
            )
        return [
            (next(versions).id, None) if item is not None else (None, reason)
            for item, reason in written
        ]

    async def _copy_one(
        self,
        ctx: DataPath,
        source: SourceBucket,
        target: ImportTarget,
        obj: ImportObject,
        lost: asyncio.Event,
        *,
        adopt_first: bool = False,
    ) -> tuple[int | None, str | None]:
        """(version, None) when stored, (None, reason) when given up, (None, None) when the
        lease was lost first. ``adopt_first``: look for a committed version before the first
        attempt too (after a batch commit whose outcome is unknown)."""
        return await self._attempt(
            ctx,
            obj,
            lost,
            lambda: transfer_object(ctx, source, target, obj),
            adopt=lambda: self._written(ctx, target, obj),
            adopt_first=adopt_first,
        )

    async def _attempt(
        self,
        ctx: DataPath,
        obj: ImportObject,
        lost: asyncio.Event,
        copy: Callable[[], Awaitable[_T]],
        adopt: Callable[[], Awaitable[_T | None]] | None = None,
        adopt_first: bool = False,
    ) -> tuple[_T | None, str | None]:
        """Run ``copy`` for ``obj`` within the worker's slots and byte budget, retrying as the
        module docstring says (``_attempts``): (result, None), (None, reason) when given up,
        (None, None) when the lease was lost or the worker stopped first."""
        reserve = bytes_held(obj.size, ctx.settings.part_size)
        async with self.slots, self.budget.reserve(reserve) as taken:
            self._in_flight += taken
            self.metrics.in_flight(self.run_id, self._in_flight)
            try:
                return await self._attempts(obj, lost, copy, adopt, adopt_first)
            finally:
                self._in_flight -= taken
                self.metrics.in_flight(self.run_id, self._in_flight)

    async def _attempts(
        self,
        obj: ImportObject,
        lost: asyncio.Event,
        copy: Callable[[], Awaitable[_T]],
        adopt: Callable[[], Awaitable[_T | None]] | None,
        adopt_first: bool,
    ) -> tuple[_T | None, str | None]:
        """Retry ``copy`` with backoff; a metadata outage is waited out (up to ``OUTAGE_S``)
        without spending an attempt; before a retry, ``adopt`` finds what the last attempt may
        have committed before it failed (a copy that commits must never commit twice)."""
        attempt = 0
        waited = 0.0
        retry = adopt_first
        while not (lost.is_set() or self._stopping):
            try:
                if retry and adopt is not None:
                    adopted = await adopt()
                    if adopted is not None:
                        return adopted, None
                return await copy(), None
            except MetadataUnavailable as exc:
                retry = True
                if waited >= OUTAGE_S:
                    return None, None  # still pending: the driver's next round copies it
                log.info("import %s: %r waits for the metadata: %s", self.run_id, obj.key, exc)
                await asyncio.sleep(_OUTAGE_PAUSE_S)
                waited += _OUTAGE_PAUSE_S
            except Exception as exc:
                reason = final_reason(exc)
                if reason is not None:
                    return None, reason
                attempt += 1
                if attempt == OBJECT_ATTEMPTS:
                    return None, f"gave up after {attempt} attempts: {_reason(exc)}"
                retry = True
                log.info("import %s: retrying %r after %s", self.run_id, obj.key, exc)
                await asyncio.sleep(_RETRY_DELAYS_S[min(attempt, 3) - 1])
        return None, None

    async def _written(self, ctx: DataPath, target: ImportTarget, obj: ImportObject) -> int | None:
        """The version this run already committed for ``obj``, if any."""
        async with ctx.store.db.connection() as conn:
            found = await self.repo.written_by_run(
                conn, self.run_id, target.bucket.id, [(obj.key, target.key_of(obj.key), obj.etag)]
            )
        return found.get(obj.key)


async def _as_result(reason: str | None) -> tuple[int | None, str | None]:
    return None, reason


def _mappable(target: ImportTarget, obj: ImportObject) -> bool:
    try:
        target.key_of(obj.key)
    except InvalidInput:
        return False
    return True


class _LeaseLost(Exception):
    """Another holder owns the job now: roll back, let it finish."""
