"""The gateway deployed the Ray way: ``bulletproof prepare`` against a running cluster, then
``serve deploy`` with deploy/serve.yaml (its application builder, plain-argument settings and
autoscaling range), the port changed to a free one. Then: the proxy answers on that port,
backends and a tenant are added with the CLI, an S3 round trip works, and Serve reports the
deployment with the autoscaling range of the file. Every Ray process is stopped by PID."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest
import yaml
from botocore.config import Config

from tests.integration.test_operator_cli import _drop, run
from tests.support.processes import free_port
from tests.support.ray_nodes import Head

pytestmark = pytest.mark.integration

SERVE = Path(sys.executable).parent / "serve"
ROOT = Path(__file__).resolve().parents[2]


def test_serve_deploy_with_the_config_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ray_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    ray_env["HOME"] = str(home)
    head = Head(ray_env, num_cpus=2)
    http_port = free_port()
    db = f"bp_servecfg_{secrets.token_hex(4)}"
    state = tmp_path / "state"
    env = {
        **ray_env,
        "RAY_ADDRESS": head.address,
        "BP_STATE_DIR": str(state),
        "BP_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{db}",
        "BP_HTTP_PORT": str(http_port),
        "BP_AGENT_COUNT": "1",
    }
    config = yaml.safe_load((ROOT / "deploy/serve.yaml").read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": http_port}
    app = config["applications"][0]
    assert app["import_path"] == "gateway.app:app_builder"
    app["args"].update(
        {
            "state_dir": str(state),
            "redis_url": "redis://127.0.0.1:6379/0",
            "database_url": env["BP_DATABASE_URL"],
            "http_port": http_port,
        }
    )
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(yaml.safe_dump(config))
    try:
        head.start()
        assert "prepared" in run(env, "prepare")
        deployed = subprocess.run(
            [str(SERVE), "deploy", str(config_file), "-a", head.dashboard],
            env=ray_env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise AssertionError("the Serve-deployed gateway never became healthy")
        for name, region, country in (
            ("c1", "eu-west", "DE"),
            ("c2", "eu-central", "FR"),
            ("c3", "us-east", "US"),
        ):
            run(
                env, "backend", "add", name, "--type", "local", "--path", str(tmp_path / name),
                "--region", region, "--country", country, "--jurisdiction", country,
            )  # fmt: skip
        # Both replicas' registries know the three backends (they refresh every 2 s; until
        # then a write answered by the other replica would be refused for want of backends).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answers = [
                httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=10) for _ in range(12)
            ]
            if all(a.status_code == 200 and a.json()["backends"] == 3 for a in answers):
                break
            time.sleep(1)
        else:
            raise AssertionError("the replicas never all saw the three backends")
        key_id, secret = run(env, "tenant", "create", "servecfg", "--allow-plaintext").split()
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{http_port}",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket="servecfg")
        s3.put_object(Bucket="servecfg", Key="k", Body=b"deployed by serve deploy")
        assert s3.get_object(Bucket="servecfg", Key="k")["Body"].read() == (
            b"deployed by serve deploy"
        )
        shown = subprocess.run(
            [str(SERVE), "config", "-a", head.dashboard],
            env=ray_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert "gateway.app:app_builder" in shown.stdout
        details = httpx.get(f"{head.dashboard}/api/serve/applications/", timeout=30).json()
        gateway = details["applications"]["bulletproof"]["deployments"]["gateway"]
        autoscaling = gateway["deployment_config"]["autoscaling_config"]
        assert (autoscaling["min_replicas"], autoscaling["max_replicas"]) == (2, 8), autoscaling
        assert json.dumps(gateway["status"]) == '"HEALTHY"'
    finally:
        subprocess.run(
            [str(SERVE), "shutdown", "-a", head.dashboard, "-y"],
            env=ray_env, capture_output=True, timeout=120,
        )  # fmt: skip
        head.stop()
        asyncio.run(_drop(db))
