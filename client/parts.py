"""Encrypting multipart-upload parts concurrently.

A BP1 object can be cut into upload parts whose plaintext sizes are multiples of the segment
size S (S3 needs >= 5 MiB for all parts but the last; 5 MiB = 80 segments of 64 KiB). Each part
then covers whole segments, whose nonces depend only on their index, so parts are sealed
independently and in any order; part 1 also carries the header. AES-GCM in ``cryptography``
releases the GIL, so a thread pool scales with cores.

Memory is bounded by ``max_workers + 1`` parts in flight (plaintext and ciphertext). The
encryptor's ledger refuses to seal a segment index twice with different plaintext, so a retried
part may be re-encrypted only from the same bytes.

S3 bounds a multipart upload: at most :data:`MAX_PARTS` parts, each at most
:data:`MAX_PART_SIZE` bytes and, except the last, at least :data:`MIN_PART_SIZE`; at most
:data:`MAX_OBJECT_SIZE` bytes in all. These bound the *ciphertext*; :func:`choose_part_size`
picks a plaintext part size that keeps an object inside them. (``bp put`` streams each part
through its own upload instead of holding whole parts: :mod:`client.transfer`.)
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from client.errors import PlaintextLengthMismatch
from client.format import HEADER_LEN, TAG_LEN, ciphertext_length, segment_count
from client.segments import Buffer
from client.stream import Encryptor

__all__ = [
    "MAX_OBJECT_SIZE",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "PartPlan",
    "check_part_size",
    "choose_part_size",
    "encrypt_part",
    "encrypt_parts",
    "plan_parts",
]

#: S3's smallest part (every part but the last); 80 segments of 64 KiB.
MIN_PART_SIZE = 5 * 1024**2
#: S3's largest part, ciphertext (header and tags included).
MAX_PART_SIZE = 5 * 1024**3
#: S3's most parts in one upload.
MAX_PARTS = 10_000
#: S3's largest object, ciphertext.
MAX_OBJECT_SIZE = 5 * 1024**4


@dataclass(frozen=True, slots=True)
class PartPlan:
    """One upload part: its plaintext slice, first segment, and exact ciphertext length."""

    number: int
    plaintext_offset: int
    plaintext_length: int
    first_segment: int
    ciphertext_length: int


def plan_parts(plaintext_length: int, part_size: int, seg_log2: int) -> list[PartPlan]:
    """Cut an object into parts of ``part_size`` plaintext bytes (the last may be shorter).

    ``part_size`` must be a positive multiple of ``2**seg_log2``. An empty object is one part
    (the header and one empty final segment). Part 1's ciphertext length includes the header.
    """
    size = 1 << seg_log2
    if part_size <= 0 or part_size % size:
        raise ValueError(f"part size must be a positive multiple of the segment size {size}")
    total_segments = segment_count(plaintext_length, seg_log2)
    per_part = part_size // size
    plans = []
    for number, first in enumerate(range(0, total_segments, per_part), start=1):
        offset = first * size
        length = min(part_size, plaintext_length - offset)
        segments = min(per_part, total_segments - first)
        ct_length = length + TAG_LEN * segments + (HEADER_LEN if number == 1 else 0)
        plans.append(PartPlan(number, offset, length, first, ct_length))
    return plans


def _part_ciphertext(part_size: int, seg_log2: int) -> int:
    """The largest ciphertext a part of ``part_size`` plaintext bytes can have (part 1's)."""
    return part_size + TAG_LEN * (part_size >> seg_log2) + HEADER_LEN


def check_part_size(part_size: int, seg_log2: int) -> None:
    """Refuse a plaintext part size that S3 or BP1 cannot use (:class:`ValueError`).

    It must be a multiple of the segment size (parts hold whole segments), at least
    :data:`MIN_PART_SIZE`, and its ciphertext (with the header, for part 1) at most
    :data:`MAX_PART_SIZE`.
    """
    size = 1 << seg_log2
    if part_size <= 0 or part_size % size:
        raise ValueError(
            f"part size {part_size} is not a multiple of the segment size ({size} bytes)"
        )
    if part_size < MIN_PART_SIZE:
        raise ValueError(f"part size {part_size} is below S3's minimum of 5 MiB")
    if _part_ciphertext(part_size, seg_log2) > MAX_PART_SIZE:
        raise ValueError(f"part size {part_size} makes parts over S3's maximum of 5 GiB")


def choose_part_size(plaintext_length: int, part_size: int, seg_log2: int) -> int:
    """The plaintext part size to upload an object with: ``part_size``, or larger if the
    object would otherwise need more than :data:`MAX_PARTS` parts.

    The result is the smallest multiple of the segment size that fits the object in
    :data:`MAX_PARTS` parts when ``part_size`` does not. Raises :class:`ValueError` for a
    part size :func:`check_part_size` refuses, or an object whose ciphertext exceeds
    :data:`MAX_OBJECT_SIZE`.
    """
    check_part_size(part_size, seg_log2)
    total = ciphertext_length(plaintext_length, seg_log2)
    if total > MAX_OBJECT_SIZE:
        raise ValueError(
            f"{plaintext_length} bytes encrypt to {total} bytes, over S3's 5 TiB object limit"
        )
    segments = segment_count(plaintext_length, seg_log2)
    per_part = part_size >> seg_log2
    if -(-segments // per_part) > MAX_PARTS:
        per_part = -(-segments // MAX_PARTS)
    chosen = per_part << seg_log2
    check_part_size(chosen, seg_log2)  # unreachable for objects under 5 TiB; kept as a guard
    return chosen


def encrypt_part(encryptor: Encryptor, plan: PartPlan, plaintext: Buffer) -> bytearray:
    """Seal one part into a buffer of ``plan.ciphertext_length``; part 1 begins with the header."""
    if len(plaintext) != plan.plaintext_length:
        raise PlaintextLengthMismatch(
            f"part {plan.number} holds {plan.plaintext_length} bytes, got {len(plaintext)}"
        )
    out = bytearray(plan.ciphertext_length)
    view = memoryview(out)
    start = 0
    if plan.number == 1:
        view[:HEADER_LEN] = encryptor.header_bytes
        start = HEADER_LEN
    encryptor.encrypt_segments_into(plan.first_segment, plaintext, view[start:])
    return out


def encrypt_parts(
    encryptor: Encryptor,
    parts: Iterable[Buffer],
    *,
    part_size: int,
    max_workers: int | None = None,
) -> Iterator[tuple[PartPlan, bytearray]]:
    """Encrypt consecutive plaintext parts on a thread pool, yielding them in order.

    ``parts`` yields the plaintext of part 1, 2, ... as :func:`plan_parts` cuts the object.
    Raises :class:`PlaintextLengthMismatch` if a part has the wrong size or the parts run short
    or long; in that case the multipart upload must be aborted, not completed.
    """
    header = encryptor.header
    plans = plan_parts(header.plaintext_length, part_size, header.seg_log2)
    workers = max_workers or os.cpu_count() or 1
    pending: deque[tuple[PartPlan, Future[bytearray]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bp-encrypt") as pool:
        source = iter(parts)
        for plan in plans:
            plaintext = next(source, None)
            if plaintext is None:
                raise PlaintextLengthMismatch(f"only {plan.number - 1} of {len(plans)} parts given")
            pending.append((plan, pool.submit(encrypt_part, encryptor, plan, plaintext)))
            if len(pending) > workers:
                done_plan, future = pending.popleft()
                yield done_plan, future.result()
        if next(source, None) is not None:
            raise PlaintextLengthMismatch(f"more than the {len(plans)} planned parts given")
        while pending:
            done_plan, future = pending.popleft()
            yield done_plan, future.result()
