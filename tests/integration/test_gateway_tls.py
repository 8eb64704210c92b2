"""The gateway over HTTPS, its master key from the environment secret: `bulletproof up` with a
self-signed certificate for 127.0.0.1, boto3 verifying it (and refusing it when it does not
trust it), the CLI trusting it through BP_TLS_CA_FILE, and plain HTTP not served on that port.
Runs its own gateway (own Ray head, database and port), stopped by `down` and checked by PID."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

import asyncpg
import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import SSLError

from cluster.cli import _running
from core.sealing import generate_master_key
from tests.support.certs import self_signed
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent / "bulletproof"


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_https_gateway_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    db = f"bp_tls_{secrets.token_hex(4)}"
    port = free_port()
    env = {
        **os.environ,
        "BP_STATE_DIR": str(tmp_path / "state"),
        "BP_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{db}",
        "BP_HTTP_PORT": str(port),
        "BP_RAY_NUM_CPUS": "2",
        "BP_TLS_CERT_FILE": str(cert),
        "BP_TLS_KEY_FILE": str(key),
        "BP_TLS_CA_FILE": str(cert),
        "BP_AGENT_COUNT": "0",
        # The master key as an environment secret (what each node's `ray start` inherits):
        # no key file is written, and sealed tenant secrets still open on the replica.
        "BP_MASTER_KEY": generate_master_key().decode(),
        "BP_SCHEDULER_ENABLED": "false",
    }
    endpoint = f"https://127.0.0.1:{port}"
    try:
        assert f"gateway up at {endpoint}" in run(env, "up")
        pid = int((tmp_path / "state" / "gateway.pid").read_text())
        assert not (tmp_path / "state" / "master.key").exists()
        for name, region, country in (
            ("t1", "eu-west", "DE"),
            ("t2", "eu-central", "FR"),
            ("t3", "us-east", "US"),
        ):
            run(
                env, "backend", "add", name, "--type", "local", "--path", str(tmp_path / name),
                "--region", region, "--country", country, "--jurisdiction", "EU",
            )  # fmt: skip
        key_id, secret = run(env, "tenant", "create", "tls", "--allow-plaintext").split()

        def s3(verify: str | bool) -> object:
            return boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                region_name="us-east-1",
                verify=verify,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            )

        trusted = s3(str(cert))
        trusted.create_bucket(Bucket="tls")  # type: ignore[attr-defined]
        trusted.put_object(Bucket="tls", Key="k", Body=b"over tls")  # type: ignore[attr-defined]
        body = trusted.get_object(Bucket="tls", Key="k")["Body"].read()  # type: ignore[attr-defined]
        assert body == b"over tls"
        with pytest.raises(SSLError):  # the system's trust store does not know this certificate
            s3(True).list_buckets()  # type: ignore[attr-defined]
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert "gateway stopped" in run(env, "down")
        assert not _running(pid)
    finally:
        subprocess.run([str(BIN), "down"], env=env, capture_output=True, timeout=120)
        asyncio.run(_drop(db))


async def _drop(db: str) -> None:
    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()
