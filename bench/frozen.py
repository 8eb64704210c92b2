"""Mixed small-object load with one backend frozen, against the same load all healthy (P10).

An overloaded provider does not refuse connections: it accepts them and then says nothing.
``SIGSTOP`` of one moto server process does exactly that (the kernel still completes TCP
handshakes into its listen backlog, nothing is ever answered), so a gateway that waits on that
backend waits for its backend timeout (30 s in production; ``bench.run`` runs with production
settings so the stall would show).

``mixed_load`` runs rounds on ``threads`` threads; one round is four operations through the
gateway: PUT a new 4 KiB object, GET it back, GET one of the objects written *before* the
freeze (all three replicas, one of them now on the frozen backend), DELETE the new object.
Every GET body is read to the end and its SHA-256 and length compared with what was PUT: a
wrong body is a *mismatch*, never a success. Past ``deadline_s`` no new round starts.

``frozen(moto)`` is the SIGSTOP with its SIGCONT in a ``finally``: whatever happens in the
block, the backend is running again afterwards. Nothing here asserts on time; the figures are
ops/s, latencies, and how many operations took at least the backend timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from bench.workloads import Blob, Target, make_blobs, percentile

__all__ = ["frozen", "mixed_load"]


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """Stop the process ``pid`` (a moto server we started) for the block; always continue it."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def mixed_load(
    target: Target,
    preloaded: Sequence[Blob],
    *,
    prefix: str,
    threads: int,
    rounds: int,
    size: int,
    deadline_s: float,
    slow_s: float,
) -> dict[str, Any]:
    """``rounds`` rounds (PUT new, GET it, GET a preloaded object, DELETE new) on ``threads``
    threads; returns counts, ops/s, latency percentiles and ops slower than ``slow_s``."""
    fresh = make_blobs(prefix, rounds, size)
    lock = threading.Lock()
    latencies: list[float] = []
    by_op: dict[str, list[float]] = {"put": [], "get": [], "delete": []}
    counts = {"ok": 0, "errors": 0, "mismatches": 0}
    samples: list[str] = []
    next_round = iter(range(rounds))
    started: list[float] = []
    barrier = threading.Barrier(threads, action=lambda: started.append(time.perf_counter()))
    truncated = False

    def take() -> int | None:
        nonlocal truncated
        with lock:
            if started and time.perf_counter() - started[0] > deadline_s:
                truncated = True
                return None
            return next(next_round, None)

    def timed(op: str, blob: Blob, index: int) -> bool:
        begin = time.perf_counter()
        problem: str | None = None
        mismatch = False
        try:
            if op == "put":
                target.put(blob)
            elif op == "get":
                got = target.get(blob, index)
                mismatch = got.length != blob.size or got.sha256 != blob.sha256
            else:
                target.delete(blob)
        except Exception as exc:  # counted, never raised: the load goes on
            problem = f"{op} {blob.key}: {type(exc).__name__}: {exc}"[:300]
        elapsed = time.perf_counter() - begin
        with lock:
            if mismatch:
                counts["mismatches"] += 1
                problem = f"get {blob.key}: wrong body"
            elif problem:
                counts["errors"] += 1
            else:
                counts["ok"] += 1
            latencies.append(elapsed)  # failures too: a request that waited is a request
            by_op[op].append(elapsed)
            if problem and len(samples) < 5:
                samples.append(problem)
        return problem is None

    def worker() -> None:
        barrier.wait()
        while (index := take()) is not None:
            blob = fresh[index]
            if timed("put", blob, index):
                timed("get", blob, index)
            if preloaded:
                timed("get", preloaded[index % len(preloaded)], index)
            timed("delete", blob, index)

    pool = [threading.Thread(target=worker, name=f"mixed-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - started[0] if started else 0.0

    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * 1000, 2)

    return {
        **counts,
        "operations": len(latencies),
        "wall_s": round(wall, 3),
        "ops_per_s": round(counts["ok"] / wall, 2) if wall else 0.0,
        "truncated": truncated,
        "latency_ms": {"p50": ms(latencies, 50), "p99": ms(latencies, 99),
                       "max": ms(latencies, 100)},
        "p99_ms_by_op": {op: ms(values, 99) for op, values in by_op.items()},
        "slower_than_timeout": sum(v >= slow_s for v in latencies),
        "error_samples": samples,
    }
