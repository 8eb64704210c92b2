"""Byte access to every backend for the self-healing code, with or without Ray.

``BackendPool`` is what agents and workers use: the live backend handles (record, health,
RTT, ``view()`` for placement) and five calls per backend (fetch, store, head, delete, list)
that raise only our domain errors (``BackendNotFound``, ``BackendUnavailable``). Two
implementations:

- ``RayBackendPool`` goes through the named ``BackendActor``s (via ``BackendRegistry``), so
  credentials stay inside the actors. ``fetch`` returns the object-store reference along with a
  zero-copy view of the bytes, and ``store`` hands that same reference to the target actor:
  a repair copies a part from one backend to another without the agent ever copying it.
- ``DirectBackendPool`` builds each backend's client in this process from its sealed
  credentials and the master key file (``bulletproof agent`` on a machine outside the Ray
  cluster, or an operator's one-off ``bulletproof worker run``). Credentials then live in
  this process's memory only; client calls run in threads.

Both lower a backend's health at once when a call fails (passive detection) and refresh the
registry from PostgreSQL periodically, so a backend added at run time shows up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from actors.backend_actor import build_client
from actors.registry import BackendHandle, BackendRegistry, spec_of
from core.errors import BackendNotFound, BackendUnavailable
from schema.store import MetadataStore

__all__ = ["BackendPool", "DirectBackendPool", "Fetched", "RayBackendPool"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Fetched:
    """Bytes read from a backend: a read-only view, and how to pass them on without a copy."""

    data: memoryview
    ref: Any = None


class BackendPool(Protocol):
    async def current(self) -> list[BackendHandle]: ...

    async def refresh(self) -> None: ...

    def get(self, backend_id: int) -> BackendHandle | None: ...

    def mark_failed(self, backend_id: int, error: str) -> None: ...

    async def ping_all(self) -> dict[str, dict[str, Any]]: ...

    async def fetch(self, backend_id: int, locator: str) -> Fetched: ...

    async def store(self, backend_id: int, locator: str, data: Fetched | bytes) -> None: ...

    async def head(self, backend_id: int, locator: str) -> int | None: ...

    async def delete(self, backend_id: int, locator: str) -> None: ...

    async def list(self, backend_id: int) -> list[str]: ...

    async def close(self) -> None: ...


def _domain_error(exc: BaseException) -> BaseException:
    """The domain error behind a Ray/asyncio failure (RayTaskError carries it as ``cause``)."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, BackendNotFound | BackendUnavailable):
        return cause
    if isinstance(cause, TimeoutError | asyncio.TimeoutError):
        return BackendUnavailable("backend call timed out")
    return BackendUnavailable(f"backend call failed: {type(cause).__name__}")


class _PoolBase(ABC):
    _timeout: float

    @abstractmethod
    def get(self, backend_id: int) -> BackendHandle | None:
        """The handle of a backend, or None if it is not (or no longer) registered."""

    @abstractmethod
    def mark_failed(self, backend_id: int, error: str) -> None:
        """Lower a backend's health after a failed call."""

    def _handle(self, backend_id: int) -> BackendHandle:
        handle = self.get(backend_id)
        if handle is None:
            raise BackendUnavailable(f"backend {backend_id} is not registered (or removed)")
        return handle

    async def _guard(
        self, backend_id: int, call: Callable[[], Awaitable[T]], timeout_s: float | None = None
    ) -> T:
        try:
            return await asyncio.wait_for(call(), timeout=timeout_s or self._timeout)
        except Exception as exc:
            error = _domain_error(exc)
            if isinstance(error, BackendUnavailable):
                self.mark_failed(backend_id, str(error))
            raise error from None


class RayBackendPool(_PoolBase):
    """Through the named ``BackendActor``s (see the module docstring)."""

    def __init__(
        self, registry: BackendRegistry, *, timeout_s: float = 30.0, list_timeout_s: float = 600.0
    ) -> None:
        self.registry = registry
        self._timeout = timeout_s
        self._list_timeout = list_timeout_s

    async def current(self) -> list[BackendHandle]:
        return await self.registry.current()

    async def refresh(self) -> None:
        await self.registry.refresh()

    def get(self, backend_id: int) -> BackendHandle | None:
        return self.registry.get(backend_id)

    def mark_failed(self, backend_id: int, error: str) -> None:
        self.registry.mark_failed(backend_id, error)

    async def ping_all(self) -> dict[str, dict[str, Any]]:
        return await self.registry.ping_all(record=False)  # the gateway owns stored health

    async def fetch(self, backend_id: int, locator: str) -> Fetched:
        actor = self._handle(backend_id).actor
        ref = actor.get.remote(locator)

        async def get() -> Any:
            return await ref

        array = await self._guard(backend_id, get)
        return Fetched(memoryview(array).cast("B"), ref)

    async def store(self, backend_id: int, locator: str, data: Fetched | bytes) -> None:
        actor = self._handle(backend_id).actor
        payload = data.ref if isinstance(data, Fetched) and data.ref is not None else data
        if isinstance(payload, Fetched):
            payload = bytes(payload.data)

        async def put() -> Any:
            return await actor.put.remote(locator, payload)

        await self._guard(backend_id, put)

    async def head(self, backend_id: int, locator: str) -> int | None:
        actor = self._handle(backend_id).actor

        async def head() -> Any:
            return await actor.head.remote(locator)

        size: int | None = await self._guard(backend_id, head)
        return size

    async def delete(self, backend_id: int, locator: str) -> None:
        actor = self._handle(backend_id).actor

        async def delete() -> Any:
            return await actor.delete.remote(locator)

        await self._guard(backend_id, delete)

    async def list(self, backend_id: int) -> list[str]:
        actor = self._handle(backend_id).actor

        async def listing() -> Any:
            return await actor.list_locators.remote(10**9)

        locators: list[str] = await self._guard(backend_id, listing, self._list_timeout)
        return locators

    async def close(self) -> None:
        return None


class DirectBackendPool(_PoolBase):
    """Backend clients built in this process (see the module docstring)."""

    def __init__(
        self,
        store: MetadataStore,
        master_key_file: str,
        *,
        timeout_s: float = 30.0,
        refresh_interval_s: float = 5.0,
        list_timeout_s: float = 600.0,
    ) -> None:
        self._store = store
        self._master_key_file = master_key_file
        self._timeout = timeout_s
        self._list_timeout = list_timeout_s
        self._refresh_interval = refresh_interval_s
        self._handles: dict[int, BackendHandle] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def current(self) -> list[BackendHandle]:
        if time.monotonic() - self._loaded_at > self._refresh_interval:
            await self.refresh()
        return list(self._handles.values())

    async def refresh(self) -> None:
        async with self._lock:
            async with self._store.db.connection() as conn:
                records = await self._store.backends.list(conn)
            fresh: dict[int, BackendHandle] = {}
            for record in records:
                old = self._handles.get(record.id)
                if old is not None and (
                    old.record.endpoint,
                    old.record.path,
                    old.record.bucket,
                ) == (
                    record.endpoint,
                    record.path,
                    record.bucket,
                ):
                    old.record = record
                    if not old.failed_at:
                        old.healthy = record.healthy
                    fresh[record.id] = old
                    continue
                client = build_client(spec_of(record, self._timeout), self._master_key_file)
                fresh[record.id] = BackendHandle(
                    record=record, actor=client, healthy=record.healthy, rtt_ms=record.rtt_ms
                )
            self._handles = fresh
            self._loaded_at = time.monotonic()

    def get(self, backend_id: int) -> BackendHandle | None:
        return self._handles.get(backend_id)

    def mark_failed(self, backend_id: int, error: str) -> None:
        handle = self._handles.get(backend_id)
        if handle is not None and handle.healthy:
            log.warning("backend %s marked unhealthy: %s", handle.name, error)
            handle.healthy = False
            handle.failed_at = time.monotonic()

    async def ping_all(self) -> dict[str, dict[str, Any]]:
        handles = await self.current()

        def probe(client: Any) -> float:
            start = time.perf_counter()
            client.ensure_ready()
            client.ping()
            return (time.perf_counter() - start) * 1000

        async def one(handle: BackendHandle) -> dict[str, Any]:
            try:
                rtt = await asyncio.wait_for(
                    asyncio.to_thread(probe, handle.actor), timeout=self._timeout
                )
            except Exception as exc:  # any failure is an unhealthy backend, never a crash
                handle.healthy, handle.failed_at = False, time.monotonic()
                return {"healthy": False, "rtt_ms": None, "error": str(_domain_error(exc))}
            handle.healthy, handle.failed_at, handle.rtt_ms = True, 0.0, rtt
            handle.record = replace(handle.record, healthy=True)
            return {"healthy": True, "rtt_ms": rtt, "error": None}

        results = await asyncio.gather(*(one(h) for h in handles))
        return {h.name: r for h, r in zip(handles, results, strict=True)}

    async def fetch(self, backend_id: int, locator: str) -> Fetched:
        client = self._handle(backend_id).actor
        data: bytes = await self._guard(backend_id, lambda: asyncio.to_thread(client.get, locator))
        return Fetched(memoryview(data))

    async def store(self, backend_id: int, locator: str, data: Fetched | bytes) -> None:
        client = self._handle(backend_id).actor
        body = data.data if isinstance(data, Fetched) else data
        await self._guard(backend_id, lambda: asyncio.to_thread(client.put, locator, body))

    async def head(self, backend_id: int, locator: str) -> int | None:
        client = self._handle(backend_id).actor
        size: int | None = await self._guard(
            backend_id, lambda: asyncio.to_thread(client.head, locator)
        )
        return size

    async def delete(self, backend_id: int, locator: str) -> None:
        client = self._handle(backend_id).actor
        await self._guard(backend_id, lambda: asyncio.to_thread(client.delete, locator))

    async def list(self, backend_id: int) -> list[str]:
        client = self._handle(backend_id).actor
        return await self._guard(
            backend_id, lambda: asyncio.to_thread(lambda: list(client.list())), self._list_timeout
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._handles.clear()
