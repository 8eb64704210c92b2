"""Quorum arithmetic for replicated and erasure-coded writes and reads.

Invariant kept: a write is acknowledged only when ``have_quorum`` says so, and a write stops
waiting (fails) exactly when ``quorum_still_possible`` turns false, i.e. when so many of the
``width`` targets have failed that the remaining ones cannot reach the quorum any more.

The rules, after Swift's ``quorum_size`` and EC quorum (``swift/common/storage_policy.py``):

- one rule for both kinds: a class stores ``n`` pieces of which a read needs ``r`` (1 replica,
  or ``k`` shards); the ``n - r`` spare pieces are split between the write, which may ride
  through ``floor((n - r) / 2)`` failed or slow targets, and the acknowledged object, which
  survives ``ceil((n - r) / 2)`` further losses before repair: quorum ``r + ceil((n - r) / 2)``;
- replication: that is the majority, ``copies // 2 + 1`` (2 of 3, 2 of 2, 3 of 5);
- erasure: ``k + ceil(m / 2)``: 5 of 6 for k=4, m=2 (Swift's ``ec_ndata + 1``), 4 of 6 for the
  built-in ColdArchiveClass k=2, m=4 (two further losses survivable at ack, four once every
  shard is stored);
- reads: one replica, or any ``k`` shards (``RedundancyClass.read_quorum``, with
  ``losses_survivable_at_ack``: properties of the class, as Swift puts its quorum on the
  storage policy).

Pure arithmetic: it counts, it does not wait, time out or talk to backends.
"""

from __future__ import annotations

from core.errors import InvalidInput

__all__ = [
    "erasure_quorum",
    "have_quorum",
    "quorum_still_possible",
    "replication_quorum",
]


def _non_negative(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")


def replication_quorum(copies: int) -> int:
    """Default write quorum for ``copies`` replicas: a strict majority (Swift-style)."""
    _non_negative("copies", copies)
    if copies < 1:
        raise InvalidInput(f"copies must be at least 1, got {copies}")
    return copies // 2 + 1


def erasure_quorum(k: int, m: int) -> int:
    """Default write quorum for ``k`` data + ``m`` parity shards: ``k + ceil(m / 2)``.

    The ``m`` parity shards are split between durability at acknowledgement (``ceil(m / 2)``
    further losses survivable) and tolerance during the write (``floor(m / 2)`` targets may
    fail); ``k`` alone would leave an acknowledged object one failure away from data loss.
    For ``m <= 2`` this is ``min(k + 1, k + m)``, Swift's EC quorum.
    """
    _non_negative("k", k)
    _non_negative("m", m)
    if k < 1:
        raise InvalidInput(f"k must be at least 1, got {k}")
    return k + (m + 1) // 2


def have_quorum(acks: int, needed: int) -> bool:
    """True iff ``acks`` acknowledgements meet a quorum of ``needed``."""
    _non_negative("acks", acks)
    _non_negative("needed", needed)
    return acks >= needed


def quorum_still_possible(acks: int, failures: int, width: int, needed: int) -> bool:
    """Can a write to ``width`` targets still reach ``needed`` acks?

    ``acks`` targets have acknowledged and ``failures`` have failed; the other
    ``width - acks - failures`` are still outstanding and may yet succeed. The answer is
    ``width - failures >= needed``; it is true whenever ``have_quorum`` already is.
    """
    for name, value in (
        ("acks", acks),
        ("failures", failures),
        ("width", width),
        ("needed", needed),
    ):
        _non_negative(name, value)
    if acks + failures > width:
        raise InvalidInput(
            f"acks ({acks}) + failures ({failures}) exceed the write width ({width})"
        )
    return width - failures >= needed
