"""Does Ray Serve give end-to-end backpressure on request bodies? A slow handler (~64 MB/s)
and a fast client uploading 512 MiB; peak PSS growth of the proxy and the replica.

Run: .venv/bin/python -m bench.serve_backpressure PORT, optionally with
RAY_SERVE_ENABLE_DIRECT_INGRESS=1 or RAY_SERVE_ENABLE_HA_PROXY=1 in the environment.
Findings are in docs/architecture.md ("Memory and Serve request bodies").
"""

import asyncio
import os
import sys
import threading
import time

import httpx
import psutil
import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

app = FastAPI()


@serve.deployment(max_ongoing_requests=4, ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Slow:
    @app.put("/{p:path}")
    async def put(self, request: Request, p: str):
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
            await asyncio.sleep(0.004 * len(chunk) / 262144)  # ~64 MB/s consumer
        return JSONResponse({"n": n, "pid": os.getpid()})


def rss_of(pattern):
    total = 0
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(pattern in c for c in (p.info["cmdline"] or [])):
                total += p.memory_full_info().pss
        except Exception:
            pass
    return total


ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
port = int(sys.argv[1])
serve.start(http_options={"host": "127.0.0.1", "port": port})
serve.run(Slow.bind(), route_prefix="/")
peak = {"proxy": 0, "replica": 0}
stop = False


def sample():
    while not stop:
        peak["proxy"] = max(peak["proxy"], rss_of("ProxyActor"))
        peak["replica"] = max(peak["replica"], rss_of("ServeReplica"))
        time.sleep(0.05)


base = {"proxy": rss_of("ProxyActor"), "replica": rss_of("ServeReplica")}
t = threading.Thread(target=sample)
t.start()
size = 512 * 1024 * 1024


def gen():
    block = os.urandom(1024 * 1024)
    for _ in range(size // len(block)):
        yield block


t0 = time.time()
r = httpx.put(f"http://127.0.0.1:{port}/x", content=gen(), timeout=600)
el = time.time() - t0
stop = True
t.join()
print(
    os.environ.get("RAY_SERVE_ENABLE_DIRECT_INGRESS", "0"),
    os.environ.get("RAY_SERVE_ENABLE_HA_PROXY", "0"),
    r.status_code,
    r.json()["n"] == size,
    f"{el:.1f}s",
    {k: f"+{(peak[k] - base[k]) / 2**20:.0f} MiB" for k in peak},
)
ray.shutdown()
