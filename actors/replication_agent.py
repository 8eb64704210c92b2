"""Replication agents: lease data jobs from the queue and run them (``ReplicaHealer``).

``AgentLoop`` is the agent, independent of how it is launched:

- leases up to ``concurrency`` jobs of the data kinds at a time (``FOR UPDATE SKIP LOCKED``:
  any number of agents, on any machines, share the queue without coordination);
- renews each job's lease every third of ``lease_s`` while the job runs, and cancels the job
  if a renewal finds the lease taken over;
- completes the job inside the repair's own commit transaction (fenced on the lease, see
  ``schema/jobs.py``), so a job that two agents ran (the first one stalled past its lease)
  takes effect once;
- on failure: ``HealDeferred`` gives the job back for ``agent_defer_s`` without spending an
  attempt (its backend is down: it is not failing, it is waiting), and so does a
  ``BackendUnavailable`` met while copying (a source or the target did not answer within the
  backend timeout: the same wait, found later); ``HealImpossible`` dead-letters it at once;
  anything else is a failed attempt, retried with exponential backoff and jitter,
  dead-lettered after ``max_attempts``. (Counting an unreachable backend as a failure made a
  busy backend's replicate jobs back off for minutes and die after ``max_attempts``, leaving
  replicas ``pending`` until the repairer's dead-job cool-down: an import stayed YELLOW.)
- survives PostgreSQL and Redis outages: every round catches ``MetadataUnavailable`` and
  waits (the pool reconnects by itself); a job whose completion could not be written is
  simply leased again after its lease expires (idempotent).

Launchers: ``ReplicationAgent`` (a Ray actor: detached, named ``agent:<n>``, restarted by Ray
forever; the loop runs in a thread started by the constructor, so a restart resumes work with
no outside help) and ``bulletproof agent`` (the same loop in a plain process, reaching
backends with its own clients, see ``actors/backend_pool.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from actors.backend_actor import ACTOR_NAMESPACE
from actors.healing import HealingContext, HealingThread
from actors.metrics import agent_job_finished
from actors.replica_repair import (
    HealDeferred,
    HealImpossible,
    HealOutcome,
    LeaseLost,
    ReplicaHealer,
    request_for,
)
from core.errors import BackendUnavailable, MetadataUnavailable
from core.request_context import bind_request_id
from core.settings import Settings
from schema.jobs import DATA_KINDS, Job

__all__ = [
    "AgentLoop",
    "AgentStats",
    "ReplicationAgent",
    "agent_actor_name",
    "start_agents",
    "stop_agents",
]

log = logging.getLogger(__name__)


_REAP_EVERY_S = 5.0


def agent_actor_name(index: int | str) -> str:
    return f"agent:{index}"


@dataclass
class AgentStats:
    leased: int = 0
    done: int = 0
    noop: int = 0
    failed: int = 0
    deferred: int = 0
    dead: int = 0
    lost: int = 0
    bytes: int = 0
    parts: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # time spent per repair stage
    last_error: str | None = None

    def record(self, outcome: HealOutcome) -> None:
        self.done += 1
        self.noop += outcome.action == "noop"
        self.bytes += outcome.bytes
        self.parts += outcome.parts
        self.actions[outcome.action] = self.actions.get(outcome.action, 0) + 1
        for stage, seconds in outcome.seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


class AgentLoop:
    def __init__(
        self,
        ctx: HealingContext,
        name: str,
        *,
        kinds: Sequence[str] = DATA_KINDS,
        concurrency: int | None = None,
        lease_s: float | None = None,
        poll_s: float | None = None,
        defer_s: float | None = None,
    ) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.name = name
        # Unique per incarnation: a restarted agent never mistakes an old lease for its own.
        self.owner = f"{name}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.kinds = tuple(kinds)
        self.concurrency = max(1, concurrency or s.agent_concurrency)
        self.lease_s = lease_s or s.agent_lease_s
        self.poll_s = poll_s or s.agent_poll_s
        self.defer_s = defer_s if defer_s is not None else s.agent_defer_s
        self.healer = ReplicaHealer(ctx)
        self.stats = AgentStats()
        self._running: set[asyncio.Task[None]] = set()
        self._reaped_at = 0.0
        self.current: dict[int, Job] = {}

    # -- the contract -----------------------------------------------------------------------
    async def run_once(self, *, max_jobs: int | None = None) -> AgentStats:
        """Run ready jobs until none is left (or ``max_jobs`` were leased); for tests and
        ``bulletproof agent --once``."""
        leased = 0
        while max_jobs is None or leased < max_jobs:
            room = self.concurrency - len(self._running)
            if max_jobs is not None:
                room = min(room, max_jobs - leased)
            jobs = await self._lease(room) if room > 0 else []
            leased += len(jobs)
            for job in jobs:
                self._start(job)
            if not jobs:
                if not self._running:
                    break
                await asyncio.wait(list(self._running), return_when=asyncio.FIRST_COMPLETED)
        if self._running:
            await asyncio.wait(list(self._running))
        return self.stats

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Lease and run jobs until ``stop`` is set; never raises for an outage."""
        stop = stop or asyncio.Event()
        health = asyncio.ensure_future(self._health_loop(stop))
        idle = self.poll_s
        try:
            while not stop.is_set():
                try:
                    room = self.concurrency - len(self._running)
                    # Lease in batches (half the slots, or whenever idle): one lease round
                    # trip per job would be most of a small repair's database work.
                    batch = not self._running or room >= max(1, self.concurrency // 2)
                    jobs = await self._lease(room) if room > 0 and batch else []
                except MetadataUnavailable as exc:
                    self.stats.last_error = str(exc)
                    log.warning("agent %s: metadata unavailable, retrying: %s", self.name, exc)
                    jobs = []
                    idle = min(idle * 2, 10.0)
                except Exception as exc:  # keep the agent alive whatever one round does
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("agent %s: lease round failed", self.name)
                    jobs = []
                    idle = min(idle * 2, 10.0)
                else:
                    if jobs:
                        idle = self.poll_s
                for job in jobs:
                    self._start(job)
                if jobs and len(jobs) == room:
                    continue  # every slot filled: the queue may hold more
                waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
                if self._running:
                    waiters += list(self._running)
                timeout = idle * random.uniform(0.8, 1.2) if not jobs else None
                done, _ = await asyncio.wait(
                    waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waiters[0].cancel()
        finally:
            health.cancel()
            for task in list(self._running):
                task.cancel()
            if self._running:
                await asyncio.wait(list(self._running))

    # -- one job ----------------------------------------------------------------------------
    async def _lease(self, room: int) -> list[Job]:
        # Dead-lettering expired last attempts is housekeeping: every few seconds is enough.
        reap = time.monotonic() - self._reaped_at > _REAP_EVERY_S
        async with self.ctx.store.db.connection() as conn:
            jobs = await self.ctx.queue.lease(
                conn, self.owner, kinds=self.kinds, lease_s=self.lease_s, limit=room, reap=reap
            )
        if reap:
            self._reaped_at = time.monotonic()
        self.stats.leased += len(jobs)
        return jobs

    def _start(self, job: Job) -> None:
        task = asyncio.ensure_future(self._run(job))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, job: Job) -> None:
        bind_request_id(str(job.payload.get("request_id") or f"job-{job.id}"))
        self.current[job.id] = job
        work = asyncio.ensure_future(self._heal(job))
        beat = asyncio.ensure_future(self._heartbeat(job, work))
        started, result = time.monotonic(), "lost"
        try:
            outcome = await work
            result = "done"
            self.stats.record(outcome)
            log.info(
                "agent %s: job %d (%s) %s %s",
                self.name,
                job.id,
                job.kind,
                outcome.action,
                outcome.detail,
            )
        except asyncio.CancelledError:
            if beat.done() and beat.result() is False:
                self.stats.lost += 1  # the heartbeat found the lease taken over
                log.warning("agent %s: lost the lease of job %d; abandoned", self.name, job.id)
            else:
                raise
        except LeaseLost as exc:
            self.stats.lost += 1
            log.warning("agent %s: %s", self.name, exc)
        except (HealDeferred, BackendUnavailable) as exc:
            result = "deferred"
            self.stats.deferred += 1
            await self._settle(job, "defer", str(exc))
        except HealImpossible as exc:
            result = "dead"
            self.stats.dead += 1
            self.stats.last_error = str(exc)
            await self._settle(job, "dead", str(exc))
        except Exception as exc:
            result = "failed"
            self.stats.failed += 1
            error = f"{type(exc).__name__}: {exc}"
            self.stats.last_error = error
            log.warning("agent %s: job %d (%s) failed: %s", self.name, job.id, job.kind, error)
            await self._settle(job, "fail", error)
        finally:
            beat.cancel()
            self.current.pop(job.id, None)
            agent_job_finished(job.kind, result, time.monotonic() - started)

    async def _heal(self, job: Job) -> HealOutcome:
        request = request_for(job)

        async def finish(conn: Any) -> bool:
            return await self.ctx.queue.complete(conn, job, self.owner)

        return await self.healer.heal(request, finish)

    async def _heartbeat(self, job: Job, work: asyncio.Future[HealOutcome]) -> bool:
        """Renew the lease while ``work`` runs; cancel it and return False if it is lost."""
        while not work.done():
            await asyncio.sleep(self.lease_s / 3)
            try:
                async with self.ctx.store.db.connection() as conn:
                    held = await self.ctx.queue.heartbeat(
                        conn, job, self.owner, lease_s=self.lease_s
                    )
            except Exception as exc:  # a missed beat is fine; the lease has slack
                log.warning("agent %s: heartbeat of job %d failed: %s", self.name, job.id, exc)
                continue
            if not held:
                work.cancel()
                return False
        return True

    async def _settle(self, job: Job, how: str, error: str) -> None:
        """Write the job's new state; if that fails the lease expires and it runs again."""
        ctx = self.ctx
        try:
            async with ctx.store.db.connection() as conn:
                if how == "defer":
                    await ctx.queue.defer(conn, job, self.owner, delay_s=self.defer_s, reason=error)
                else:
                    status = await ctx.queue.fail(
                        conn, job, self.owner, error, backoff=ctx.backoff, permanent=how == "dead"
                    )
                    if status == "dead":
                        log.error("job %d (%s) dead-lettered: %s", job.id, job.kind, error)
        except Exception:
            log.exception("agent %s: could not record the outcome of job %d", self.name, job.id)

    async def _health_loop(self, stop: asyncio.Event) -> None:
        interval = max(1.0, self.ctx.settings.health_interval_s)
        while not stop.is_set():
            with contextlib.suppress(Exception):
                await self.ctx.registry.ping_all()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "running": sorted(self.current),
            **asdict(self.stats),
        }


class ReplicationAgent(HealingThread):
    """Ray actor around ``AgentLoop``; the loop runs in its own thread and event loop."""

    def __init__(self, settings: Settings, name: str, options: dict[str, Any] | None = None):
        self._name = name
        self._options = options or {}
        self._loop: AgentLoop | None = None
        self._started = time.time()
        super().__init__(settings, f"agent-{name}")

    async def serve(self, ctx: HealingContext, stop: asyncio.Event) -> None:
        self._loop = AgentLoop(ctx, self._name, **self._options)
        await self._loop.run_forever(stop)

    def stats(self) -> dict[str, Any]:
        if self._loop is None:
            return {"name": self._name, "ready": False, "error": self._error}
        return {"ready": True, **self._loop.snapshot()}

    def owner(self) -> str | None:
        return None if self._loop is None else self._loop.owner

    def pid(self) -> int:
        """The worker process hosting this incarnation (fault tests kill it)."""
        return os.getpid()

    def where(self) -> dict[str, Any]:
        """This incarnation's process and Ray node (restarts may land on another node)."""
        import ray

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}


def start_agents(
    settings: Settings,
    count: int,
    *,
    prefix: str = "",
    options: dict[str, Any] | None = None,
    resources: dict[str, float] | None = None,
) -> list[Any]:
    """Start (or find) ``count`` named, detached agents ``agent:<prefix><i>``. ``options`` go
    to ``AgentLoop``; ``resources`` are Ray custom resources that pin agents to node types
    (e.g. the backend I/O nodes of ``ray-cluster.yaml``)."""
    import ray

    remote_cls = ray.remote(ReplicationAgent)
    handles = []
    for index in range(count):
        name = agent_actor_name(f"{prefix}{index}")
        handles.append(
            remote_cls.options(  # type: ignore[attr-defined]
                name=name,
                namespace=ACTOR_NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,  # an agent is always wanted: Ray restarts it, forever
                max_task_retries=-1,  # stats/owner calls are read-only: retry across restarts
                max_concurrency=4,  # stats may be asked while stop() waits for the thread
                num_cpus=0,  # I/O bound; the CPU it needs is hashing, in short bursts
                resources=resources or {},
            ).remote(settings, name, options)
        )
    return handles


def stop_agents(handles: Sequence[Any], *, graceful_s: float = 10.0) -> None:
    """Stop agents (finish nothing new, abandon running jobs to their leases) and kill them."""
    import ray

    with contextlib.suppress(Exception):
        ray.get([h.stop.remote() for h in handles], timeout=graceful_s)
    for handle in handles:
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
