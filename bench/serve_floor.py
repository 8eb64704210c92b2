"""The CPU floor of answering an HTTP GET through Ray Serve, for the P11 target.

``python -m bench.serve_floor [--seconds S] [--threads N] [--json PATH]``

P11 asks the gateway to spend at most 1.5x the CPU of a direct boto3 GET of the same 4 KiB.
Every gateway GET crosses a Serve proxy and a Serve replica before our handler runs a line.
This measures what that crossing alone costs: a Serve application deployed like the gateway
(FastAPI ingress, ``max_ongoing_requests`` 64, no CPU reserved) whose one route returns 4 KiB
it already holds, no authentication, metadata or backend, driven by boto3 ``get_object`` from
``threads`` threads (the client the bench uses); the proxy's and the replica's CPU per request
are read from ``/proc`` over the run. In the same run, the same client GETs 4 KiB straight
from a moto server (the direct side of P11): its client CPU plus moto's per request.

If Serve's proxy + replica alone cost more than half the direct GET, no handler, however lean,
brings the gateway under 1.5x on this design; the figure says by how much.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.rss import cpu_seconds, pids_by_role
from tests.support.processes import MotoServer, free_port

SIZE = 4096


def _client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32),
    )


def _drive(get: Callable[[], bytes], threads: int, seconds: float) -> int:
    """``get`` on ``threads`` threads for ``seconds``; the number of 4 KiB bodies read."""
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def loop(index: int) -> None:
        while time.monotonic() < stop:
            if len(get()) != SIZE:
                raise AssertionError("short body")
            counts[index] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts)


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


def _measure(
    get: Callable[[], bytes], pids: list[int], threads: int, seconds: float
) -> dict[str, float]:
    """CPU ms per request of this process (the client) and of ``pids``, and ops/s."""
    _drive(get, threads, 2.0)  # warm: connections, caches
    own, others = time.process_time(), _cpu(pids)
    wall = time.monotonic()
    ops = _drive(get, threads, seconds)
    wall = time.monotonic() - wall
    own, others = time.process_time() - own, _cpu(pids) - others
    return {
        "ops": ops,
        "ops_per_s": round(ops / wall, 1),
        "client_cpu_ms": round(own / ops * 1000, 3),
        "server_cpu_ms": round(others / ops * 1000, 3),
    }


def measure(threads: int = 8, seconds: float = 15.0) -> dict[str, Any]:
    import ray
    from fastapi import FastAPI, Response
    from ray import serve

    body = os.urandom(SIZE)
    moto = MotoServer()
    moto.start()
    try:
        direct = _client(moto.endpoint)
        direct.create_bucket(Bucket="floor-bucket")
        direct.put_object(Bucket="floor-bucket", Key="k", Body=body)
        assert moto.proc is not None
        direct_side = _measure(
            lambda: direct.get_object(Bucket="floor-bucket", Key="k")["Body"].read(),
            [moto.proc.pid],
            threads,
            seconds,
        )
    finally:
        moto.stop()

    app = FastAPI()

    @serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
    @serve.ingress(app)
    class Floor:
        @app.get("/{path:path}")
        async def get(self, path: str) -> Response:
            return Response(body, media_type="binary/octet-stream")

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(Floor.bind(), name="floor", route_prefix="/")
        roles = pids_by_role()
        serve_pids = roles.get("proxy", []) + roles.get("replica", [])
        through = _client(f"http://127.0.0.1:{port}")
        serve_side = _measure(
            lambda: through.get_object(Bucket="floor-bucket", Key="k")["Body"].read(),
            serve_pids,
            threads,
            seconds,
        )
    finally:
        serve.shutdown()
        ray.shutdown()
    direct_total = direct_side["client_cpu_ms"] + direct_side["server_cpu_ms"]
    floor = serve_side["server_cpu_ms"]
    return {
        "threads": threads,
        "seconds": seconds,
        "direct_get": direct_side,
        "serve_answering_from_memory": serve_side,
        "direct_cpu_ms_per_get": round(direct_total, 3),
        "serve_floor_cpu_ms_per_get": floor,
        # The least the gateway can spend: the direct GET (its client, a backend serving the
        # bytes) plus Serve's proxy and replica doing nothing else.
        "floor_ratio": round((direct_total + floor) / direct_total, 2),
        "loadavg": list(os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.serve_floor", description=__doc__)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = measure(args.threads, args.seconds)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
