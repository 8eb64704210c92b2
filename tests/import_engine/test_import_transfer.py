"""Importing a real source (a moto server process) into a whole federation (three moto
backends, PostgreSQL, Redis, Ray) by running the import driver ``python -m jobs.importer`` as a
process, exactly as a Ray job runs it: 1,000 objects (one over 100 MiB, uploaded to the source
in parts, so its ETag follows the multipart rule; empty objects; URL-hostile keys) end GREEN;
every object decrypts with the tenant's private keys (both recipients) and equals the source; a
plaintext marker is on no backend; the source secret and the passphrase are in no table, no
Redis value, no log; a driver SIGKILLed midway and started again leaves one version per key
and no key missing; a second run copies only changed and new objects; a run without a held
passphrase fails clearly; a region lock no backend satisfies ends RED naming the rule."""

from __future__ import annotations

import io
import os
import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import ray
import redis
from boto3.s3.transfer import TransferConfig

from actors.import_keyholder import keyholder
from client.envelope import META_PREFIX
from client.recipe import unseal
from client.wrap import WrappedKey
from core.import_state import Color
from tests.support.cluster import Federation, start_cluster
from tests.support.import_rows import SPECIAL_KEYS as ALL_SPECIAL_KEYS
from tests.support.import_runs import (
    IMPORT_OVERRIDES,
    PASS,
    SOURCE_BUCKET,
    SOURCE_SECRET,
    R,
    Tenant,
    db_call,
    driver,
    hold_passphrase,
    new_run,
    rerun,
    run_driver,
    source_s3,
    status,
    wait_green,
)
from tests.support.processes import MotoServer

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
MARKER = b"PLAINTEXT-MARKER-" + secrets.token_hex(8).encode()
# Every URL-hostile key the lister's test uses, but those with dot segments or a leading
# "//", which an S3 client (boto3) normalises on the way to the gateway when reading back.
SPECIAL_KEYS = [k for k in ALL_SPECIAL_KEYS if "./" not in k and not k.startswith("//")]
EMPTY_KEYS = [f"empty/{i}" for i in range(10)]
BIG_KEY = "big/over-100MiB.bin"
MEDIUM_KEY = "medium/3MiB.bin"
DATA_KEYS = [f"data/{i:04d}.bin" for i in range(1000 - len(SPECIAL_KEYS) - len(EMPTY_KEYS) - 2)]


def _body(i: int) -> bytes:
    return os.urandom(i % 13 * 97) + MARKER + os.urandom(i % 5)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    # The import federation (tests/support/import_runs.py says why these settings).
    with start_cluster(tmp_path_factory.mktemp("bp-import"), overrides=IMPORT_OVERRIDES) as running:
        from cluster.bootstrap import start_self_healing

        start_self_healing(running.settings)
        yield running


@pytest.fixture(scope="module")
def source() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bodies(source: MotoServer) -> dict[str, bytes]:
    client = source_s3(source)
    client.create_bucket(Bucket=SOURCE_BUCKET)
    out = {k: b"" for k in EMPTY_KEYS}
    out.update({k: f"special {k} ".encode() + MARKER for k in SPECIAL_KEYS})
    out.update({k: _body(i) for i, k in enumerate(DATA_KEYS)})
    out[MEDIUM_KEY] = os.urandom(3 * MiB) + MARKER
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda kv: client.put_object(Bucket=SOURCE_BUCKET, Key=kv[0], Body=kv[1]),
                out.items(),
            )
        )
    big = MARKER + os.urandom(101 * MiB) + MARKER
    client.upload_fileobj(
        io.BytesIO(big),
        SOURCE_BUCKET,
        BIG_KEY,
        Config=TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=16 * MiB),
    )
    assert client.head_object(Bucket=SOURCE_BUCKET, Key=BIG_KEY)["ETag"].endswith('-7"')
    out[BIG_KEY] = big
    assert len(out) == 1000
    return out


@pytest.fixture(scope="module")
def tenant(fed: Federation) -> Tenant:
    return Tenant(fed)


def test_no_passphrase_fails_clearly(
    fed: Federation, tenant: Tenant, source: MotoServer, tmp_path: Path
) -> None:
    tenant.s3.create_bucket(Bucket="nopass")
    run_id = new_run(fed, tenant, source, "nopass")
    ray.get(keyholder(fed.settings).drop.remote(run_id))  # the keyholder runs, holds nothing
    assert run_driver(run_id, tmp_path / "driver.log", timeout_s=120) == 1
    run = db_call(fed, lambda conn: R.get_run(conn, run_id))
    assert run.state == "failed", (tmp_path / "driver.log").read_text()
    assert "no passphrase is held" in (run.last_error or "")
    assert "no passphrase is held" in (tmp_path / "driver.log").read_text()
    assert status(fed, run_id).color is Color.RED


@pytest.fixture(scope="module")
def imported(
    fed: Federation,
    tenant: Tenant,
    source: MotoServer,
    bodies: dict[str, bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[int, Path]:
    """The 1,000 objects imported into ``dest``, the first driver SIGKILLed midway."""
    logs = tmp_path_factory.mktemp("import-logs")
    tenant.s3.create_bucket(Bucket="dest")
    run_id = new_run(fed, tenant, source, "dest")
    hold_passphrase(fed, run_id)
    first = driver(run_id, logs / "driver-1.log")
    try:
        fed.wait_for(
            lambda: (
                fed.sql("SELECT objects_done FROM import_runs WHERE id = $1", run_id)[0][
                    "objects_done"
                ]
                >= 150
            ),
            timeout_s=300,
            what="the first driver to copy 150 objects",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    done_before = fed.sql("SELECT objects_done FROM import_runs WHERE id = $1", run_id)[0]
    assert done_before["objects_done"] < len(bodies), "killed too late to test a resume"
    started = time.monotonic()
    assert run_driver(run_id, logs / "driver-2.log") == 0, (logs / "driver-2.log").read_text()
    print(f"resumed import took {time.monotonic() - started:.1f}s")
    return run_id, logs


def test_import_ends_green_with_every_key_once(
    fed: Federation, imported: tuple[int, Path], bodies: dict[str, bytes]
) -> None:
    run_id, logs = imported
    wait_green(fed, run_id)
    run = db_call(fed, lambda conn: R.get_run(conn, run_id))
    assert (run.state, run.objects_total, run.objects_done, run.errors) == (
        "done",
        1000,
        1000,
        0,
    )
    assert run.bytes_done == sum(len(b) for b in bodies.values())
    versions = fed.sql(
        "SELECT v.key, count(*) AS n FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = 'dest' GROUP BY v.key"
    )
    assert {r["key"] for r in versions} == set(bodies)
    assert all(r["n"] == 1 for r in versions), [r for r in versions if r["n"] != 1]
    text = (logs / "driver-2.log").read_text()
    assert "obj/s" in text and "ETA" in text and f"import {run_id} done:" in text
    audit = fed.sql(
        "SELECT count(*) AS n FROM audit_log WHERE actor = $1 AND action = 'ImportObject'",
        f"import:{run_id}",
    )
    assert audit[0]["n"] >= 1000
    # Small objects' audit entries are appended a batch at a time (AuditLog.append_many):
    # the chain still verifies, with an entry for every object.
    verdict = fed.admin("GET", "/admin/audit/verify").json()
    assert verdict["ok"], verdict
    resources = fed.sql(
        "SELECT count(DISTINCT resource) AS n FROM audit_log WHERE actor = $1"
        " AND action = 'ImportObject'",
        f"import:{run_id}",
    )
    assert resources[0]["n"] == 1000


def test_every_object_decrypts_to_the_source(
    fed: Federation, tenant: Tenant, imported: tuple[int, Path], bodies: dict[str, bytes]
) -> None:
    def check(key: str) -> None:
        got = tenant.s3.get_object(Bucket="dest", Key=key)
        headers = {META_PREFIX + k: v for k, v in got["Metadata"].items()}
        plain = unseal(
            got["Body"].read(), headers, tenant.keys[0], tenant=tenant.name, bucket="dest", key=key
        )
        assert plain == bodies[key], key

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check, sorted(bodies)))
    # The second recipient reads with its wrap from the recipient list.
    for key in (BIG_KEY, MEDIUM_KEY, SPECIAL_KEYS[0], EMPTY_KEYS[0]):
        row = fed.sql(
            "SELECT r.wrapped_key FROM object_recipients r JOIN object_versions v"
            " ON v.id = r.version_pk JOIN buckets b ON b.id = v.bucket_id"
            " WHERE b.name = 'dest' AND v.key = $1 AND v.is_latest",
            key,
        )
        assert len(row) == 1
        got = tenant.s3.get_object(Bucket="dest", Key=key)
        headers = {META_PREFIX + k: v for k, v in got["Metadata"].items()}
        plain = unseal(
            got["Body"].read(),
            headers,
            tenant.keys[1],
            tenant=tenant.name,
            bucket="dest",
            key=key,
            other_wrapped_keys=[WrappedKey.from_bytes(bytes(row[0]["wrapped_key"]))],
        )
        assert plain == bodies[key]


def test_no_plaintext_and_no_secret_anywhere(fed: Federation, imported: tuple[int, Path]) -> None:
    _, logs = imported
    # The backends' stored bytes.
    for index in range(3):
        client = fed.backend_s3(index)
        bucket = fed.backend_bucket(index)
        keys = [
            o["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])
        ]
        assert keys
        for key in keys:
            assert MARKER not in client.get_object(Bucket=bucket, Key=key)["Body"].read(), key
    secrets_ = [SOURCE_SECRET.encode(), PASS.encode()]
    # Every table of PostgreSQL (bytea columns show as hex).
    tables = fed.sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    for table in tables:
        rows = fed.sql(f'SELECT row_to_json(t)::text AS j FROM "{table["tablename"]}" t')
        dump = "\n".join(r["j"] for r in rows).encode()
        for needle in (*secrets_, MARKER, MARKER.hex().encode()):
            assert needle not in dump, (table, needle)
    # Every Redis key and value.
    cache = redis.Redis.from_url(fed.redis.url)
    for name in cache.scan_iter(count=1000):
        kind = cache.type(name)
        if kind == b"string":
            values = [cache.get(name) or b""]
        elif kind == b"hash":
            values = [b" ".join(k + b"=" + v for k, v in cache.hgetall(name).items())]
        else:
            values = []
        for blob in (name, *values):
            for needle in (*secrets_, MARKER):
                assert needle not in blob, name
    # The drivers' logs and the Ray session's logs (workers, raylet, GCS, dashboard).
    session = Path(ray._private.worker._global_node.get_session_dir_path())  # noqa: SLF001
    files = [*logs.iterdir(), *(p for p in (session / "logs").rglob("*") if p.is_file())]
    for path in files:
        data = path.read_bytes()
        for needle in (*secrets_, MARKER):
            assert needle not in data, path


def test_second_run_copies_only_changed_and_new(
    fed: Federation,
    tenant: Tenant,
    source: MotoServer,
    imported: tuple[int, Path],
    bodies: dict[str, bytes],
    tmp_path: Path,
) -> None:
    run_id, _ = imported
    client = source_s3(source)
    changed = {DATA_KEYS[3]: b"changed " + MARKER, SPECIAL_KEYS[1]: b"changed too"}
    added = {"new/one": b"new " + MARKER, "new/two": b""}
    for key, body in {**changed, **added}.items():
        client.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=body)
    second = rerun(fed, run_id)
    hold_passphrase(fed, second)
    assert run_driver(second, tmp_path / "driver.log") == 0, (tmp_path / "driver.log").read_text()
    wait_green(fed, second)
    states = fed.sql(
        "SELECT state, count(*) AS n FROM import_objects WHERE run_id = $1 GROUP BY state",
        second,
    )
    assert {r["state"]: r["n"] for r in states} == {"verified": 4, "skipped": 998}
    for key, body in {**changed, **added}.items():
        got = tenant.s3.get_object(Bucket="dest", Key=key)
        headers = {META_PREFIX + k: v for k, v in got["Metadata"].items()}
        assert (
            unseal(
                got["Body"].read(),
                headers,
                tenant.keys[0],
                tenant=tenant.name,
                bucket="dest",
                key=key,
            )
            == body
        )
    bodies.update(changed)
    bodies.update(added)


def test_region_lock_without_compliant_backend_ends_red(
    fed: Federation,
    tenant: Tenant,
    source: MotoServer,
    bodies: dict[str, bytes],
    tmp_path: Path,
) -> None:
    tenant.s3.create_bucket(Bucket="locked")
    run_id = new_run(fed, tenant, source, "locked", prefix="empty/", region_lock=("mars",))
    hold_passphrase(fed, run_id)
    assert run_driver(run_id, tmp_path / "driver.log", timeout_s=300) == 0
    result = status(fed, run_id)
    assert result.color is Color.RED
    assert "import region lock mars" in result.reason
    errors = fed.sql(
        "SELECT DISTINCT error FROM import_objects WHERE run_id = $1 AND state = 'failed'",
        run_id,
    )
    assert len(errors) == 1 and "import region lock mars" in errors[0]["error"]
    placed = fed.sql(
        "SELECT count(*) AS n FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = 'locked'"
    )
    assert placed[0]["n"] == 0
    assert "RED" in (tmp_path / "driver.log").read_text()
