"""Erasure codec: any k of k+m shards rebuild the bytes; too few fail cleanly."""

from __future__ import annotations

import os
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.erasure import ShardSet, decode, encode, rebuild, shard_size
from core.errors import IntegrityError, InvalidInput

LAYOUTS = [(1, 0), (1, 1), (1, 3), (2, 1), (3, 2), (4, 0), (4, 2), (5, 3), (6, 4)]


def _lengths(k: int) -> list[int]:
    return sorted({0, 1, k - 1, k, k + 1, 2 * k - 1, 1000, 1 << 16, (1 << 20) + 3})


@pytest.mark.parametrize(("k", "m"), LAYOUTS)
def test_every_k_subset_decodes(k: int, m: int) -> None:
    for length in _lengths(k):
        data = os.urandom(length)
        s = encode(data, k, m)
        assert (s.k, s.m, s.data_length, s.shard_size) == (k, m, length, shard_size(length, k))
        assert len(s.shards) == k + m and all(len(x) == s.shard_size for x in s.shards)
        assert b"".join(s.shards[:k])[:length] == data  # systematic: data shards are the data
        subsets = list(combinations(range(k + m), k))
        if length > 1 << 16:
            subsets = subsets[:3] + subsets[-3:]
        for subset in subsets:
            assert decode({i: s.shards[i] for i in subset}, k, m, length) == data
        for too_few in combinations(range(k + m), k - 1):
            with pytest.raises(IntegrityError, match="cannot rebuild"):
                decode({i: s.shards[i] for i in too_few}, k, m, length)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), st.integers(1, 8), st.integers(0, 4), st.data())
def test_roundtrip_property(data: bytes, k: int, m: int, draw) -> None:
    s = encode(memoryview(data), k, m)
    keep = draw.draw(st.lists(st.integers(0, k + m - 1), unique=True, min_size=k, max_size=k + m))
    assert decode({i: s.shards[i] for i in keep}, k, m, len(data)) == data
    lost = draw.draw(st.lists(st.integers(0, k + m - 1), unique=True, min_size=1))
    survivors = {i: s.shards[i] for i in range(k + m) if i not in lost}
    if len(survivors) >= k:
        rebuilt = rebuild(survivors, k, m, len(data), lost)
        assert rebuilt == {i: s.shards[i] for i in lost}
    else:
        with pytest.raises(IntegrityError):
            rebuild(survivors, k, m, len(data), lost)


def test_accepts_bytearray_and_wide_layouts() -> None:
    data = bytearray(os.urandom(3000))
    s = encode(data, 200, 56)
    assert len(s.shards) == 256
    assert decode({i: s.shards[i] for i in range(56, 256)}, 200, 56, 3000) == bytes(data)


def test_wrong_shard_length_is_an_integrity_error() -> None:
    s = encode(b"hello world", 4, 2)
    shards = {i: s.shards[i] for i in range(1, 5)}
    shards[4] = shards[4] + b"x"
    with pytest.raises(IntegrityError, match="shard 4 is 4 bytes, expected 3"):
        decode(shards, 4, 2, 11)
    with pytest.raises(IntegrityError):  # data_length disagrees with the shards
        decode({i: s.shards[i] for i in range(4)}, 4, 2, 100)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: encode(b"x", 0, 2), "k must be at least 1"),
        (lambda: encode(b"x", 4, -1), "m must be at least 0"),
        (lambda: encode(b"x", 200, 57), "k \\+ m must be at most 256"),
        (lambda: decode({6: b"a", 0: b"a", 1: b"a", 2: b"a"}, 4, 2, 4), "shard index"),
        (lambda: decode({-1: b"a"}, 1, 0, 1), "shard index"),
        (lambda: decode({0: b"a"}, 1, 0, -1), "data_length"),
        (lambda: rebuild({0: b"a"}, 1, 1, 1, [2]), "shard index"),
        (lambda: ShardSet(2, 1, 1, 2, (b"a", b"b")), "3 shards"),
    ],
)
def test_invalid_arguments(call, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call()


def test_extra_shards_are_ignored_and_inputs_untouched() -> None:
    data = os.urandom(999)
    s = encode(data, 4, 2)
    shards = {5: s.shards[5], 2: s.shards[2], 4: s.shards[4], 3: s.shards[3], 1: s.shards[1]}
    before = dict(shards)
    assert decode(shards, 4, 2, 999) == data
    assert shards == before
