"""A real multi-node Ray cluster on this machine: ``ray start --head`` plus two ``ray start
--address`` worker nodes (own ports, 127.0.0.1), with node roles as custom resources and node
labels, and ``bulletproof up`` joining it.

- the gateway replica lands on the node declaring ``gateway`` (the head), backend actors and
  the replication agent on ``backend_io`` nodes, and a ``local`` backend added with
  ``--node io-1`` on io-1 only;
- io-1 is stopped (its raylet and everything under it, by PID): the service goes on (writes
  and reads through the gateway), the backend actors that lived there come back on io-2, and
  the local backend pinned to io-1 is reported down, never recreated elsewhere;
- io-1 is started again: the local backend's actor is back on io-1 and the federation GREEN.

Every process is stopped by PID at the end (the nodes' raylets and their children, the GCS and
the rest of the head, found by the cluster's private temp dir, and the moto servers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.integration.test_operator_cli import _drop, run
from tests.support.processes import MotoServer, free_port
from tests.support.ray_nodes import RAY, Head, WorkerNode

pytestmark = pytest.mark.fault

BIN = Path(sys.executable).parent / "bulletproof"


def _wait(what: str, check: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = check()
            if last:
                return last
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def moto_servers() -> Iterator[list[MotoServer]]:
    servers = [MotoServer() for _ in range(3)]
    for server in servers:
        server.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_roles_pinning_node_loss_and_return(tmp_path: Path, moto_servers: list[MotoServer]) -> None:
    home = tmp_path / "home"
    home.mkdir()  # no Ray token here: this cluster runs without token authentication
    http_port = free_port()
    ray_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    ray_env["HOME"] = str(home)
    head = Head(ray_env, resources={"gateway": 1}, label="head")
    gcs, dashboard = head.address, head.dashboard
    db = f"bp_multinode_{secrets.token_hex(4)}"
    env = {
        **ray_env,
        "RAY_ADDRESS": gcs,
        "BP_STATE_DIR": str(tmp_path / "state"),
        "BP_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{db}",
        "BP_HTTP_PORT": str(http_port),
        "BP_AGENT_COUNT": "1",
        "BP_BACKEND_TIMEOUT_S": "5",
        "BP_HEALTH_INTERVAL_S": "1",
    }
    io1 = WorkerNode("io-1", {"backend_io": 4}, ray_env)
    io2 = WorkerNode("io-2", {"backend_io": 4}, ray_env)

    def actors() -> list[dict[str, Any]]:
        listed = subprocess.run(
            [str(RAY), "list", "actors", "--address", dashboard, "--format", "json",
             "--detail", "--limit", "1000"],
            env=ray_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        return list(json.loads(listed.stdout))

    def node_labels() -> dict[str, str]:
        listed = subprocess.run(
            [str(RAY), "list", "nodes", "--address", dashboard, "--format", "json", "--detail"],
            env=ray_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        return {
            n["node_id"]: n.get("labels", {}).get("bp-node", "?")
            for n in json.loads(listed.stdout)
            if n["state"] == "ALIVE"
        }

    def placed() -> dict[str, str]:
        """Alive actors by name (or class) -> the bp-node label of their node."""
        labels = node_labels()
        return {
            a.get("name") or a["class_name"]: labels.get(a["node_id"], "?")
            for a in actors()
            if a["state"] == "ALIVE"
        }

    def status() -> dict[str, Any]:
        return dict(json.loads(run(env, "status", "--json")))

    def health(name: str) -> str:
        return next(b["health"] for b in status()["backends"] if b["name"] == name)

    try:
        head.start()
        io1.start(gcs)
        io2.start(gcs)
        assert "gateway up" in run(env, "up")
        for i, (server, region, country) in enumerate(
            zip(moto_servers, ("eu-west", "eu-central", "us-east"), ("DE", "FR", "US"), strict=True)
        ):
            run(
                env, "backend", "add", f"s{i}", "--type", "minio",
                "--endpoint", server.endpoint, "--bucket", f"mn{i}", "--create-bucket",
                "--access-key", "test", "--secret-key", "testsecret",
                "--region", region, "--country", country, "--jurisdiction", country,
            )  # fmt: skip
        added = run(
            env, "backend", "add", "pinned", "--type", "local", "--path", str(tmp_path / "pinned"),
            "--node", "io-1", "--region", "eu-north", "--country", "SE", "--jurisdiction", "SE",
        )  # fmt: skip
        assert "backend pinned added" in added
        assert json.loads(run(env, "backend", "show", "pinned"))["node"] == "io-1"

        where = _wait("every actor placed", lambda: (p := placed()) and len(
            [n for n in p if n.startswith("backend:")]) == 4 and p)  # fmt: skip
        gateways = [label for name, label in where.items() if "gateway" in name.lower()]
        assert gateways and set(gateways) == {"head"}, where
        backends = {name.split(":")[1]: label for name, label in where.items()
                    if name.startswith("backend:")}  # fmt: skip
        assert backends["pinned"] == "io-1", where
        assert set(backends.values()) <= {"io-1", "io-2"}, where
        assert where["agent:0"] in {"io-1", "io-2"}, where

        key_id, secret = run(env, "tenant", "create", "mn", "--allow-plaintext").split()
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{http_port}",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )
        s3.create_bucket(Bucket="mnbucket")
        before = {f"before/{i}": os.urandom(2048) for i in range(12)}
        for name, body in before.items():
            s3.put_object(Bucket="mnbucket", Key=name, Body=body)
        _wait("GREEN before the node loss", lambda: status()["state"] == "GREEN")

        on_io1 = sorted(n for n, label in backends.items() if label == "io-1" and n != "pinned")
        io1.stop()
        # The pinned local backend is reported down; it is never recreated on another node.
        _wait("the pinned backend down", lambda: health("pinned") == "down")
        # The service goes on: reads of objects that had a copy on io-1, and new writes.
        for name, body in before.items():
            assert s3.get_object(Bucket="mnbucket", Key=name)["Body"].read() == body
        during = {f"during/{i}": os.urandom(2048) for i in range(6)}
        for name, body in during.items():
            s3.put_object(Bucket="mnbucket", Key=name, Body=body)
        # Actors that lived on io-1 and need only the role come back on io-2.
        moved = _wait(
            "io-1's backend actors on io-2",
            lambda: (p := placed()) and all(
                p.get(n) == "io-2" for n in where if n.split(":")[1:2] and
                n.split(":")[1] in on_io1
            ) and p,
        )  # fmt: skip
        assert not any(
            label != "io-1" for name, label in moved.items() if name.startswith("backend:pinned:")
        ), moved  # never elsewhere while its node is gone
        assert status()["state"] != "GREEN"

        io1.start(gcs)
        back = _wait(
            "the pinned backend's actor back on io-1",
            lambda: (p := placed()) and any(
                n.startswith("backend:pinned:") and label == "io-1" for n, label in p.items()
            ) and p,
            timeout_s=180,
        )  # fmt: skip
        assert back
        _wait("the pinned backend healthy", lambda: health("pinned") == "healthy", 120)
        _wait("GREEN after the node returned", lambda: status()["state"] == "GREEN", 180)
        for name, body in {**before, **during}.items():
            assert s3.get_object(Bucket="mnbucket", Key=name)["Body"].read() == body
        assert "gateway stopped" in run(env, "down")
    finally:
        subprocess.run([str(BIN), "down"], env=env, capture_output=True, timeout=120)
        for node in (io1, io2):
            node.stop()
        head.stop()
        asyncio.run(_drop(db))
