"""A whole Bulletproof federation for tests: real PostgreSQL (a private database), a private
Redis process, three moto S3 servers as separate processes, and the gateway deployed on a
local Ray cluster owned by the test process. Tests talk to it over HTTP with boto3.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import httpx
from botocore.config import Config

from core.settings import Settings, load_settings
from tests.support.processes import MotoServer, RedisServer, free_port

__all__ = ["BACKENDS", "Federation", "start_cluster"]

# name, region, country, jurisdiction: StandardClass (3 copies over >= 2 regions) uses all three.
BACKENDS = (
    ("b0", "eu-west", "DE", "EU"),
    ("b1", "eu-central", "FR", "EU"),
    ("b2", "us-east", "US", "US"),
)
MOTO_KEY, MOTO_SECRET = "testing", "testing"


@dataclass
class Federation:
    settings: Settings
    motos: list[MotoServer]
    redis: RedisServer
    admin_token: str

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint

    # -- admin -----------------------------------------------------------------------------
    def admin(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.endpoint}{path}",
            json=payload,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=60,
        )

    def add_moto_backend(
        self, name: str, moto: MotoServer, region: str, country: str, jur: str
    ) -> None:
        response = self.admin(
            "POST",
            "/admin/add-storage",
            {
                "name": name,
                "type": "s3",
                "endpoint": moto.endpoint,
                "bucket": f"store-{name}",
                "access_key": MOTO_KEY,
                "secret_key": MOTO_SECRET,
                "region": region,
                "country": country,
                "jurisdiction": jur,
                "provider": "moto",
                "create_bucket": True,
            },
        )
        assert response.status_code == 200, response.text

    def create_tenant(self, *, allow_plaintext: bool = False) -> tuple[str, str, str]:
        name = f"t{secrets.token_hex(4)}"
        response = self.admin(
            "POST", "/admin/tenants", {"name": name, "allow_plaintext": allow_plaintext}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return name, body["access_key_id"], body["secret_access_key"]

    def ping_backends(self) -> dict[str, Any]:
        response = self.admin("POST", "/admin/backends/ping")
        assert response.status_code == 200, response.text
        return dict(response.json())

    # -- clients -----------------------------------------------------------------------------
    def s3(self, access_key: str, secret: str, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
            region_name=self.settings.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1, "mode": "standard"},
                signature_version="s3v4",
                **config,
            ),
        )

    def backend_s3(self, index: int) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.motos[index].endpoint,
            aws_access_key_id=MOTO_KEY,
            aws_secret_access_key=MOTO_SECRET,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )

    def backend_bucket(self, index: int) -> str:
        return f"store-{BACKENDS[index][0]}"

    def restart_moto(self, index: int) -> None:
        """Start a killed backend again on its port (empty: moto keeps nothing) and re-probe."""
        moto = self.motos[index]
        moto.kill()
        moto.start()
        self.ping_backends()

    # -- metadata ----------------------------------------------------------------------------
    def sql(self, query: str, *args: Any) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(self.settings.database_url)
            try:
                return [dict(r) for r in await conn.fetch(query, *args)]
            finally:
                await conn.close()

        return asyncio.run(run())

    def replicas(self, bucket: str, key: str) -> list[dict[str, Any]]:
        return self.sql(
            "SELECT r.*, b.name AS backend FROM replicas r"
            " JOIN object_versions v ON v.id = r.version_pk"
            " JOIN buckets k ON k.id = v.bucket_id JOIN backends b ON b.id = r.backend_id"
            " WHERE k.name = $1 AND v.key = $2 AND v.is_latest ORDER BY b.name, r.part_number",
            bucket,
            key,
        )

    def wait_backends_known(self, count: int = 3, spread: int = 12) -> None:
        """Every gateway replica's registry lists ``count`` backends: ``spread`` health calls,
        which Serve spreads over the replicas, all say so. (Registries refresh every 2 s; right
        after start one replica may not know them yet, and a write it answers is refused.)"""

        def known() -> bool:
            answers = [httpx.get(f"{self.endpoint}/health", timeout=30) for _ in range(spread)]
            return all(a.status_code == 200 and a.json()["backends"] >= count for a in answers)

        self.wait_for(known, 60, f"every replica to know {count} backends")

    def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float = 20.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")


#: Virtual-hosted-style requests name ``<bucket>.s3.bp.test`` (tests resolve it to 127.0.0.1).
VIRTUAL_HOST_DOMAIN = "s3.bp.test"
#: The browser origin the gateway's CORS allows in tests.
UI_ORIGIN = "http://ui.bp.test:8080"


@contextlib.contextmanager
def start_cluster(
    state_dir: Path, *, overrides: dict[str, str] | None = None
) -> Iterator[Federation]:
    """The whole federation; ``overrides`` (``BP_*`` variables) are merged over the test
    settings. An empty value unsets a test setting (``load_settings`` ignores empty values), so
    the benchmark can run with production defaults, e.g. ``{"BP_PART_SIZE": ""}`` for 8 MiB."""
    from cluster.bootstrap import run_gateway, stop_gateway
    from cluster.cli_base import admin_token

    db_name = f"bp_test_{os.getpid()}_{secrets.token_hex(3)}"
    base = os.environ.get("BP_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
    redis = RedisServer(workdir=state_dir)
    motos = [MotoServer() for _ in BACKENDS]
    started: list[Any] = []
    try:
        redis.start()
        started.append(redis)
        for moto in motos:
            moto.start()
            started.append(moto)
        settings = load_settings(
            env={
                "BP_DATABASE_URL": f"{base}/{db_name}",
                "BP_REDIS_URL": redis.url,
                "BP_HTTP_PORT": str(free_port()),
                "BP_STATE_DIR": str(state_dir),
                "BP_HEALTH_INTERVAL_S": "1",
                "BP_PART_SIZE": str(1024 * 1024),
                "BP_BACKEND_TIMEOUT_S": "5",
                "BP_RAY_NUM_CPUS": "4",
                "BP_VIRTUAL_HOST_DOMAIN": VIRTUAL_HOST_DOMAIN,
                "BP_UI_ORIGINS": UI_ORIGIN,
                **(overrides or {}),
            }
        )
        run_gateway(settings)
        cluster = Federation(settings, motos, redis, admin_token(settings))
        for (name, region, country, jur), moto in zip(BACKENDS, motos, strict=True):
            cluster.add_moto_backend(name, moto, region, country, jur)
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            stop_gateway()
        for proc in started:
            proc.stop()
        with contextlib.suppress(Exception):
            asyncio.run(_drop_database(base, db_name))


async def _drop_database(base: str, name: str) -> None:
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
