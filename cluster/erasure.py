"""Erasure coding of object bytes into ``k`` data + ``m`` parity shards (zfec, Reed-Solomon).

Invariant kept: for any ``data``, ``decode`` of any ``k`` distinct shards of ``encode(data, k,
m)`` returns exactly ``data``. Shard ``i < k`` is the ``i``-th slice of the data (the last one
zero-padded), shards ``k..k+m-1`` are parity; every shard is ``shard_size(len(data), k)``
bytes, so the shard size follows from the recorded ``data_length`` alone and a shard of the
wrong length is caught before zfec sees it.

This is the only module that imports ``zfec``; zfec's own errors never leave it. It does not
hash, verify or store shards: the caller checks each shard's SHA-256 before decoding (a
corrupt but well-sized shard would decode to wrong bytes), and big objects are coded per part.

Errors: ``InvalidInput`` for arguments that can never work (bad ``k``/``m``, a shard index out
of range); ``IntegrityError`` when the shards handed in cannot rebuild the object (fewer than
``k``, or of the wrong length for ``data_length``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import zfec

from cluster.errors import IntegrityError, InvalidInput

__all__ = [
    "MAX_SHARDS",
    "ShardSet",
    "data_blocks",
    "decode",
    "encode",
    "parity",
    "rebuild",
    "shard_size",
]

#: zfec's limit on k + m (shard numbers are one byte).
MAX_SHARDS = 256


def _check_km(k: int, m: int) -> None:
    for name, value in (("k", k), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{name} must be an integer, got {value!r}")
    if k < 1:
        raise InvalidInput(f"k must be at least 1, got {k}")
    if m < 0:
        raise InvalidInput(f"m must be at least 0, got {m}")
    if k + m > MAX_SHARDS:
        raise InvalidInput(f"k + m must be at most {MAX_SHARDS}, got {k + m}")


def shard_size(data_length: int, k: int) -> int:
    """Bytes in each shard of a ``data_length``-byte object split ``k`` ways: ``ceil(n / k)``."""
    if isinstance(data_length, bool) or not isinstance(data_length, int) or data_length < 0:
        raise InvalidInput(f"data_length must be a non-negative integer, got {data_length!r}")
    return -(-data_length // k)


@lru_cache(maxsize=64)
def _encoder(k: int, m: int) -> zfec.Encoder:
    return zfec.Encoder(k, k + m)


@lru_cache(maxsize=64)
def _decoder(k: int, m: int) -> zfec.Decoder:
    return zfec.Decoder(k, k + m)


@dataclass(frozen=True)
class ShardSet:
    """The ``k + m`` shards of one object, all ``shard_size`` bytes; ``shards[i]`` is shard i."""

    k: int
    m: int
    shard_size: int
    data_length: int
    shards: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_km(self.k, self.m)
        if len(self.shards) != self.k + self.m:
            raise InvalidInput(
                f"a ShardSet holds k + m = {self.k + self.m} shards, got {len(self.shards)}"
            )
        if self.shard_size != shard_size(self.data_length, self.k):
            raise InvalidInput(
                f"shard_size {self.shard_size} does not match data_length "
                f"{self.data_length} split {self.k} ways"
            )
        if any(len(s) != self.shard_size for s in self.shards):
            raise InvalidInput(f"every shard must be {self.shard_size} bytes")


def _data_blocks(view: memoryview, k: int, size: int) -> list[bytes]:
    """The ``k`` primary blocks of ``view``: one copy of the data, the last block zero-padded."""
    blocks: list[bytes] = []
    for i in range(k):
        chunk = view[i * size : (i + 1) * size]
        block = bytes(chunk)
        if len(block) < size:
            block += bytes(size - len(block))
        blocks.append(block)
    return blocks


Buffer = bytes | bytearray | memoryview


def data_blocks(data: Buffer, k: int) -> list[memoryview | bytes]:
    """The ``k`` data shards of ``data`` without copying it: views of ``data``, except the last
    shard when ``len(data)`` is not a multiple of ``k`` (a zero-padded copy of the tail only).

    The views share ``data``'s memory: the caller keeps ``data`` alive and unchanged while they
    are used. ``parity`` of these blocks is byte-identical to ``encode(data, k, m)``'s parity.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f"k must be at least 1, got {k!r}")
    view = memoryview(data).cast("B")
    size = shard_size(view.nbytes, k)
    blocks: list[memoryview | bytes] = []
    for i in range(k):
        chunk = view[i * size : (i + 1) * size]
        if chunk.nbytes < size:
            blocks.append(bytes(chunk) + bytes(size - chunk.nbytes))
        else:
            blocks.append(chunk)
    return blocks


def parity(blocks: Sequence[Buffer], k: int, m: int) -> list[bytes]:
    """The ``m`` parity shards (numbers ``k..k+m-1``) of ``k`` equal-length data shards.

    Reads the blocks in place (zfec takes any buffer), so the data is never copied; this is the
    entry point for callers that already hold the data shards, e.g. as object-store views.
    """
    _check_km(k, m)
    if len(blocks) != k:
        raise InvalidInput(f"parity needs the k = {k} data shards, got {len(blocks)}")
    sizes = {memoryview(b).nbytes for b in blocks}
    if len(sizes) > 1:
        raise InvalidInput(f"data shards must all have the same length, got {sorted(sizes)}")
    if m == 0:
        return []
    out = _encoder(k, m).encode(tuple(blocks), tuple(range(k, k + m)))
    return [p if isinstance(p, bytes) else bytes(p) for p in out]


def encode(data: bytes | bytearray | memoryview, k: int, m: int) -> ShardSet:
    """Split ``data`` into ``k`` data shards and compute ``m`` parity shards.

    Costs one copy of the data (into the data shards) plus the parity. ``len(data)`` is kept as
    ``data_length``; the zero padding of the last data shard is dropped again by ``decode``.
    """
    _check_km(k, m)
    view = memoryview(data).cast("B")
    length = view.nbytes
    size = shard_size(length, k)
    blocks = _data_blocks(view, k, size)
    if m == 0:
        shards = tuple(blocks)
    else:
        parity = _encoder(k, m).encode(tuple(blocks), tuple(range(k, k + m)))
        shards = (*blocks, *(bytes(p) for p in parity))
    return ShardSet(k=k, m=m, shard_size=size, data_length=length, shards=shards)


def _primary_blocks(shards: Mapping[int, Buffer], k: int, m: int, data_length: int) -> list[Buffer]:
    """The ``k`` data blocks (padded) rebuilt from any ``k`` valid shards of ``shards``; data
    shards handed in are returned as they are (no copy), only lost ones are computed."""
    _check_km(k, m)
    size = shard_size(data_length, k)
    for index, shard in shards.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < k + m:
            raise InvalidInput(f"shard index must be in 0..{k + m - 1}, got {index!r}")
        if memoryview(shard).nbytes != size:
            raise IntegrityError(
                f"shard {index} is {memoryview(shard).nbytes} bytes, expected {size} for a "
                f"{data_length}-byte object with k={k}"
            )
    if len(shards) < k:
        raise IntegrityError(
            f"cannot rebuild: {len(shards)} of the {k} shards needed "
            f"(have {sorted(shards)}, k={k}, m={m})"
        )
    # The lowest indices first: every data shard present is one block zfec need not compute.
    chosen = sorted(shards)[:k]
    if chosen == list(range(k)):
        return [shards[i] for i in chosen]
    decoded = _decoder(k, m).decode(tuple(shards[i] for i in chosen), tuple(chosen))
    return list(decoded)


def decode(shards: Mapping[int, Buffer], k: int, m: int, data_length: int) -> bytes:
    """The original ``data_length`` bytes from any ``k`` of the shards, keyed by shard index.

    Shards may be any buffer (bytes, memoryview, numpy array). Extra shards beyond ``k`` are
    ignored (the lowest indices are used). Costs one copy of the data (the join) plus zfec's
    work for each lost data shard. Raises ``IntegrityError`` on fewer than ``k`` shards or a
    shard of the wrong size, and ``InvalidInput`` on an index outside ``0..k+m-1``.
    """
    blocks = _primary_blocks(shards, k, m, data_length)
    size = shard_size(data_length, k)
    pieces: list[memoryview] = []
    remaining = data_length
    for block in blocks:
        if remaining <= 0:
            break
        take = min(size, remaining)
        pieces.append(memoryview(block).cast("B")[:take])
        remaining -= take
    return b"".join(pieces)


def rebuild(
    shards: Mapping[int, bytes], k: int, m: int, data_length: int, wanted: Iterable[int]
) -> dict[int, bytes]:
    """Recompute the shards numbered ``wanted`` from any ``k`` others, for repair.

    The result is byte-identical to what ``encode`` produced for those indices, so a rebuilt
    shard has the SHA-256 recorded at write time.
    """
    targets = sorted(set(wanted))
    for index in targets:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < k + m:
            raise InvalidInput(f"shard index must be in 0..{k + m - 1}, got {index!r}")
    blocks = _primary_blocks(shards, k, m, data_length)
    out: dict[int, bytes] = {i: bytes(blocks[i]) for i in targets if i < k}
    parity_wanted = tuple(i for i in targets if i >= k)
    if parity_wanted:
        parity = _encoder(k, m).encode(tuple(blocks), parity_wanted)
        out.update({i: bytes(p) for i, p in zip(parity_wanted, parity, strict=True)})
    return out
