"""The operator CLI contract: `bulletproof up` returns once /health answers, `backend add`,
`tenant create` (prints ACCESS_KEY_ID SECRET on one line), `status`, and `down` stops the
process `up` started (checked by its PID). Runs its own gateway (own Ray head, database, port)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import boto3
import httpx
import pytest
from botocore.config import Config

from cluster.cli import _running
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent / "bulletproof"


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_up_backend_tenant_status_down(tmp_path: Path) -> None:
    db = f"bp_cli_{secrets.token_hex(4)}"
    port = free_port()
    env = {
        **os.environ,
        "BP_STATE_DIR": str(tmp_path / "state"),
        "BP_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{db}",
        "BP_HTTP_PORT": str(port),
        "BP_RAY_NUM_CPUS": "2",
        "BP_METRICS_INTERVAL_S": "2",
    }
    try:
        assert "gateway up" in run(env, "up")
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        pid = int((tmp_path / "state" / "gateway.pid").read_text())
        for name, region, country in (
            ("d1", "eu-west", "DE"),
            ("d2", "eu-central", "FR"),
            ("d3", "us-east", "US"),
        ):
            run(
                env,
                "backend",
                "add",
                name,
                "--type",
                "local",
                "--path",
                str(tmp_path / name),
                "--region",
                region,
                "--country",
                country,
                "--jurisdiction",
                country[:2],
            )
        status = run(env, "status")
        assert all(name in status for name in ("d1", "d2", "d3"))
        deadline = time.monotonic() + 30  # new backend actors may miss their first ping
        while "DOWN" in status and time.monotonic() < deadline:
            time.sleep(1)
            status = run(env, "status")
        assert "DOWN" not in status, status
        # The backend commands, on a fourth backend that holds nothing yet.
        added = run(
            env, "backend", "add", "d4", "--type", "local", "--path", str(tmp_path / "d4"),
            "--region", "ap-south", "--country", "IN", "--jurisdiction", "IN",
            "--sla-availability", "99.9", "--tenants", "*",
        )  # fmt: skip
        assert "backend d4 added (local, ap-south): probe rtt" in added
        assert "d4" in run(env, "backend", "list")
        updated = run(env, "backend", "update", "d4", "--sla-latency-ms", "150", "--sse", "true")
        assert "backend d4 updated: sla_latency_ms, supports_sse" in updated
        shown = json.loads(run(env, "backend", "show", "d4"))
        assert shown["sla"] == {"availability": 99.9, "latency_ms": 150.0}
        assert shown["flags"]["supports_sse"] and shown["drain"]["pieces_left"] == 0
        assert "0 moves queued" in run(env, "backend", "drain", "d4", "--wait", "10")
        assert "removed" in run(env, "backend", "remove", "d4")
        assert "d4" not in run(env, "status")
        line = run(env, "tenant", "create", "cli-tenant", "--allow-plaintext").strip()
        key, secret = line.split(" ")
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket="cli")
        s3.put_object(Bucket="cli", Key="hello", Body=b"world")
        assert s3.get_object(Bucket="cli", Key="hello")["Body"].read() == b"world"
        # Acknowledged at 2 of 3 copies; the third lands in the background.
        deadline = time.monotonic() + 30
        while True:
            stored = [
                p for d in ("d1", "d2", "d3") for p in (tmp_path / d).rglob("*") if p.is_file()
            ]
            if len(stored) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(stored) == 3 and all(p.read_bytes() == b"world" for p in stored)
        # `status --json`: one object for scripts, judged from placement and health.
        doc = json.loads(run(env, "status", "--json"))
        assert doc["state"] == "GREEN", doc["reasons"]
        assert doc["placement"]["objects"]["full"] == 1
        assert doc["placement"]["bytes"]["full"] == len(b"world")
        assert {b["name"] for b in doc["backends"]} == {"d1", "d2", "d3"}
        assert isinstance(doc["queue"], list)
        assert doc["dashboard_url"].startswith("http://127.0.0.1:")
        assert doc["metrics_urls"], doc
        scraped = httpx.get(doc["metrics_urls"][0], timeout=10)
        assert scraped.status_code == 200 and "# TYPE" in scraped.text
        # The bulletproof_* metrics reach Prometheus' scrape address (Ray exports them with
        # its "ray_" namespace): requests by operation and code, quorum outcomes, and the
        # sampler's federation gauges.
        wanted = (
            'bulletproof_requests_total{',
            'operation="PutObject"',
            "bulletproof_quorum_writes_total{",
            "bulletproof_request_seconds_bucket{",
            "bulletproof_federation_state",
            'bulletproof_objects{',
        )
        deadline = time.monotonic() + 90  # Ray exports every few seconds; the sampler every 2
        text = ""
        while time.monotonic() < deadline:
            text = "".join(httpx.get(url, timeout=10).text for url in doc["metrics_urls"])
            if all(w in text for w in wanted):
                break
            time.sleep(2)
        missing = [w for w in wanted if w not in text]
        assert not missing, missing
        human = run(env, "status")
        assert human.startswith("federation: GREEN") and "metrics: http://" in human
        assert "gateway stopped" in run(env, "down")
        # Exited: gone, or a zombie for the instant before init reaps it.
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
