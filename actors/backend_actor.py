"""``BackendActor``: one Ray actor per storage backend.

It owns the backend's client (credentials unsealed in its memory only), its health and its
statistics. The actor's name carries a digest of how the backend is reached (``actor_name``):
when an operator changes the credentials, signing region or addressing style, processes
reconnect to a new actor by name while the old one finishes what it holds, and is then
stopped (``stop_backend_actor``). Data arrives as object-store references resolved by Ray to
read-only zero-copy numpy views, so one ``ray.put`` of a part fans out to every replica without
copying per backend. Only domain errors (``BackendUnavailable``, ``BackendNotFound``) leave
the actor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import ray
from botocore.credentials import Credentials

from actors.allocator import allocator_runtime_env
from actors.backend_client import (
    BackendClient,
    LocalDirectoryClient,
    ObjectReader,
    S3BackendClient,
    SignedGet,
    proxied,
)
from actors.master_key import load_master_key
from actors.node_roles import BACKEND_IO, pinned_to, role_resources
from core.errors import BackendUnavailable
from core.request_context import install_log_record_request_id, request_scope

__all__ = [
    "ACTOR_NAMESPACE",
    "BackendActor",
    "BackendSpec",
    "BackendStats",
    "actor_name",
    "build_client",
    "build_reader",
    "find_backend_actor",
    "get_or_create_backend_actor",
    "stop_backend_actor",
]

log = logging.getLogger(__name__)

ACTOR_NAMESPACE = "bulletproof"



def actor_name(spec: BackendSpec) -> str:
    """``backend:<name>:<digest of how it is reached>`` (see the module docstring)."""
    reach = json.dumps(
        [
            spec.kind,
            spec.endpoint,
            spec.bucket,
            spec.path,
            spec.sealed_credentials.hex() if spec.sealed_credentials else None,
            spec.region,
            spec.addressing_style,
            spec.create_bucket,
        ]
    )
    return f"backend:{spec.name}:{hashlib.sha256(reach.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class BackendSpec:
    """How to reach one backend; credentials stay sealed until the actor opens them."""

    name: str
    kind: str
    endpoint: str | None = None
    bucket: str | None = None
    path: str | None = None
    sealed_credentials: bytes | None = None
    #: The SigV4 signing region (the backend's, not our placement region).
    region: str = "us-east-1"
    addressing_style: str = "path"
    #: A missing bucket may be created (the operator allowed it at registration).
    create_bucket: bool = False
    timeout_s: float = 30.0
    #: A local backend's node (``actors.node_roles``): its actor runs there and nowhere else.
    node_label: str | None = None


@dataclass
class BackendStats:
    puts: int = 0
    gets: int = 0
    deletes: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors: int = 0
    put_seconds: float = 0.0
    get_seconds: float = 0.0
    last_rtt_ms: float | None = None
    last_error: str | None = None
    healthy: bool = True
    checked_at: float = field(default_factory=time.time)


def build_client(spec: BackendSpec, master_key_file: str) -> BackendClient:
    """The client for ``spec``, its credentials unsealed with the master key file."""
    if spec.kind == "local":
        assert spec.path, "local backend needs a path"
        client: Any = LocalDirectoryClient(spec.path)
    elif spec.kind == "s3":
        assert spec.endpoint and spec.bucket and spec.sealed_credentials
        master = load_master_key(master_key_file)
        creds = json.loads(master.open(spec.sealed_credentials))
        client = S3BackendClient(
            endpoint=spec.endpoint,
            bucket=spec.bucket,
            access_key=creds["access_key"],
            secret_key=creds["secret_key"],
            region=spec.region,
            addressing_style=spec.addressing_style,
            timeout_s=spec.timeout_s,
            create_bucket=spec.create_bucket,
        )
    else:
        raise ValueError(f"unknown backend kind {spec.kind!r}")
    return client  # type: ignore[no-any-return]


def build_reader(spec: BackendSpec, master_key_file: str) -> ObjectReader:
    """What this process reads the backend's objects with when it skips the actor (a read
    lane): for S3 only the signed GET (``SignedGet``), not a whole boto3 client, so a gateway
    replica's footprint grows by a connection pool per backend, not a botocore client; a
    directory's client is the directory."""
    if spec.kind != "s3" or spec.endpoint is None or proxied(spec.endpoint):
        return build_client(spec, master_key_file)
    assert spec.bucket and spec.sealed_credentials
    creds = json.loads(load_master_key(master_key_file).open(spec.sealed_credentials))
    return SignedGet(
        endpoint=spec.endpoint,
        bucket=spec.bucket,
        credentials=Credentials(creds["access_key"], creds["secret_key"]),
        region=spec.region,
        addressing_style=spec.addressing_style,
        timeout_s=spec.timeout_s,
    )


class BackendActor:
    """Ray actor (threaded: boto3 clients are thread-safe and release the GIL on I/O)."""

    def __init__(self, spec: BackendSpec, master_key_file: str) -> None:
        install_log_record_request_id()
        self.spec = spec
        self._client = build_client(spec, master_key_file)
        self._lock = threading.Lock()
        self._stats = BackendStats()
        self._ready = False

    def _ensure_ready(self) -> None:
        if not self._ready:
            self._client.ensure_ready()
            self._ready = True

    def _record(self, *, ok: bool, error: str | None = None, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)
            if not ok:
                self._stats.errors += 1
                self._stats.last_error = error
                self._stats.healthy = False

    def put(
        self,
        locator: str,
        data: np.ndarray | bytes,
        request_id: str | None = None,
        sha256: bytes | None = None,
    ) -> int:
        """Store ``data`` under ``locator``; returns the byte count. Idempotent.
        ``request_id``: the request this write serves, for the log of a failure. ``sha256``:
        the digest of ``data`` when the writer computed it (the backend checks the body
        against it; the client then need not hash the body again)."""
        view = memoryview(data.data if isinstance(data, np.ndarray) else data).cast("B")
        start = time.perf_counter()
        try:
            self._ensure_ready()
            self._client.put(locator, view, sha256)
        except BackendUnavailable as exc:
            self._record(ok=False, error=str(exc))
            with request_scope(request_id):
                log.warning("backend %s: put failed: %s", self.spec.name, exc)
            raise
        self._record(ok=True, puts=1, bytes_in=len(view), put_seconds=time.perf_counter() - start)
        return len(view)

    def get(self, locator: str, request_id: str | None = None) -> np.ndarray:
        """The stored bytes; returned as an array so the caller reads them zero-copy."""
        start = time.perf_counter()
        try:
            data = self._client.get(locator)
        except BackendUnavailable as exc:
            self._record(ok=False, error=str(exc))
            with request_scope(request_id):
                log.warning("backend %s: get failed: %s", self.spec.name, exc)
            raise
        self._record(ok=True, gets=1, bytes_out=len(data), get_seconds=time.perf_counter() - start)
        return np.frombuffer(data, dtype=np.uint8)

    def head(self, locator: str) -> int | None:
        return self._client.head(locator)

    def delete(self, locator: str) -> None:
        self._client.delete(locator)
        self._record(ok=True, deletes=1)

    def list_locators(self, limit: int = 100_000) -> list[str]:
        out = []
        for locator in self._client.list():
            out.append(locator)
            if len(out) >= limit:
                break
        return out

    def ping(self) -> dict[str, Any]:
        """Probe the backend; never raises, so a health sweep sees every backend's state."""
        start = time.perf_counter()
        try:
            # Re-check the bucket/directory on every ping: a backend that lost it (wiped,
            # restarted empty) gets it back, and the lost replicas show up as missing on read.
            self._client.ensure_ready()
            self._ready = True
            self._client.ping()
        except BackendUnavailable as exc:
            with self._lock:
                self._stats.healthy = False
                self._stats.last_error = str(exc)
                self._stats.checked_at = time.time()
            return {
                "healthy": False,
                "rtt_ms": None,
                "error": str(exc),
                "counters": self._counters(),
            }
        rtt = (time.perf_counter() - start) * 1000
        with self._lock:
            self._stats.healthy = True
            self._stats.last_rtt_ms = rtt
            self._stats.last_error = None
            self._stats.checked_at = time.time()
        return {"healthy": True, "rtt_ms": rtt, "error": None, "counters": self._counters()}

    def _counters(self) -> dict[str, float]:
        """Cumulative since the actor started: the health recorder diffs two probes' values
        (``core.health``) for the error rate and throughput between them."""
        with self._lock:
            s = self._stats
            return {
                "calls": float(s.puts + s.gets + s.deletes + s.errors),
                "errors": float(s.errors),
                "bytes": float(s.bytes_in + s.bytes_out),
                "busy_s": s.put_seconds + s.get_seconds,
            }

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self._stats)


def placement_options(spec: BackendSpec) -> dict[str, Any]:
    """Where the actor may run: a pinned local backend on its node only; any other on a
    ``backend_io`` node when the cluster declares that role."""
    if spec.node_label:
        return pinned_to(spec.node_label)
    return {"resources": role_resources(BACKEND_IO)}


def get_or_create_backend_actor(spec: BackendSpec, master_key_file: str) -> Any:
    """The named, detached actor for ``spec``; created on first use, restarted by Ray on failure."""
    remote_cls = ray.remote(BackendActor)
    return remote_cls.options(  # type: ignore[attr-defined]
        name=actor_name(spec),
        namespace=ACTOR_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=2,
        max_concurrency=32,
        num_cpus=0,
        # glibc settings that keep a threaded actor's heap from holding on to its bursts.
        runtime_env=allocator_runtime_env(),
        **placement_options(spec),
    ).remote(spec, master_key_file)


def find_backend_actor(backend_name: str) -> Any:
    """The running actor of a backend by its name alone (benchmarks and tools that do not hold
    the stored spec); None when there is none."""
    prefix = f"backend:{backend_name}:"
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") == ACTOR_NAMESPACE and entry.get("name", "").startswith(prefix):
            return ray.get_actor(entry["name"], namespace=ACTOR_NAMESPACE)
    return None


def stop_backend_actor(spec: BackendSpec) -> bool:
    """Stop the actor of ``spec`` for good (a removed backend, or replaced connection
    settings); False when it was not running."""
    try:
        handle = ray.get_actor(actor_name(spec), namespace=ACTOR_NAMESPACE)
    except ValueError:
        return False
    ray.kill(handle, no_restart=True)
    return True
