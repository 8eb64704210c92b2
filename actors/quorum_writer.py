"""Quorum writes of one object body to its placement's backend actors.

The body is cut into parts of ``part_size`` bytes as it streams in. Each part is hashed
(SHA-256, recorded for verification on read) and then either

- *replicated*: put once into the Ray object store and fanned out to every live target's
  ``BackendActor`` (every target stores the whole part; a part of at most
  ``INLINE_PART_MAX`` bytes travels inside the calls instead), or
- *erasure-coded* (``erasure=(k, m)``): split into ``k`` data shards and ``m`` parity shards
  (``actors.erasure_tasks.encode_part``; parity in a Ray task for large parts) and shard ``i``
  sent to target ``i`` only, each shard with its own SHA-256,

under a fresh opaque locator per backend and part. The writer waits for each part's quorum
(copies, or shards) before reading the next one, which bounds the memory one request holds to
about two parts plus the stragglers' references; a backend more than ``max_lag_parts`` parts
behind is dropped from the write and left to repair. A writer that owns its whole body (the
importer) may let ``parts_in_flight`` parts await their quorum at once: the next part is read
and sent while the previous ones are still being stored (memory: that many parts more).

Outcome per target: *complete* (every part acknowledged), *straggler* (some parts still in
flight: committed as ``pending``, finished in the background), or *failed*/*dropped*
(``pending`` too, with a replication job). The write succeeds only when at least ``quorum``
targets are complete; otherwise ``QuorumNotMet``. A target that fails once receives nothing
more, so "``quorum`` complete targets" and "``quorum`` pieces of every part" are the same
condition, for shards as for copies. On any failure the caller hands ``all_locators()`` to
garbage collection: nothing is committed, so nothing is visible.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from actors.backend_client import new_locator
from actors.erasure_tasks import EncodedPart, encode_part
from actors.metrics import quorum_write
from actors.registry import BackendHandle, BackendRegistry
from core.errors import InvalidInput, QuorumNotMet
from core.request_context import current_request_id

__all__ = ["INLINE_PART_MAX", "BodyChunk", "Piece", "QuorumWrite", "WrittenPart"]

#: A piece of a body as it streams in (a writer that built it may hand over its own buffer).
BodyChunk = bytes | bytearray

log = logging.getLogger(__name__)

_THREAD_HASH_MIN = 256 * 1024
#: Parts up to this size go to the backend actors as bytes inside the call (Ray inlines such
#: arguments in the task message) instead of through ``ray.put``: for a small part the object
#: store's put, its reference counting and each actor's fetch cost more than copying the bytes
#: into three messages. Below Ray's own inline limit for call arguments (100 KiB).
INLINE_PART_MAX = 64 * 1024


@dataclass(frozen=True)
class Piece:
    """What one target stores of one part: its length and SHA-256."""

    size: int
    sha256: bytes


@dataclass(frozen=True)
class WrittenPart:
    """One part of the body: its length and SHA-256, and for an erasure-coded write the
    shard stored by each target (``shards[i]`` on target ``i``); empty for replication, where
    every target stores the part itself."""

    number: int
    size: int
    sha256: bytes
    shards: tuple[Piece, ...] = ()

    def piece(self, target_index: int) -> Piece:
        """What target ``target_index`` stores of this part."""
        if self.shards:
            return self.shards[target_index]
        return Piece(self.size, self.sha256)


@dataclass
class _Target:
    handle: BackendHandle
    locators: dict[int, str] = field(default_factory=dict)
    inflight: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    error: str | None = None
    dropped: bool = False

    @property
    def live(self) -> bool:
        return self.error is None and not self.dropped


def _hash_part(data: bytearray, total_sha: Any, total_md5: Any) -> bytes:
    total_sha.update(data)
    total_md5.update(data)
    return hashlib.sha256(data).digest()


class QuorumWrite:
    """One object write; keep the instance after a failure to learn what must be collected."""

    def __init__(
        self,
        registry: BackendRegistry,
        targets: Sequence[BackendHandle],
        quorum: int,
        *,
        part_size: int,
        max_lag_parts: int = 4,
        skip: frozenset[int] = frozenset(),
        erasure: tuple[int, int] | None = None,
        parts_in_flight: int = 1,
    ) -> None:
        """``skip``: ids of targets known to be down; they get nothing now and end *pending*.
        ``erasure=(k, m)``: code each part into ``k + m`` shards, shard ``i`` to target ``i``
        (there must be exactly ``k + m`` targets). ``parts_in_flight``: parts that may await
        their quorum at once (1: each part's quorum before the next part is read); a target
        is dropped once ``max_lag_parts`` parts more than that are outstanding on it."""
        if not 1 <= quorum <= len(targets):
            raise ValueError(f"quorum {quorum} impossible with {len(targets)} targets")
        if parts_in_flight < 1:
            raise ValueError("parts_in_flight must be at least 1")
        if erasure is not None and sum(erasure) != len(targets):
            raise ValueError(f"erasure {erasure} needs {sum(erasure)} targets, got {len(targets)}")
        self.erasure = erasure
        self._registry = registry
        self._targets = [
            _Target(t, error="unhealthy at placement" if t.id in skip else None) for t in targets
        ]
        self.quorum = quorum
        self.part_size = part_size
        self._max_lag = max_lag_parts + parts_in_flight - 1
        self._parts_in_flight = parts_in_flight
        self.parts: list[WrittenPart] = []
        self.size = 0
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5()  # noqa: S324 - S3 ETag, not security
        self.sha256 = b""
        self.md5_hex = ""

    # -- results -------------------------------------------------------------------------
    def complete_backends(self) -> list[int]:
        count = len(self.parts)
        return [t.handle.id for t in self._targets if len(t.acked) == count and t.live]

    def locators(self) -> dict[int, dict[int, str]]:
        """backend id -> part number -> locator, for every target (incomplete ones too)."""
        out: dict[int, dict[int, str]] = {}
        for t in self._targets:
            locs = dict(t.locators)
            for part in self.parts:
                locs.setdefault(part.number, new_locator())
            t.locators = locs
            out[t.handle.id] = locs
        return out

    def all_locators(self) -> list[tuple[int, str]]:
        return [(t.handle.id, loc) for t in self._targets for loc in t.locators.values()]

    def target_ids(self) -> list[int]:
        """Backend ids of the targets in placement order (target ``i`` holds shard ``i``)."""
        return [t.handle.id for t in self._targets]

    def live_backends(self) -> list[int]:
        """Targets that have neither failed nor been dropped (complete or still writing)."""
        return [t.handle.id for t in self._targets if t.live]

    async def settle_all(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for every live target's in-flight parts (a write whose
        quorum holds, about to commit: a target that completes meanwhile is committed ``ok``,
        with no job and no straggler transaction after the commit)."""
        waiting = [f for t in self._targets if t.live for f in t.inflight.values()]
        if waiting:
            await asyncio.wait(waiting, timeout=timeout_s)
            await asyncio.sleep(0)  # let the done-callbacks run

    async def settle(self, backend_id: int) -> bool:
        """Wait for this target's in-flight parts; True if it then holds every part."""
        target = next(t for t in self._targets if t.handle.id == backend_id)
        while target.inflight and target.live:
            await asyncio.wait(list(target.inflight.values()))
            await asyncio.sleep(0)  # let the done-callbacks run
        return backend_id in self.complete_backends()

    # -- the write -----------------------------------------------------------------------
    async def run(self, body: AsyncIterator[BodyChunk], expected_size: int | None) -> None:
        unsettled: list[int] = []  # parts sent whose quorum is not yet known to hold
        async for data in self._cut(body):
            number = len(self.parts)
            if len(data) >= _THREAD_HASH_MIN:
                digest = await asyncio.to_thread(_hash_part, data, self._sha, self._md5)
            else:
                digest = _hash_part(data, self._sha, self._md5)
            length = len(data)
            self.size += length
            if expected_size is not None and self.size > expected_size:
                raise InvalidInput("request body is longer than its declared length")
            encoded: EncodedPart | None = None
            if self.erasure is None:
                if length <= INLINE_PART_MAX:
                    inline: Any = bytes(data)
                else:
                    inline = ray.put(np.frombuffer(data, dtype=np.uint8))
                payloads: list[Any] = [inline] * len(self._targets)
                self.parts.append(WrittenPart(number, length, digest))
            else:
                encoded = await encode_part(bytes(data), *self.erasure)
                payloads = encoded.shards
            del data
            for target, payload in zip(self._targets, payloads, strict=True):
                if not target.live:
                    continue
                if len(target.inflight) >= self._max_lag:
                    target.dropped = True  # too far behind: repair will finish it
                    continue
                self._send(target, number, payload, digest if encoded is None else None)
            del payloads
            if encoded is not None:
                # The shards' checksums come from the coding task; the uploads already run.
                shas = await encoded.digests()
                pieces = tuple(Piece(encoded.shard_size, sha) for sha in shas)
                self.parts.append(WrittenPart(number, length, digest, pieces))
            unsettled.append(number)
            while len(unsettled) >= self._parts_in_flight:
                await self._await_part_quorum(unsettled.pop(0))
        for number in unsettled:
            await self._await_part_quorum(number)
        if expected_size is not None and self.size != expected_size:
            raise InvalidInput(
                f"request body has {self.size} bytes, fewer than the declared {expected_size}"
            )
        self.sha256 = self._sha.digest()
        self.md5_hex = self._md5.hexdigest()
        await self._await_object_quorum()
        complete = len(self.complete_backends()) == len(self._targets)
        quorum_write("all" if complete else "quorum")

    async def _cut(self, body: AsyncIterator[BodyChunk]) -> AsyncIterator[bytearray]:
        """Re-chunk the body into parts of exactly ``part_size`` (the last may be shorter).
        Each byte is copied once, into the part's own buffer, which is handed over whole
        (the next part gets a new one): no slicing copies of the whole part."""
        buf = bytearray()
        produced = False
        async for chunk in body:
            view = memoryview(chunk).cast("B")
            while view:
                take = min(len(view), self.part_size - len(buf))
                buf += view[:take]
                view = view[take:]
                if len(buf) == self.part_size:
                    yield buf
                    buf = bytearray()
                    produced = True
        if buf or not produced:
            yield buf

    def _send(self, target: _Target, number: int, ref: Any, sha256: bytes | None) -> None:
        """``sha256``: the piece's digest when known before sending (replicated parts; an
        erasure shard's comes from its coding task later), passed on for the backend to
        check the bytes it receives."""
        locator = target.locators.setdefault(number, new_locator())
        future = asyncio.ensure_future(self._put(target.handle, locator, ref, sha256))
        target.inflight[number] = future

        def settle(fut: asyncio.Future[Any]) -> None:
            target.inflight.pop(number, None)
            if fut.cancelled():
                target.error = "cancelled"
                return
            exc = fut.exception()
            if exc is None:
                target.acked.add(number)
            elif target.error is None:
                cause = getattr(exc, "cause", None) or exc  # unwrap RayTaskError
                target.error = str(cause) or type(cause).__name__
                self._registry.mark_failed(target.handle.id, target.error)

        future.add_done_callback(settle)

    @staticmethod
    async def _put(handle: BackendHandle, locator: str, ref: Any, sha256: bytes | None) -> int:
        result: int = await handle.actor.put.remote(
            locator, ref, request_id=current_request_id(), sha256=sha256
        )
        return result

    async def _await_part_quorum(self, number: int) -> None:
        while True:
            acked = sum(1 for t in self._targets if number in t.acked)
            if acked >= self.quorum:
                return
            waiting = [t.inflight[number] for t in self._targets if number in t.inflight]
            if acked + len(waiting) < self.quorum:
                raise self._quorum_error(acked)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0)  # let the done-callbacks run

    async def _await_object_quorum(self) -> None:
        while True:
            complete = len(self.complete_backends())
            if complete >= self.quorum:
                return
            candidates = [t for t in self._targets if t.live]
            if len(candidates) < self.quorum:
                raise self._quorum_error(complete)
            waiting = [f for t in candidates for f in t.inflight.values()]
            if not waiting:
                raise self._quorum_error(complete)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0)

    def _quorum_error(self, got: int) -> QuorumNotMet:
        """Backend names and errors go to the log only: tenants do not learn the topology."""
        bad = [f"{t.handle.name}: {t.error or 'too slow'}" for t in self._targets if not t.live]
        log.warning("write quorum %d not met (%d complete): %s", self.quorum, got, "; ".join(bad))
        quorum_write("failed")
        return QuorumNotMet(self.quorum, got)
