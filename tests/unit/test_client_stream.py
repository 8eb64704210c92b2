"""Streaming encryption/decryption, ranged reads, parallel parts, and every tamper case."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator

import pytest

import client
from client.errors import (
    BindingMismatch,
    MalformedHeader,
    PlaintextLengthMismatch,
    RangeNotSatisfiable,
    SegmentReuse,
    Tampered,
    Truncated,
    WrongKey,
)
from client.format import ObjectBinding
from client.stream import Encryptor, decrypt, decrypt_stream

S16 = 1 << 16
BINDING = ObjectBinding("tenant-a", "bucket-a", "dir/key-a", bytes(range(16)))


def data_of(length: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(length)


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def random_chunks(data: bytes, seed: int) -> Iterator[bytes]:
    rng, pos = random.Random(seed), 0
    while pos < len(data):
        step = rng.choice([0, 1, 17, 4096, 65535, 65536, 65537, 200_000])
        yield data[pos : pos + step]
        pos += step


def encrypt(
    data: bytes, seg_log2: int = 16, binding: ObjectBinding = BINDING
) -> tuple[bytes, bytes]:
    enc = Encryptor(binding, len(data), seg_log2=seg_log2)
    return b"".join(enc.encrypt([data])), enc.dek


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("seg_log2", [16, 17])
@pytest.mark.parametrize("which", ["0", "1", "S-1", "S", "S+1", "3S"])
def test_round_trip_around_segment_boundaries(seg_log2: int, which: str) -> None:
    size = 1 << seg_log2
    length = {"0": 0, "1": 1, "S-1": size - 1, "S": size, "S+1": size + 1, "3S": 3 * size}[which]
    data = data_of(length)
    for chunks_in in ([data], list(chunked(data, 1000)), list(random_chunks(data, length))):
        enc = Encryptor(BINDING, length, seg_log2=seg_log2)
        pieces = list(enc.encrypt(chunks_in))
        body = b"".join(pieces)
        assert pieces[0] == enc.header_bytes
        assert len(body) == client.ciphertext_length(length, seg_log2)
        for chunks_out in ([body], list(chunked(body, 777)), list(random_chunks(body, 3))):
            assert b"".join(decrypt_stream(chunks_out, dek=enc.dek, expected=BINDING)) == data


def test_byte_at_a_time_and_buffer_types() -> None:
    data = data_of(S16 + 3)
    enc = Encryptor(BINDING, len(data))
    body = b"".join(enc.encrypt(memoryview(data[i : i + 1]) for i in range(len(data))))
    chunks = (bytearray(body[i : i + 1]) for i in range(len(body)))
    assert b"".join(decrypt_stream(chunks, dek=enc.dek, expected=BINDING)) == data


def test_reused_producer_buffer_is_safe() -> None:
    """A producer that refills one buffer (readinto style) must not corrupt the output."""
    data = data_of(2 * S16 + 5)
    buf = bytearray(4096)

    def refill() -> Iterator[bytearray]:
        for i in range(0, len(data), len(buf)):
            piece = data[i : i + len(buf)]
            buf[: len(piece)] = piece
            yield buf if len(piece) == len(buf) else bytearray(piece)

    enc = Encryptor(BINDING, len(data))
    body = b"".join(enc.encrypt(refill()))
    assert decrypt(body, dek=enc.dek, expected=BINDING) == data


def test_declared_length_is_enforced_before_the_final_segment() -> None:
    data = data_of(S16 + 10)
    short = Encryptor(BINDING, len(data) + 1).encrypt([data])
    with pytest.raises(PlaintextLengthMismatch):
        list(short)
    out: list[bytes] = []
    with pytest.raises(PlaintextLengthMismatch):
        for piece in Encryptor(BINDING, len(data) - 1).encrypt([data]):
            out.append(piece)
    assert len(out) == 2  # header and segment 0; the final segment was never released
    with pytest.raises(PlaintextLengthMismatch):
        list(Encryptor(BINDING, 0).encrypt([b"x"]))


def test_encryptor_parameters_are_validated() -> None:
    for kwargs in ({"seg_log2": 15}, {"seg_log2": 21}):
        with pytest.raises(ValueError):
            Encryptor(BINDING, 1, **kwargs)
    with pytest.raises(ValueError):
        Encryptor(BINDING, -1)
    assert "dek" not in repr(Encryptor(BINDING, 1)).lower().replace("encryptor", "")


def test_every_object_gets_a_fresh_key_and_salt() -> None:
    a, b = Encryptor(BINDING, 10), Encryptor(BINDING, 10)
    assert a.dek != b.dek and a.header.salt != b.header.salt


# -- tampering -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three() -> tuple[bytes, bytes, bytes]:
    """A 3-segment object (S = 64 KiB): plaintext, body, dek."""
    data = data_of(3 * S16, seed=9)
    body, dek = encrypt(data)
    return data, body, dek


def flip(body: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(body)
    out[index] ^= mask
    return bytes(out)


SEG = S16 + 16


@pytest.mark.parametrize(
    ("offset", "mask", "error"),
    [
        (0, 0x01, MalformedHeader),  # magic
        (4, 0x01, MalformedHeader),  # version
        (5, 0x01, MalformedHeader),  # suite
        (6, 0x80, MalformedHeader),  # seg_log2 out of range
        (6, 0x01, Tampered),  # seg_log2 16 -> 17: a valid header the tags reject
        (7, 0x01, MalformedHeader),  # reserved
        (8, 0x01, WrongKey),  # salt: commitment no longer matches
        (39, 0x80, WrongKey),
        (40, 0x01, WrongKey),  # commitment
        (71, 0x01, WrongKey),
        (72, 0x01, Tampered),  # plaintext length, high byte
        (79, 0x01, Tampered),  # plaintext length, low byte
        (80, 0x01, BindingMismatch),  # binding
        (111, 0x01, BindingMismatch),
    ],
)
def test_header_tampering(
    three: tuple[bytes, bytes, bytes], offset: int, mask: int, error: type[Exception]
) -> None:
    _, body, dek = three
    with pytest.raises(error):
        decrypt(flip(body, offset, mask), dek=dek, expected=BINDING)
    with pytest.raises(client.DecryptionFailed):
        decrypt(flip(body, offset, mask), dek=dek, expected=BINDING)


@pytest.mark.parametrize(
    "offset",
    [112, 112 + 1000, 112 + S16 - 1, 112 + SEG + 5, 112 + 2 * SEG, 112 + 3 * SEG - 17],
    ids=["seg0-first", "seg0-mid", "seg0-last", "seg1", "seg2-first", "seg2-last"],
)
def test_segment_byte_flip(three: tuple[bytes, bytes, bytes], offset: int) -> None:
    _, body, dek = three
    with pytest.raises(Tampered):
        decrypt(flip(body, offset), dek=dek, expected=BINDING)


@pytest.mark.parametrize("segment", [0, 1, 2])
def test_tag_byte_flip(three: tuple[bytes, bytes, bytes], segment: int) -> None:
    _, body, dek = three
    tag_start = 112 + segment * SEG + S16
    for offset in (tag_start, tag_start + 15):
        with pytest.raises(Tampered, match=f"segment {segment}"):
            decrypt(flip(body, offset), dek=dek, expected=BINDING)


@pytest.mark.parametrize(
    "cut",
    [0, 50, 112, 112 + SEG, 112 + 2 * SEG, 112 + 100, 112 + SEG + 100, -1],
    ids=[
        "empty",
        "in-header",
        "after-header",
        "boundary-1",
        "boundary-2",
        "mid-0",
        "mid-1",
        "last-byte",
    ],
)
def test_truncation(three: tuple[bytes, bytes, bytes], cut: int) -> None:
    data, body, dek = three
    received: list[bytes] = []
    with pytest.raises(Truncated):
        for piece in decrypt_stream([body[:cut]], dek=dek, expected=BINDING):
            received.append(piece)
    # whatever was released before the error is an authentic prefix, never the whole object
    assert data.startswith(b"".join(received)) and len(b"".join(received)) < len(data)


@pytest.mark.parametrize("extra", ["segment", "byte", "tag"])
def test_extension_after_the_final_segment(three: tuple[bytes, bytes, bytes], extra: str) -> None:
    data, body, dek = three
    suffix = {"segment": body[112 : 112 + SEG], "byte": b"\x00", "tag": body[-16:]}[extra]
    received: list[bytes] = []
    with pytest.raises(Tampered, match="follows the final segment"):
        for piece in decrypt_stream([body, suffix], dek=dek, expected=BINDING):
            received.append(piece)
    assert len(b"".join(received)) < len(data)  # the final segment's plaintext is withheld


def test_swapped_reordered_and_dropped_segments(three: tuple[bytes, bytes, bytes]) -> None:
    _, body, dek = three
    head, s0, s1, s2 = (
        body[:112],
        body[112 : 112 + SEG],
        body[112 + SEG : 112 + 2 * SEG],
        body[112 + 2 * SEG :],
    )
    for forged in (head + s1 + s0 + s2, head + s0 + s2 + s1, head + s0 + s0 + s2):
        with pytest.raises(Tampered):
            decrypt(forged, dek=dek, expected=BINDING)
    with pytest.raises(Tampered):  # drop the middle segment: segment 2's bytes at index 1
        decrypt(head + s0 + s2, dek=dek, expected=BINDING)
    with pytest.raises(Truncated):  # drop the final segment
        decrypt(head + s0 + s1, dek=dek, expected=BINDING)


@pytest.mark.parametrize("field", ["tenant", "bucket", "key", "content_id"])
def test_object_swapped_between_names(field: str) -> None:
    """A server answering for name A with the authentic object stored under name B."""
    other = {
        "tenant": ObjectBinding("tenant-b", BINDING.bucket, BINDING.key, BINDING.content_id),
        "bucket": ObjectBinding(BINDING.tenant, "bucket-b", BINDING.key, BINDING.content_id),
        "key": ObjectBinding(BINDING.tenant, BINDING.bucket, "dir/key-b", BINDING.content_id),
        "content_id": ObjectBinding(BINDING.tenant, BINDING.bucket, BINDING.key, b"\xff" * 16),
    }[field]
    body_b, dek_b = encrypt(data_of(100), binding=other)
    with pytest.raises(BindingMismatch):
        decrypt(body_b, dek=dek_b, expected=BINDING)
    assert decrypt(body_b, dek=dek_b, expected=other) == data_of(100)


def test_segments_spliced_from_another_object(three: tuple[bytes, bytes, bytes]) -> None:
    _, body, dek = three
    other, _ = encrypt(data_of(3 * S16, seed=10))
    with pytest.raises(Tampered):
        decrypt(body[:112] + other[112:], dek=dek, expected=BINDING)
    with pytest.raises(Tampered):
        decrypt(body[: 112 + SEG] + other[112 + SEG :], dek=dek, expected=BINDING)


def test_wrong_data_key(three: tuple[bytes, bytes, bytes]) -> None:
    _, body, dek = three
    with pytest.raises(WrongKey):
        decrypt(body, dek=bytes(32), expected=BINDING)
    with pytest.raises(WrongKey):
        decrypt(body, dek=dek[:16], expected=BINDING)


def test_dek_resolver_sees_the_header_only_after_the_binding_check(
    three: tuple[bytes, bytes, bytes],
) -> None:
    data, body, dek = three
    seen: list[bytes] = []

    def resolve(header: bytes) -> bytes:
        seen.append(header)
        return dek

    assert decrypt(body, dek=resolve, expected=BINDING) == data
    assert seen == [body[:112]]
    other = ObjectBinding("x", "y", "z", bytes(16))
    with pytest.raises(BindingMismatch):
        decrypt(body, dek=resolve, expected=other)
    assert len(seen) == 1


# -- ranged reads ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ranged() -> tuple[bytes, bytes, bytes]:
    data = data_of(3 * S16 + 100, seed=4)
    body, dek = encrypt(data)
    return data, body, dek


def read_range(body: bytes, first: int, last: int, dek: bytes) -> bytes:
    header = client.Header.parse(body[:112])
    span = client.plaintext_range_to_ciphertext_range(first, last, header)
    return client.decrypt_range(
        body[:112],
        body[span.offset : span.offset + span.length],
        first,
        last,
        dek=dek,
        expected=BINDING,
    )


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (0, 0),
        (0, S16 - 1),
        (S16 - 1, S16),
        (S16, 2 * S16 - 1),
        (S16 - 1, 2 * S16),
        (2 * S16 + 7, 3 * S16 + 50),
        (3 * S16 + 99, 3 * S16 + 99),
        (0, 3 * S16 + 99),
        (5, 10**12),
    ],
)
def test_range_reads(ranged: tuple[bytes, bytes, bytes], first: int, last: int) -> None:
    data, body, dek = ranged
    assert read_range(body, first, last, dek) == data[first : last + 1]


def test_range_of_one_segment_object() -> None:
    data = data_of(10)
    body, dek = encrypt(data)
    assert read_range(body, 3, 9, dek) == data[3:]


def test_range_tampering(ranged: tuple[bytes, bytes, bytes]) -> None:
    _, body, dek = ranged
    header = client.Header.parse(body[:112])
    span = client.plaintext_range_to_ciphertext_range(S16 - 1, S16, header)
    piece = body[span.offset : span.offset + span.length]

    def attempt(header_bytes: bytes, ciphertext: bytes) -> bytes:
        return client.decrypt_range(
            header_bytes, ciphertext, S16 - 1, S16, dek=dek, expected=BINDING
        )

    with pytest.raises(Tampered):
        attempt(body[:112], flip(piece, 10))
    with pytest.raises(Truncated):
        attempt(body[:112], piece[:-1])
    with pytest.raises(Tampered):
        attempt(body[:112], piece + b"\x00")
    shifted = body[
        span.offset + SEG : span.offset + SEG + span.length
    ]  # segments 1, 2 instead of 0, 1
    with pytest.raises(Tampered):
        attempt(body[:112], shifted)
    with pytest.raises(WrongKey):
        attempt(flip(body[:112], 9), piece)
    with pytest.raises(BindingMismatch):
        attempt(flip(body[:112], 100), piece)
    with pytest.raises(RangeNotSatisfiable):
        client.decrypt_range(body[:112], b"", len(body), len(body), dek=dek, expected=BINDING)


# -- parallel parts --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 2 * S16, 2 * S16 + 1, 7 * S16 + 123])
def test_parallel_parts_equal_the_streamed_object(length: int) -> None:
    data = data_of(length, seed=length)
    dek, salt = bytes(range(32)), bytes(range(32, 64))
    streamed = b"".join(Encryptor._from_parts(BINDING, length, 16, dek, salt).encrypt([data]))
    enc = Encryptor._from_parts(BINDING, length, 16, dek, salt)
    part_size = 2 * S16
    plans = client.plan_parts(length, part_size, 16)
    parts = (data[p.plaintext_offset : p.plaintext_offset + p.plaintext_length] for p in plans)
    out = list(client.encrypt_parts(enc, parts, part_size=part_size, max_workers=2))
    assert [plan for plan, _ in out] == plans
    assert all(len(body) == plan.ciphertext_length for plan, body in out)
    assert b"".join(body for _, body in out) == streamed
    assert sum(p.ciphertext_length for p in plans) == client.ciphertext_length(length)


def test_parts_out_of_order_and_retry() -> None:
    data = data_of(5 * S16 + 9)
    enc = Encryptor(BINDING, len(data))
    plans = client.plan_parts(len(data), 2 * S16, 16)
    bodies = {}
    for plan in reversed(plans):
        piece = data[plan.plaintext_offset : plan.plaintext_offset + plan.plaintext_length]
        bodies[plan.number] = client.encrypt_part(enc, plan, piece)
    first = plans[0]
    retry = client.encrypt_part(enc, first, data[: first.plaintext_length])
    assert retry == bodies[1]  # same plaintext, same nonce: identical output, nothing leaks
    body = b"".join(bodies[p.number] for p in plans)
    assert decrypt(body, dek=enc.dek, expected=BINDING) == data


def test_segment_reuse_is_refused() -> None:
    enc = Encryptor(BINDING, 4 * S16)
    a, b = data_of(2 * S16, seed=1), data_of(2 * S16, seed=2)
    enc.encrypt_segments(0, a)
    with pytest.raises(SegmentReuse):
        enc.encrypt_segments(0, b)  # same nonces, other plaintext
    out = bytearray(b"\xaa" * (2 * S16 + 32))
    with pytest.raises(SegmentReuse):
        enc.encrypt_segments_into(0, b, memoryview(out))
    assert out == bytes(len(out))  # the second ciphertext was wiped, never released
    with pytest.raises(ValueError):
        enc.encrypt_segments_into(2, a, memoryview(bytearray(10)))
    with pytest.raises(SegmentReuse):
        enc.encrypt_segments(1, a)  # overlaps
    with pytest.raises(SegmentReuse):
        enc.encrypt([a + b])  # the streaming pass would reseal 0 and 1
    whole = Encryptor(BINDING, S16)
    whole.encrypt_segments(0, data_of(S16))
    with pytest.raises(SegmentReuse):  # the stream pass is never a "retry" of a part
        whole.encrypt([data_of(S16)])
    streamed = Encryptor(BINDING, S16)
    list(streamed.encrypt([data_of(S16)]))
    with pytest.raises(SegmentReuse):
        streamed.encrypt([data_of(S16)])
    with pytest.raises(SegmentReuse):
        streamed.encrypt_segments(0, data_of(S16))


def test_part_validation() -> None:
    enc = Encryptor(BINDING, 3 * S16 + 1)
    with pytest.raises(PlaintextLengthMismatch):
        enc.encrypt_segments(0, b"x" * (S16 + 1))  # not whole segments, not the final one
    with pytest.raises(PlaintextLengthMismatch):
        enc.encrypt_segments(3, b"xx")  # the final segment holds 1 byte
    with pytest.raises(ValueError):
        enc.encrypt_segments(4, b"x")
    with pytest.raises(ValueError):
        client.plan_parts(10, S16 + 1, 16)
    with pytest.raises(PlaintextLengthMismatch):
        list(client.encrypt_parts(enc, [b"x" * (2 * S16)], part_size=2 * S16))
    with pytest.raises(PlaintextLengthMismatch):
        list(client.encrypt_parts(Encryptor(BINDING, 5), [b"12345", b"6"], part_size=S16))


# -- memory ----------------------------------------------------------------------------------


def test_memory_stays_bounded_for_a_256_mib_stream() -> None:
    block = data_of(1 << 20, seed=7)
    total = 256 << 20

    def source() -> Iterator[bytes]:
        for _ in range(total // len(block)):
            yield block

    tracemalloc.start()
    try:
        enc = Encryptor(BINDING, total)
        produced = 0
        for index, plaintext in enumerate(
            decrypt_stream(enc.encrypt(source()), dek=enc.dek, expected=BINDING)
        ):
            offset = (index * S16) % len(block)
            assert plaintext == block[offset : offset + S16]
            produced += len(plaintext)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert produced == total
    assert peak < 4 << 20, f"peak {peak} bytes"
