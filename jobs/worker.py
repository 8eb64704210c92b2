"""The one worker contract (Swift's ``Daemon``, Garage's ``Worker``): ``run_once()`` and
``run_forever()``, unaware of how they are launched.

A worker is built with a ``HealingContext`` (store, backend pool, cache, policy) and its
options; ``run_once()`` does one bounded pass and returns a small JSON-able report (counts
only: reports are stored in ``worker_state`` and printed by the CLI). It is safe to run
concurrently with the agents, the gateway and other workers: every change it makes goes
through the same transactional rules (jobs via the idempotent queue, replica states with their
repair job in one transaction). Two runs of the *same* worker at once are prevented by its run
lease (``actors.scheduler.run_exclusive``), which ``run_forever`` and the scheduler take.

Launchers: the scheduler actor (``actors/scheduler.py``), ``bulletproof worker run NAME``
(``cluster/cli_workers.py``) and tests, which call ``run_once()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from actors.healing import HealingContext
from actors.scheduler import run_exclusive

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker(ABC):
    name: ClassVar[str]

    def __init__(self, ctx: HealingContext) -> None:
        self.ctx = ctx

    @abstractmethod
    async def run_once(self) -> dict[str, Any]:
        """One bounded pass; returns counts of what it found and did."""

    async def run_forever(self, interval_s: float, stop: asyncio.Event | None = None) -> None:
        """``run_once`` every ``interval_s`` under the run lease, until ``stop`` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                result = await run_exclusive(self.ctx, self)
                if result.error:
                    log.warning("%s: %s", self.name, result.error)
            except Exception:  # an outage ends one pass, not the worker
                log.exception("%s: pass failed", self.name)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
