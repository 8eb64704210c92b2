"""Runs the periodic workers (repairer, scrubber, placement checker, vacuumer, snapshotter).

The scheduler does not know any worker: the composition root hands it a ``factory`` (name ->
object with ``async run_once() -> dict``) and the schedules, so ``actors`` never imports
``jobs``. Each worker runs in its own task: wait its interval, take the worker's *run lease*
in ``worker_state`` (so two schedulers, or a scheduler and an operator's ``bulletproof worker
run``, never run one worker twice at once; the lease is renewed while it runs and expires if
its holder dies), ``run_once()``, record the report, release.

``Scheduler`` is the Ray actor (detached, named ``scheduler``, restarted forever; the loop
lives in a thread started by the constructor, like the agents). ``run_exclusive`` is the same
lease discipline for a single run, used by the CLI and by ``Worker.run_forever``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from actors.backend_actor import ACTOR_NAMESPACE
from actors.healing import HealingContext, HealingThread
from actors.metrics import worker_run
from core.settings import Settings

__all__ = [
    "SCHEDULER_NAME",
    "PeriodicWork",
    "RunResult",
    "Scheduler",
    "WorkFactory",
    "run_exclusive",
    "start_scheduler",
]

log = logging.getLogger(__name__)

SCHEDULER_NAME = "scheduler"


class PeriodicWork(Protocol):
    @property
    def name(self) -> str: ...

    async def run_once(self) -> dict[str, Any]: ...


WorkFactory = Callable[[str, HealingContext], PeriodicWork]


@dataclass(frozen=True)
class RunResult:
    """``ran`` is False when another holder had the run lease (nothing was done)."""

    name: str
    ran: bool
    report: dict[str, Any] | None = None
    error: str | None = None
    holder: str | None = None
    seconds: float = 0.0


def _owner(prefix: str) -> str:
    return f"{prefix}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def run_exclusive(
    ctx: HealingContext, work: PeriodicWork, *, owner: str | None = None, lease_s: float = 300.0
) -> RunResult:
    """One ``run_once`` under the worker's run lease (renewed while it runs)."""
    owner = owner or _owner("run")
    repo = ctx.worker_state
    async with ctx.store.db.connection() as conn:
        if not await repo.take_run_lease(conn, work.name, owner, lease_s=lease_s):
            status = {s.name: s for s in await repo.all(conn)}.get(work.name)
            return RunResult(work.name, False, holder=status.lease_owner if status else None)

    async def renew() -> None:
        while True:
            await asyncio.sleep(lease_s / 3)
            with contextlib.suppress(Exception):
                async with ctx.store.db.connection() as conn:
                    await repo.renew_run_lease(conn, work.name, owner, lease_s=lease_s)

    renewer = asyncio.ensure_future(renew())
    start = time.monotonic()
    report: dict[str, Any] | None = None
    error: str | None = None
    try:
        report = await work.run_once()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.exception("worker %s failed", work.name)
    finally:
        renewer.cancel()
        with contextlib.suppress(Exception):
            async with ctx.store.db.connection() as conn:
                await repo.finish_run(conn, work.name, owner, report=report, error=error)
    worker_run(work.name, report, error, time.monotonic() - start)
    return RunResult(work.name, True, report, error, owner, time.monotonic() - start)


class Scheduler(HealingThread):
    """Ray actor: each worker of ``schedules`` (name -> interval in seconds) runs periodically."""

    def __init__(
        self,
        settings: Settings,
        schedules: Mapping[str, float],
        factory: WorkFactory,
        *,
        first_delay_s: float = 5.0,
    ) -> None:
        self._schedules = dict(schedules)
        self._factory = factory
        self._first_delay = first_delay_s
        self._owner = _owner(SCHEDULER_NAME)
        self._results: dict[str, dict[str, Any]] = {}
        super().__init__(settings, "scheduler")

    async def serve(self, ctx: HealingContext, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.ensure_future(self._every(ctx, name, interval))
            for name, interval in self._schedules.items()
            if interval > 0
        ]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _every(self, ctx: HealingContext, name: str, interval: float) -> None:
        assert self._stop is not None
        work = self._factory(name, ctx)
        wait = min(self._first_delay, interval)
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=wait)
            if self._stop.is_set():
                return
            try:
                result = await run_exclusive(ctx, work, owner=self._owner)
            except Exception as exc:  # the database may be down: try at the next interval
                result = RunResult(name, False, error=f"{type(exc).__name__}: {exc}")
            self._results[name] = {
                "ran": result.ran,
                "report": result.report,
                "error": result.error,
                "seconds": round(result.seconds, 3),
                "at": time.time(),
            }
            wait = interval

    def status(self) -> dict[str, Any]:
        return {"owner": self._owner, "schedules": self._schedules, "last": self._results}


def start_scheduler(
    settings: Settings,
    schedules: Mapping[str, float],
    factory: WorkFactory,
    *,
    name: str = SCHEDULER_NAME,
) -> Any:
    """Start (or find) the named, detached scheduler actor."""
    import ray

    return (
        ray.remote(Scheduler)
        .options(  # type: ignore[attr-defined]
            name=name,
            namespace=ACTOR_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,  # periodic work must go on: Ray restarts it, forever
            max_task_retries=-1,  # status() is read-only
            max_concurrency=4,
            num_cpus=0,
        )
        .remote(settings, dict(schedules), factory)
    )
