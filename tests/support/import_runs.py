"""Running bucket imports against a test federation: the source (a moto server process) and
its credentials, a tenant with published keys, import runs created in the store, the import
driver ``python -m jobs.importer`` as a process (exactly as a Ray job runs it), the run's
status and a bounded wait for GREEN that fails listing what is not ok. Shared by the
``tests/import_engine`` modules."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import ray
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from actors.import_keyholder import keyholder
from client.recipient import key_id, wrap_alg_for
from core.credential_seal import seal
from core.import_state import Color
from schema.db import Database
from schema.import_records import KeyRef
from schema.imports import ImportRepository
from tests.support.cluster import Federation
from tests.support.processes import MotoServer

__all__ = [
    "IMPORT_OVERRIDES",
    "PASS",
    "R",
    "ROOT",
    "SOURCE_BUCKET",
    "SOURCE_SECRET",
    "Tenant",
    "db_call",
    "driver",
    "hold_passphrase",
    "new_run",
    "rerun",
    "run_driver",
    "source_s3",
    "status",
    "wait_green",
]

ROOT = Path(__file__).resolve().parents[2]
R = ImportRepository()
PASS = "import passphrase " + secrets.token_hex(8)
SOURCE_SECRET = "srcSecret" + secrets.token_hex(12)
SOURCE_BUCKET = "legacy"
MiB = 1024 * 1024

#: The import federation's settings. Objects whose ciphertext exceeds 48 MiB go through the
#: multipart data path. Replication agents run, as in production: a replica a busy backend
#: could not take at once is finished by them (GREEN needs every replica ok). As in
#: production, the scheduler runs the repairer, which re-enqueues replication work a job could
#: not finish (dead-lettered, or lost with a killed worker); the other periodic workers are off
#: (not what these tests are about), and the agent's leases, deferrals and backoffs are short,
#: as in the fault tests, so retries happen within seconds.
IMPORT_OVERRIDES = {
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


def source_s3(server: MotoServer) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key=SOURCE_SECRET,
    )


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
