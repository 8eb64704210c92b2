"""The audit log's hash chains as pure rules: which chain an entry belongs to, the bytes its
hash covers, and the walk that checks a chain link by link (invariant 8).

The log is one linear chain per tenant (``tenant:<id>``) plus one (``system``) for entries of
no tenant and for every administrator's entry (an admin acting on a tenant is not the tenant's
doing, and a tenant reads its own chain whole), so appenders of different tenants never wait
for each other. Each row carries
its chain, its position in the chain (``chain_seq``, 1, 2, ...) and a global id;
``entry_hash = SHA-256(prev_hash || canonical JSON of the row)`` where the row's chain, position
and id are part of the canonical row, so a row can be neither moved nor renumbered. The first
row of a chain links to 32 zero bytes. Rows written before chains existed form the sealed
``legacy`` chain and keep the canonical form they were hashed with (``seq`` = their id, no chain
fields), so migrating never rewrites a hash.

``ChainCheck`` walks one chain in ``chain_seq`` order and reports the *first* broken link as a
``ChainBreak`` (what differs, where, expected and found); ``finish`` then compares the last row
with the chain's head row and with the newest signed checkpoint, which is how deleting the
newest rows is seen. What a hash chain alone cannot show: rows appended after the newest
checkpoint by someone who also rewrites the head (the hash has no secret); the checkpoint
interval bounds that window. No I/O here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "CHECKPOINT_KIND",
    "GENESIS",
    "LEGACY_CHAIN",
    "SYSTEM_CHAIN",
    "AuditRow",
    "ChainBreak",
    "ChainCheck",
    "ChainMark",
    "chain_of",
    "checkpoint_heads",
    "checkpoint_statement",
    "row_digest",
]

GENESIS = bytes(32)
LEGACY_CHAIN = "legacy"
SYSTEM_CHAIN = "system"
CHECKPOINT_KIND = "bulletproof/audit-checkpoint/v1"


def chain_of(tenant_id: int | None, role: str | None = None) -> str:
    """The chain an entry is appended to: its tenant's, or ``system`` for none and for an
    administrator's entry (one made under an admin ``role``)."""
    return SYSTEM_CHAIN if tenant_id is None or role is not None else f"tenant:{tenant_id}"


@dataclass(frozen=True)
class AuditRow:
    """One stored row, as the verifier reads it back."""

    id: int
    chain_id: str
    chain_seq: int
    at: datetime
    tenant_id: int | None
    actor: str
    action: str
    resource: str
    request_id: str
    result: str
    role: str | None
    size: int | None  # the ``bytes`` column: bytes an access moved
    prev_hash: bytes
    entry_hash: bytes


def _canonical(row: AuditRow) -> bytes:
    fields: dict[str, object] = {
        "at": row.at.isoformat(),
        "tenant_id": row.tenant_id,
        "actor": row.actor,
        "action": row.action,
        "resource": row.resource,
        "request_id": row.request_id,
        "result": row.result,
    }
    if row.chain_id == LEGACY_CHAIN:  # hashed before chains existed: seq was the id
        fields["seq"] = row.id
    else:
        fields.update(id=row.id, chain=row.chain_id, chain_seq=row.chain_seq)
        if row.size is not None:
            fields["bytes"] = row.size
    if row.role is not None:  # absent for entries written before the role column
        fields["role"] = row.role
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def row_digest(prev_hash: bytes, row: AuditRow) -> bytes:
    """``SHA-256(prev_hash || canonical row)``; the row's own hash fields are not read."""
    return hashlib.sha256(prev_hash + _canonical(row)).digest()


@dataclass(frozen=True)
class ChainMark:
    """A chain position and the entry hash there: a head row, or one chain of a checkpoint."""

    seq: int
    entry_hash: bytes


@dataclass(frozen=True)
class ChainBreak:
    """The first broken link of one chain.

    ``kind``: ``gap`` (a position is missing), ``extra_row`` (a row at a position already taken,
    or past the head), ``prev_hash`` (a row does not link to the one before), ``entry_hash``
    (a row's content does not hash to what it stores), ``head`` (the head row disagrees with
    the newest row), ``missing_rows`` (the head or a checkpoint names rows the log no longer
    has: the newest rows were deleted), ``checkpoint`` (the row at a checkpointed position is
    not the one that was signed)."""

    chain_id: str
    kind: str
    chain_seq: int | None
    row_id: int | None
    expected: str
    found: str

    def describe(self) -> str:
        where = f"chain {self.chain_id}"
        if self.chain_seq is not None:
            where += f" seq {self.chain_seq}"
        if self.row_id is not None:
            where += f" (row id {self.row_id})"
        return f"{where}: {self.kind} differs: expected {self.expected}, found {self.found}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.describe()}


class ChainCheck:
    """Walks one chain's rows in ``chain_seq`` order; stops at the first break.

    ``start`` and ``prev`` let a walk begin mid-chain (``verify --since``): the first row fed
    must sit at ``start`` and its ``prev_hash`` is taken as given when ``prev`` is None.
    ``checkpoint`` is this chain's mark in the newest signed checkpoint, if any."""

    def __init__(
        self,
        chain_id: str,
        *,
        start: int = 1,
        prev: bytes | None = GENESIS,
        checkpoint: ChainMark | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.next_seq = start
        self.prev = prev
        self.checkpoint = checkpoint
        self.rows = 0
        self.last_id: int | None = None
        self.broken: ChainBreak | None = None

    def _break(self, kind: str, row: AuditRow | None, expected: str, found: str) -> ChainBreak:
        self.broken = ChainBreak(
            self.chain_id,
            kind,
            row.chain_seq if row else None,
            row.id if row else None,
            expected,
            found,
        )
        return self.broken

    def feed(self, row: AuditRow) -> ChainBreak | None:
        if self.broken is not None:
            return self.broken
        if row.chain_seq < self.next_seq:
            return self._break("extra_row", row, f"seq {self.next_seq}", f"seq {row.chain_seq}")
        if row.chain_seq > self.next_seq:
            return self._break("gap", row, f"seq {self.next_seq}", f"seq {row.chain_seq}")
        prev = row.prev_hash if self.prev is None else self.prev
        if row.prev_hash != prev:
            return self._break("prev_hash", row, prev.hex(), row.prev_hash.hex())
        digest = row_digest(prev, row)
        if digest != row.entry_hash:
            return self._break("entry_hash", row, digest.hex(), row.entry_hash.hex())
        mark = self.checkpoint
        if mark is not None and mark.seq == row.chain_seq and mark.entry_hash != digest:
            return self._break("checkpoint", row, mark.entry_hash.hex(), digest.hex())
        self.prev, self.next_seq, self.last_id = digest, self.next_seq + 1, row.id
        self.rows += 1
        return None

    def finish(self, head: ChainMark | None) -> ChainBreak | None:
        """After the last row: the head row and the checkpoint must agree with it."""
        if self.broken is not None:
            return self.broken
        last = self.next_seq - 1
        last_hash = (self.prev or GENESIS).hex()
        mark = self.checkpoint
        if mark is not None and mark.seq > last:
            return self._break(
                "missing_rows", None, f"seq {mark.seq} (signed checkpoint)", f"log ends at {last}"
            )
        if head is None:
            if last == 0:
                return None
            return self._break("head", None, f"a head at seq {last}", "no head row")
        if head.seq > last:
            return self._break(
                "missing_rows", None, f"seq {head.seq} (head)", f"log ends at {last}"
            )
        if head.seq < last:
            return self._break("extra_row", None, f"head at seq {head.seq}", f"rows up to {last}")
        if self.rows and head.entry_hash.hex() != last_hash:
            return self._break("head", None, head.entry_hash.hex(), last_hash)
        return None


def checkpoint_statement(at: datetime, heads: dict[str, ChainMark]) -> dict[str, Any]:
    """What a checkpoint signs: every chain's head (position and hash) and the time."""
    return {
        "kind": CHECKPOINT_KIND,
        "at": at.isoformat(),
        "heads": {
            chain: {"seq": mark.seq, "hash": mark.entry_hash.hex()}
            for chain, mark in sorted(heads.items())
        },
    }


def checkpoint_heads(statement: dict[str, Any]) -> dict[str, ChainMark]:
    """The chain marks of a (verified) checkpoint statement; ValueError if it is not one."""
    if statement.get("kind") != CHECKPOINT_KIND or not isinstance(statement.get("heads"), dict):
        raise ValueError("not an audit checkpoint statement")
    marks = {}
    for chain, mark in statement["heads"].items():
        marks[str(chain)] = ChainMark(int(mark["seq"]), bytes.fromhex(str(mark["hash"])))
    return marks
