"""``python -m bench.bench_copy [--objects 40] [--size-mib 8] [--threads 4]``

CopyObject through the gateway against server-side copies made directly on the backends.

One run starts a private federation (``tests.support.cluster.start_cluster``: Redis, three
moto S3 servers as processes, a private PostgreSQL database, the gateway on an in-process
Ray) with production part size, PUTs N objects (3 replicas each) and waits until every
replica is ``ok``. Then, each phase with ``--threads`` client threads:

1. **Shared copy** (same class, placement allowed): the gateway's copies name the source's
   backend objects; no byte moves. Metadata transaction + audit entry per copy.
2. **Byte copy** (the target asks for another class, ``Duo``: 2 copies): the gateway reads
   the source through the verified reader and writes it through the quorum writer.
3. **Baseline**: the same N objects copied with boto3 ``copy_object`` on each of the three
   moto backends directly (one server-side copy per backend, in parallel), which is what a
   client managing three replicas itself would do.

Reported: copies/s and MB/s (of object data) per phase and the ratios shared/baseline and
byte/baseline. Every copy is read back through the gateway and hash-checked. MB = 10^6 bytes;
on a shared 2-CPU machine compare ratios within one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["main"]

MIB = 1024 * 1024
OVERRIDES = {"BP_PART_SIZE": "", "BP_BACKEND_TIMEOUT_S": "", "BP_HEALTH_INTERVAL_S": "2"}
DUO = "version: 1\nclasses:\n  Duo: {replication: {copies: 2}, min_regions: 2}\n"


def _timed(threads: int, work: list[Any], fn: Any) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, work))
    return time.perf_counter() - start


def _run(cluster: Any, objects: int, size: int, threads: int) -> dict[str, Any]:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    s3 = cluster.s3(key, secret, max_pool_connections=threads * 2)
    bucket = "bench-copy"
    s3.create_bucket(Bucket=bucket)
    blobs = {f"obj-{i:04d}": os.urandom(size) for i in range(objects)}
    digests = {k: hashlib.sha256(v).digest() for k, v in blobs.items()}
    _timed(
        threads, list(blobs.items()), lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1])
    )
    cluster.wait_for(
        lambda: cluster.sql("SELECT count(*) AS n FROM replicas WHERE status <> 'ok'")[0]["n"] == 0,
        timeout_s=120,
        what="every replica ok",
    )
    keys = list(blobs)

    shared_s = _timed(
        threads,
        keys,
        lambda k: s3.copy_object(Bucket=bucket, Key=f"shared/{k}", CopySource=f"{bucket}/{k}"),
    )
    locators = cluster.sql(
        "SELECT count(DISTINCT locator) AS n FROM replicas r JOIN object_versions v"
        " ON v.id = r.version_pk WHERE v.key LIKE 'shared/%'"
    )[0]["n"]

    assert cluster.admin("PUT", "/admin/policy", {"document": DUO}).status_code == 200

    def duo(request: Any, **_: Any) -> None:
        request.headers["X-Redundancy-Class"] = "Duo"

    s3.meta.events.register("before-sign.s3.CopyObject", duo)
    byte_s = _timed(
        threads,
        keys,
        lambda k: s3.copy_object(Bucket=bucket, Key=f"bytes/{k}", CopySource=f"{bucket}/{k}"),
    )
    s3.meta.events.unregister("before-sign.s3.CopyObject", duo)

    for prefix in ("shared/", "bytes/"):
        for k in keys:
            body = s3.get_object(Bucket=bucket, Key=prefix + k)["Body"].read()
            if hashlib.sha256(body).digest() != digests[k]:
                raise AssertionError(f"{prefix}{k}: wrong bytes")

    # Baseline: the same objects on each backend, copied server-side on each backend.
    direct = [cluster.backend_s3(i) for i in range(3)]
    work = [(i, k) for i in range(3) for k in keys]
    _timed(
        threads,
        work,
        lambda ik: direct[ik[0]].put_object(
            Bucket=cluster.backend_bucket(ik[0]), Key=f"base/{ik[1]}", Body=blobs[ik[1]]
        ),
    )

    def copy_everywhere(k: str) -> None:
        with ThreadPoolExecutor(3) as pool:
            list(
                pool.map(
                    lambda i: direct[i].copy_object(
                        Bucket=cluster.backend_bucket(i),
                        Key=f"base-copy/{k}",
                        CopySource=f"{cluster.backend_bucket(i)}/base/{k}",
                    ),
                    range(3),
                )
            )

    base_s = _timed(threads, keys, copy_everywhere)
    mb = objects * size / 1e6
    return {
        "objects": objects,
        "size_bytes": size,
        "threads": threads,
        "shared": {
            "seconds": shared_s,
            "copies_per_s": objects / shared_s,
            "MB_per_s": mb / shared_s,
        },
        "shared_distinct_locators_of_copies": locators,
        "bytes": {"seconds": byte_s, "copies_per_s": objects / byte_s, "MB_per_s": mb / byte_s},
        "baseline": {"seconds": base_s, "copies_per_s": objects / base_s, "MB_per_s": mb / base_s},
        "ratio_shared": base_s / shared_s,
        "ratio_bytes": base_s / byte_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_copy", description=__doc__)
    parser.add_argument("--objects", type=int, default=40)
    parser.add_argument("--size-mib", type=float, default=8)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    from tests.support.cluster import start_cluster

    result: dict[str, Any] = {"load_before": os.getloadavg()}
    with (
        tempfile.TemporaryDirectory(prefix="bp-bench-copy-") as tmp,
        start_cluster(Path(tmp), overrides=OVERRIDES) as cluster,
    ):
        result.update(_run(cluster, args.objects, int(args.size_mib * MIB), args.threads))
    result["load_after"] = os.getloadavg()
    print(
        f"CopyObject, {result['objects']} x {result['size_bytes'] / 1e6:.1f} MB,"
        f" {result['threads']} threads\n"
        f"  shared (metadata only)  {result['shared']['copies_per_s']:8.1f} copies/s"
        f"  ratio {result['ratio_shared']:.2f}x\n"
        f"  byte copy (Duo class)   {result['bytes']['copies_per_s']:8.1f} copies/s"
        f"  {result['bytes']['MB_per_s']:7.1f} MB/s  ratio {result['ratio_bytes']:.2f}x\n"
        f"  direct server-side x3   {result['baseline']['copies_per_s']:8.1f} copies/s\n"
        f"  load average before/after {result['load_before'][0]:.1f} /"
        f" {result['load_after'][0]:.1f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
