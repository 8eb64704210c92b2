"""Reads that trust no backend (invariant 3).

Every part read from a backend is checked against the SHA-256 recorded at write time before a
single byte of it is served. A mismatch or a missing object is reported (the caller marks the
replica ``corrupt``/``missing`` and queues its repair in one transaction) and the read falls
through to the next replica; an unreachable backend only lowers its health. Replicas are tried
in order: status ``ok`` first, then healthy, then lowest RTT.

Erasure-coded parts (replica rows with ``shard_index >= 0``) are read as any ``k`` shards:
``k`` fetches start at once on the best candidates (data shards first among backends of
similar RTT, since a part whose data shards all arrive needs no decoding), each shard is
verified (length and SHA-256) as it arrives, and every shard that fails, for whatever reason,
is replaced by a fetch of the next candidate for a shard index not yet held. With ``k``
verified shards the part is decoded and checked against the part's own SHA-256 (recorded in
the ``parts`` table, loaded through ``load_layout``). So a read survives up to ``m`` lost,
unreachable or corrupt shards per part, and never serves bytes that failed a check.

``check_piece`` is the one check of a single stored piece (a replica's part or a shard) against
its row, for the workers that re-read stored bytes without serving them: the scrubber and
``import verify``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from actors import metrics as reader_metrics
from actors.erasure_tasks import decode_part
from actors.registry import BackendHandle, BackendRegistry
from core.erasure import rebuild, shard_size
from core.errors import BackendNotFound, BackendUnavailable, IntegrityError
from core.request_context import current_request_id
from schema.parts import ErasurePart
from schema.records import ObjectVersion, Replica

__all__ = ["LoadLayout", "ReportBad", "VerifiedReader", "check_piece", "is_erasure_coded"]

log = logging.getLogger(__name__)

ReportBad = Callable[[ObjectVersion, Replica, str], Awaitable[None]]
#: The parts (size, SHA-256, k, m) of an erasure-coded version, in part order.
LoadLayout = Callable[[ObjectVersion], Awaitable[Sequence[ErasurePart]]]
_THREAD_HASH_MIN = 256 * 1024
_NEAR_MS = 10.0


def _digest(data: Any) -> bytes:
    return hashlib.sha256(data).digest()


async def _sha256(data: memoryview) -> bytes:
    if len(data) >= _THREAD_HASH_MIN:
        return await asyncio.to_thread(_digest, data)
    return _digest(data)


async def check_piece(
    registry: BackendRegistry, backend_id: int, locator: str, size: int, sha256: bytes
) -> tuple[str, int]:
    """Re-read one stored piece from its backend and prove it against its row: ``("ok", n)``
    when its length and SHA-256 match, ``("corrupt", n)`` when they do not, ``("missing", 0)``
    when the backend no longer has it, ``("unavailable", 0)`` when the backend cannot be
    reached (that is health, not integrity: nothing to mark). ``n``: the bytes read. The caller
    marks a bad piece (``DataPath.mark_bad_many``: status and repair job in one transaction)."""
    try:
        fetched = await registry.fetch(backend_id, locator)
    except BackendNotFound:
        return "missing", 0
    except BackendUnavailable:
        return "unavailable", 0
    data = fetched.data
    intact = len(data) == size and await _sha256(data) == sha256
    return ("ok" if intact else "corrupt"), len(data)


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned read's outcome, so its error is not logged as never retrieved."""
    if not future.cancelled():
        future.exception()


def is_erasure_coded(version: ObjectVersion) -> bool:
    """Its pieces are shards (rows with a shard index), not whole-part replicas."""
    return any(r.shard_index >= 0 for r in version.replicas)


async def _no_layout(version: ObjectVersion) -> Sequence[ErasurePart]:
    raise IntegrityError(f"no erasure layout loader for version {version.id}")


class VerifiedReader:
    def __init__(
        self,
        registry: BackendRegistry,
        report_bad: ReportBad,
        *,
        timeout_s: float = 30.0,
        stream_chunk: int = 1024 * 1024,
        load_layout: LoadLayout = _no_layout,
        hedged: bool = True,
    ) -> None:
        self._registry = registry
        self._report_bad = report_bad
        self._timeout = timeout_s
        self._chunk = stream_chunk
        self._load_layout = load_layout
        self._hedged = hedged

    def _live(
        self, version: ObjectVersion, part: int, *, shards: bool
    ) -> tuple[list[tuple[Replica, BackendHandle]], float]:
        """The replicas (or shards) of one part worth trying - ``ok`` or ``pending``, on a
        backend still registered - and the upper edge of the near-RTT band (the best healthy
        ``ok`` replica's RTT x 1.5 + 10 ms)."""
        found = []
        for replica in version.parts(part):
            if replica.status not in ("ok", "pending") or (shards and replica.shard_index < 0):
                continue
            handle = self._registry.get(replica.backend_id)
            if handle is None or handle.record.state == "removed":
                continue
            found.append((replica, handle))
        healthy_ok = [h.rtt_ms for r, h in found if r.status == "ok" and h.healthy]
        return found, (min(healthy_ok) * 1.5 + _NEAR_MS) if healthy_ok else 0.0

    def candidates(self, version: ObjectVersion, part: int) -> list[tuple[Replica, BackendHandle]]:
        found, near = self._live(version, part, shards=False)
        # Intact-looking replicas on healthy backends first. Among those, the ones whose RTT is
        # near the best (within 1.5x + 10 ms) come in random order: that spreads reads over
        # replicas, and lets ordinary reads exercise every replica's checksum, not only the
        # scrubber. Farther ones follow by RTT.
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
        """The verified bytes of one part, from the first replica that proves good, or decoded
        from ``k`` verified shards for an erasure-coded version.

        Replicas are asked in ``candidates`` order, those whose read lane is full last. With
        hedging on, a replica that has not answered within its backend's p95 latency for
        this size (``actors.read_lanes``) is joined by the next one; the first answer that
        verifies wins and the others are abandoned (a lane's thread finishes on its own). A
        backend overtaken several times in a row is treated as failed here."""
        if is_erasure_coded(version):
            return await self._read_coded_part(version, part)
        queue = self.candidates(version, part)
        # Stable: keeps the order among the rest. Overtaken-too-often and full lanes go last.
        queue.sort(key=lambda rh: (rh[1].read_slow, rh[1].lane_full))
        total = len(queue)
        racing: dict[asyncio.Task[memoryview | str], tuple[Replica, BackendHandle]] = {}
        outcomes: list[str] = []

        def launch() -> None:
            replica, handle = queue.pop(0)
            task = asyncio.ensure_future(self._fetch_replica(version, part, replica, handle))
            racing[task] = (replica, handle)

        try:
            while queue or racing:
                if not racing:
                    launch()
                newest = list(racing.values())[-1]
                delay = (
                    newest[1].latency.hedge_after(newest[0].size)
                    if self._hedged and queue
                    else None
                )
                done, _ = await asyncio.wait(
                    racing, timeout=delay, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:  # nobody answered within the p95: ask the next replica too
                    reader_metrics.hedged_read()
                    launch()
                    continue
                for task in done:
                    racing.pop(task)
                    result = task.result()
                    if isinstance(result, memoryview):
                        for _, slow in racing.values():
                            self._registry.overtaken(slow.id)
                        return result
                    outcomes.append(result)
                if queue and racing:  # a replica failed: its successor starts now, not later
                    launch()
        finally:
            for task in racing:
                task.cancel()
        if outcomes and outcomes.count("unavailable") == total:
            raise BackendUnavailable("no backend holding this object is reachable")
        raise IntegrityError("no intact replica of this object could be read")

    async def _fetch_replica(
        self, version: ObjectVersion, part: int, replica: Replica, handle: BackendHandle
    ) -> memoryview | str:
        """One replica's verified bytes, or why not: ``"unavailable"``, ``"missing"`` or
        ``"corrupt"`` (the last two already reported, which queues the repair)."""
        # Shielded: when another replica wins, this read is abandoned but not cancelled, so
        # its answer, however late, is still timed (a slow backend is not a frozen one).
        read = asyncio.ensure_future(self._registry.read(handle.id, replica.locator))
        read.add_done_callback(_consume)
        try:
            view = await asyncio.shield(read)
        except BackendNotFound:
            await self._bad(version, replica, "missing")
            return "missing"
        except BackendUnavailable:  # the registry lowered the backend's health already
            return "unavailable"
        if len(view) == replica.size and await _sha256(view) == replica.sha256:
            return view
        log.warning(
            "replica %s of version %s part %d on %s failed verification",
            replica.id,
            version.id,
            part,
            handle.name,
        )
        await self._bad(version, replica, "corrupt")
        return "corrupt"

    # -- erasure-coded parts ----------------------------------------------------------------
    def shard_candidates(
        self, version: ObjectVersion, part: int, k: int
    ) -> list[tuple[Replica, BackendHandle]]:
        """Shard replicas of one part, best first: ``ok`` before ``pending``, healthy before
        not, backends within the near-RTT band before farther ones; inside the band, data
        shards before parity (no decoding when all ``k`` data shards arrive), then RTT."""
        found, near = self._live(version, part, shards=True)
        found.sort(
            key=lambda rh: (
                rh[0].status != "ok",
                not rh[1].healthy,
                rh[1].rtt_ms > near,
                rh[0].shard_index >= k,
                rh[1].rtt_ms,
                rh[0].shard_index,
            )
        )
        return found

    async def _fetch_shard(
        self, version: ObjectVersion, replica: Replica, handle: BackendHandle, expected: int
    ) -> tuple[Any, Any] | str:
        """(verified array, its object-store ref) or why not: ``"unavailable"``, ``"missing"``
        or ``"corrupt"`` (the last two already reported, which queues the repair)."""
        ref = handle.actor.get.remote(replica.locator, request_id=current_request_id())
        try:
            array = await asyncio.wait_for(ref, timeout=self._timeout)
        except Exception as exc:  # RayTaskError wraps the actor's domain error
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, BackendNotFound):
                await self._bad(version, replica, "missing")
                return "missing"
            self._registry.mark_failed(handle.id, f"{type(cause).__name__}: {cause}")
            return "unavailable"
        view = memoryview(array).cast("B")
        if view.nbytes == expected == replica.size:
            if view.nbytes >= _THREAD_HASH_MIN:
                digest = await asyncio.to_thread(_digest, view)
            else:
                digest = _digest(view)
            if digest == replica.sha256:
                return array, ref
        log.warning(
            "shard %d of version %s part %d on %s failed verification",
            replica.shard_index,
            version.id,
            replica.part_number,
            handle.name,
        )
        await self._bad(version, replica, "corrupt")
        return "corrupt"

    async def _layout(self, version: ObjectVersion, part: int) -> ErasurePart:
        layouts = await self._load_layout(version)
        if part >= len(layouts) or layouts[part].part_number != part:
            raise IntegrityError(f"version {version.id} has no erasure layout for part {part}")
        return layouts[part]

    async def _gather_shards(
        self,
        version: ObjectVersion,
        part: int,
        layout: ErasurePart,
        avoid: frozenset[int] = frozenset(),
    ) -> dict[int, tuple[Any, Any]]:
        """``k`` verified shards of one part, ``index -> (array, object-store ref)``; shard
        indexes in ``avoid`` are not read. Raises when fewer than ``k`` can be had."""
        k = layout.k
        expected = shard_size(layout.size, k)
        remaining = [
            rh for rh in self.shard_candidates(version, part, k) if rh[0].shard_index not in avoid
        ]
        held: dict[int, tuple[Any, Any]] = {}
        inflight: dict[asyncio.Task[tuple[Any, Any] | str], int] = {}
        outcomes: list[str] = []
        try:
            while len(held) < k:
                busy = set(held) | set(inflight.values())
                while len(held) + len(inflight) < k:
                    pick = next((rh for rh in remaining if rh[0].shard_index not in busy), None)
                    if pick is None:
                        break
                    remaining.remove(pick)
                    replica, handle = pick
                    task = asyncio.ensure_future(
                        self._fetch_shard(version, replica, handle, expected)
                    )
                    inflight[task] = replica.shard_index
                    busy.add(replica.shard_index)
                if not inflight:
                    break
                done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    index = inflight.pop(task)
                    result = task.result()
                    if isinstance(result, str):
                        outcomes.append(result)
                    else:
                        held[index] = result
        finally:
            for task in inflight:
                task.cancel()
        if len(held) < k:
            log.warning(
                "part %d of version %s: %d of %d shards readable (%s)",
                part,
                version.id,
                len(held),
                k,
                ", ".join(outcomes) or "no candidates",
            )
            if outcomes and all(o == "unavailable" for o in outcomes):
                raise BackendUnavailable("not enough backends holding this object are reachable")
            raise IntegrityError("not enough intact shards of this object could be read")
        return held

    async def _read_coded_part(self, version: ObjectVersion, part: int) -> memoryview:
        layout = await self._layout(version, part)
        held = await self._gather_shards(version, part, layout)
        return await decode_part(held, layout.k, layout.m, layout.size, layout.sha256)

    async def rebuild_shards(
        self, version: ObjectVersion, part: int, wanted: Sequence[int]
    ) -> dict[int, bytes]:
        """The shards numbered ``wanted`` of one part, recomputed from ``k`` verified others,
        for repair and for finishing ``pending`` shards. Each result is checked against the
        SHA-256 recorded for that shard when the part was written (a rebuilt shard is
        byte-identical to the original), so the caller can store it as it is; the caller also
        owns updating the replica rows. Shards in ``wanted`` are never read as sources."""
        layout = await self._layout(version, part)
        targets = sorted(set(wanted))
        if any(not 0 <= i < layout.k + layout.m for i in targets):
            raise IntegrityError(f"shard index out of range for k={layout.k} m={layout.m}")
        held = await self._gather_shards(version, part, layout, avoid=frozenset(targets))
        sources = {i: value for i, (value, _) in held.items()}
        rebuilt = await asyncio.to_thread(
            rebuild, sources, layout.k, layout.m, layout.size, targets
        )
        recorded = {r.shard_index: r.sha256 for r in version.parts(part) if r.shard_index >= 0}
        for index, shard in rebuilt.items():
            expected = recorded.get(index)
            if expected is not None and _digest(shard) != expected:
                raise IntegrityError(
                    f"rebuilt shard {index} of part {part} does not match its recorded SHA-256"
                )
        return rebuilt

    async def _bad(self, version: ObjectVersion, replica: Replica, status: str) -> None:
        try:
            await self._report_bad(version, replica, status)
        except Exception:  # reporting must not fail the read; the scrubber finds it again
            log.exception("could not record %s replica %s", status, replica.id)

    async def stream(self, version: ObjectVersion, first: int, last: int) -> AsyncIterator[bytes]:
        """Verified bytes ``first..last`` (inclusive), one part fetched ahead of the client."""
        if version.size == 0 or last < first:
            return
        first_part, last_part = version.part_at(first), version.part_at(last)
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
                base, _ = version.part_span(part)
                lo = max(first, base) - base
                hi = min(last, base + len(data) - 1) - base + 1
                for offset in range(lo, hi, self._chunk):
                    yield bytes(data[offset : min(hi, offset + self._chunk)])
        finally:
            if pending is not None:
                pending.cancel()
