"""How a process reaches its backends' bytes: through Ray actors, or with its own clients.

The live-backend model (``actors.registry.BackendRegistry``) is one, whatever the transport;
only the five byte calls and the ping differ:

- ``RayTransport`` goes through the named ``BackendActor``s, so credentials stay inside the
  actors. ``fetch`` returns the object-store reference along with a zero-copy view of the bytes,
  and ``store`` hands that same reference to the target actor: a repair copies a part from one
  backend to another without this process ever copying it. Gateways and agents in the cluster.
- ``DirectTransport`` builds each backend's client in this process from its sealed credentials
  and the master key file (``bulletproof agent`` on a machine outside the Ray cluster, or an
  operator's one-off ``bulletproof worker run``). Credentials then live in this process's memory
  only; client calls run in threads.

Every failure leaves here as our domain errors (``BackendNotFound``, ``BackendUnavailable``),
never a Ray or vendor exception; ``_domain_error`` is that seam.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

from actors.backend_actor import (
    BackendSpec,
    build_client,
    build_reader,
    get_or_create_backend_actor,
)
from actors.backend_client import ObjectReader
from actors.node_roles import current_node_label
from core.errors import BackendNotFound, BackendUnavailable
from schema.records import BackendRecord

__all__ = [
    "BackendTransport",
    "DirectTransport",
    "Fetched",
    "RayTransport",
    "domain_error",
    "spec_of",
]


@dataclass(frozen=True)
class Fetched:
    """Bytes read from a backend: a read-only view, and how to pass them on without a copy."""

    data: memoryview
    ref: Any = None


def spec_of(record: BackendRecord, timeout_s: float) -> BackendSpec:
    """How to reach a stored backend (credentials still sealed)."""
    return BackendSpec(
        name=record.name,
        kind=record.kind,
        endpoint=record.endpoint,
        bucket=record.bucket,
        path=record.path,
        sealed_credentials=record.sealed_credentials,
        region=record.signing_region,
        addressing_style=record.addressing_style,
        create_bucket=record.manage_bucket,
        timeout_s=timeout_s,
        node_label=record.node_label,
    )


def domain_error(exc: BaseException) -> BaseException:
    """The domain error behind a Ray/asyncio/thread failure (RayTaskError carries it as
    ``cause``)."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, BackendNotFound | BackendUnavailable):
        return cause
    if isinstance(cause, TimeoutError | asyncio.TimeoutError):
        return BackendUnavailable("backend call timed out")
    return BackendUnavailable(f"backend call failed: {type(cause).__name__}")


class BackendTransport(Protocol):
    """The byte calls on one backend's connection (an actor handle or a client)."""

    #: True when connections are Ray actors (zero-copy refs, erasure rebuilds in Ray tasks).
    in_ray: bool

    def connect(self, record: BackendRecord, timeout_s: float) -> Any: ...

    def reader(self, record: BackendRecord, timeout_s: float) -> ObjectReader | None:
        """A client this process may read the backend's bytes with itself (a read lane,
        ``actors.read_lanes``), or None: read through ``fetch``. Blocking (builds a client)."""
        ...

    async def ping(self, conn: Any) -> dict[str, Any]: ...

    async def fetch(self, conn: Any, locator: str) -> Fetched: ...

    async def store(self, conn: Any, locator: str, data: Fetched | bytes) -> None: ...

    async def head(self, conn: Any, locator: str) -> int | None: ...

    async def delete(self, conn: Any, locator: str) -> None: ...

    async def list(self, conn: Any) -> list[str]: ...


class RayTransport:
    """Through the named, detached ``BackendActor``s (see the module docstring)."""

    in_ray = True

    def __init__(self, master_key_file: str) -> None:
        self._master_key_file = master_key_file

    def connect(self, record: BackendRecord, timeout_s: float) -> Any:
        return get_or_create_backend_actor(spec_of(record, timeout_s), self._master_key_file)

    def reader(self, record: BackendRecord, timeout_s: float) -> ObjectReader | None:
        """Reads skip the actor (issue 16: a GET's bytes no longer cross the actor and the
        object store). An S3 backend is reachable from any node; a ``local`` one only where
        its directory is: unpinned (one machine), or pinned to this process's node."""
        if record.kind == "local" and record.node_label not in (None, current_node_label()):
            return None
        return build_reader(spec_of(record, timeout_s), self._master_key_file)

    async def ping(self, conn: Any) -> dict[str, Any]:
        result: dict[str, Any] = await conn.ping.remote()
        return result

    async def fetch(self, conn: Any, locator: str) -> Fetched:
        ref = conn.get.remote(locator)
        array = await ref
        return Fetched(memoryview(array).cast("B"), ref)

    async def store(self, conn: Any, locator: str, data: Fetched | bytes) -> None:
        payload: Any = data
        if isinstance(data, Fetched):
            payload = data.ref if data.ref is not None else bytes(data.data)
        await conn.put.remote(locator, payload)

    async def head(self, conn: Any, locator: str) -> int | None:
        size: int | None = await conn.head.remote(locator)
        return size

    async def delete(self, conn: Any, locator: str) -> None:
        await conn.delete.remote(locator)

    async def list(self, conn: Any) -> list[str]:
        locators: list[str] = await conn.list_locators.remote(10**9)
        return locators


class DirectTransport:
    """Backend clients built in this process (see the module docstring)."""

    in_ray = False

    def __init__(self, master_key_file: str) -> None:
        self._master_key_file = master_key_file

    def connect(self, record: BackendRecord, timeout_s: float) -> Any:
        return build_client(spec_of(record, timeout_s), self._master_key_file)

    def reader(self, record: BackendRecord, timeout_s: float) -> ObjectReader | None:
        """None: ``fetch`` already reads with this process's own client."""
        return None

    async def ping(self, conn: Any) -> dict[str, Any]:
        def probe() -> float:
            start = time.perf_counter()
            conn.ensure_ready()
            conn.ping()
            return (time.perf_counter() - start) * 1000

        rtt = await asyncio.to_thread(probe)
        return {"healthy": True, "rtt_ms": rtt, "error": None}

    async def fetch(self, conn: Any, locator: str) -> Fetched:
        data: bytes = await asyncio.to_thread(conn.get, locator)
        return Fetched(memoryview(data))

    async def store(self, conn: Any, locator: str, data: Fetched | bytes) -> None:
        body = data.data if isinstance(data, Fetched) else data
        await asyncio.to_thread(conn.put, locator, body)

    async def head(self, conn: Any, locator: str) -> int | None:
        size: int | None = await asyncio.to_thread(conn.head, locator)
        return size

    async def delete(self, conn: Any, locator: str) -> None:
        await asyncio.to_thread(conn.delete, locator)

    async def list(self, conn: Any) -> list[str]:
        return await asyncio.to_thread(lambda: list(conn.list()))
