"""Reads that trust no backend (invariant 3).

Every part read from a backend is checked against the SHA-256 recorded at write time before a
single byte of it is served. A mismatch or a missing object is reported (the caller marks the
replica ``corrupt``/``missing`` and queues its repair in one transaction) and the read falls
through to the next replica; an unreachable backend only lowers its health. Replicas are tried
in order: status ``ok`` first, then healthy, then lowest RTT.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from actors.registry import BackendHandle, BackendRegistry
from cluster.errors import BackendNotFound, BackendUnavailable, IntegrityError
from schema.records import ObjectVersion, Replica

__all__ = ["ReportBad", "VerifiedReader"]

log = logging.getLogger(__name__)

ReportBad = Callable[[ObjectVersion, Replica, str], Awaitable[None]]
_THREAD_HASH_MIN = 256 * 1024
_NEAR_MS = 10.0


def _digest(data: Any) -> bytes:
    return hashlib.sha256(data).digest()


class VerifiedReader:
    def __init__(
        self,
        registry: BackendRegistry,
        report_bad: ReportBad,
        *,
        timeout_s: float = 30.0,
        stream_chunk: int = 1024 * 1024,
    ) -> None:
        self._registry = registry
        self._report_bad = report_bad
        self._timeout = timeout_s
        self._chunk = stream_chunk

    def candidates(self, version: ObjectVersion, part: int) -> list[tuple[Replica, BackendHandle]]:
        found = []
        for replica in version.parts(part):
            if replica.status not in ("ok", "pending"):
                continue
            handle = self._registry.get(replica.backend_id)
            if handle is None or handle.record.state == "removed":
                continue
            found.append((replica, handle))
        # Intact-looking replicas on healthy backends first. Among those, the ones whose RTT is
        # near the best (within 1.5x + 10 ms) come in random order: that spreads reads over
        # replicas, and lets ordinary reads exercise every replica's checksum, not only the
        # scrubber. Farther ones follow by RTT.
        healthy_ok = [h.rtt_ms for r, h in found if r.status == "ok" and h.healthy]
        near = (min(healthy_ok) * 1.5 + _NEAR_MS) if healthy_ok else 0.0
        found.sort(
            key=lambda rh: (
                rh[0].status != "ok",
                not rh[1].healthy,
                rh[1].rtt_ms > near,
                rh[1].rtt_ms if rh[1].rtt_ms > near else random.random(),
            )
        )
        return found

    async def read_part(self, version: ObjectVersion, part: int) -> memoryview:
        """The verified bytes of one part, from the first replica that proves good."""
        candidates = self.candidates(version, part)
        unavailable = 0
        for replica, handle in candidates:
            try:
                array = await asyncio.wait_for(
                    handle.actor.get.remote(replica.locator), timeout=self._timeout
                )
            except Exception as exc:  # RayTaskError wraps the actor's domain error
                cause = getattr(exc, "cause", None) or exc
                if isinstance(cause, BackendNotFound):
                    await self._bad(version, replica, "missing")
                else:
                    unavailable += 1
                    self._registry.mark_failed(handle.id, f"{type(cause).__name__}: {cause}")
                continue
            view = memoryview(array).cast("B")
            if len(view) >= _THREAD_HASH_MIN:
                digest = await asyncio.to_thread(_digest, view)
            else:
                digest = _digest(view)
            if len(view) != replica.size or digest != replica.sha256:
                log.warning(
                    "replica %s of version %s part %d on %s failed verification",
                    replica.id,
                    version.id,
                    part,
                    handle.name,
                )
                await self._bad(version, replica, "corrupt")
                continue
            return view
        if unavailable and unavailable == len(candidates):
            raise BackendUnavailable("no backend holding this object is reachable")
        raise IntegrityError("no intact replica of this object could be read")

    async def _bad(self, version: ObjectVersion, replica: Replica, status: str) -> None:
        try:
            await self._report_bad(version, replica, status)
        except Exception:  # reporting must not fail the read; the scrubber finds it again
            log.exception("could not record %s replica %s", status, replica.id)

    async def stream(self, version: ObjectVersion, first: int, last: int) -> AsyncIterator[bytes]:
        """Verified bytes ``first..last`` (inclusive), one part fetched ahead of the client."""
        if version.size == 0 or last < first:
            return
        part_size = version.part_size
        first_part, last_part = first // part_size, last // part_size
        pending: asyncio.Task[memoryview] | None = asyncio.ensure_future(
            self.read_part(version, first_part)
        )
        try:
            for part in range(first_part, last_part + 1):
                assert pending is not None
                data = await pending
                pending = (
                    asyncio.ensure_future(self.read_part(version, part + 1))
                    if part < last_part
                    else None
                )
                base = part * part_size
                lo = max(first, base) - base
                hi = min(last, base + len(data) - 1) - base + 1
                for offset in range(lo, hi, self._chunk):
                    yield bytes(data[offset : min(hi, offset + self._chunk)])
        finally:
            if pending is not None:
                pending.cancel()
