"""Reading a backend's bytes from this process: one bounded lane per backend, and its latency.

Why a lane and not the ``BackendActor``: a GET's bytes used to cross the backend actor, Ray's
object store, the gateway replica and the proxy (issue 16 measured a 64 MiB GET at 0.3-0.5x a
direct read, and ~2 ms of actor CPU per 4 KiB GET). A read needs no fan-out, so the replica
reads with its own pooled client, built from the backend's sealed credentials exactly as the
actor builds its own (``actors.backend_actor.build_client``); writes keep going through the
actors (one object-store put fanned out to every target) and so do repairs.

Each lane bounds the threads a backend may hold (``limit``): a frozen or overloaded backend can
absorb at most that many of this process's calls; while its lane is full, readers try the other
replicas first instead of queueing behind it. Each backend's recent read latencies, per size
class, give the **hedge delay** (their p95): a read not answered by then asks the next replica,
and the first verified answer wins (``actors.verified_reader``). A backend overtaken several
times in a row is reported slow (``slow_streak``), which lowers it in this process like a failed
call (circuit breaking); one answer in time resets the streak.

Latency is tracked for every backend, whether read through a lane or through its actor (a
``local`` backend pinned to another node has no lane), so hedging works for both.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["ReadLane", "ReadLatency"]

#: Samples kept per size class; the p95 of a full window ignores the slowest 1 in 20.
_WINDOW = 64
#: Fewer samples than this: no p95 yet, the fallback delay applies.
_MIN_SAMPLES = 8
#: Never hedge sooner than this (a hedge costs a second backend read) ...
_FLOOR_S = 0.02
#: ... nor before the part could have arrived at this rate: a hedge of a large part costs a
#: whole second transfer, and under CPU contention large reads' latency spreads widely
#: (measured: with the p95 alone, 64 MiB GETs read many parts twice and moto's CPU per GET
#: doubled). A frozen backend is still left after ~0.4 s for an 8 MiB part.
_FLOOR_BYTES_PER_S = 20e6
#: Until a class has samples: hedge after this, or after the size at this rate if longer.
_FALLBACK_S = 0.5
_FALLBACK_BYTES_PER_S = 10e6


def _size_class(size: int) -> int:
    """Powers of four from 64 KiB: 4 KiB and 60 KiB share a class, 8 MiB has its own."""
    size_class = 0
    limit = 64 * 1024
    while size > limit and size_class < 8:
        size_class += 1
        limit *= 4
    return size_class


class ReadLatency:
    """Recent read latencies of one backend, per size class; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[int, deque[float]] = {}
        self.slow_streak = 0

    def observe(self, size: int, seconds: float) -> None:
        """A read of ``size`` bytes answered in ``seconds``: a sample, and the streak ends."""
        with self._lock:
            window = self._windows.setdefault(_size_class(size), deque(maxlen=_WINDOW))
            window.append(seconds)
            self.slow_streak = 0

    def overtaken(self) -> int:
        """Another replica answered first while this backend had not: the new streak."""
        with self._lock:
            self.slow_streak += 1
            return self.slow_streak

    def hedge_after(self, size: int) -> float:
        """Seconds to wait for this backend before asking another replica: its p95 for this
        size class, at least ``_FLOOR_S`` and the size at ``_FLOOR_BYTES_PER_S``; a fallback
        while it has few samples."""
        with self._lock:
            window = self._windows.get(_size_class(size))
            samples = sorted(window) if window is not None else []
        if len(samples) < _MIN_SAMPLES:
            return max(_FALLBACK_S, size / _FALLBACK_BYTES_PER_S)
        p95 = samples[min(len(samples) - 1, int(0.95 * len(samples)))]
        return max(_FLOOR_S, size / _FLOOR_BYTES_PER_S, p95)


class ReadLane:
    """A backend client used from at most ``limit`` threads of this process at once."""

    def __init__(self, name: str, client: Any, limit: int) -> None:
        self.name = name
        self.client = client
        self.limit = limit
        self._executor = ThreadPoolExecutor(limit, thread_name_prefix=f"read-{name}")
        self._lock = threading.Lock()
        self._inflight = 0

    @property
    def full(self) -> bool:
        """Every thread of the lane is in a call: a new read would queue behind them."""
        return self._inflight >= self.limit

    async def call(self, fn: Callable[[Any, str], Any], locator: str) -> Any:
        """``fn(client, locator)`` on one of the lane's threads. The slot is held until the
        call itself returns, even when the caller stopped waiting (a timed-out or overtaken
        read): that is what bounds a stuck backend's threads."""
        with self._lock:
            self._inflight += 1

        def run() -> Any:
            try:
                return fn(self.client, locator)
            finally:
                with self._lock:
                    self._inflight -= 1

        try:
            future = self._executor.submit(run)
        except BaseException:
            with self._lock:
                self._inflight -= 1
            raise
        return await asyncio.wrap_future(future)

    async def get(self, locator: str) -> bytes:
        data: bytes = await self.call(lambda client, loc: client.get(loc), locator)
        return data

    def close(self) -> None:
        """Stop taking calls; calls in progress finish on their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

