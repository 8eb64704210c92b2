"""Joining a Ray cluster an operator started, with Ray's token authentication left on.

``ray start --head`` (Ray 2.59+) turns token authentication on when a token exists, and a
client naming the cluster's address must then present it. This test generates a token in a
private HOME, starts a head with it (own ports and temp dir), points ``bulletproof up`` at it
with ``RAY_ADDRESS`` and checks an S3 round trip through the gateway it deployed there. Before
``cluster/ray_join.py`` the gateway's ``ray.init`` was refused with ``InvalidAuthToken``.
Every Ray process the head started is stopped by PID (found by the private temp dir)."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.integration.test_operator_cli import _drop, run
from tests.support.processes import free_port
from tests.support.ray_nodes import kill_tree, processes_under

pytestmark = pytest.mark.integration

RAY = Path(sys.executable).parent / "ray"
BIN = Path(sys.executable).parent / "bulletproof"


def test_up_joins_a_token_authenticated_cluster(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # Ray's socket paths must stay short: a temp dir of its own under /tmp.
    temp_dir = tempfile.mkdtemp(prefix="bpjoin-", dir="/tmp")
    gcs_port, dashboard_port, agent_port, http_port = (free_port() for _ in range(4))
    db = f"bp_join_{secrets.token_hex(4)}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base_env["HOME"] = str(home)
    generated = subprocess.run(
        [str(RAY), "get-auth-token", "--generate"],
        env=base_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert generated.returncode == 0, generated.stderr
    assert (home / ".ray" / "auth_token").read_text().strip()
    try:
        started = subprocess.run(
            [
                str(RAY),
                "start",
                "--head",
                f"--port={gcs_port}",
                f"--temp-dir={temp_dir}",
                "--num-cpus=2",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard_port}",
                f"--dashboard-agent-listen-port={agent_port}",
            ],
            env=base_env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        assert "Token authentication is enabled" in started.stdout + started.stderr

        env = {
            **base_env,
            "RAY_ADDRESS": f"127.0.0.1:{gcs_port}",
            "BP_STATE_DIR": str(tmp_path / "state"),
            "BP_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{db}",
            "BP_HTTP_PORT": str(http_port),
        }
        try:
            assert "gateway up" in run(env, "up")
            assert httpx.get(f"http://127.0.0.1:{http_port}/health").status_code == 200
            for name, region, country in (
                ("j1", "eu-west", "DE"),
                ("j2", "eu-central", "FR"),
                ("j3", "us-east", "US"),
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
                    country,
                )
            key, secret = run(env, "tenant", "create", "join", "--allow-plaintext").split()
            s3 = boto3.client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{http_port}",
                aws_access_key_id=key,
                aws_secret_access_key=secret,
                region_name="us-east-1",
                config=Config(s3={"addressing_style": "path"}),
            )
            s3.create_bucket(Bucket="joined")
            s3.put_object(Bucket="joined", Key="k", Body=b"through a joined cluster")
            assert s3.get_object(Bucket="joined", Key="k")["Body"].read() == (
                b"through a joined cluster"
            )
            assert "gateway stopped" in run(env, "down")
        finally:
            subprocess.run([str(BIN), "down"], env=env, capture_output=True, timeout=120)
            asyncio.run(_drop(db))
    finally:
        kill_tree(processes_under(temp_dir))
