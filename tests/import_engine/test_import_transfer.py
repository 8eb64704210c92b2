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

import asyncio
import io
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
import ray
import redis
from boto3.s3.transfer import TransferConfig
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from actors.import_keyholder import keyholder
from client.envelope import META_PREFIX
from client.recipe import unseal
from client.recipient import key_id, wrap_alg_for
from client.wrap import WrappedKey
from core.credential_seal import seal
from core.import_state import Color
from schema.db import Database
from schema.import_records import KeyRef
from schema.imports import ImportRepository
from tests.support.cluster import Federation, start_cluster
from tests.support.import_rows import SPECIAL_KEYS as ALL_SPECIAL_KEYS
from tests.support.processes import MotoServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
R = ImportRepository()
MiB = 1024 * 1024
PASS = "import passphrase " + secrets.token_hex(8)
SOURCE_SECRET = "srcSecret" + secrets.token_hex(12)
MARKER = b"PLAINTEXT-MARKER-" + secrets.token_hex(8).encode()
SOURCE_BUCKET = "legacy"
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
    # Objects whose ciphertext exceeds 48 MiB go through the multipart data path. Replication
    # agents run, as in production: a replica a busy backend could not take at once is
    # finished by them (GREEN needs every replica ok).
    # As in production, the scheduler runs the repairer, which re-enqueues replication work a
    # job could not finish (dead-lettered, or lost with a killed worker); the other periodic
    # workers are off (not what these tests are about), and the agent's leases, deferrals and
    # backoffs are short, as in the fault tests, so retries happen within seconds.
    overrides = {
        "BP_MAX_OBJECT_SIZE": str(48 * MiB),
        "BP_AGENT_COUNT": "1",
        "BP_AGENT_LEASE_S": "6",
        "BP_AGENT_POLL_S": "0.3",
        "BP_AGENT_DEFER_S": "1",
        "BP_JOB_BACKOFF_BASE_S": "0.5",
        "BP_JOB_BACKOFF_MAX_S": "5",
        "BP_DEAD_JOB_COOLDOWN_S": "5",
        "BP_SCHEDULER_ENABLED": "true",
        "BP_REPAIR_INTERVAL_S": "5",
        "BP_SCRUB_INTERVAL_S": "0",
        "BP_PLACEMENT_INTERVAL_S": "0",
        "BP_VACUUM_INTERVAL_S": "0",
        "BP_UPLOAD_EXPIRY_INTERVAL_S": "0",
    }
    with start_cluster(tmp_path_factory.mktemp("bp-import"), overrides=overrides) as running:
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


def source_s3(server: MotoServer) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key=SOURCE_SECRET,
    )


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


class Tenant:
    def __init__(self, fed: Federation) -> None:
        self.name, access, secret = fed.create_tenant()
        self.s3 = fed.s3(access, secret)
        self.id = fed.sql("SELECT id FROM tenants WHERE name = $1", self.name)[0]["id"]
        self.keys = [x25519.X25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())]
        for private in self.keys:
            public = private.public_key()
            pem = public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
            fed.sql(
                "INSERT INTO tenant_public_keys (tenant_id, key_id, key_version, wrap_alg,"
                " public_key_pem) VALUES ($1, $2, 1, $3, $4)",
                self.id,
                key_id(public),
                wrap_alg_for(public),
                pem,
            )
        self.refs = [KeyRef(key_id(k.public_key()), 1) for k in self.keys]


@pytest.fixture(scope="module")
def tenant(fed: Federation) -> Tenant:
    return Tenant(fed)


def db_call(fed: Federation, fn: Any) -> Any:
    async def run() -> Any:
        db = await Database.connect(fed.settings.database_url, max_size=2)
        try:
            async with db.transaction() as conn:
                return await fn(conn)
        finally:
            await db.close()

    return asyncio.run(run())


def new_run(
    fed: Federation,
    tenant: Tenant,
    server: MotoServer,
    dest: str,
    *,
    prefix: str = "",
    region_lock: tuple[str, ...] = (),
) -> int:
    sealed = seal({"access_key": "testing", "secret_key": SOURCE_SECRET}, PASS)

    async def create(conn: Any) -> int:
        src = await R.create_source(
            conn,
            tenant.id,
            f"src-{secrets.token_hex(3)}",
            endpoint=server.endpoint,
            bucket=SOURCE_BUCKET,
            prefix=prefix,
            sealed=sealed,
        )
        run = await R.create_run(
            conn, tenant.id, src.id, dest, recipients=tenant.refs, region_lock=region_lock
        )
        return run.id

    return int(db_call(fed, create))


def rerun(fed: Federation, run_id: int) -> int:
    """A new run of the same source into the same destination as ``run_id``."""

    async def create(conn: Any) -> int:
        old = await R.get_run(conn, run_id)
        run = await R.create_run(
            conn,
            old.tenant_id,
            old.source_id,
            old.dest_bucket,
            recipients=old.recipients,
            dest_prefix=old.dest_prefix,
        )
        return run.id

    return int(db_call(fed, create))


def driver(run_id: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobs.importer",
                "--run-id",
                str(run_id),
                "--lease-s",
                "8",
                "--progress-every-s",
                "2",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run_driver(run_id: int, log: Path, timeout_s: float = 600) -> int:
    proc = driver(run_id, log)
    try:
        return proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()


def status(fed: Federation, run_id: int) -> Any:
    return db_call(fed, lambda conn: R.status(conn, run_id))


def wait_green(fed: Federation, run_id: int, timeout_s: float = 300) -> None:
    """Wait for GREEN; on time-out fail with the run's last colour and reason."""
    deadline = time.monotonic() + timeout_s
    while (last := status(fed, run_id)).color is not Color.GREEN:
        if time.monotonic() >= deadline:
            stuck = fed.sql(
                "SELECT r.version_pk, r.backend_id, r.part_number, r.status,"
                " j.kind, j.status AS job, j.attempts, j.last_error"
                " FROM replicas r LEFT JOIN jobs j ON (j.payload->>'version_pk')::bigint"
                " = r.version_pk AND j.kind IN ('replicate', 'repair')"
                " WHERE r.status <> 'ok' ORDER BY r.version_pk LIMIT 20"
            )
            agents = fed.sql("SELECT kind, status, count(*) AS n FROM jobs GROUP BY 1, 2")
            raise AssertionError(
                f"not GREEN after {timeout_s}s: {last}; replicas not ok and their jobs: "
                f"{stuck}; jobs: {agents}"
            )
        time.sleep(0.5)


def hold_passphrase(fed: Federation, run_id: int) -> None:
    ray.get(keyholder(fed.settings).put.remote(run_id, PASS))


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
