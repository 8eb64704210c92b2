"""Erasure coding of stored parts, in Ray tasks next to the data in the object store.

Write (``encode_part``): the part's ``k`` data shards are put into the object store once (views
of the part; only the zero-padded tail shard is a copy; the put runs in a thread so the event
loop keeps serving) and those references go straight to targets ``0..k-1``. ``encode_task``
reads the same references zero-copy in a worker process, computes the ``m`` parity shards into
reused buffers (``erasure.parity_into``; Ray copies the results into the object store) and the
SHA-256 of all ``k + m`` shards; its parity results go to targets ``k..k+m-1``. So the part is
copied into the object store once, as for a replicated write, plus ``m / k`` of parity; the
data shards' uploads overlap the coding, and the gateway neither codes nor hashes shards.

Small parts (``INLINE_MAX`` bytes or less) are coded inline instead (on the event loop up to
64 KiB, in a thread above): a task costs ~6-10 ms of scheduling and result handling on this
machine, against ~0.1-1.5 ms to code such a part (``bench/bench_erasure.py``). Larger parts use
the task although a thread would be about as fast on one 2-CPU node: the task declares its CPU
to Ray (``num_cpus=1``), so the coding of many concurrent PUTs is bounded by the cluster's CPUs
and visible to its scheduler, where threads in a ``num_cpus=0`` gateway replica are not.

Read (``decode_part``): the caller verifies each shard's length and SHA-256 as it arrives (so a
bad shard is pinned to its backend and replaced), then ``decode_part`` rebuilds the part and
checks the part's own SHA-256. A part whose data shards all arrived is a concatenation; only a
degraded part needs zfec. Decoding runs in a thread of the caller: the shards are already mapped
into its memory and zfec and hashlib release the GIL, and ``decode_task`` measured slower at
every part size (0.9 vs 3.9 ms at 256 KiB, 15 vs 18 ms at 8 MiB), so ``DECODE_TASK_MIN`` is
None; the task stays for the benchmark and for nodes where the gateway's CPU is the limit.

Only ``core.erasure`` imports zfec; this module never does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from core import erasure
from core.errors import IntegrityError

__all__ = [
    "DECODE_TASK_MIN",
    "INLINE_MAX",
    "EncodedPart",
    "decode_part",
    "decode_task",
    "decode_verified",
    "encode_inline",
    "encode_part",
    "encode_task",
    "parity_and_digests",
    "sha256",
]

#: Parts up to this size are coded inline (in a thread) rather than in a Ray task.
INLINE_MAX = 256 * 1024
#: Below this, inline coding runs on the event loop itself (a thread hop costs more).
_THREAD_MIN = 64 * 1024
#: Degraded parts at least this big are decoded in a Ray task rather than in a thread; None:
#: never (measured slower at every part size here, see the module docstring).
DECODE_TASK_MIN: int | None = None


def sha256(data: Any) -> bytes:
    return hashlib.sha256(memoryview(data).cast("B")).digest()


def encode_inline(data: erasure.Buffer, k: int, m: int) -> tuple[list[bytes], list[bytes]]:
    """(shards, SHA-256 of each shard) of ``data``, coded in the calling thread."""
    blocks = erasure.data_blocks(data, k)
    shards = [bytes(b) for b in blocks] + erasure.parity(blocks, k, m)
    return shards, [sha256(s) for s in shards]


@ray.remote(num_cpus=1, max_retries=2)
def encode_task(k: int, m: int, *blocks: Any) -> Any:
    """Parity and checksums of one part's ``k`` data shards (object-store views, not copied).

    Returns ``[digests, parity_0, ..., parity_m-1]`` as ``m + 1`` separate objects (so each
    parity shard is its own reference that one backend actor reads), or just the digests when
    ``m == 0``. Pure and deterministic, so a retry after a worker crash is safe.
    """
    views = [memoryview(b) for b in blocks]
    parity = _scratch(m, views[0].nbytes if views else 0)
    digests = parity_and_digests(views, k, m, parity)
    if m == 0:
        return digests
    # Ray copies each returned array into the object store, so the scratch buffers are free
    # for the next part as soon as this returns.
    return (digests, *parity)


def parity_and_digests(blocks: Sequence[Any], k: int, m: int, parity: Sequence[Any]) -> list[bytes]:
    """The coding work of one part, all of it on the calling core: the ``m`` parity shards of
    the ``k`` data shards written into ``parity`` (``erasure.parity_into``), then the SHA-256
    of all ``k + m`` shards (invariant 3), hashed in place (no copies). ``bench_erasure``'s P5
    row times exactly this against zfec alone: hashing 1.5x the part's bytes at SHA-256's
    speed is what separates the two (docs/architecture.md, "Erasure coding cost")."""
    erasure.parity_into(blocks, k, m, parity)
    return [sha256(b) for b in blocks] + [sha256(p) for p in parity]


_SCRATCH: dict[tuple[int, int], list[np.ndarray]] = {}


def _scratch(m: int, size: int) -> list[np.ndarray]:
    """``m`` reusable parity buffers of ``size`` bytes for this worker process (one part size
    is used over and over, so their pages stay mapped; see ``erasure.parity_into``)."""
    key = (m, size)
    if key not in _SCRATCH:
        if len(_SCRATCH) >= 4:
            _SCRATCH.clear()
        _SCRATCH[key] = [np.empty(size, dtype=np.uint8) for _ in range(m)]
    return _SCRATCH[key]


@dataclass
class EncodedPart:
    """One part as ``k + m`` shards: ``shards[i]`` (an object-store reference, or bytes for a
    small part) goes to target ``i``; ``digests()`` gives each shard's SHA-256."""

    shard_size: int
    shards: list[Any]
    _digests: Any

    async def digests(self) -> list[bytes]:
        if isinstance(self._digests, list):
            return self._digests
        result: list[bytes] = await self._digests
        return result


async def encode_part(data: bytes, k: int, m: int, *, inline_max: int = INLINE_MAX) -> EncodedPart:
    """Start coding one part; returns as soon as every shard has a reference to send.

    For a large part the parity references resolve when ``encode_task`` finishes; a backend
    actor handed one simply waits for it, so the data shards' uploads overlap the coding.
    """
    size = erasure.shard_size(len(data), k)
    if len(data) <= inline_max:
        if len(data) <= _THREAD_MIN:
            shards, digests = encode_inline(data, k, m)
        else:
            shards, digests = await asyncio.to_thread(encode_inline, data, k, m)
        return EncodedPart(size, list(shards), digests)
    blocks = erasure.data_blocks(data, k)
    # One copy of the part into the object store; in a thread, so the event loop keeps
    # serving other requests meanwhile (ray.put is thread-safe).
    refs = await asyncio.to_thread(_put_all, blocks)
    out = encode_task.options(num_returns=m + 1).remote(k, m, *refs)
    if m == 0:
        return EncodedPart(size, refs, out)
    return EncodedPart(size, [*refs, *out[1:]], out[0])


def _put_all(blocks: Sequence[Any]) -> list[Any]:
    return [ray.put(np.frombuffer(b, dtype=np.uint8)) for b in blocks]


def decode_verified(
    shards: Mapping[int, Any], k: int, m: int, size: int, expected_sha256: bytes
) -> bytes:
    """The part's ``size`` bytes from ``k`` verified shards, checked against its SHA-256.

    A mismatch here means the recorded checksums disagree with each other (the shards matched
    theirs), so no shard can be blamed: ``IntegrityError``.
    """
    data = erasure.decode(shards, k, m, size)
    if len(data) != size or sha256(data) != expected_sha256:
        raise IntegrityError("decoded part does not match its recorded SHA-256")
    return data


@ray.remote(num_cpus=1, max_retries=2)
def decode_task(
    k: int, m: int, size: int, expected_sha256: bytes, indexes: Sequence[int], *shards: np.ndarray
) -> np.ndarray:
    """``decode_verified`` in a worker, on shards read zero-copy from the object store."""
    data = decode_verified(dict(zip(indexes, shards, strict=True)), k, m, size, expected_sha256)
    return np.frombuffer(data, dtype=np.uint8)


async def decode_part(
    shards: Mapping[int, tuple[Any, Any]],
    k: int,
    m: int,
    size: int,
    expected_sha256: bytes,
    *,
    task_min: int | None = DECODE_TASK_MIN,
) -> memoryview:
    """Decode one part from ``k`` verified shards given as ``index -> (value, ref or None)``.

    Inline (a thread) unless the part is degraded, at least ``task_min`` bytes, and every shard
    has an object-store reference the task can read.
    """
    chosen = sorted(shards)[:k]
    degraded = chosen != list(range(k))
    refs = [shards[i][1] for i in chosen]
    use_task = task_min is not None and size >= task_min
    if degraded and use_task and all(r is not None for r in refs):
        array = await decode_task.remote(k, m, size, expected_sha256, chosen, *refs)
        return memoryview(array).cast("B")
    values = {i: shards[i][0] for i in chosen}
    data = await asyncio.to_thread(decode_verified, values, k, m, size, expected_sha256)
    return memoryview(data)
