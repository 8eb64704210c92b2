"""BP1 format arithmetic and header parsing: the keyless checks a gateway can also make."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from client.errors import MalformedHeader, RangeNotSatisfiable
from client.format import (
    HEADER_LEN,
    Header,
    ObjectBinding,
    ciphertext_length,
    plaintext_range_to_ciphertext_range,
    segment_count,
)

CLIENT = Path(__file__).resolve().parents[2] / "client"


def make_header(length: int, seg_log2: int = 16) -> Header:
    return Header(
        seg_log2=seg_log2,
        salt=b"s" * 32,
        commitment=b"c" * 32,
        plaintext_length=length,
        binding=b"b" * 32,
    )


@pytest.mark.parametrize("seg_log2", [16, 17, 20])
def test_ciphertext_length(seg_log2: int) -> None:
    size = 1 << seg_log2
    assert ciphertext_length(0, seg_log2) == 112 + 16
    assert ciphertext_length(1, seg_log2) == 112 + 1 + 16
    assert ciphertext_length(size - 1, seg_log2) == 112 + size - 1 + 16
    assert ciphertext_length(size, seg_log2) == 112 + size + 16
    assert ciphertext_length(size + 1, seg_log2) == 112 + size + 1 + 32
    assert ciphertext_length(3 * size, seg_log2) == 112 + 3 * size + 48
    assert segment_count(0, seg_log2) == 1 and segment_count(3 * size, seg_log2) == 3


def test_ciphertext_length_rejects_bad_parameters() -> None:
    for bad in (15, 21):
        with pytest.raises(ValueError):
            ciphertext_length(10, bad)
    with pytest.raises(ValueError):
        ciphertext_length(-1)


def test_header_round_trip_and_layout() -> None:
    header = make_header(0x0102030405060708, 17)
    raw = header.to_bytes()
    assert len(raw) == HEADER_LEN
    assert raw[:8] == b"BPE1\x01\x01\x11\x00"
    assert raw[8:40] == b"s" * 32 and raw[40:72] == b"c" * 32
    assert raw[72:80] == bytes.fromhex("0102030405060708")
    assert raw[80:] == b"b" * 32
    assert Header.parse(raw) == header


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, 0x00, "magic"),
        (4, 0x02, "version"),
        (5, 0x02, "suite"),
        (6, 15, "seg_log2"),
        (6, 21, "seg_log2"),
        (7, 0x01, "reserved"),
    ],
)
def test_header_parse_rejects_each_field(offset: int, value: int, message: str) -> None:
    raw = bytearray(make_header(5).to_bytes())
    raw[offset] = value
    with pytest.raises(MalformedHeader, match=message):
        Header.parse(bytes(raw))


def test_header_parse_rejects_wrong_size() -> None:
    raw = make_header(5).to_bytes()
    for bad in (raw[:-1], raw + b"\x00", b""):
        with pytest.raises(MalformedHeader):
            Header.parse(bad)


def test_binding_encoding_is_length_prefixed() -> None:
    cid = bytes(range(16))
    binding = ObjectBinding("t", "bk", "k/é", cid)
    assert binding.encode() == (
        b"\x00\x00\x00\x01t" + b"\x00\x00\x00\x02bk" + b"\x00\x00\x00\x04k/\xc3\xa9"
    ) + (b"\x00\x00\x00\x10" + cid)
    # moving a boundary between fields changes the digest (no ambiguity)
    assert (
        ObjectBinding("ab", "c", "d", cid).digest() != ObjectBinding("a", "bc", "d", cid).digest()
    )
    with pytest.raises(ValueError):
        ObjectBinding("t", "b", "k", b"short")
    with pytest.raises(ValueError):
        ObjectBinding("t", "b", "\ud800", cid).digest()
    fresh = ObjectBinding.new("t", "b", "k")
    assert len(fresh.content_id) == 16 and fresh != ObjectBinding.new("t", "b", "k")


def naive_range(first: int, last: int, length: int, seg_log2: int) -> tuple[int, int, int]:
    """Sum segment by segment, independently of the closed form."""
    size = 1 << seg_log2
    last = min(last, length - 1)
    sizes = [min(size, length - i * size) + 16 for i in range(max(1, -(-length // size)))]
    i0, i1 = first // size, last // size
    offset = 112 + sum(sizes[:i0])
    return offset, sum(sizes[i0 : i1 + 1]), i0


@pytest.mark.parametrize("seg_log2", [16, 17])
def test_range_mapping_matches_naive_sum(seg_log2: int) -> None:
    size = 1 << seg_log2
    for length in (1, size - 1, size, size + 1, 3 * size, 3 * size + 7):
        header = make_header(length, seg_log2)
        points = sorted({0, 1, size - 1, size, size + 1, 2 * size, length - 1, length - 2})
        points = [p for p in points if 0 <= p < length]
        for first in points:
            for last in [p for p in points if p >= first] + [length + 5]:
                span = plaintext_range_to_ciphertext_range(first, last, header)
                assert tuple(span) == naive_range(first, last, length, seg_log2)
                assert span.offset + span.length <= header.ciphertext_length


def test_range_whole_object_and_http_form() -> None:
    header = make_header(3 * 65536)
    span = plaintext_range_to_ciphertext_range(0, 3 * 65536 - 1, header)
    assert (span.offset, span.length) == (112, header.ciphertext_length - 112)
    assert span.http_range == f"bytes=112-{header.ciphertext_length - 1}"


@pytest.mark.parametrize(
    ("first", "last", "length"), [(0, 0, 0), (5, 4, 10), (10, 20, 10), (-1, 3, 10)]
)
def test_range_not_satisfiable(first: int, last: int, length: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        plaintext_range_to_ciphertext_range(first, last, make_header(length))


def test_client_imports_no_other_project_package() -> None:
    """client/ depends on nothing of ours (and not on Ray): it ships to end users."""
    forbidden = {"ray", "gateway", "actors", "schema", "cluster", "jobs", "bench"}
    for path in CLIENT.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
