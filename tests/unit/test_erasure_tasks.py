"""The coding helpers of the EC data path, without a Ray cluster: the no-copy parity path is
byte-identical to ``erasure.encode``, decoding takes numpy views, and a decoded part that does
not match its recorded SHA-256 is refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
from itertools import combinations

import numpy as np
import pytest

from actors.erasure_tasks import (
    decode_part,
    decode_verified,
    encode_inline,
    encode_part,
    parity_and_digests,
)
from core import erasure
from core.errors import IntegrityError, InvalidInput


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 4096, 65537, 256 * 1024 + 3])
@pytest.mark.parametrize(("k", "m"), [(4, 2), (1, 0), (3, 3), (5, 1)])
def test_no_copy_parity_matches_encode(length: int, k: int, m: int) -> None:
    data = os.urandom(length)
    reference = erasure.encode(data, k, m)
    blocks = erasure.data_blocks(data, k)
    assert [bytes(b) for b in blocks] == list(reference.shards[:k])
    whole = [b for b in blocks[: k - 1] if length >= k * reference.shard_size]
    for view in whole:  # full-size data shards are views of the input, not copies
        assert isinstance(view, memoryview) and view.obj is data
    assert erasure.parity(blocks, k, m) == list(reference.shards[k:])
    shards, digests = encode_inline(data, k, m)
    assert shards == list(reference.shards)
    assert digests == [hashlib.sha256(s).digest() for s in shards]


def test_parity_refuses_ragged_blocks() -> None:
    with pytest.raises(InvalidInput, match="same length"):
        erasure.parity([b"ab", b"a"], 2, 1)
    with pytest.raises(InvalidInput, match="k = 2 data shards"):
        erasure.parity([b"ab"], 2, 1)


def test_decode_verified_from_numpy_views_any_k() -> None:
    data = os.urandom(100_003)
    s = erasure.encode(data, 4, 2)
    arrays = {i: np.frombuffer(x, dtype=np.uint8) for i, x in enumerate(s.shards)}
    sha = hashlib.sha256(data).digest()
    for keep in combinations(range(6), 4):
        got = decode_verified({i: arrays[i] for i in keep}, 4, 2, len(data), sha)
        assert got == data
    with pytest.raises(IntegrityError, match="recorded SHA-256"):
        decode_verified({i: arrays[i] for i in range(4)}, 4, 2, len(data), b"\0" * 32)


def test_small_parts_are_coded_inline() -> None:
    async def run() -> None:
        data = os.urandom(10_000)
        part = await encode_part(data, 4, 2)
        assert part.shard_size == 2500
        assert all(isinstance(x, bytes) for x in part.shards)
        assert part.shards == list(erasure.encode(data, 4, 2).shards)
        digests = await part.digests()
        assert digests == [hashlib.sha256(x).digest() for x in part.shards]
        held = {i: (part.shards[i], None) for i in (1, 3, 4, 5)}
        view = await decode_part(held, 4, 2, len(data), hashlib.sha256(data).digest())
        assert bytes(view) == data

    asyncio.run(run())


@pytest.mark.parametrize("length", [0, 7, erasure.COLUMN * 4, erasure.COLUMN * 9 + 5])
def test_parity_into_reused_buffers_matches_encode(length: int) -> None:
    k, m = 4, 2
    size = erasure.shard_size(length, k)
    out = [np.full(size, 0xAA, dtype=np.uint8) for _ in range(m)]  # dirty, as when reused
    for _ in range(2):
        data = os.urandom(length)
        erasure.parity_into(erasure.data_blocks(data, k), k, m, out)
        assert [bytes(o) for o in out] == list(erasure.encode(data, k, m).shards[k:])
    with pytest.raises(InvalidInput, match="same length"):
        erasure.parity_into(erasure.data_blocks(b"x" * 8, k), k, m, [bytearray(3)] * m)


@pytest.mark.parametrize(("k", "m"), [(4, 2), (3, 0)])
def test_parity_and_digests_hashes_every_shard_of_encode(k: int, m: int) -> None:
    """The task's coding step (the P5 benchmark times exactly this): parity into reused
    buffers, and the SHA-256 of the k data and m parity shards in shard order."""
    data = os.urandom(erasure.COLUMN * 5 + 11)
    reference = erasure.encode(data, k, m)
    out = [np.full(reference.shard_size, 0x55, dtype=np.uint8) for _ in range(m)]
    digests = parity_and_digests(erasure.data_blocks(data, k), k, m, out)
    assert [bytes(o) for o in out] == list(reference.shards[k:])
    assert digests == [hashlib.sha256(s).digest() for s in reference.shards]
