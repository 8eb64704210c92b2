"""Starting, watching and controlling bucket imports from outside their Ray job.

One ``ImportService`` per gateway replica serves both the tenant's JSON API (SigV4) and the
admin API (bearer token); every operation takes the tenant it acts for (``None``: the admin,
any tenant) and the ``Caller`` its audit entry names. What it keeps true:

- **A tenant sees only its own sources and imports**: every lookup goes through
  ``ImportRepository`` with the tenant's id, so another tenant's id is a 404 like a missing one.
- **Plaintext source credentials never get in**: a source is created from a sealed blob only
  (``core.credential_seal.check_sealed``); a body carrying an access or secret key is refused.
- **The passphrase is checked before anything starts, and kept only in memory**: it opens the
  sealed blob here (in a thread: PBKDF2 at 600,000+ rounds), and only then reaches the
  cluster's keyholder (``actors/import_keyholder.py``) and the job is submitted. A wrong one is
  a 403 ``WrongPassphrase``, audited as ``ImportWrongPassphrase``, and nothing is submitted.
  It is never stored, logged, audited or echoed.
- **Submission is deterministic and safe to repeat**: ``bp-import-<run>-<attempt>`` is recorded
  with the run (and its audit entry) before Ray is asked, so a start that failed at Ray is
  retried with the same id; ``resume`` and ``verify`` take the next attempt.
- **Errors say what to do**: each failure is an ``S3Error`` with a status and a code the API
  renders (wrong passphrase, passphrase needed again, unreachable or refusing source, Ray's job
  API down, wrong state), never a 500 for bad input.

The rate and ETA come from samples of the done counters this replica took when it was asked
(``core.import_state.ProgressMeter``), else from the average since the run started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from actors.import_jobs import (
    ImportJob,
    ImportJobs,
    JobsUnavailable,
    parse_submission_id,
    submission_id,
)
from actors.import_keyholder import keyholder
from actors.source_bucket import open_source
from core.credential_seal import SealOpenFailed, open_sealed
from core.errors import InvalidInput, NoSuchBucket
from core.import_source import (
    SourceError,
    SourceLocation,
)
from core.import_state import (
    ACTIVE_RUN_STATES,
    Progress,
    ProgressMeter,
    ProgressSample,
    measure_progress,
)
from core.wire_numbers import INT64_MAX, parse_decimal
from gateway.admin.fields import names_list, optional_class, text
from gateway.context import GatewayContext
from gateway.imports.errors import (
    JobApiUnavailable,
    PassphraseRequired,
    WrongPassphrase,
    source_failed,
)
from gateway.imports.wire import (
    iso_time,
    optional_passphrase,
    optional_text,
    page_limit,
    passphrase_of,
    run_json,
    sealed_blob,
    source_json,
    split_destination,
)
from gateway.s3 import errors as s3e
from schema.audit import Caller
from schema.import_records import ImportRun, ImportSource, KeyRef
from schema.imports import ImportRepository
from schema.keys import KeyRepository

__all__ = ["ImportService"]

_REPO = ImportRepository()
_KEYS = KeyRepository()
#: Runs whose progress samples a replica keeps (least recently asked dropped first).
_METERS = 1024


class ImportService:
    """The import operations of one gateway replica (see the module docstring)."""

    def __init__(self, jobs: ImportJobs | None = None) -> None:
        self.jobs = jobs or ImportJobs()
        self._meters: OrderedDict[int, ProgressMeter] = OrderedDict()

    # -- sources -----------------------------------------------------------------------------
    async def create_source(
        self, ctx: GatewayContext, tenant_id: int, caller: Caller, data: dict[str, Any]
    ) -> dict[str, Any]:
        sealed = sealed_blob(data)
        name = text(data, "name")
        endpoint, bucket = text(data, "endpoint"), text(data, "bucket")
        prefix = optional_text(data, "prefix", "")
        region = optional_text(data, "region", "us-east-1") or "us-east-1"
        SourceLocation(endpoint, bucket, prefix, region)  # InvalidInput names what is wrong
        async with ctx.store.db.transaction() as conn:
            source = await _REPO.create_source(
                conn,
                tenant_id,
                name,
                endpoint=endpoint,
                bucket=bucket,
                sealed=sealed,
                region=region,
                prefix=prefix,
            )
            await ctx.store.audit.append(
                conn, caller.entry("ImportCreateSource", f"import-source/{source.id}")
            )
        return source_json(source)

    async def list_sources(self, ctx: GatewayContext, tenant_id: int) -> list[dict[str, Any]]:
        async with ctx.store.db.connection() as conn:
            return [source_json(s) for s in await _REPO.list_sources(conn, tenant_id=tenant_id)]

    async def show_source(
        self, ctx: GatewayContext, tenant_id: int | None, source_id: int
    ) -> dict[str, Any]:
        async with ctx.store.db.connection() as conn:
            return source_json(await _REPO.get_source(conn, source_id, tenant_id=tenant_id))

    async def test_source(
        self,
        ctx: GatewayContext,
        tenant_id: int | None,
        caller: Caller,
        source_id: int,
        data: dict[str, Any],
    ) -> dict[str, Any]:
        """Open the source with the passphrase and list one page of it (at most 10 keys)."""
        passphrase = passphrase_of(data)
        async with ctx.store.db.connection() as conn:
            source = await _REPO.get_source(conn, source_id, tenant_id=tenant_id)
        await self._check_passphrase(
            ctx, caller, source, passphrase, f"import-source/{source.id}", source.tenant_id
        )

        def first_page() -> list[Any]:
            bucket = open_source(source, passphrase, timeout_s=10.0, max_attempts=1)
            return next(bucket.pages(page_size=10), [])

        try:
            page = await asyncio.to_thread(first_page)
        except SourceError as exc:
            raise source_failed(exc) from None
        return {
            "ok": True,
            "source": source_json(source),
            "sample": [{"key": e.key, "size": e.size, "etag": e.etag} for e in page],
        }

    # -- imports -----------------------------------------------------------------------------
    async def create_import(
        self, ctx: GatewayContext, tenant_id: int, caller: Caller, data: dict[str, Any]
    ) -> dict[str, Any]:
        dest_bucket, dest_prefix = split_destination(text(data, "destination"))
        redundancy_class = optional_class(ctx, data, "class") if "class" in data else None
        region_lock = names_list(data, "region_lock") if data.get("region_lock") else []
        wanted = names_list(data, "recipients") if data.get("recipients") else []
        source_ref = data.get("source")
        async with ctx.store.db.transaction() as conn:
            if isinstance(source_ref, int) and not isinstance(source_ref, bool):
                source = await _REPO.get_source(conn, source_ref, tenant_id=tenant_id)
            elif isinstance(source_ref, str) and source_ref:
                source = await _REPO.source_by_name(conn, tenant_id, source_ref)
            else:
                raise s3e.InvalidArgument("field 'source' must be a source id or name")
            try:
                await ctx.store.buckets.get(conn, tenant_id, dest_bucket)
            except NoSuchBucket:
                raise s3e.InvalidArgument(
                    f"destination bucket {dest_bucket!r} does not exist: create it first"
                ) from None
            recipients = await self._recipients(ctx, conn, tenant_id, wanted)
            run = await _REPO.create_run(
                conn,
                tenant_id,
                source.id,
                dest_bucket,
                recipients=recipients,
                dest_prefix=dest_prefix,
                redundancy_class=redundancy_class,
                region_lock=region_lock,
            )
            await ctx.store.audit.append(conn, caller.entry("ImportCreate", f"import/{run.id}"))
        return run_json(run)

    async def _recipients(
        self, ctx: GatewayContext, conn: Any, tenant_id: int, wanted: list[str]
    ) -> list[KeyRef]:
        """The newest published version of each wanted key id (default: every key id the
        tenant published)."""
        newest: dict[str, int] = {}
        for key in await _KEYS.published(conn, tenant_id):
            newest[key.key_id] = max(newest.get(key.key_id, 0), key.key_version)
        if not newest:
            raise s3e.InvalidArgument(
                "the tenant has published no public key, and every imported object is"
                " encrypted to the tenant's keys: publish one first (bp key publish)"
            )
        missing = [k for k in wanted if k not in newest]
        if missing:
            raise s3e.InvalidArgument(f"recipient key {missing[0]!r} is not published")
        return [KeyRef(k, newest[k]) for k in (wanted or sorted(newest))]

    async def list_imports(
        self,
        ctx: GatewayContext,
        tenant_id: int | None,
        *,
        before: str | None = None,
        limit: str | None = None,
    ) -> dict[str, Any]:
        before_id = None if before is None else parse_decimal(before, maximum=INT64_MAX)
        if before is not None and before_id is None:
            raise s3e.InvalidArgument("before must be an import id")
        page = page_limit(limit)
        async with ctx.store.db.connection() as conn:
            runs = await _REPO.list_runs(conn, tenant_id=tenant_id, before_id=before_id, limit=page)
            names = {t.id: t.name for t in await ctx.store.tenants.list(conn)}
            out = []
            for run in runs:
                status = await _REPO.status(conn, run.id)
                out.append(
                    {
                        **run_json(run),
                        "tenant": names.get(run.tenant_id),
                        "state": status.color.value,
                        "reason": status.reason,
                    }
                )
        return {
            "imports": out,
            "next_before": out[-1]["id"] if len(out) == page else None,
        }

    async def status(
        self, ctx: GatewayContext, tenant_id: int | None, run_id: int
    ) -> dict[str, Any]:
        async with ctx.store.db.connection() as conn:
            run = await _REPO.get_run(conn, run_id, tenant_id=tenant_id)
            status = await _REPO.status(conn, run.id)
            source = await _REPO.get_source(conn, run.source_id)
            tenant = await ctx.store.tenants.get(conn, run.tenant_id)
        progress = self._progress(run)
        job = await self._job(run.submission_id)
        return {
            **run_json(run),
            "tenant": tenant.name,
            "state": status.color.value,
            "reason": status.reason,
            "source": source_json(source),
            "objects_per_s": round(progress.objects_per_s, 3),
            "bytes_per_s": round(progress.bytes_per_s, 1),
            "eta_s": None if progress.eta_s is None else round(progress.eta_s, 1),
            "job": None if job is None else {"status": job.status, "message": job.message},
        }

    async def errors(
        self,
        ctx: GatewayContext,
        tenant_id: int | None,
        run_id: int,
        *,
        after: str | None = None,
        limit: str | None = None,
    ) -> dict[str, Any]:
        page = page_limit(limit)
        async with ctx.store.db.connection() as conn:
            run = await _REPO.get_run(conn, run_id, tenant_id=tenant_id)
            failed = await _REPO.problem_objects(conn, run.id, after=after or "", limit=page)
        return {
            "id": run.id,
            "errors": [
                {
                    "key": o.key,
                    "error": o.error if o.state == "failed" else o.verify_problem,
                    "attempts": o.attempts,
                    "size": o.size,
                    "verify_problem": o.verify_problem,
                }
                for o in failed
            ],
            "next_after": failed[-1].key if len(failed) == page else None,
        }

    # -- control -----------------------------------------------------------------------------
    async def start(
        self,
        ctx: GatewayContext,
        tenant_id: int | None,
        caller: Caller,
        run_id: int,
        data: dict[str, Any],
    ) -> dict[str, Any]:
        passphrase = passphrase_of(data)
        async with ctx.store.db.connection() as conn:
            run = await _REPO.get_run(conn, run_id, tenant_id=tenant_id)
            source = await _REPO.get_source(conn, run.source_id)
        if run.state != "pending":
            raise s3e.Conflict(
                f"import {run.id} is {run.state}: it was started already (resume it instead)"
            )
        attempt = parse_submission_id(run.submission_id)[1] if run.submission_id else 1
        await self._check_passphrase(
            ctx, caller, source, passphrase, f"import/{run.id}", run.tenant_id
        )
        await self._hold(run.id, passphrase)
        return await self._submit(ctx, caller, run, attempt, "ImportStart")

    async def resume(
        self,
        ctx: GatewayContext,
        tenant_id: int | None,
        caller: Caller,
        run_id: int,
        data: dict[str, Any],
    ) -> dict[str, Any]:
        """Take a failed, cancelled or orphaned run (its driver gone) back to ``pending`` and
        submit the next attempt; failed objects are tried again."""
        run, source = await self._run_and_source(ctx, tenant_id, run_id)
        if run.state == "done":
            raise s3e.Conflict(f"import {run.id} is done: verify it instead")
        job = await self._job(run.submission_id)
        orphaned = run.state in ACTIVE_RUN_STATES and (job is None or job.finished)
        if run.state in ACTIVE_RUN_STATES and not orphaned:
            raise s3e.Conflict(
                f"import {run.id} is {run.state} and its job {run.submission_id} is running:"
                " cancel it first"
            )
        await self._passphrase_for(ctx, caller, run, source, data)
        attempt = self._next_attempt(run)

        async def reset(conn: Any) -> None:
            if run.state == "pending":
                return
            if orphaned:
                await _REPO.set_state(
                    conn,
                    run.id,
                    "failed",
                    error=f"driver {run.submission_id} ended"
                    + (f" ({job.status})" if job else " (unknown to Ray)"),
                )
            await _REPO.set_state(conn, run.id, "pending")
            await _REPO.requeue_failed(conn, run.id)

        return await self._submit(ctx, caller, run, attempt, "ImportResume", before=reset)

    async def verify(
        self,
        ctx: GatewayContext,
        tenant_id: int | None,
        caller: Caller,
        run_id: int,
        data: dict[str, Any],
    ) -> dict[str, Any]:
        """Recount a done run from its rows and submit a driver that checks it again
        (``done -> verifying``)."""
        run, source = await self._run_and_source(ctx, tenant_id, run_id)
        if run.state != "done":
            raise s3e.Conflict(
                f"import {run.id} is {run.state}: only a done import is verified again"
            )
        await self._passphrase_for(ctx, caller, run, source, data)

        async def reset(conn: Any) -> None:
            await _REPO.recount(conn, run.id)
            await _REPO.set_state(conn, run.id, "verifying")

        return await self._submit(
            ctx, caller, run, self._next_attempt(run), "ImportVerify", before=reset
        )

    async def cancel(
        self, ctx: GatewayContext, tenant_id: int | None, caller: Caller, run_id: int
    ) -> dict[str, Any]:
        """Stop the run's Ray job and mark the run cancelled (its lister and transfers stop
        at their next step even if Ray could not be reached)."""
        async with ctx.store.db.connection() as conn:
            run = await _REPO.get_run(conn, run_id, tenant_id=tenant_id)
        stopped: bool | None = None
        if run.submission_id:
            try:
                stopped = await asyncio.to_thread(self.jobs.stop, run.submission_id)
            except JobsUnavailable:
                stopped = None
        async with ctx.store.db.transaction() as conn:
            run = await _REPO.set_state(conn, run.id, "cancelled")
            await ctx.store.audit.append(
                conn,
                caller.entry(
                    "ImportCancel",
                    f"import/{run.id}",
                    f"ok job={run.submission_id} stopped={stopped}",
                ),
            )
        return {**run_json(run), "job_stopped": stopped}

    async def mark_source(
        self, ctx: GatewayContext, tenant_id: int | None, caller: Caller, run_id: int
    ) -> dict[str, Any]:
        async with ctx.store.db.transaction() as conn:
            run = await _REPO.get_run(conn, run_id, tenant_id=tenant_id)
            marked = await _REPO.record_deletion_manifest(conn, run.id)
            await ctx.store.audit.append(
                conn, caller.entry("ImportMarkSource", f"import/{run.id}", f"ok {marked} keys")
            )
        return {"id": run.id, "marked": marked}

    async def deletion_manifest(
        self, ctx: GatewayContext, tenant_id: int | None, run_id: int
    ) -> AsyncIterator[bytes]:
        """The deletion manifest as one JSON document, streamed page by page."""
        async with ctx.store.db.connection() as conn:
            run = await _REPO.get_run(conn, run_id, tenant_id=tenant_id)
            source = await _REPO.get_source(conn, run.source_id)
        if run.source_marked_at is None:
            raise s3e.Conflict(f"import {run.id} has not marked its source (mark-source first)")

        async def document() -> AsyncIterator[bytes]:
            head = {
                "import": run.id,
                "source": {
                    "endpoint": source.endpoint,
                    "bucket": source.bucket,
                    "prefix": source.prefix,
                },
                "marked_at": iso_time(run.source_marked_at),
            }
            yield (json.dumps(head)[:-1] + ', "objects": [').encode()
            after, first = "", True
            while True:
                async with ctx.store.db.connection() as conn:
                    page = await _REPO.deletion_manifest(conn, run.id, after=after)
                for item in page:
                    entry = {"key": item.key, "size": item.size, "etag": item.etag}
                    yield (("" if first else ", ") + json.dumps(entry)).encode()
                    first = False
                if len(page) < 1000:
                    break
                after = page[-1].key
            yield b"]}\n"

        return document()

    # -- helpers -----------------------------------------------------------------------------
    async def _run_and_source(
        self, ctx: GatewayContext, tenant_id: int | None, run_id: int
    ) -> tuple[ImportRun, ImportSource]:
        async with ctx.store.db.connection() as conn:
            run = await _REPO.get_run(conn, run_id, tenant_id=tenant_id)
            return run, await _REPO.get_source(conn, run.source_id)

    @staticmethod
    def _next_attempt(run: ImportRun) -> int:
        return parse_submission_id(run.submission_id)[1] + 1 if run.submission_id else 1

    async def _check_passphrase(
        self,
        ctx: GatewayContext,
        caller: Caller,
        source: ImportSource,
        passphrase: str,
        resource: str,
        tenant_id: int,
    ) -> None:
        """Open the sealed blob in memory (and drop what it holds); audit a wrong passphrase."""
        try:
            await asyncio.to_thread(open_sealed, source.sealed, passphrase)
        except SealOpenFailed:
            audited = Caller(caller.actor, caller.request_id, tenant_id)
            async with ctx.store.db.transaction() as conn:
                await ctx.store.audit.append(
                    conn, audited.entry("ImportWrongPassphrase", resource, "denied")
                )
            raise WrongPassphrase() from None

    async def _passphrase_for(
        self,
        ctx: GatewayContext,
        caller: Caller,
        run: ImportRun,
        source: ImportSource,
        data: dict[str, Any],
    ) -> None:
        """A passphrase sent now is checked and handed over; else the keyholder must still
        hold the run's (``PassphraseRequired`` otherwise)."""
        passphrase = optional_passphrase(data)
        if passphrase is not None:
            await self._check_passphrase(
                ctx, caller, source, passphrase, f"import/{run.id}", run.tenant_id
            )
            await self._hold(run.id, passphrase)
            return
        try:
            held = await keyholder().holds.remote(run.id)
        except ValueError:
            held = False
        if not held:
            raise PassphraseRequired()

    async def _hold(self, run_id: int, passphrase: str) -> None:
        try:
            await keyholder().put.remote(run_id, passphrase)
        except ValueError:
            raise JobApiUnavailable(
                "the cluster's import keyholder is not running (start the gateway with"
                " `bulletproof up`)"
            ) from None

    async def _submit(
        self,
        ctx: GatewayContext,
        caller: Caller,
        run: ImportRun,
        attempt: int,
        action: str,
        *,
        before: Any = None,
    ) -> dict[str, Any]:
        """Record the attempt's submission id (after ``before`` moved the run's state) with
        the audit entry in one transaction, then ask Ray."""
        sid = submission_id(run.id, attempt)
        async with ctx.store.db.transaction() as conn:
            if before is not None:
                await before(conn)
            await _REPO.set_submission(conn, run.id, sid)
            await ctx.store.audit.append(
                conn,
                Caller(caller.actor, caller.request_id, run.tenant_id).entry(
                    action, f"import/{run.id}", f"ok submission={sid}"
                ),
            )
        try:
            await asyncio.to_thread(self.jobs.submit, run.id, attempt, tenant_id=run.tenant_id)
        except JobsUnavailable as exc:
            raise JobApiUnavailable(f"{exc}; the import is recorded: start it again") from None
        return {"id": run.id, "submission_id": sid, "attempt": attempt}

    async def _job(self, sid: str | None) -> ImportJob | None:
        if not sid:
            return None
        try:
            return await asyncio.to_thread(self.jobs.find, sid)
        except JobsUnavailable:
            return None

    def _progress(self, run: ImportRun) -> Progress:
        meter = self._meters.pop(run.id, None) or ProgressMeter()
        self._meters[run.id] = meter
        while len(self._meters) > _METERS:
            self._meters.popitem(last=False)
        with contextlib.suppress(InvalidInput):  # a clock step back: skip the sample
            meter.add(ProgressSample(time.monotonic(), run.objects_done, run.bytes_done))
        progress = meter.progress(objects_total=run.objects_total, bytes_total=run.bytes_total)
        if progress.objects_per_s or progress.bytes_per_s or run.started_at is None:
            return progress
        # Fewer than two samples here: the average since the run started.
        end = run.finished_at or datetime.now(UTC)
        elapsed = (end - run.started_at).total_seconds()
        if elapsed <= 0:
            return progress
        return measure_progress(
            [ProgressSample(0.0, 0, 0), ProgressSample(elapsed, run.objects_done, run.bytes_done)],
            objects_total=run.objects_total,
            bytes_total=run.bytes_total,
            window_s=elapsed,
        )
