"""Bringing one replica of one object version back: the work behind every data job.

One request names a version and, usually, one backend whose replica is wrong (pending,
corrupt, missing, or on a backend the policy no longer allows). ``ReplicaHealer.heal`` then:

1. reloads the version and its replica rows (the job payload is only a pointer: the rows are
   the truth, and they may have changed since the job was queued);
2. decides where the replica goes: **in place**, onto the same backend under the locator the
   replica row already records (so running the same repair twice rewrites the same object,
   never a second one), if that backend is active and the policy still allows it there;
   otherwise **onto a new backend** chosen by ``place(..., already_placed=<the other holders>)``,
   which only returns targets that keep the class and the bucket's region lock valid (or
   raises: a repair never weakens placement);
3. copies every part it needs from a *verified* source: each source replica's bytes are
   checked against the recorded length and SHA-256 before they are written anywhere, and a
   source that fails is marked ``corrupt``/``missing`` with its own repair queued, and the next
   source is tried;
4. verifies each write (HEAD for the size, or a re-read with its SHA-256: ``agent_verify``);
5. commits in ONE transaction: the version row locked, the rows set ``ok`` (in place) or the
   new rows inserted and the old holder's rows deleted with their locators into ``garbage``,
   and the caller's ``finish`` (the fenced job completion). If ``finish`` reports the lease
   lost, everything rolls back (``LeaseLost``): the new holder of the lease applies it instead;
6. invalidates the Redis entry of the object after the commit, so readers see the new state.

Anything written to a *new* locator that does not end up referenced by a committed row (a
failure, a lost lease, a version deleted meanwhile) is recorded in ``garbage`` at once; if even
that fails, the vacuumer's backend listing finds it as an orphan.

Erasure-coded versions: a backend holds one shard index of every part. The same plan applies
(in place under the row's locator, or onto a new backend that takes that shard index), but the
bytes are not copied: each shard is recomputed from ``k`` verified others and checked against
its recorded SHA-256 (``VerifiedReader.rebuild_shards``), which needs the backend actors, so
only agents in Ray run those jobs (others defer them).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from actors.backend_client import new_locator
from actors.backend_transport import Fetched
from actors.healing import HealingContext
from actors.registry import BackendHandle
from actors.verified_reader import is_erasure_coded
from core.compliance import may_hold
from core.errors import (
    BackendNotFound,
    BackendUnavailable,
    InsufficientCapacity,
    IntegrityError,
    PolicyViolation,
)
from core.placement import BackendView, PlacementConstraints, place
from core.policy import RedundancyClass
from schema.jobs import BLOCKED_PREFIX, Job, JobKind
from schema.records import ObjectVersion, Replica

__all__ = [
    "Finish",
    "HealBlocked",
    "HealDeferred",
    "HealImpossible",
    "HealOutcome",
    "HealRequest",
    "LeaseLost",
    "ReplicaHealer",
    "request_for",
]

log = logging.getLogger(__name__)

Finish = Callable[[asyncpg.Connection], Awaitable[bool]]
_THREAD_HASH_MIN = 256 * 1024


class LeaseLost(Exception):
    """The job's lease was taken over; this run's effect was rolled back."""


class HealDeferred(Exception):
    """The work cannot start now (its backend is down, no capacity): retry later without
    spending an attempt."""


class HealBlocked(HealDeferred):
    """No backend the policy allows can take the piece (a drained backend's region-locked
    object with no other compliant backend): the job waits, deferred with the rule that
    blocks it (``schema.jobs.BLOCKED_PREFIX``), and is never moved anywhere the policy
    forbids. Adding a compliant backend unblocks it at its next try."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        super().__init__(f"{BLOCKED_PREFIX}{rule}")


class HealImpossible(Exception):
    """The work can never succeed as queued (dead-letter it at once)."""


class _Conflict(Exception):
    """Another repair placed this version on the chosen backend first."""


@dataclass(frozen=True)
class HealRequest:
    """``mode``: ``fix`` (make the replica on ``backend_id`` whole, in place when allowed),
    ``move`` (relocate the replica on ``backend_id``), ``add`` (one more replica)."""

    version_pk: int
    backend_id: int | None
    mode: str
    reason: str


@dataclass(frozen=True)
class HealOutcome:
    """``action``: ``noop`` | ``rewritten`` | ``moved`` | ``added`` | ``dropped``."""

    action: str
    version_pk: int
    target_backend_id: int | None = None
    parts: int = 0
    bytes: int = 0
    detail: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # plan / copy / commit


def request_for(job: Job) -> HealRequest:
    """The heal a data job asks for; ``HealImpossible`` for a malformed payload."""
    p = job.payload
    try:
        version_pk = int(p["version_pk"])
        if job.kind == JobKind.REPLICATE:
            return HealRequest(version_pk, int(p["target_backend_id"]), "fix", "pending")
        if job.kind == JobKind.REPAIR:
            return HealRequest(
                version_pk, int(p["backend_id"]), "fix", str(p.get("reason", "repair"))
            )
        if job.kind == JobKind.MOVE:
            return HealRequest(version_pk, int(p["backend_id"]), "move", str(p.get("reason", "")))
        if job.kind == JobKind.ADD_REPLICA:
            return HealRequest(version_pk, None, "add", str(p.get("reason", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise HealImpossible(f"malformed {job.kind} payload: {exc!r}") from exc
    raise HealImpossible(f"not a data job kind: {job.kind}")


def _healthy_view(handle: BackendHandle) -> BackendView:
    """The backend as placement would see it if it were up: policy questions only."""
    return replace(handle.view(), healthy=True)


def _digest(data: Any) -> bytes:
    return hashlib.sha256(data).digest()


async def _sha256(view: memoryview) -> bytes:
    if len(view) >= _THREAD_HASH_MIN:
        return await asyncio.to_thread(_digest, view)
    return _digest(view)


@dataclass
class _Plan:
    target: int | None  # backend that ends up holding the replica (None: just drop)
    in_place: bool
    drop: int | None  # backend whose rows are deleted (moved off)
    parts: dict[int, Replica]  # part -> the row whose bytes are wanted (template)
    locators: dict[int, str]  # part -> locator on target


class ReplicaHealer:
    def __init__(self, ctx: HealingContext, *, part_concurrency: int = 4) -> None:
        self.ctx = ctx
        self._width = part_concurrency
        self._parts = asyncio.Semaphore(part_concurrency * 4)

    async def heal(self, request: HealRequest, finish: Finish) -> HealOutcome:
        ctx = self.ctx
        started = time.perf_counter()
        async with ctx.store.db.connection() as conn:
            if request.mode == "fix" and request.backend_id is not None:
                state = await ctx.replicas.replica_state(
                    conn, request.version_pk, request.backend_id
                )
                if state is None:
                    return await self._finish_noop(request, finish, "version no longer stored")
                parts, rows, bad = state
                if bad == 0 and rows == max(parts, 1):
                    return await self._finish_noop(request, finish, "replica already ok")
            version = await ctx.store.versions.get_by_pk(conn, request.version_pk)
        if version is None or version.is_delete_marker:
            return await self._finish_noop(request, finish, "version no longer stored")
        policy = await ctx.current_policy()
        rc = policy.classes.get(version.redundancy_class)
        if rc is None:
            raise HealImpossible(
                f"class {version.redundancy_class} is not defined by the policy in force"
            )
        constraints = await ctx.constraints(version)
        handles = {h.id: h for h in await ctx.registry.current()}
        plan = self._plan(request, version, rc, constraints, handles)
        if isinstance(plan, str):
            return await self._finish_noop(request, finish, plan)
        outcome = await self._execute(request, version, plan, handles, finish, started)
        return outcome

    # -- deciding ---------------------------------------------------------------------------
    def _plan(
        self,
        request: HealRequest,
        version: ObjectVersion,
        rc: RedundancyClass,
        constraints: PlacementConstraints,
        handles: dict[int, BackendHandle],
    ) -> _Plan | str:
        """What to do, or a string saying why there is nothing to do."""
        holders: dict[int, dict[int, Replica]] = {}
        for r in version.replicas:
            if r.status != "deleting":
                holders.setdefault(r.backend_id, {})[r.part_number] = r
        coded = is_erasure_coded(version)
        bad_backend = request.backend_id
        if request.mode == "add":
            if len(holders) >= rc.width:
                return f"already on {len(holders)} backends, class {rc.name} needs {rc.width}"
            if coded:
                raise HealImpossible("an erasure-coded version has no shard rows to add from")
            template = {r.part_number: r for r in version.replicas}
            return self._new_holder(version, rc, constraints, handles, holders, None, template)
        assert bad_backend is not None
        rows = holders.get(bad_backend)
        if not rows:
            return "no replica on that backend any more"
        # What the backend's piece must be: its own rows (a shard index is per backend), or
        # for a replicated part any row (every replica of a part is the same bytes).
        template = dict(rows)
        if not coded:
            for r in version.replicas:
                template.setdefault(r.part_number, r)
        others = {b: h for b, h in holders.items() if b != bad_backend}
        handle = handles.get(bad_backend)
        if request.mode == "fix":
            bad = {p: r for p, r in rows.items() if r.status != "ok"}
            if not bad and len(rows) == len(template):
                return "replica already ok"
            if coded and not self.ctx.registry.transport.in_ray:
                raise HealDeferred("erasure-coded shards are rebuilt by agents running in Ray")
            if handle is not None and self._allowed(rc, constraints, handle, others, handles):
                if not handle.healthy:
                    raise HealDeferred(f"backend {handle.name} is unavailable")
                return _Plan(
                    target=bad_backend,
                    in_place=True,
                    drop=None,
                    parts=bad,
                    locators={p: r.locator for p, r in bad.items()},
                )
        return self._new_holder(version, rc, constraints, handles, others, bad_backend, template)

    def _allowed(
        self,
        rc: RedundancyClass,
        constraints: PlacementConstraints,
        handle: BackendHandle,
        others: dict[int, dict[int, Replica]],
        handles: dict[int, BackendHandle],
    ) -> bool:
        other_views = [_healthy_view(handles[b]) for b in others if b in handles]
        candidates = [_healthy_view(h) for h in handles.values()]
        return may_hold(rc, constraints, _healthy_view(handle), other_views, candidates)

    def _new_holder(
        self,
        version: ObjectVersion,
        rc: RedundancyClass,
        constraints: PlacementConstraints,
        handles: dict[int, BackendHandle],
        keep: dict[int, dict[int, Replica]],
        drop: int | None,
        template: dict[int, Replica],
    ) -> _Plan:
        """A new backend for the replica, valid beside ``keep`` (never ``drop`` itself)."""
        fixed = [handles[b].view() for b in keep if b in handles]
        pool = [h.view() for h in handles.values() if h.id not in keep and h.id != drop]
        try:
            placement = place(rc, pool, constraints, object_size=version.size, already_placed=fixed)
        except InsufficientCapacity as exc:
            raise HealDeferred(f"no healthy backend can take the replica now: {exc}") from exc
        except PolicyViolation as exc:
            if drop is not None and drop in handles and handles[drop].record.state != "active":
                raise HealBlocked(str(exc)) from exc  # a drain waits; it never breaks policy
            raise
        by_name = {h.name: h.id for h in handles.values()}
        targets = [by_name[name] for name in placement.targets]
        if not targets:
            if drop is None:
                raise HealImpossible("placement found nothing to add")
            return _Plan(target=None, in_place=False, drop=drop, parts={}, locators={})
        slot = 0
        shard = next(iter(template.values())).shard_index
        if shard >= 0:
            if not self.ctx.registry.transport.in_ray:
                raise HealDeferred("erasure-coded shards are rebuilt by agents running in Ray")
            # An erasure repair assigns the missing shard numbers, ascending, to the targets.
            held = {r.shard_index for rows in keep.values() for r in rows.values()}
            missing = sorted(set(range(rc.width)) - held)
            slot = missing.index(shard) if shard in missing else 0
        return _Plan(
            target=targets[slot],
            in_place=False,
            drop=drop,
            parts=dict(template),
            locators={p: new_locator() for p in template},
        )

    # -- doing --------------------------------------------------------------------------------
    async def _execute(
        self,
        request: HealRequest,
        version: ObjectVersion,
        plan: _Plan,
        handles: dict[int, BackendHandle],
        finish: Finish,
        started: float,
    ) -> HealOutcome:
        written: list[str] = []
        committed = False
        try:
            copied = 0
            planned = time.perf_counter()
            if plan.target is not None:
                copied = await self._copy_parts(version, plan, handles, written)
            copied_at = time.perf_counter()
            outcome = await self._commit(request, version, plan, copied, finish)
            committed = True
            outcome.seconds.update(
                plan=planned - started,
                copy=copied_at - planned,
                commit=time.perf_counter() - copied_at,
            )
            return outcome
        finally:
            if not plan.in_place and written and not committed:
                await self._discard(plan.target, written, "failed repair")

    async def _copy_parts(
        self,
        version: ObjectVersion,
        plan: _Plan,
        handles: dict[int, BackendHandle],
        written: list[str],
    ) -> int:
        """Copy every planned part, ``part_concurrency`` at a time: a few workers pull part
        numbers, so a 5 GiB object is not 640 coroutines queued on one semaphore, and at most
        that many parts are in memory."""
        todo = sorted(plan.parts)
        copied = 0

        async def worker() -> None:
            nonlocal copied
            while todo:
                part = todo.pop(0)
                copied += await self._copy_part(version, part, plan, handles, written)

        tasks = [asyncio.ensure_future(worker()) for _ in range(min(self._width, len(todo)))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        return copied

    async def _copy_part(
        self,
        version: ObjectVersion,
        part: int,
        plan: _Plan,
        handles: dict[int, BackendHandle],
        written: list[str],
    ) -> int:
        assert plan.target is not None
        expected = plan.parts[part]
        async with self._parts:  # across jobs: this agent's parts in flight
            fetched: Fetched | bytes
            if expected.shard_index >= 0:
                fetched = await self._rebuilt_shard(version, part, expected)
            else:
                fetched = await self._verified_source(version, part, expected, plan.target, handles)
            locator = plan.locators[part]
            if not plan.in_place:
                written.append(locator)
            await self.ctx.registry.store(plan.target, locator, fetched)
            del fetched
            await self._verify_write(plan.target, locator, expected)
        return expected.size

    async def _verified_source(
        self,
        version: ObjectVersion,
        part: int,
        expected: Replica,
        target: int,
        handles: dict[int, BackendHandle],
    ) -> Fetched:
        """The part's bytes from the first ``ok`` replica that proves intact."""
        sources = [
            r
            for r in version.replicas
            if r.part_number == part
            and r.status == "ok"
            and r.backend_id in handles
            and not (r.backend_id == target and r.locator == expected.locator)
        ]
        # Healthy first, the target itself last; among sources of similar RTT (within 1.5x +
        # 10 ms of the best) a random order, so a repair storm spreads its reads over every
        # surviving backend instead of queueing them all on the fastest one.
        rtts = [handles[r.backend_id].rtt_ms for r in sources if handles[r.backend_id].healthy]
        near = min(rtts) * 1.5 + 10.0 if rtts else 0.0
        sources.sort(
            key=lambda r: (
                not handles[r.backend_id].healthy,
                r.backend_id == target,
                handles[r.backend_id].rtt_ms > near,
                handles[r.backend_id].rtt_ms
                if handles[r.backend_id].rtt_ms > near
                else random.random(),
            )
        )
        unavailable: list[str] = []
        for source in sources:
            if source.sha256 != expected.sha256 or source.size != expected.size:
                log.error("replica %d disagrees with its part's checksum; skipped", source.id)
                continue
            try:
                fetched = await self.ctx.registry.fetch(source.backend_id, source.locator)
            except BackendNotFound:
                await self._report(version, source, "missing")
                continue
            except BackendUnavailable as exc:
                unavailable.append(f"{handles[source.backend_id].name}: {exc}")
                continue
            if len(fetched.data) != source.size or await _sha256(fetched.data) != source.sha256:
                log.warning(
                    "source replica %d (version %d part %d on %s) failed verification",
                    source.id,
                    version.id,
                    part,
                    handles[source.backend_id].name,
                )
                await self._report(version, source, "corrupt")
                continue
            return fetched
        if unavailable:
            raise BackendUnavailable(
                f"no verified source for part {part}; unreachable: {'; '.join(unavailable)}"
            )
        raise IntegrityError(f"no intact source replica of part {part} of version {version.id}")

    async def _rebuilt_shard(self, version: ObjectVersion, part: int, expected: Replica) -> bytes:
        """Shard ``expected.shard_index`` of ``part``, recomputed from ``k`` verified other
        shards and checked against its recorded SHA-256 (``VerifiedReader.rebuild_shards``)."""
        shards = await self.ctx.reader.rebuild_shards(version, part, [expected.shard_index])
        data = shards[expected.shard_index]
        if len(data) != expected.size:
            raise IntegrityError(f"rebuilt shard of part {part} has the wrong size")
        return data

    async def _verify_write(self, backend_id: int, locator: str, expected: Replica) -> None:
        if self.ctx.settings.agent_verify == "read":
            back = await self.ctx.registry.fetch(backend_id, locator)
            ok = len(back.data) == expected.size and await _sha256(back.data) == expected.sha256
        else:
            ok = await self.ctx.registry.head(backend_id, locator) == expected.size
        if not ok:
            raise IntegrityError(f"write of {locator} to backend {backend_id} did not verify")

    async def _commit(
        self,
        request: HealRequest,
        version: ObjectVersion,
        plan: _Plan,
        copied: int,
        finish: Finish,
    ) -> HealOutcome:
        ctx = self.ctx
        leftovers: list[str] = []
        async with ctx.store.db.transaction() as conn:
            if not await ctx.replicas.lock_version(conn, version.id):
                # Dropped meanwhile: what we wrote is garbage, in place too (the drop may have
                # collected that locator before our write recreated it).
                if plan.target is not None and plan.locators:
                    await ctx.store.garbage.add(
                        conn, [(plan.target, loc) for loc in plan.locators.values()], "repair"
                    )
                if not await finish(conn):
                    raise LeaseLost(f"lease lost while finishing version {version.id}")
                return HealOutcome("noop", version.id, detail="version dropped during repair")
            if plan.in_place:
                assert plan.target is not None
                locators = list(plan.locators.values())
                found = await ctx.replicas.mark_ok(conn, version.id, plan.target, locators)
                leftovers = [loc for loc in locators if loc not in found]
                if leftovers:  # moved or dropped meanwhile: what we wrote is garbage
                    await ctx.store.garbage.add(
                        conn, [(plan.target, loc) for loc in leftovers], "repair raced"
                    )
                action = "rewritten"
            else:
                if plan.target is not None:
                    if await ctx.replicas.holds(conn, version.id, plan.target):
                        raise _Conflict(f"backend {plan.target} already holds version {version.id}")
                    await ctx.replicas.add_verified(
                        conn,
                        version.id,
                        plan.target,
                        [
                            (p, r.shard_index, plan.locators[p], r.size, r.sha256)
                            for p, r in sorted(plan.parts.items())
                        ],
                    )
                if plan.drop is not None:
                    await ctx.replicas.drop_holder(
                        conn, version.id, plan.drop, reason=f"moved: {request.reason}"[:200]
                    )
                action = (
                    "added"
                    if plan.drop is None
                    else "moved"
                    if plan.target is not None
                    else "dropped"
                )
            if not await finish(conn):
                raise LeaseLost(f"lease lost while finishing version {version.id}")
        await ctx.invalidate(version.bucket_id, version.key)
        return HealOutcome(
            action,
            version.id,
            target_backend_id=plan.target,
            parts=len(plan.parts),
            bytes=copied,
        )

    # -- helpers --------------------------------------------------------------------------------
    async def _finish_noop(self, request: HealRequest, finish: Finish, why: str) -> HealOutcome:
        async with self.ctx.store.db.transaction() as conn:
            if not await finish(conn):
                raise LeaseLost(f"lease lost on version {request.version_pk}")
        return HealOutcome("noop", request.version_pk, detail=why)

    async def _report(self, version: ObjectVersion, replica: Replica, status: str) -> None:
        try:
            await self.ctx.report_bad_replica(version, replica, status)
        except Exception:  # the scrubber will find it again
            log.exception("could not record %s replica %d", status, replica.id)

    async def _discard(self, backend_id: int | None, locators: list[str], reason: str) -> None:
        if backend_id is None or not locators:
            return
        try:
            async with self.ctx.store.db.transaction() as conn:
                await self.ctx.store.garbage.add(
                    conn, [(backend_id, loc) for loc in locators], reason
                )
        except Exception:  # the vacuumer's listing finds these orphans later
            log.exception("could not record %d objects of a failed repair", len(locators))
