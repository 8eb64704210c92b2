"""``python -m bench.bench_import [--quick] [--json PATH]``: the importer against ``rclone copy``.

The same moto source bucket is copied twice into the same three moto servers, writing the same
number of copies: by ``rclone copy`` (Debian's ``/usr/bin/rclone``) to each of the three
servers at once (three processes side by side), and by the import driver
(``python -m jobs.importer``, as a Ray job runs it) with the three-copy ``StandardClass``,
which also encrypts every object (BP1) and verifies it against the source. Two sources: many
small objects (objects/s; 10,000 x 4 KiB, ``--quick`` 1,000) and a few large ones (MB/s;
4 x 256 MiB, ``--quick`` 2 x 128 MiB). While the importer runs, the PSS of its processes (the
driver and its ``ImportWorker`` actors) is sampled every 0.25 s with psutil; the peak of the
sum is reported (flat in object size is the goal: the transfer streams).

Each phase also records the CPU seconds the bench's whole process tree spent (moto servers and
Ray included, PostgreSQL not: ``Phase``) and the load average at its start: on the shared
machine the wall ratio moves with other people's load, the CPU ratio much less.

``bench/run.py`` runs the same case inside its federation (``import_case``); this module's
``main`` starts its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import psutil
import ray
from boto3.s3.transfer import TransferConfig
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from actors.import_keyholder import keyholder
from client.recipient import key_id, wrap_alg_for
from core.credential_seal import seal
from schema.db import Database
from schema.import_records import KeyRef
from schema.imports import ImportRepository

__all__ = ["import_case", "main"]

ROOT = Path(__file__).resolve().parents[1]
KIB, MIB = 1024, 1024 * 1024
RCLONE = "/usr/bin/rclone"
_PASS = "bench import passphrase"
_MOTO = ("testing", "testing")


class PssSampler:
    """Peak summed PSS of the import's processes (driver + ImportWorker actors of this
    bench's cluster)."""

    def __init__(self, driver_pid: int, interval_s: float = 0.25) -> None:
        self.driver_pid = driver_pid
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _pids(self) -> list[int]:
        """The driver and the ImportWorkers of this bench's own Ray cluster (descendants of
        this process): other Ray clusters on the machine (other people's tests) never count."""
        pids = [self.driver_pid]
        for proc in psutil.Process().children(recursive=True):
            try:
                cmdline = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if cmdline.startswith("ray::ImportWorker"):
                pids.append(proc.pid)
        return pids

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            total = 0
            for pid in self._pids():
                try:
                    total += psutil.Process(pid).memory_full_info().pss
                except (psutil.Error, AttributeError):
                    continue
            self.peak = max(self.peak, total)

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def tree_cpu_s() -> float:
    """CPU seconds spent so far by this process and every process below it, including the
    ones already reaped (their time is in their parent's ``children_*``): the bench's own
    Ray cluster, moto servers, rclone and the import driver. The shared PostgreSQL server is
    not below it, so the importer's metadata work is not counted (rclone has none)."""
    total = 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class Phase:
    """Wall seconds, CPU seconds of the bench's process tree (``tree_cpu_s``) and the load
    average at the start of one timed phase. On a shared machine the wall ratio moves with
    other people's load; the CPU each side costs the machine per object moves much less."""

    def __enter__(self) -> Phase:
        self.load = os.getloadavg()[0]
        self.cpu = tree_cpu_s()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started
        self.cpu = tree_cpu_s() - self.cpu


def _client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=_MOTO[0],
        aws_secret_access_key=_MOTO[1],
    )


def _fill(endpoint: str, bucket: str, count: int, size: int) -> int:
    client = _client(endpoint)
    client.create_bucket(Bucket=bucket)
    config = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB)

    def put(i: int) -> None:
        body = os.urandom(size)
        if size >= 64 * MIB:
            import io

            client.upload_fileobj(io.BytesIO(body), bucket, f"obj/{i:06d}", Config=config)
        else:
            client.put_object(Bucket=bucket, Key=f"obj/{i:06d}", Body=body)

    with ThreadPoolExecutor(8 if size < MIB else 2) as pool:
        list(pool.map(put, range(count)))
    return count * size


def _rclone(source: str, bucket: str, targets: list[str], dest_bucket: str) -> float:
    """``rclone copy`` of the source bucket to each target at once; wall seconds."""
    # A minimal environment: nothing of the machine's AWS/rclone setup (a CA bundle, a
    # config file) leaks in.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir()}
    for name, endpoint in (("src", source), *((f"dst{i}", t) for i, t in enumerate(targets))):
        prefix = f"RCLONE_CONFIG_{name.upper()}_"
        env.update(
            {
                prefix + "TYPE": "s3",
                prefix + "PROVIDER": "Other",
                prefix + "ENDPOINT": endpoint,
                prefix + "ACCESS_KEY_ID": _MOTO[0],
                prefix + "SECRET_ACCESS_KEY": _MOTO[1],
                prefix + "REGION": "us-east-1",
                prefix + "FORCE_PATH_STYLE": "true",
            }
        )
    for target in targets:
        _client(target).create_bucket(Bucket=dest_bucket)
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                RCLONE,
                "copy",
                f"src:{bucket}",
                f"dst{i}:{dest_bucket}",
                "--transfers",
                "16",
                "--checkers",
                "16",
                "--s3-upload-concurrency",
                "4",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(len(targets))
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"rclone failed: {err.decode()[-2000:]}")
    return time.monotonic() - started


async def _new_run(database_url: str, tenant: str, endpoint: str, bucket: str, dest: str) -> int:
    db = await Database.connect(database_url, max_size=2)
    repo = ImportRepository()
    try:
        async with db.transaction() as conn:
            tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", tenant)
            public = x25519.X25519PrivateKey.generate().public_key()
            ref = KeyRef(key_id(public), 1)
            await conn.execute(
                "INSERT INTO tenant_public_keys (tenant_id, key_id, key_version, wrap_alg,"
                " public_key_pem) VALUES ($1, $2, 1, $3, $4) ON CONFLICT DO NOTHING",
                tenant_id,
                ref.key_id,
                wrap_alg_for(public),
                public.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ).decode(),
            )
            source = await repo.create_source(
                conn,
                tenant_id,
                f"bench-{bucket}",
                endpoint=endpoint,
                bucket=bucket,
                sealed=seal({"access_key": _MOTO[0], "secret_key": _MOTO[1]}, _PASS),
            )
            run = await repo.create_run(conn, tenant_id, source.id, dest, recipients=[ref])
        return run.id
    finally:
        await db.close()


def _import(federation: Any, tenant: tuple[str, Any], source: str, bucket: str) -> dict[str, Any]:
    name, s3 = tenant
    dest = f"imp-{bucket}"
    s3.create_bucket(Bucket=dest)
    run_id = asyncio.run(_new_run(federation.settings.database_url, name, source, bucket, dest))
    ray.get(keyholder(federation.settings).put.remote(run_id, _PASS))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.importer", "--run-id", str(run_id)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    with PssSampler(proc.pid) as sampler:
        out, _ = proc.communicate()
    seconds = time.monotonic() - started
    tail = out.decode(errors="replace").strip().splitlines()[-1:]
    if proc.returncode:
        raise RuntimeError(f"import failed: {out.decode(errors='replace')[-3000:]}")
    return {"seconds": seconds, "peak_pss_bytes": sampler.peak, "last_line": tail}


def import_case(
    federation: Any, *, quick: bool, cases: tuple[str, ...] = ("small", "large")
) -> dict[str, Any]:
    """Run the comparisons (both by default) in a running federation; returns the figures."""
    from tests.support.processes import MotoServer

    small_count = 1_000 if quick else 10_000
    large_count, large_size = (2, 128 * MIB) if quick else (4, 256 * MIB)
    source = MotoServer()
    source.start()
    tenant_name, access, secret = federation.create_tenant()
    tenant = (tenant_name, federation.s3(access, secret))
    targets = [m.endpoint for m in federation.motos]
    result: dict[str, Any] = {"quick": quick}
    try:
        for label, count, size in (
            ("small", small_count, 4 * KIB),
            ("large", large_count, large_size),
        ):
            if label not in cases:
                continue
            bucket = f"src-{label}-{secrets.token_hex(2)}"
            total = _fill(source.endpoint, bucket, count, size)
            with Phase() as rclone:
                rclone_s = _rclone(source.endpoint, bucket, targets, f"rc-{bucket}")
            with Phase() as importing:
                imported = _import(federation, tenant, source.endpoint, bucket)
            result[label] = {
                "objects": count,
                "size": size,
                "rclone_s": round(rclone_s, 2),
                "import_s": round(imported["seconds"], 2),
                "rclone_objects_per_s": round(count / rclone_s, 1),
                "import_objects_per_s": round(count / imported["seconds"], 1),
                "rclone_MB_per_s": round(total / 1e6 / rclone_s, 1),
                "import_MB_per_s": round(total / 1e6 / imported["seconds"], 1),
                "ratio": round(rclone_s / imported["seconds"], 2),
                "import_peak_pss_MiB": round(imported["peak_pss_bytes"] / MIB, 1),
                "rclone_cpu_s": round(rclone.cpu, 1),
                "import_cpu_s": round(importing.cpu, 1),
                "cpu_ratio": round(rclone.cpu / importing.cpu, 2),
                "rclone_loadavg": round(rclone.load, 1),
                "import_loadavg": round(importing.load, 1),
                "import_last_line": imported["last_line"],
            }
    finally:
        source.stop()
    return result


def render(result: dict[str, Any]) -> str:
    lines = [f"Import vs rclone copy (3 copies each){' --quick' if result['quick'] else ''}"]
    for label, unit in (("small", "objects_per_s"), ("large", "MB_per_s")):
        if label not in result:
            continue
        r = result[label]
        lines.append(
            f"  {r['objects']} x {r['size'] / MIB:g} MiB: importer {r['import_' + unit]} {unit},"
            f" rclone {r['rclone_' + unit]} {unit}, ratio {r['ratio']}x,"
            f" importer peak PSS {r['import_peak_pss_MiB']} MiB; CPU s rclone"
            f" {r['rclone_cpu_s']} importer {r['import_cpu_s']} ({r['cpu_ratio']}x);"
            f" load {r['rclone_loadavg']} / {r['import_loadavg']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_import", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default="")
    parser.add_argument(
        "--case", choices=("small", "large"), action="append", help="only this case (repeatable)"
    )
    args = parser.parse_args(argv)
    from tests.support.cluster import start_cluster

    overrides = {"BP_PART_SIZE": "", "BP_BACKEND_TIMEOUT_S": "", "BP_HEALTH_INTERVAL_S": ""}
    with (
        tempfile.TemporaryDirectory(prefix="bp-bench-import-") as tmp,
        start_cluster(Path(tmp), overrides=overrides) as federation,
    ):
        result = import_case(
            federation, quick=args.quick, cases=tuple(args.case or ("small", "large"))
        )
    result["loadavg_end"] = list(os.getloadavg())
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
