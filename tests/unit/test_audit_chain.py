"""The audit chain rules without services: the chain walk names the first broken link and
what differs, the head and checkpoint comparison, checkpoint statements, and placement never
choosing a backend designated for archives."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from core.audit_chain import (
    GENESIS,
    AuditRow,
    ChainCheck,
    ChainMark,
    chain_of,
    checkpoint_heads,
    checkpoint_statement,
    row_digest,
)
from core.errors import PolicyViolation
from core.placement import BackendView, place, place_for_write
from core.policy import builtin_policy

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def chain(n: int, chain_id: str = "tenant:1") -> list[AuditRow]:
    rows, prev = [], GENESIS
    for i in range(1, n + 1):
        row = AuditRow(i * 10, chain_id, i, AT, 1, "AK", "GetObject", f"b/{i}", "r", "ok", None, i,
                       prev, b"")  # fmt: skip
        digest = row_digest(prev, row)
        rows.append(replace(row, entry_hash=digest))
        prev = digest
    return rows


def walk(rows: list[AuditRow], head: ChainMark | None, **kw: object) -> object:
    check = ChainCheck("tenant:1", **kw)  # type: ignore[arg-type]
    for row in rows:
        if check.feed(row):
            break
    return check.finish(head)


def test_a_sound_chain_and_its_head_verify() -> None:
    rows = chain(4)
    assert walk(rows, ChainMark(4, rows[-1].entry_hash)) is None
    assert chain_of(None) == "system" and chain_of(7) == "tenant:7"
    assert chain_of(7, "operator") == "system"  # an admin acting on a tenant


@pytest.mark.parametrize(
    ("damage", "kind", "seq"),
    [
        (lambda rs: rs[:1] + rs[2:], "gap", 3),
        (lambda rs: rs[:2] + [rs[1]] + rs[2:], "extra_row", 2),
        (lambda rs: rs[:2] + [replace(rs[2], result="forged")] + rs[3:], "entry_hash", 3),
        (lambda rs: rs[:2] + [replace(rs[2], prev_hash=bytes(32))] + rs[3:], "prev_hash", 3),
    ],
)
def test_the_first_broken_link_is_named(damage: object, kind: str, seq: int) -> None:
    rows = chain(4)
    broken = walk(damage(rows), ChainMark(4, rows[-1].entry_hash))  # type: ignore[operator]
    assert broken is not None and (broken.kind, broken.chain_seq) == (kind, seq)  # type: ignore[attr-defined]
    assert broken.row_id == seq * 10  # type: ignore[attr-defined]


def test_head_and_checkpoint_see_the_newest_rows_deleted() -> None:
    rows = chain(5)
    head = ChainMark(5, rows[-1].entry_hash)
    assert walk(rows[:3], head).kind == "missing_rows"  # type: ignore[attr-defined]
    rewound = ChainMark(3, rows[2].entry_hash)
    assert walk(rows[:3], rewound) is None
    signed = ChainMark(4, rows[3].entry_hash)
    assert walk(rows[:3], rewound, checkpoint=signed).kind == "missing_rows"  # type: ignore[attr-defined]
    other = ChainMark(2, bytes(32))
    assert walk(rows, head, checkpoint=other).kind == "checkpoint"  # type: ignore[attr-defined]
    assert walk(rows, ChainMark(4, rows[3].entry_hash)).kind == "extra_row"  # type: ignore[attr-defined]


def test_checkpoint_statements_round_trip() -> None:
    marks = {"tenant:1": ChainMark(3, b"\x01" * 32), "system": ChainMark(1, b"\x02" * 32)}
    statement = checkpoint_statement(AT, marks)
    assert checkpoint_heads(statement) == marks
    with pytest.raises(ValueError):
        checkpoint_heads({"kind": "something else", "heads": {}})


def test_placement_never_chooses_an_archive_backend() -> None:
    rc = builtin_policy().get("StandardClass")
    regions = ["us-east", "eu-west", "ap-south", "us-west"]
    data = [BackendView(f"d{i}", regions[i], "US", "US", "p") for i in range(3)]
    archives = [BackendView(f"a{i}", regions[i], "US", "US", "p", archive=True) for i in range(4)]
    for _ in range(20):
        assert set(place(rc, data + archives).targets) == {"d0", "d1", "d2"}
        assert set(place_for_write(rc, data + archives)[0].targets) == {"d0", "d1", "d2"}
    with pytest.raises(PolicyViolation, match="archive"):
        place(rc, data[:1] + archives)
