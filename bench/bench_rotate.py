"""``python -m bench.bench_rotate [--quick] [--objects N] [--json FILE]``: issue 16, row P9.

``bp rotate`` end to end against the gateway's own re-wrap rate, in the same run.

One run starts a private federation (``tests.support.cluster.start_cluster``: Redis, three
moto S3 servers as processes, a private PostgreSQL database, the gateway on an in-process
Ray), writes N objects sealed by the client SDK (``client.seal``, X25519, as ``bp put`` seals
them; 2,000 by default, 500 with ``--quick``) and waits until every replica is ``ok``. Then:

1. **End to end**: ``bp rotate --from old --to new s3://bucket`` run in-process through the
   CLI's entry point (``client.cli.main``: listing, header reads, unwrap and wrap, ``?rewrap``
   batches), timed from the call to its return. Figure: objects/s = N / wall time.
2. **Server alone**: every object's data key wrapped back for the old key beforehand
   (untimed), then only the ``POST /{bucket}?rewrap`` batches of 1,000 are timed, two in
   flight as ``bp rotate`` sends them. This is the ceiling the client can reach; the ratio
   end-to-end / server says how much of it the client side leaves.

Every object is checked afterwards to be wrapped under the old key again (the server phase's
outcome), so a run that rotated nothing cannot report a rate. ``measure(quick)`` returns the
row for the bench summary table. On this shared 2-CPU machine the figures are noisy: run it
two or three times and compare the ratio within a run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["main", "measure"]

TARGET = 1000
FULL_OBJECTS = 2000
QUICK_OBJECTS = 500
PASSPHRASE = "bench rotate passphrase"
OVERRIDES = {"BP_HEALTH_INTERVAL_S": "2"}


def _seal_and_put(s3: Any, tenant: str, bucket: str, keys: list[str], public: Any) -> None:
    from client import seal

    def put(key: str) -> None:
        sealed = seal(
            f"rotation bench {key}".encode(), tenant=tenant, bucket=bucket, key=key,
            recipients=[public],
        )  # fmt: skip
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=sealed.body,
            Metadata={k.removeprefix("x-amz-meta-"): v for k, v in sealed.headers.items()},
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))


def _environment(cluster: Any, tenant: str, key: str, secret: str, keyring: Path) -> dict[str, str]:
    return {
        "BP_CONFIG": str(keyring.parent / "none.yaml"),
        "BP_KEYRING": str(keyring),
        "BP_PASSPHRASE": PASSPHRASE,
        "BP_ENDPOINT": cluster.endpoint,
        "BP_TENANT": tenant,
        "BP_REGION": cluster.settings.region,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
    }


def _bp(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``bp`` in-process with ``env`` as its only ``BP_*``/``AWS_*`` environment."""
    from client.cli import main as bp_main

    saved = {k: v for k, v in os.environ.items() if k.startswith(("BP_", "AWS_"))}
    for name in saved:
        del os.environ[name]
    os.environ.update(env)
    try:
        out, err = io.StringIO(), io.StringIO()
        code = bp_main(list(args), stdout=out, stderr=err)
    finally:
        for name in env:
            os.environ.pop(name, None)
        os.environ.update(saved)
    return code, out.getvalue(), err.getvalue()


def _wrapped_back(api: Any, plan: Any, keys: list[str]) -> list[Any]:
    """Every object's rewrap item back to the old key (header reads, unwrap, wrap): untimed
    preparation of the server-only phase, done the way ``client.rotation`` prepares items."""
    from client.api_records import RewrapItem
    from client.envelope import parse_envelope_headers
    from client.format import ObjectBinding
    from client.s3url import S3Url
    from client.sharing import recover_data_key
    from client.wrap import wrap

    def item(key: str) -> Any:
        head = api.read_header(S3Url(plan.bucket, key))
        envelope = parse_envelope_headers(head.metadata)
        current = envelope.wrapped_key
        [private] = plan.old_keys.values()
        expected = ObjectBinding(plan.tenant, plan.bucket, key, envelope.content_id)
        dek = recover_data_key(head.header, [current], private, expected)
        return RewrapItem(
            key, current.key_id, current.key_version, wrap(dek, plan.new, head.header),
            envelope.content_id.hex(),
        )  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(item, keys))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run(cluster: Any, objects: int, workdir: Path) -> dict[str, Any]:
    from client.api import GatewayApi
    from client.keyring import Keyring
    from client.rotation import MAX_BATCH, RotationPlan

    tenant, key, secret = cluster.create_tenant()
    keyring_dir = workdir / "bench-keys"
    keyring = Keyring(keyring_dir, scrypt_log2_n=12)
    keyring.generate("old", "x25519", PASSPHRASE)
    keyring.generate("new", "x25519", PASSPHRASE)
    env = _environment(cluster, tenant, key, secret, keyring_dir)
    s3 = cluster.s3(key, secret, max_pool_connections=16)
    bucket = "bench-rotate"
    s3.create_bucket(Bucket=bucket)
    keys = [f"r/{i:05d}" for i in range(objects)]
    old_public = keyring.load_public("old")
    put_started = time.perf_counter()
    _seal_and_put(s3, tenant, bucket, keys, old_public)
    put_s = time.perf_counter() - put_started
    cluster.wait_for(
        lambda: cluster.sql("SELECT count(*) AS n FROM replicas WHERE status <> 'ok'")[0]["n"] == 0,
        timeout_s=300,
        what="every replica ok",
    )

    started = time.perf_counter()
    code, out, err = _bp(env, "rotate", "--from", "old", "--to", "new", f"s3://{bucket}")
    rotate_s = time.perf_counter() - started
    if code != 0 or f"{objects} rotated, 0 skipped, 0 failed" not in err:
        raise AssertionError(f"bp rotate did not rotate every object: {err.strip()} {out[:500]}")
    new_info, old_info = keyring.info("new"), keyring.info("old")

    # The server alone: the items back to the old key, prepared untimed, then only the POSTs.
    plan = RotationPlan(
        bucket=bucket,
        tenant=tenant,
        old_keys={new_info.key_id: keyring.load_private("new", PASSPHRASE)},
        new=old_public,
    )
    with GatewayApi(
        cluster.endpoint, key, secret, region=cluster.settings.region, connections=10
    ) as api:
        items = _wrapped_back(api, plan, keys)
        server_started = time.perf_counter()
        with ThreadPoolExecutor(2) as poster:
            answers = list(poster.map(lambda b: api.rewrap(bucket, b), _chunks(items, MAX_BATCH)))
        server_s = time.perf_counter() - server_started
    refused = [r for batch in answers for r in batch if r.status != "ok"]
    if refused:
        raise AssertionError(f"{len(refused)} rewraps refused, e.g. {refused[0]}")
    under = cluster.sql(
        "SELECT count(*) AS n FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = $1 AND v.key_id = $2",
        bucket,
        old_info.key_id,
    )[0]["n"]
    if under != objects:
        raise AssertionError(f"{under} of {objects} objects are under the old key again")
    rate = objects / rotate_s
    server_rate = objects / server_s
    return {
        "objects": objects,
        "put_objects_per_s": objects / put_s,
        "rotate_seconds": rotate_s,
        "rotate_objects_per_s": rate,
        "rotate_summary": err.strip().splitlines()[-1],
        "server_rewrap_seconds": server_s,
        "server_rewrap_objects_per_s": server_rate,
        "ratio_end_to_end_over_server": rate / server_rate,
    }


def measure(quick: bool) -> dict[str, Any]:
    """Row P9 of the bench summary: ``bp rotate`` objects/s end to end (own federation)."""
    from tests.support.cluster import start_cluster

    objects = QUICK_OBJECTS if quick else FULL_OBJECTS
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="bp-bench-rotate-") as tmp,
        start_cluster(Path(tmp), overrides=OVERRIDES) as cluster,
    ):
        detail = _run(cluster, objects, Path(tmp))
    figure = detail["rotate_objects_per_s"]
    return {
        "id": "P9",
        "name": "bp rotate end to end",
        "figure": figure,
        "objects_per_s": figure,  # the key bench/targets.py reads (bench/README.md)
        "unit": "objects/s",
        "target": TARGET,
        "met": figure >= TARGET,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        **detail,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_rotate", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_OBJECTS} objects")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    result = measure(args.quick)
    print(
        f"bp rotate, {result['objects']} objects (X25519)\n"
        f"  end to end     {result['figure']:8.0f} objects/s  (target {TARGET}:"
        f" {'met' if result['met'] else 'NOT met'})  {result['rotate_summary']}\n"
        f"  server rewrap  {result['server_rewrap_objects_per_s']:8.0f} objects/s"
        f"  (?rewrap batches of 1000 alone)\n"
        f"  ratio end to end / server {result['ratio_end_to_end_over_server']:.2f}\n"
        f"  load average before/after {result['load_before'][0]:.1f} /"
        f" {result['load_after'][0]:.1f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
