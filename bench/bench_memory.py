"""``python -m bench.bench_memory [--quick] [--json FILE]``: the gateway's memory (issue 16, P7).

Starts a private federation as ``bench.run`` does (``tests.support.cluster.start_cluster`` with
the production overrides: 8 MiB parts, 30 s backend timeout) and measures, from ``/proc``
(``bench/rss.py``, PSS so shared pages are divided among the processes that map them):

1. **at rest, per role and per backend actor**, right after start-up and again after the
   load below has finished and the actors are idle (Python and glibc rarely give memory back,
   so "at rest after load" is the state a running gateway is in, and the one the target is
   checked on). Each backend actor's PSS is split into private memory (``Pss_Anon``: heap,
   thread stacks) and its share of the object store pages it touched (``Pss_Shmem``).
2. **growth while 8 clients PUT at once**: 8 threads each PUT one object of ``size`` bytes
   (single PUTs, not multipart: the gateway cuts them into 8 MiB parts) through the gateway;
   the gateway's PSS (proxy + replica + the three backend actors, summed per sample) at its
   peak over the PUTs and the settle that follows, minus its value at rest after start-up (the
   row's figure; ``growth_mib`` is the rise over the workload's own start, which for the
   second size starts at the high-water mark the first one left). At two
   sizes (full: 64 and 256 MiB, quick: 32 and 64 MiB), so whether growth follows the object
   size (a queue without backpressure) or stays flat (bounded per request) shows.

Bodies are generated while they are sent (``SyntheticBody``: a 1 MiB random block repeated,
with a unique head), so the bench process never holds 8 x 256 MiB. ``measure(quick)`` returns
the two P7 rows (``rows``) and the raw figures; ``main`` prints them as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from actors.backend_client import SeekableBody
from bench.rss import FootprintSampler, pids_by_role, smaps_rollup
from bench.run import PRODUCTION_OVERRIDES
from bench.workloads import s3_client

__all__ = ["SyntheticBody", "main", "measure", "rest_by_process"]

MIB = 1024 * 1024
CLIENTS = 8
#: Issue 16, P7: PSS at rest per backend actor, and growth during the concurrent PUTs.
REST_TARGET_MIB = 100
GROWTH_TARGET_MIB = 1024
#: Growth counts as flat in object size when the larger objects grow the gateway by at most
#: this factor of what the smaller ones did (a queue holding whole bodies grows ~2-4x here).
FLAT_FACTOR = 1.5


class SyntheticBody(SeekableBody):
    """``size`` bytes made while read: ``head`` (unique per object) then a 1 MiB random block
    repeated. Seekable with a length, like a file, because boto3 reads a body twice (to sign
    and checksum it, then to send it)."""

    _BLOCK = os.urandom(MIB)

    def __init__(self, size: int, head: bytes) -> None:
        super().__init__(size)
        self._head = head

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        count = max(0, min(target.nbytes, self._size - self._pos))
        done = 0
        while done < count:
            pos = self._pos + done
            if pos < len(self._head):
                chunk = memoryview(self._head)[pos : pos + count - done]
            else:
                offset = pos % MIB
                chunk = memoryview(self._BLOCK)[offset : offset + count - done]
            target[done : done + chunk.nbytes] = chunk
            done += chunk.nbytes
        self._pos += count
        return count


def _mib(value: int | float | None) -> float | None:
    return None if value is None else round(value / MIB, 1)


def rest_by_process() -> dict[str, list[dict[str, Any]]]:
    """PSS (and its private / object-store split) of every gateway process below this one."""
    out: dict[str, list[dict[str, Any]]] = {}
    for role, pids in pids_by_role().items():
        if role not in ("proxy", "replica", "backend", "controller"):
            continue
        for pid in pids:
            smaps = smaps_rollup(pid)
            if smaps is None:
                continue
            out.setdefault(role, []).append(
                {
                    "pid": pid,
                    "pss_mib": _mib(smaps.get("Pss")),
                    "pss_anon_mib": _mib(smaps.get("Pss_Anon")),
                    "pss_shmem_mib": _mib(smaps.get("Pss_Shmem")),
                    "pss_file_mib": _mib(smaps.get("Pss_File")),
                    "rss_mib": _mib(smaps.get("Rss")),
                    "malloc_env": _malloc_env(pid),
                }
            )
    return out


def _malloc_env(pid: int) -> dict[str, str]:
    """The ``MALLOC_*`` variables the process started with: shows the allocator settings
    (``actors.allocator``) reached it."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return {}
    pairs = (e.decode(errors="replace").partition("=") for e in entries)
    return {k: v for k, _, v in pairs if k.startswith("MALLOC_")}


def _gateway_pss(rest: dict[str, list[dict[str, Any]]]) -> float:
    """The gateway's PSS (proxy + replica + backend actors), as ``FootprintSampler`` sums it."""
    roles = ("proxy", "replica", "backend")
    return sum(p["pss_mib"] or 0.0 for role in roles for p in rest.get(role, []))


def _settle(quiet_s: float = 2.0, max_s: float = 60.0) -> None:
    """Until the backend actors' counters stop moving (the third copies land after the 200)."""
    import ray

    from actors.backend_actor import find_backend_actor
    from tests.support.cluster import BACKENDS

    actors = [find_backend_actor(name) for name, *_ in BACKENDS]
    last: Any = None
    since = start = time.monotonic()
    while time.monotonic() - start < max_s:
        stats = ray.get([a.stats.remote() for a in actors if a is not None], timeout=30)
        signature = tuple((s["puts"], s["gets"], s["deletes"]) for s in stats)
        now = time.monotonic()
        if signature != last:
            last, since = signature, now
        elif now - since >= quiet_s:
            return
        time.sleep(0.2)


def _concurrent_puts(s3: Any, bucket: str, size: int) -> dict[str, Any]:
    """8 clients PUT one ``size``-byte object each, at once; the gateway's footprint over the
    PUTs and the settle after them."""
    keys = [f"mem-{size // MIB}m/{i}-{secrets.token_hex(3)}" for i in range(CLIENTS)]
    errors: list[str] = []

    def put(key: str) -> None:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=SyntheticBody(size, key.encode()))
        except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
            errors.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    with FootprintSampler() as sampler:
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(put, keys))
        wall = time.perf_counter() - started
        _settle()
    fp = sampler.result
    start = fp.gateway_pss_start_mib or 0.0
    peak = fp.gateway_pss_peak_mib or 0.0
    for key in keys:
        with contextlib.suppress(Exception):
            s3.delete_object(Bucket=bucket, Key=key)
    return {
        "size_mib": size // MIB,
        "clients": CLIENTS,
        "errors": errors,
        "wall_s": round(wall, 2),
        "mb_per_s": round(CLIENTS * size / wall / 1e6, 1),
        "gateway_pss_start_mib": round(start, 1),
        "gateway_pss_peak_mib": round(peak, 1),
        "growth_mib": round(peak - start, 1),
        "growth_by_role_mib": {
            role: round(fp.pss_peak_mib[role] - fp.pss_start_mib.get(role, 0.0), 1)
            for role in ("proxy", "replica", "backend")
            if role in fp.pss_peak_mib
        },
        "foreign_cpus": fp.to_dict()["foreign_cpus"],
    }


@contextlib.contextmanager
def _federation() -> Iterator[Any]:
    from tests.support.cluster import start_cluster

    state_dir = Path(tempfile.mkdtemp(prefix="bp-bench-mem-"))
    try:
        with start_cluster(state_dir, overrides=PRODUCTION_OVERRIDES) as federation:
            yield federation
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def measure(quick: bool) -> dict[str, Any]:
    """The two P7 rows (``rows``) and the figures behind them, from one private federation."""
    sizes = (32 * MIB, 64 * MIB) if quick else (64 * MIB, 256 * MIB)
    with _federation() as federation:
        federation.wait_backends_known()
        _, key, secret = federation.create_tenant(allow_plaintext=True)
        # Serve accepts a body faster than the gateway stores it (no backpressure), so on a
        # busy machine a 256 MiB PUT is answered minutes after its last byte was sent.
        s3 = s3_client(
            federation.endpoint, key, secret, federation.settings.region, CLIENTS * 2,
            read_timeout=900,
        )  # fmt: skip
        bucket = f"mem-{secrets.token_hex(3)}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="warm", Body=b"x" * 4096)  # first-request set-up
        _settle()
        time.sleep(2)
        fresh = rest_by_process()
        fresh_gateway = _gateway_pss(fresh)
        loads = [_concurrent_puts(s3, bucket, size) for size in sizes]
        for load in loads:
            load["above_fresh_rest_mib"] = round(load["gateway_pss_peak_mib"] - fresh_gateway, 1)
        _settle()
        time.sleep(5)  # health pings and deletes go quiet
        after = rest_by_process()
    actors = after.get("backend", [])
    worst = max((a["pss_mib"] or 0.0 for a in actors), default=0.0)
    # Private memory only: the object-store pages in Pss_Shmem are the store's (a fixed
    # budget, object_store_memory), divided among whichever processes touched them.
    private = max(
        ((a["pss_anon_mib"] or 0.0) + (a["pss_file_mib"] or 0.0) for a in actors), default=0.0
    )
    growth = max(load["above_fresh_rest_mib"] for load in loads)
    small, large = loads[0]["above_fresh_rest_mib"], loads[-1]["above_fresh_rest_mib"]
    flat = large <= FLAT_FACTOR * max(small, 1.0)
    errors = sum(len(load["errors"]) for load in loads)
    rows = [
        {
            "id": "P7",
            "name": "PSS at rest per backend actor (the largest, after the load)",
            "figure": worst,
            "unit": "MiB",
            "target": REST_TARGET_MIB,
            "met": bool(actors) and worst <= REST_TARGET_MIB,
            "private_mib": round(private, 1),
            "per_actor_after_load": actors,
            "per_actor_fresh": fresh.get("backend", []),
        },
        {
            "id": "P7",
            "name": f"gateway PSS growth during {CLIENTS} concurrent PUTs (peak over fresh rest)",
            "figure": growth,
            "unit": "MiB",
            "target": GROWTH_TARGET_MIB,
            "met": errors == 0 and growth < GROWTH_TARGET_MIB and flat,
            "flat_in_object_size": flat,
            "by_size": loads,
        },
    ]
    return {
        "rows": rows,
        # The keys bench/targets.py reads (bench/README.md, the module contract).
        "rest_per_actor_mib": worst,
        "growth_mib": growth,
        "rest_fresh": fresh,
        "rest_after_load": after,
        "quick": quick,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 and 64 MiB instead of 64, 256")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.quick)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    for row in result["rows"]:
        print(f"{row['id']} {row['name']}: {row['figure']} {row['unit']} (target {row['target']},"
              f" met={row['met']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("BP_TEST_SKIP_PG_RESTART", "1")
    sys.exit(main())
