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
from typing import Any

import zfec

from core.errors import IntegrityError, InvalidInput

__all__ = [
    "COLUMN",
    "MAX_SHARDS",
    "ShardSet",
    "data_blocks",
    "decode",
    "encode",
    "parity",
    "parity_into",
    "rebuild",
    "shard_size",
]

#: zfec's limit on k + m (shard numbers are one byte).
MAX_SHARDS = 256
#: Bytes of each block handed to one zfec call. Reed-Solomon works byte position by byte
#: position, so coding blocks column by column gives the same bytes as one call on whole
#: blocks; with 64 KiB columns the blocks of one call stay in cache, which makes zfec about
#: 1.5-2x faster on multi-MiB shards (``bench/bench_erasure.py``).
COLUMN = 64 * 1024


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
    return _encode_columns(blocks, k, m, tuple(range(k, k + m)))


def parity_into(blocks: Sequence[Buffer], k: int, m: int, out: Sequence[Any]) -> None:
    """Like ``parity``, but writes parity shard ``k + j`` into the writable buffer ``out[j]``
    (each exactly one shard long) instead of allocating it: a caller that codes many parts
    reuses buffers whose memory is already mapped, which saves a page fault per 4 KiB."""
    _check_km(k, m)
    if len(blocks) != k or len(out) != m:
        raise InvalidInput(f"parity_into needs {k} data shards and {m} outputs")
    views = [memoryview(b).cast("B") for b in blocks]
    targets = [memoryview(o).cast("B") for o in out]
    size = views[0].nbytes
    if any(v.nbytes != size for v in views) or any(t.nbytes != size for t in targets):
        raise InvalidInput("data shards and outputs must all have the same length")
    if m == 0 or size == 0:
        return
    encoder, wanted = _encoder(k, m), tuple(range(k, k + m))
    for start in range(0, size, COLUMN):
        column = tuple(v[start : start + COLUMN] for v in views)
        for target, piece in zip(targets, encoder.encode(column, wanted), strict=True):
            target[start : start + len(piece)] = piece


def _encode_columns(
    blocks: Sequence[Buffer], k: int, m: int, wanted: tuple[int, ...]
) -> list[bytes]:
    """zfec's encode of ``wanted`` parity shards, column by column (see ``COLUMN``)."""
    encoder = _encoder(k, m)
    views = [memoryview(b).cast("B") for b in blocks]
    size = views[0].nbytes
    if size <= COLUMN:
        return [bytes(p) for p in encoder.encode(tuple(views), wanted)]
    pieces: list[list[bytes]] = [[] for _ in wanted]
    for start in range(0, size, COLUMN):
        column = tuple(v[start : start + COLUMN] for v in views)
        for out, piece in zip(pieces, encoder.encode(column, wanted), strict=True):
            out.append(piece)
    return [b"".join(p) for p in pieces]


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
        shards = (*blocks, *_encode_columns(blocks, k, m, tuple(range(k, k + m))))
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
    decoder = _decoder(k, m)
    views = [memoryview(shards[i]).cast("B") for i in chosen]
    lost = [i for i in range(k) if i not in shards]
    pieces: dict[int, list[bytes]] = {i: [] for i in lost}
    for start in range(0, max(size, 1), COLUMN):  # column by column, see COLUMN
        column = tuple(v[start : start + COLUMN] for v in views)
        decoded = decoder.decode(column, tuple(chosen))
        for i in lost:
            pieces[i].append(decoded[i])
    return [shards[i] if i in shards else b"".join(pieces[i]) for i in range(k)]


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
        parity = _encode_columns(blocks, k, m, parity_wanted)
        out.update(dict(zip(parity_wanted, parity, strict=True)))
    return out
