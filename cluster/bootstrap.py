"""The composition root: the one place that wires PostgreSQL, Ray, Serve and the actors.

``run_gateway`` prepares the state directory (master key, admin token), the database
(created if missing, migrated), starts or joins Ray (with its dashboard on 127.0.0.1 unless
``Settings.dashboard`` is off: imports are submitted through its Job Submission API), deploys
the Serve application, waits until ``/health`` answers and starts the import keyholder
(``actors/import_keyholder.py``). ``serve_forever`` does that and then holds the process (and so the
local Ray head it owns) until SIGTERM or Ctrl-C. The CLI's ``up`` runs ``serve_forever`` in a
detached child and records its PID; ``down`` stops that PID.

This module imports Ray, Serve and every layer (about 4 s): the CLI imports it only in the
commands that start a gateway, so ``bulletproof status`` and friends stay quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import ray
from ray import serve

from actors.import_keyholder import keyholder
from actors.master_key import master_key_in_env
from actors.node_roles import BACKEND_IO, role_resources
from actors.replication_agent import start_agents
from actors.scheduler import start_scheduler
from cluster.cli_base import admin_token, tls_verify
from core.admin_roles import load_identity_config
from core.errors import InvalidInput
from core.sealing import generate_master_key, hash_token
from core.settings import Settings
from gateway.app import build_gateway_app
from jobs.catalog import build_worker, default_schedules
from schema.admin_tokens import AdminTokenRepository
from schema.db import Database, ensure_database
from schema.migrate import apply_migrations
from schema.roles import create_roles, grant_app

__all__ = [
    "prepare_database",
    "prepare_state",
    "run_gateway",
    "serve_forever",
    "start_self_healing",
    "stop_gateway",
    "wait_healthy",
]

log = logging.getLogger(__name__)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def prepare_state(settings: Settings) -> None:
    """Create the state directory, the master key and the bootstrap admin token, once; check
    the admin identity file (``BP_ADMIN_OIDC_FILE``) so a bad one stops ``up`` with its
    reason instead of leaving gateway replicas that cannot start."""
    if settings.admin_oidc_file:
        path = Path(settings.admin_oidc_file)
        if not path.is_absolute():
            raise SystemExit(f"admin_oidc_file must be an absolute path (replicas read it): {path}")
        try:
            load_identity_config(path.read_text())
        except (OSError, InvalidInput) as exc:
            raise SystemExit(f"admin_oidc_file {path}: {exc}") from exc
    settings.state_path.mkdir(parents=True, exist_ok=True)
    if not master_key_in_env() and not settings.master_key_path.exists():
        _write_private(settings.master_key_path, generate_master_key().decode() + "\n")
    if not settings.admin_token and not settings.admin_token_path.exists():
        _write_private(settings.admin_token_path, secrets.token_urlsafe(32) + "\n")


def _app_url(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


async def _owned_by(url: str, role: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return bool(found == role)


async def _prepare_roles(settings: Settings, created: bool) -> Settings:
    """On a database this start created: the owner and app roles (``schema/roles.py``), the
    app role's password in ``<state_dir>/db-app.password``. On every start where that file
    exists: migrations as the owner, the app's grants; returns the settings with
    ``database_url`` naming the app role (what the gateway, agents and workers connect as).
    Otherwise (a database from before roles, or ``database_app_role`` empty): unchanged."""
    owner, app = settings.database_owner_role, settings.database_app_role
    password_path = settings.state_path / "db-app.password"
    if not (owner and app) or not (created or password_path.exists()):
        await apply_migrations(settings.database_url)
        return settings
    database = urlsplit(settings.database_url).path.lstrip("/")
    if not created and not await _owned_by(settings.database_url, owner):
        # e.g. a snapshot restored into a new database by the configured user
        log.warning(
            "database %s is not owned by %s: running as the configured user", database, owner
        )
        await apply_migrations(settings.database_url)
        return settings
    if created:
        if not password_path.exists():
            _write_private(password_path, secrets.token_urlsafe(24) + "\n")
        conn = await asyncpg.connect(settings.database_url)
        try:
            await create_roles(
                conn,
                database=database,
                owner=owner,
                app=app,
                app_password=password_path.read_text().strip(),
            )
        finally:
            await conn.close()
    await apply_migrations(settings.database_url, role=owner)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'SET ROLE "{owner}"')
        await grant_app(conn, database=database, owner=owner, app=app)
    finally:
        await conn.close()
    url = _app_url(settings.database_url, app, password_path.read_text().strip())
    return dataclasses.replace(settings, database_url=url)


async def prepare_database(settings: Settings) -> Settings:
    """Create the database if missing, apply migrations, and on the first start register the
    bootstrap admin token's hash. Later starts never register a token again: a token that
    ``bulletproof admin token rotate`` revoked stays revoked even if it is still configured.
    Returns the settings the cluster's processes connect with (the app role's, see
    ``_prepare_roles``)."""
    created = await ensure_database(settings.database_url)
    settings = await _prepare_roles(settings, created)
    db = await Database.connect(settings.database_url, max_size=1)
    try:
        async with db.transaction() as conn:
            in_force = await AdminTokenRepository().register_first(
                conn, hash_token(admin_token(settings))
            )
        if not in_force:
            log.warning(
                "the configured bootstrap admin token is not the one in force (it was rotated:"
                " `bulletproof admin token rotate` wrote its successor to %s)",
                settings.admin_token_path,
            )
    finally:
        await db.close()
    return settings


def wait_healthy(settings: Settings, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(
                f"{settings.endpoint}/health", timeout=5, verify=tls_verify(settings)
            )
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise TimeoutError(
        f"gateway at {settings.endpoint} not healthy after {timeout_s:.0f}s ({last})"
    )


@contextlib.contextmanager
def _free_agent_port() -> Iterator[None]:
    """Start a local head whose dashboard agent listens on a free port.

    The agent serves the node side of the Job Submission API (imports are submitted through
    it) on a fixed port, 52365, whether or not the dashboard is on, and ``ray.init`` has no
    option to change it (``ray start`` has ``--dashboard-agent-listen-port``). When another Ray
    cluster on this machine holds that port (a second gateway, tests running side by side) the
    agent runs without its HTTP service and every submission fails with "No available agent".
    So the ``RayParams`` that ``ray.init`` builds get a port that is free now; nothing outside
    the cluster uses it (clients talk to the dashboard, which finds the agent through the GCS).
    """
    from ray._private import parameter

    with socket.socket() as probe:
        probe.bind(("", 0))
        port = int(probe.getsockname()[1])
    original = parameter.RayParams

    class _RayParams(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("dashboard_agent_listen_port", port)
            super().__init__(*args, **kwargs)

    parameter.RayParams = _RayParams  # type: ignore[misc]
    try:
        yield
    finally:
        parameter.RayParams = original  # type: ignore[misc]


def http_options(settings: Settings) -> dict[str, Any]:
    """Serve's HTTP proxy options: host and port, and TLS when a certificate is configured
    (refused at start if only half of it is, or a file is missing: never plain HTTP by
    accident when TLS was asked for)."""
    options: dict[str, Any] = {"host": settings.http_host, "port": settings.http_port}
    if settings.tls_cert_file or settings.tls_key_file:
        for name in ("tls_cert_file", "tls_key_file"):
            value = getattr(settings, name)
            if not value or not Path(value).is_file():
                raise InvalidInput(f"TLS needs BP_{name.upper()}: {value or 'not set'} is no file")
        options["ssl_certfile"] = settings.tls_cert_file
        options["ssl_keyfile"] = settings.tls_key_file
    return options


def run_gateway(settings: Settings) -> Settings:
    """Prepare everything and deploy the gateway on the Ray cluster (started if needed);
    returns the settings its processes connect with (``prepare_database``)."""
    prepare_state(settings)
    settings = asyncio.run(prepare_database(settings))
    connect_ray(settings)
    serve.start(http_options=http_options(settings))
    serve.run(build_gateway_app(settings), name="bulletproof", route_prefix="/")
    wait_healthy(settings)
    keyholder(settings)  # imports hand their passphrase to their Ray job through it
    return settings


def prepare_cluster(settings: Settings) -> None:
    """Everything but the gateway: for a gateway deployed the Ray way (``serve deploy``
    with ``deploy/serve.yaml``). The database migrated, the first admin token registered, and
    on the cluster the keyholder, the replication agents and the scheduler (detached actors:
    they stay when this process exits, and a second run finds them)."""
    prepare_state(settings)
    settings = asyncio.run(prepare_database(settings))
    connect_ray(settings)
    keyholder(settings)
    start_self_healing(settings)


def connect_ray(settings: Settings) -> None:
    """Join ``settings.ray_address``, or start a local head (dashboard as configured)."""
    if not ray.is_initialized():
        init_args: dict[str, object] = {
            "namespace": "bulletproof",
            "include_dashboard": settings.dashboard,
            "dashboard_host": settings.dashboard_host,
            "log_to_driver": False,
        }
        if settings.log_format == "json":
            # Ray's structured logs for every task and actor this job starts (the agents,
            # the scheduler, backend actors, import workers): a request id set by
            # core.request_context is one more field of each line.
            init_args["logging_config"] = ray.LoggingConfig(encoding="JSON")
        if settings.ray_address:
            init_args["address"] = settings.ray_address
        elif settings.ray_num_cpus:
            init_args["num_cpus"] = settings.ray_num_cpus
        with _free_agent_port():
            ray.init(**init_args)  # type: ignore[arg-type]


def start_self_healing(settings: Settings) -> None:
    """Start the replication agents and the scheduler of periodic workers (named, detached
    actors: joining a cluster where they already run finds them instead of doubling them).
    Called after the gateway is deployed; ``BP_AGENT_COUNT=0`` and
    ``BP_SCHEDULER_ENABLED=false`` turn either off (e.g. agents run outside Ray)."""
    if settings.agent_count > 0:
        start_agents(settings, settings.agent_count, resources=role_resources(BACKEND_IO))
    if settings.scheduler_enabled:
        start_scheduler(settings, default_schedules(settings), build_worker)


def stop_gateway() -> None:
    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def serve_forever(settings: Settings, pid_file: Path | None = None) -> None:
    """Run the gateway until SIGTERM/SIGINT, then stop everything this process started."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if pid_file is not None:  # first, so `down` can stop a gateway that is still starting
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
    try:
        settings = run_gateway(settings)
        start_self_healing(settings)
        # ray.init installs its own SIGTERM handler (drain for up to a minute, then exit);
        # ours goes back on top so `down` gets the quick, orderly shutdown below.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        print(f"bulletproof gateway ready at {settings.endpoint}", flush=True)
        stop.wait()
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
        stop_gateway()
