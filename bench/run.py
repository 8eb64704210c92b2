"""``python -m bench.run [--quick] [--profile] [--out bench/results/DATE.json]``

One run starts a private federation (``tests.support.cluster.start_cluster``: Redis, three
moto S3 servers as processes, a private PostgreSQL database, the gateway on an in-process
local Ray) with the *production* part size (8 MiB) and backend timeout, then measures every
workload twice in the same run, against the same moto servers, with the same client threads:
once through the gateway and once with boto3 straight to the backends (``bench/workloads.py``).

Workloads (full / ``--quick``): 4 KiB PUT and GET on 8 threads (400 / 80 ops per side), and
64 MiB PUT and GET with 1 stream (6 / 2 objects) and 4 streams (8 / 4 objects). While each side
runs, ``bench/rss.py`` samples the memory and CPU of the gateway's processes and of the moto
servers. ``--profile`` adds a separate, gateway-only pass under py-spy (``bench/pyspy.py``).
Then a size sweep (4 KiB .. 256 MiB, one stream, few objects at large sizes; ``--no-sweep``),
the mixed small-object load with one backend frozen against the same load healthy
(``bench/frozen.py``, target P10; ``--no-frozen``), and the bucket importer against ``rclone
copy`` (``bench/bench_import.py``: 10,000 x 4 KiB and 4 x 256 MiB, ``--quick`` 1,000 and 2 x
128 MiB; ``--no-import`` skips it, ``--import-only`` runs only it). After the federation has
stopped, the separate modules (``bench/modules.py``: crypto, erasure, memory, rotate, repair;
``--skip NAME``). Last, one row per target P1..P11 (``bench/targets.py``), printed as a
Markdown table and drawn with the sweep as two PNG charts (``bench/charts.py``).

The result is one JSON document (all raw figures, every latency, the environment) and a short
Markdown summary beside it; the Markdown is also printed. Exit status 1 when any GET returned
wrong bytes or any operation failed: the numbers of such a run are not to be trusted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_import import import_case
from bench.bench_import import render as render_import
from bench.charts import plot_ratios, plot_sweep, render_sweep, render_targets
from bench.frozen import frozen, mixed_load
from bench.modules import MODULES, run_modules
from bench.pyspy import PySpyRecorder
from bench.report import environment, render_markdown, workload_label
from bench.rss import FootprintSampler, pids_by_role
from bench.stages import stage_latencies
from bench.targets import compute_rows
from bench.workloads import (
    Blob,
    DirectTarget,
    GatewayTarget,
    Target,
    WorkloadResult,
    make_blobs,
    run_workload,
    s3_client,
)

__all__ = ["Plan", "main"]

RESULTS = Path(__file__).resolve().parent / "results"
KIB, MIB = 1024, 1024 * 1024

# Production defaults instead of the test suite's (1 MiB parts, 5 s backend timeout, 1 s health
# pings): an empty value unsets the test override, so the gateway's own default applies.
PRODUCTION_OVERRIDES = {
    "BP_PART_SIZE": "",
    "BP_BACKEND_TIMEOUT_S": "",
    "BP_HEALTH_INTERVAL_S": "",
}


@dataclass(frozen=True)
class Plan:
    """How much work each side does; bounded so a full run stays well under five minutes."""

    quick: bool
    small_size: int = 4 * KIB
    small_concurrency: int = 8
    small_count: int = 400
    large_size: int = 64 * MIB
    large_runs: tuple[tuple[int, int], ...] = ((1, 6), (4, 8))  # (streams, objects)
    deadline_s: float = 60.0  # per side and workload; past it no new operation starts
    warmup: int = 16
    # Size sweep (one stream): (size, objects per side). Few operations at large sizes so the
    # sweep stays bounded (full ~1 GiB moved per side and op, quick ~0.5 GiB).
    sweep: tuple[tuple[int, int], ...] = (
        (4 * KIB, 32), (64 * KIB, 32), (MIB, 16), (8 * MIB, 6), (64 * MIB, 2), (256 * MIB, 1)
    )
    # Frozen-backend case (P10): threads, rounds per side (4 ops each), preloaded objects.
    mixed_threads: int = 8
    mixed_rounds: int = 200
    mixed_preload: int = 32

    @classmethod
    def full(cls) -> Plan:
        return cls(quick=False)

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            small_count=80,
            large_runs=((1, 2), (4, 4)),
            deadline_s=30.0,
            sweep=((4 * KIB, 16), (64 * KIB, 16), (MIB, 8), (8 * MIB, 3), (64 * MIB, 1),
                   (256 * MIB, 1)),
            mixed_rounds=60,
            mixed_preload=16,
        )


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Bench:
    """Holds the clients of both sides for one federation and measures workloads on them."""

    def __init__(self, federation: Any, plan: Plan) -> None:
        import ray

        from actors.backend_actor import find_backend_actor
        from tests.support.cluster import BACKENDS, MOTO_KEY, MOTO_SECRET

        self.fed = federation
        self.plan = plan
        region = federation.settings.region
        pool = 4 * max(plan.small_concurrency, *(s for s, _ in plan.large_runs))
        _, key, secret = federation.create_tenant(allow_plaintext=True)
        run_id = secrets.token_hex(3)
        gateway_s3 = s3_client(federation.endpoint, key, secret, region, pool)
        gateway_s3.create_bucket(Bucket=f"bench-{run_id}")
        direct_clients = [
            s3_client(m.endpoint, MOTO_KEY, MOTO_SECRET, region, pool) for m in federation.motos
        ]
        for client in direct_clients:
            client.create_bucket(Bucket=f"bench-direct-{run_id}")
        self._fan_out_pool = ThreadPoolExecutor(pool, thread_name_prefix="direct-copy")
        self._multipart_sides = {  # s3transfer's own multipart upload on each side
            "gateway": (gateway_s3, f"bench-{run_id}"),
            "direct": (direct_clients[0], f"bench-direct-{run_id}"),
        }
        self.gateway: Target = GatewayTarget(gateway_s3, f"bench-{run_id}")
        self.direct: Target = DirectTarget(
            direct_clients, f"bench-direct-{run_id}", self._fan_out_pool
        )
        self._ray = ray
        self._actors = {name: find_backend_actor(name) for name, *_ in BACKENDS}

    def close(self) -> None:
        self._fan_out_pool.shutdown(wait=True)

    # -- helpers -----------------------------------------------------------------------------
    def actor_stats(self) -> dict[str, dict[str, Any]]:
        names = list(self._actors)
        refs = [self._actors[n].stats.remote() for n in names]
        stats: list[dict[str, Any]] = self._ray.get(refs, timeout=30)
        return dict(zip(names, stats, strict=True))

    def settle(self, quiet_s: float = 1.0, max_s: float = 30.0) -> float:
        """Wait until the backend actors are idle (the gateway's third replica and garbage
        deletes finish after the 200), so one workload's tail is not billed to the next."""
        start = time.monotonic()
        last: tuple[Any, ...] | None = None
        since = start
        while time.monotonic() - start < max_s:
            stats = self.actor_stats()
            signature = tuple((s["puts"], s["gets"], s["deletes"]) for s in stats.values())
            now = time.monotonic()
            if signature != last:
                last, since = signature, now
            elif now - since >= quiet_s:
                break
            time.sleep(0.1)
        return time.monotonic() - start

    @staticmethod
    def _actor_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """What the backend actors did during a gateway workload: where its time went."""
        out: dict[str, Any] = {}
        for name in after:
            b, a = before[name], after[name]
            puts, gets = a["puts"] - b["puts"], a["gets"] - b["gets"]
            out[name] = {
                "puts": puts,
                "gets": gets,
                "bytes_in": a["bytes_in"] - b["bytes_in"],
                "bytes_out": a["bytes_out"] - b["bytes_out"],
                "mean_put_ms": round((a["put_seconds"] - b["put_seconds"]) / puts * 1000, 2)
                if puts
                else None,
                "mean_get_ms": round((a["get_seconds"] - b["get_seconds"]) / gets * 1000, 2)
                if gets
                else None,
                "errors": a["errors"] - b["errors"],
            }
        return out

    def measure(
        self, target: Target, op: str, blobs: list[Blob], concurrency: int
    ) -> tuple[WorkloadResult, dict[str, Any]]:
        """One side of one workload. The footprint window includes the settle that follows,
        so the third replica the gateway finishes after its 200 is charged to this workload
        (CPU and memory), as the direct side's third copy is."""
        before = self.actor_stats()
        since = time.time()
        with FootprintSampler() as sampler:
            result = run_workload(
                target, op, blobs, concurrency=concurrency, deadline_s=self.plan.deadline_s
            )
            until = time.time()
            settle_s = self.settle()
        after = self.actor_stats()
        record = result.to_dict()
        record["footprint"] = sampler.result.to_dict()
        record["backend_actors"] = self._actor_delta(before, after)
        record["settle_s"] = round(settle_s, 2)
        if target is self.gateway:
            record["stages"] = stage_latencies(op.upper(), since, until + 0.5)
        lat = result.latency_ms(50)
        _log(
            f"{workload_label(op, result.size, concurrency)} {target.name:7s}: "
            f"{result.ok}/{result.planned} ok, {result.ops_per_s:.2f} ops/s, "
            f"{result.mb_per_s:.2f} MB/s, p50 {lat if lat is None else round(lat, 1)} ms, "
            f"errors {result.errors}, mismatches {result.mismatches}"
        )
        return result, record

    def warm_up(self, size: int, count: int, concurrency: int) -> dict[str, Any]:
        """Untimed: connection pools, caches and the object store's first touch. Its footprint
        is kept: the first large body through a fresh gateway is where memory grows most."""
        blobs = make_blobs(f"warm-{size}", count, size)
        with FootprintSampler() as sampler:
            for target in (self.gateway, self.direct):
                for op in ("put", "get"):
                    run_workload(target, op, blobs, concurrency=concurrency, deadline_s=60)
                for blob in blobs:
                    with contextlib.suppress(Exception):
                        target.delete(blob)
            self.settle()
        return {"size": size, "ops_per_side": 2 * count, "footprint": sampler.result.to_dict()}

    @staticmethod
    def idle_footprint(seconds: float = 1.0) -> dict[str, Any]:
        """The gateway's footprint at rest, before any workload: the baseline for growth."""
        with FootprintSampler() as sampler:
            time.sleep(seconds)
        return sampler.result.to_dict()

    def pair(
        self, size: int, concurrency: int, count: int, *, cleanup: bool, prefix: str = "w"
    ) -> list[dict[str, Any]]:
        """PUT then GET of the same blobs, gateway side then direct side for each."""
        blobs = make_blobs(f"{prefix}{size}-c{concurrency}", count, size)
        out = []
        for op in ("put", "get"):
            record: dict[str, Any] = {
                "label": workload_label(op, size, concurrency),
                "op": op,
                "size": size,
                "concurrency": concurrency,
            }
            results = {}
            for target in (self.gateway, self.direct):
                results[target.name], record[target.name] = self.measure(
                    target, op, blobs, concurrency
                )
            record["ratio"] = _ratios(results["gateway"], results["direct"])
            out.append(record)
        if cleanup:
            for target in (self.gateway, self.direct):
                for blob in blobs:
                    with contextlib.suppress(Exception):
                        target.delete(blob)
            self.settle()
        return out

    def multipart(self, size: int, chunk: int, concurrency: int, count: int) -> dict[str, Any]:
        """PUT ``count`` objects of ``size`` bytes with s3transfer's multipart upload
        (``chunk``-byte parts, ``concurrency`` threads, boto3's default CRC32 checksums)
        through the gateway (three copies, answered at a quorum of two) and, as the baseline,
        straight to ONE moto server (one copy, moto's own multipart upload). Every gateway
        object is read back and its SHA-256 checked; a wrong body counts as a mismatch."""
        import hashlib
        import io

        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=concurrency
        )
        data = os.urandom(size)
        digest = hashlib.sha256(data).digest()
        out: dict[str, Any] = {
            "label": f"PUT {size // MIB} MiB multipart {chunk // MIB} MiB x{concurrency}",
            "size": size,
            "part_size": chunk,
            "concurrency": concurrency,
            "direct_copies": 1,
        }
        for side, (client, bucket) in self._multipart_sides.items():
            seconds: list[float] = []
            errors = mismatches = 0
            for index in range(count):
                key = f"mpu-{size}/{index:03d}"
                start = time.perf_counter()
                try:
                    client.upload_fileobj(io.BytesIO(data), bucket, key, Config=config)
                except Exception as exc:  # counted, never hidden
                    errors += 1
                    _log(f"multipart {side}: {type(exc).__name__}: {exc}")
                    continue
                seconds.append(time.perf_counter() - start)
                if side == "gateway":
                    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                    mismatches += hashlib.sha256(body).digest() != digest
            self.settle()
            total = sum(seconds)
            out[side] = {
                "ok": len(seconds),
                "errors": errors,
                "mismatches": mismatches,
                "seconds": [round(x, 3) for x in seconds],
                "mb_per_s": round(size * len(seconds) / total / 1e6, 2) if total else None,
            }
            _log(f"{out['label']} {side:7s}: {out[side]}")
        gw, direct = out["gateway"]["mb_per_s"], out["direct"]["mb_per_s"]
        out["ratio_mb_per_s"] = round(gw / direct, 3) if gw and direct else None
        return out

    def sweep(self) -> list[dict[str, Any]]:
        """Throughput against object size, one stream, PUT then GET, gateway and direct: the
        same ``pair`` as the main workloads with few objects per size."""
        out: list[dict[str, Any]] = []
        for size, count in self.plan.sweep:
            out += self.pair(size, 1, count, cleanup=True, prefix="sweep")
        return out

    def frozen_case(self, index: int = 2) -> dict[str, Any]:
        """Target P10: the mixed 4 KiB load through the gateway with all backends healthy,
        then the same load with moto ``index`` stopped (SIGSTOP; SIGCONT in a finally). The
        objects GET during the load were written before, with three copies."""
        plan = self.plan
        timeout_s = float(self.fed.settings.backend_timeout_s)
        preloaded = make_blobs("mixed-pre", plan.mixed_preload, plan.small_size)
        put = run_workload(self.gateway, "put", preloaded, concurrency=8, deadline_s=60)
        self.settle()
        out: dict[str, Any] = {
            "backend_timeout_s": timeout_s,
            "frozen_backend": self.fed.motos[index].endpoint,
            "threads": plan.mixed_threads,
            "rounds": plan.mixed_rounds,
            "round": "PUT new, GET it, GET a preloaded object, DELETE new (4 KiB)",
            "preloaded_ok": put.ok,
        }
        moto_pid = self.fed.motos[index].pid
        for label in ("healthy", "frozen"):
            load = functools.partial(
                mixed_load,
                self.gateway,
                preloaded,
                prefix=f"mixed-{label}",
                threads=plan.mixed_threads,
                rounds=plan.mixed_rounds,
                size=plan.small_size,
                deadline_s=plan.deadline_s,
                slow_s=timeout_s,
            )
            if label == "frozen":
                with frozen(moto_pid):
                    out[label] = load()
            else:
                out[label] = load()
            out[f"settle_after_{label}_s"] = round(self.settle(max_s=60), 1)
            r = out[label]
            _log(
                f"mixed 4 KiB {label}: {r['ok']} ok, {r['errors']} errors, "
                f"{r['mismatches']} wrong, {r['ops_per_s']} ops/s, max {r['latency_ms']['max']} "
                f"ms, {r['slower_than_timeout']} >= {timeout_s:g} s"
            )
        for blob in preloaded:
            with contextlib.suppress(Exception):
                self.gateway.delete(blob)
        return out

    def metadata_check(self) -> dict[str, Any]:
        """The gateway answers at 2 copies; this checks that the third really landed (a gateway
        that quietly kept two would look faster). Counts ``ok`` copies per stored part of the
        live objects, plus queued jobs and garbage left behind."""
        copies = self.fed.sql(
            "SELECT n, count(*) AS parts FROM ("
            " SELECT r.version_pk, r.part_number, count(*) FILTER (WHERE r.status = 'ok') AS n"
            " FROM replicas r JOIN object_versions v ON v.id = r.version_pk"
            " WHERE v.is_latest AND NOT v.is_delete_marker GROUP BY 1, 2) AS per_part"
            " GROUP BY n ORDER BY n"
        )
        statuses = self.fed.sql("SELECT status, count(*) AS n FROM replicas GROUP BY status")
        jobs = self.fed.sql("SELECT kind, status, count(*) AS n FROM jobs GROUP BY kind, status")
        garbage = self.fed.sql("SELECT count(*) AS n FROM garbage")
        return {
            "parts_by_ok_copies": {str(r["n"]): r["parts"] for r in copies},
            "replica_status": {r["status"]: r["n"] for r in statuses},
            "jobs": {f"{r['kind']}/{r['status']}": r["n"] for r in jobs},
            "garbage_rows": garbage[0]["n"],
        }

    def profile(self, out_dir: Path, tag: str) -> dict[str, Any]:
        """A separate gateway-only pass under py-spy: 4 KiB PUT, 64 MiB PUT and GET."""
        roles = pids_by_role()
        targets = {r: roles[r][0] for r in ("proxy", "replica", "backend") if roles.get(r)}
        plan = self.plan
        passes = (
            ("put-4KiB", "put", plan.small_size, plan.small_concurrency, plan.small_count // 2),
            ("put-64MiB", "put", plan.large_size, 1, 3),
            ("get-64MiB", "get", plan.large_size, 1, 3),
        )
        summaries: dict[str, Any] = {}
        blobs_by_size: dict[int, list[Blob]] = {}
        for name, op, size, concurrency, count in passes:
            if op == "put":
                blobs_by_size[size] = make_blobs(f"profile-{size}", count, size)
            blobs = blobs_by_size[size]
            with PySpyRecorder(targets, out_dir, f"{tag}-{name}") as recorder:
                result = run_workload(
                    self.gateway, op, blobs, concurrency=concurrency, deadline_s=plan.deadline_s
                )
            summaries[name] = {**recorder.summaries, "ops_ok": result.ok, "wall_s": result.wall_s}
            _log(f"profiled {name}: {result.ok} ok in {result.wall_s:.1f} s")
            self.settle()
        return summaries


def _ratios(gateway: WorkloadResult, direct: WorkloadResult) -> dict[str, float | None]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    return {
        "ops_per_s": ratio(gateway.ops_per_s, direct.ops_per_s),
        "mb_per_s": ratio(gateway.mb_per_s, direct.mb_per_s),
        "p50_latency": ratio(gateway.latency_ms(50), direct.latency_ms(50)),
        "p99_latency": ratio(gateway.latency_ms(99), direct.latency_ms(99)),
    }


class _PartialRun(Exception):
    """``--multipart-only``, ``--import-only``, ``--frozen-only``: stop after that case."""


@contextlib.contextmanager
def _federation(state_dir: Path) -> Iterator[Any]:
    from tests.support.cluster import start_cluster

    with start_cluster(state_dir, overrides=PRODUCTION_OVERRIDES) as federation:
        yield federation


def _verdict(workloads: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[bool, str]:
    """``workloads`` are every gateway/direct pair of the run (main workloads and sweep)."""
    gets = sum(
        w[s]["ok"] + w[s]["mismatches"]
        for w in workloads
        if w["op"] == "get"
        for s in ("gateway", "direct")
    )
    wrong = sum(w[s]["mismatches"] for w in workloads for s in ("gateway", "direct"))
    errors = sum(w[s]["errors"] for w in workloads for s in ("gateway", "direct"))
    truncated = [
        f"{w['label']} {s}" for w in workloads for s in ("gateway", "direct") if w[s]["truncated"]
    ]
    text = (
        f"{gets} GET bodies read to the end and checked against the SHA-256 and length of "
        f"what was PUT: {wrong} wrong; {errors} failed operations"
    )
    if truncated:
        text += f"; hit the time limit: {', '.join(truncated)}"
    copies = meta.get("parts_by_ok_copies", {})
    short = sum(n for k, n in copies.items() if int(k) < 3)
    text += (
        f"; stored parts of live objects by number of ok copies: {copies or 'none'}"
        f" ({'all have 3' if not short else f'{short} with fewer than 3'})"
    )
    return wrong == 0 and errors == 0, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=(__doc__ or "").split("\n\n")[1]
    )
    parser.add_argument("--quick", action="store_true", help="fewer operations (a smoke run)")
    parser.add_argument(
        "--profile", action="store_true", help="add a separate gateway-only pass under py-spy"
    )
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/DATE.json)")
    parser.add_argument(
        "--multipart-only",
        action="store_true",
        help="only the multipart case (64 MiB via s3transfer, 8 MiB x10)",
    )
    parser.add_argument(
        "--frozen-only", action="store_true", help="only the frozen-backend case (P10)"
    )
    parser.add_argument("--no-import", action="store_true", help="skip the import case")
    parser.add_argument("--import-only", action="store_true", help="only the import case")
    parser.add_argument("--no-sweep", action="store_true", help="skip the object-size sweep")
    parser.add_argument(
        "--no-frozen", action="store_true", help="skip the frozen-backend case (P10)"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=MODULES,
        help="skip one of the separate bench modules (repeatable)",
    )
    args = parser.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan.full()
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"{stamp}{'-quick' if plan.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="bp-bench-"))
    t0 = time.monotonic()
    doc: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "parameters": {
            "quick": plan.quick,
            "small": {
                "size": plan.small_size,
                "concurrency": plan.small_concurrency,
                "count": plan.small_count,
            },
            "large": {
                "size": plan.large_size,
                "runs": [{"streams": s, "objects": n} for s, n in plan.large_runs],
            },
            "deadline_s": plan.deadline_s,
            "warmup_small_ops": plan.warmup,
            "direct_get_replica": "round-robin over the 3 moto servers",
            "mb": "10^6 bytes of object payload per second (a direct 3-copy PUT counts once)",
        },
        "memory_metric": "pss (/proc/PID/smaps_rollup every 0.5 s); rss (VmRSS every 50 ms)",
    }
    try:
        with _federation(state_dir) as federation:
            startup_s = time.monotonic() - t0
            _log(f"federation up in {startup_s:.1f} s at {federation.endpoint}")
            doc["environment"] = environment(federation.settings.to_dict())
            doc["environment"]["startup_s"] = round(startup_s, 2)
            bench = Bench(federation, plan)
            try:
                workloads: list[dict[str, Any]] = []
                if args.import_only:
                    doc["import"] = import_case(federation, quick=plan.quick)
                    raise _PartialRun
                if args.frozen_only:
                    doc["frozen"] = bench.frozen_case()
                    raise _PartialRun
                doc["multipart"] = bench.multipart(
                    plan.large_size, 8 * MIB, 10, 2 if plan.quick else 4
                )
                if args.multipart_only:
                    raise _PartialRun
                doc["idle_footprint"] = bench.idle_footprint()
                doc["warmups"] = [
                    bench.warm_up(plan.small_size, plan.warmup, plan.small_concurrency)
                ]
                workloads += bench.pair(
                    plan.small_size, plan.small_concurrency, plan.small_count, cleanup=False
                )
                doc["warmups"].append(bench.warm_up(plan.large_size, 1, 1))
                for streams, objects in plan.large_runs:
                    workloads += bench.pair(plan.large_size, streams, objects, cleanup=True)
                doc["workloads"] = workloads
                if not args.no_sweep:
                    doc["sweep"] = bench.sweep()
                doc["metadata_check"] = bench.metadata_check()
                if args.no_frozen:
                    doc["frozen"] = {"skipped": "skipped by --no-frozen"}
                else:
                    doc["frozen"] = bench.frozen_case()
                if not args.no_import:
                    doc["import"] = import_case(federation, quick=plan.quick)
                if args.profile:
                    doc["profile"] = bench.profile(out.parent / f"{stamp}-pyspy", stamp)
                doc["environment"]["loadavg_end"] = list(os.getloadavg())
            except _PartialRun:
                doc["workloads"] = []
            finally:
                bench.close()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    partial = args.import_only or args.multipart_only or args.frozen_only
    if not partial:  # after the federation: each module may start its own Ray or federation
        doc["modules"] = run_modules(plan.quick, set(args.skip))
    pairs = doc["workloads"] + doc.get("sweep", [])
    ok, verdict = _verdict(pairs, doc.get("metadata_check", {}))
    mixed = doc.get("frozen", {})
    if "healthy" in mixed:
        wrong = mixed["healthy"]["mismatches"] + mixed["frozen"]["mismatches"]
        ok = ok and not wrong
        verdict += f"; mixed load with a frozen backend: {wrong} wrong GET bodies"
    doc["targets"] = compute_rows(doc)
    multipart = doc.get("multipart")
    if multipart:
        sides = ("gateway", "direct")
        ok = ok and not any(multipart[s]["errors"] or multipart[s]["mismatches"] for s in sides)
        verdict += (
            f"; {multipart['label']}: gateway {multipart['gateway']['mb_per_s']} MB/s, one moto"
            f" server directly {multipart['direct']['mb_per_s']} MB/s, ratio"
            f" {multipart['ratio_mb_per_s']} ({multipart['gateway']['mismatches']} wrong bodies,"
            f" {multipart['gateway']['errors'] + multipart['direct']['errors']} errors)"
        )
    if "import" in doc:
        verdict += "; " + render_import(doc["import"]).replace("\n", ";")
    doc["verdict"] = verdict
    doc["ok"] = ok
    doc["duration_s"] = round(time.monotonic() - t0, 1)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    if args.import_only:
        markdown = f"## Import ({doc['started_at']})\n\n{render_import(doc['import'])}\n"
    elif args.multipart_only:  # the full report needs the other workloads
        markdown = f"## Multipart upload ({doc['started_at']})\n\n{verdict}.\n"
    elif args.frozen_only:
        markdown = (
            f"## Mixed load, one backend frozen ({doc['started_at']})\n\n"
            + render_targets([row for row in doc["targets"] if row["id"] == "P10"])
            + f"\n{verdict}.\n"
        )
    else:
        title = f"{doc['started_at']}{' quick' if plan.quick else ''}"
        charts = {"targets": out.with_name(f"{out.stem}-targets.png")}
        plot_ratios(doc["targets"], charts["targets"], f"Targets P1-P11, {title}")
        if doc.get("sweep"):
            charts["sweep"] = out.with_name(f"{out.stem}-sweep.png")
            plot_sweep(doc["sweep"], charts["sweep"], f"Throughput by object size, {title}")
        markdown = (
            f"## Targets (issue 16)\n\n{render_targets(doc['targets'])}\n"
            + (f"### Size sweep (1 stream)\n\n{render_sweep(doc['sweep'])}\n"
               if doc.get("sweep") else "")
            + f"Charts: {', '.join(p.name for p in charts.values())}\n\n"
            + render_markdown(doc)
        )
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
    _log(f"wrote {out} and {out.with_suffix('.md')} in {doc['duration_s']} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
