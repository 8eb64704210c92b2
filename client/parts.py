"""Encrypting multipart-upload parts concurrently.

A BP1 object can be cut into upload parts whose plaintext sizes are multiples of the segment
size S (S3 needs >= 5 MiB for all parts but the last; 5 MiB = 80 segments of 64 KiB). Each part
then covers whole segments, whose nonces depend only on their index, so parts are sealed
independently and in any order; part 1 also carries the header. AES-GCM in ``cryptography``
releases the GIL, so a thread pool scales with cores.

Memory is bounded by ``max_workers + 1`` parts in flight (plaintext and ciphertext). The
encryptor's ledger refuses to seal a segment index twice with different plaintext, so a retried
part may be re-encrypted only from the same bytes.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from client.errors import PlaintextLengthMismatch
from client.format import HEADER_LEN, TAG_LEN, segment_count
from client.segments import Buffer
from client.stream import Encryptor

__all__ = ["PartPlan", "encrypt_part", "encrypt_parts", "plan_parts"]


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
