"""A small part to three actors: ``ray.put`` once and pass the reference, or pass the bytes.

Why it exists: ``QuorumWrite`` hands a part of at most ``INLINE_PART_MAX`` bytes to the backend
actors inside the calls (Ray inlines small arguments in the task message) and larger parts as
one object-store reference; this measures what that choice costs at a given size. Starts its
own local Ray (two CPUs), three threaded actors shaped like ``BackendActor.put`` (they take a
zero-copy view and store nothing), sends ``--ops`` parts (each to all three actors, 24 calls in
flight) one way and then the other, twice, and prints wall time and the CPU of this process
(the caller: the gateway replica's role) and of the three actor processes per part.

    python -m bench.inline_args [--size 4096] [--ops 1500]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import psutil
import ray


class _Sink:
    """Takes a part as ``BackendActor.put`` does (a view of an array or of bytes)."""

    def pid(self) -> int:
        return os.getpid()

    def put(self, locator: str, data: Any, request_id: str | None = None) -> int:
        view = memoryview(data.data if isinstance(data, np.ndarray) else data).cast("B")
        return len(view)


def _cpu_s(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def _run(actors: list[Any], procs: list[psutil.Process], mode: str, data: bytes, ops: int) -> str:
    me = [psutil.Process()]
    actors_before, me_before, start = _cpu_s(procs), _cpu_s(me), time.perf_counter()
    pending: list[Any] = []
    for _ in range(ops):
        if mode == "ref":
            payload: Any = ray.put(np.frombuffer(bytearray(data), dtype=np.uint8))
        else:
            payload = bytes(data)
        pending += [a.put.remote("locator", payload) for a in actors]
        if len(pending) >= 24:
            ray.get(pending)
            pending = []
    ray.get(pending)
    wall = (time.perf_counter() - start) / ops * 1000
    caller = (_cpu_s(me) - me_before) / ops * 1000
    sinks = (_cpu_s(procs) - actors_before) / ops * 1000
    return (
        f"{mode:5} {len(data)} B: wall {wall:.2f} ms/part, caller CPU {caller:.2f} ms/part,"
        f" 3 actors CPU {sinks:.2f} ms/part"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--ops", type=int, default=1500)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sink: Any = ray.remote(_Sink).options(  # type: ignore[attr-defined]
            max_concurrency=32, num_cpus=0
        )
        actors: list[Any] = [sink.remote() for _ in range(3)]
        procs = [psutil.Process(pid) for pid in ray.get([a.pid.remote() for a in actors])]
        data = os.urandom(args.size)
        for mode in ("ref", "bytes", "ref", "bytes"):
            print(_run(actors, procs, mode, data, args.ops), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
