"""The audit trail beyond its rows: signed checkpoints of every chain head, kept in PostgreSQL
and outside it, and the one full verification (chains, heads, newest checkpoint, archives).

Why checkpoints: the hash chain has no secret, so whoever can write the database (a superuser
with the trigger disabled) can delete the newest rows and rewind the heads to match. A
checkpoint is every chain's (position, hash) and the time, signed with the deployment key
(``core/deployment_key.py``, derived from the master key, which the database never holds), and
a copy of it is written outside the database (on the archive backends, else in
``audit_checkpoint_dir``: ``actors/audit_outside.py``). ``verify`` takes the
newest checkpoint whose signature holds, from either place, and every chain must still reach
its signed position with the signed hash. A checkpoint found outside but missing from the
database is reported too (someone deleted checkpoint rows).

Archives (sealed chain segments, ``jobs/audit_archiver.py``) are checked against their index:
each chain's segments must follow each other from position 1, each segment's last row must
still be the row the index names (its entry hash), and the stored bytes must still hash to the
indexed SHA-256 (no key is needed for that: the private key stays offline).

Written by the checkpointer worker (``jobs/audit_checkpointer.py``); verified by ``bulletproof
audit verify`` and ``GET /admin/audit/verify``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from actors.audit_outside import OutsideStore
from actors.data_path import DataPath
from core.audit_chain import ChainBreak, ChainMark, checkpoint_heads, checkpoint_statement
from core.deployment_key import DeploymentKey, SignatureInvalid, verify_signed
from core.errors import BackendUnavailable
from core.sealing import MasterKey
from core.settings import Settings
from schema.audit import AuditReport
from schema.store import MetadataStore

__all__ = ["ARCHIVES_UNCHECKED", "CHECKPOINTS_CHAIN", "AuditTrail"]

#: The ``chain_id`` of breaks that concern the checkpoints themselves, not one chain.
CHECKPOINTS_CHAIN = "*checkpoints"
#: Report key listing archive segments whose backend could not be asked (not proof of loss).
ARCHIVES_UNCHECKED = "archives_unchecked"


@dataclass(frozen=True)
class _Checkpoint:
    source: str
    at: datetime
    key_id: str
    marks: dict[str, ChainMark]


@dataclass
class AuditTrail:
    store: MetadataStore
    key: DeploymentKey
    outside: OutsideStore
    archive_errors: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, ctx: DataPath, master: MasterKey | None = None) -> AuditTrail:
        """The trail of a data-path context; the master key is read from its file unless the
        caller holds it already (the gateway does)."""
        trail = cls.from_settings(ctx.store, ctx.settings, master)
        trail.outside.registry = ctx.registry
        return trail

    @classmethod
    def from_settings(
        cls, store: MetadataStore, settings: Settings, master: MasterKey | None = None
    ) -> AuditTrail:
        """A trail without backends (the directory only), e.g. for a database-only check."""
        if master is None:
            master = MasterKey.from_file_text(settings.master_key_path.read_text())
        outside = OutsideStore(settings.audit_checkpoint_path)
        return cls(store, DeploymentKey.from_master(master), outside)

    # -- writing ---------------------------------------------------------------------------
    async def checkpoint(self) -> dict[str, Any]:
        """Sign every chain's committed head, store it, then copy it outside the database."""
        async with self.store.db.connection() as conn:
            heads = await self.store.audit.heads(conn)
            at: datetime = await conn.fetchval("SELECT now()")
        signed = self.key.sign(checkpoint_statement(at, heads))
        text = json.dumps(signed, sort_keys=True)
        async with self.store.db.transaction() as conn:
            checkpoint_id = await self.store.audit.add_checkpoint(conn, text)
        name = f"checkpoint-{at.strftime('%Y%m%dT%H%M%S%fZ')}-{checkpoint_id:012d}.json"
        where = await self.outside.put_checkpoint(checkpoint_id, name, text)
        return {"checkpoint": checkpoint_id, "chains": len(heads), "outside": len(where)}

    # -- verifying -------------------------------------------------------------------------
    def _open(self, source: str, text: str) -> _Checkpoint | ChainBreak:
        try:
            signed = json.loads(text)
            statement = verify_signed(signed, self.key.public_keys)
            marks = checkpoint_heads(statement)
            at = datetime.fromisoformat(str(statement["at"]))
        except (ValueError, TypeError, KeyError, SignatureInvalid) as exc:
            return ChainBreak(
                CHECKPOINTS_CHAIN,
                "checkpoint_signature",
                None,
                None,
                "a checkpoint signed by the deployment key",
                f"{source}: {type(exc).__name__}",
            )
        return _Checkpoint(source, at, str(signed["key_id"]), marks)

    async def verify(self, since: datetime | None = None) -> AuditReport:
        """Every chain recomputed and compared with its head and the newest valid checkpoint.

        Checkpoints are read before the rows' snapshot is taken, so a checkpoint written while
        verifying never names rows the snapshot cannot see."""
        outside = await self.outside.newest_checkpoints()
        async with self.store.db.connection() as conn:
            stored = await self.store.audit.newest_checkpoint(conn)
        problems: list[ChainBreak] = []
        found: list[_Checkpoint] = []
        in_db: _Checkpoint | None = None
        if stored is not None:
            opened = self._open(f"database checkpoint {stored[0]}", stored[1])
            if isinstance(opened, ChainBreak):
                problems.append(opened)
            else:
                found.append(opened)
                in_db = opened
        for where, text in outside:
            opened = self._open(where, text)
            if isinstance(opened, ChainBreak):
                problems.append(opened)
            else:
                found.append(opened)
                if in_db is None or opened.at > in_db.at:
                    problems.append(
                        ChainBreak(
                            CHECKPOINTS_CHAIN,
                            "checkpoint_missing",
                            None,
                            None,
                            f"the checkpoint of {opened.at.isoformat()} in the database",
                            f"newest there: {in_db.at.isoformat() if in_db else 'none'}",
                        )
                    )
        newest = max(found, key=lambda c: c.at) if found else None
        async with self.store.db.connection() as conn:
            report = await self.store.audit.verify(
                conn, since=since, checkpoint=newest.marks if newest else None
            )
        report.breaks.extend(problems)
        report.breaks.extend(await self._check_archives())
        report.unchecked = list(self.archive_errors)
        if newest is not None:
            report.checkpoint = {
                "at": newest.at.isoformat(),
                "source": newest.source,
                "key_id": newest.key_id,
                "chains": len(newest.marks),
            }
        return report

    async def _check_archives(self) -> list[ChainBreak]:
        """The first problem of each chain's archived segments (see the module docstring)."""
        async with self.store.db.connection() as conn:
            index = await self.store.audit.archives(conn)
            hashes = {
                (r["chain_id"], r["chain_seq"]): bytes(r["entry_hash"])
                for r in await conn.fetch(
                    "SELECT l.chain_id, l.chain_seq, l.entry_hash FROM audit_log l"
                    " JOIN audit_archives a ON a.chain_id = l.chain_id"
                    " AND a.last_seq = l.chain_seq"
                )
            }
        found: dict[str, ChainBreak] = {}
        expected_next: dict[str, int] = {}
        self.archive_errors = []
        for seg in index:
            chain = seg["chain_id"]
            if chain in found:
                continue
            want = expected_next.get(chain, 1)
            expected_next[chain] = int(seg["last_seq"]) + 1
            broken = await self._check_segment(seg, want, hashes.get((chain, seg["last_seq"])))
            if broken is not None:
                found[chain] = broken
        return list(found.values())

    async def _check_segment(
        self, seg: Any, want: int, stored_hash: bytes | None
    ) -> ChainBreak | None:
        chain, first, last = seg["chain_id"], int(seg["first_seq"]), int(seg["last_seq"])
        span = f"segment {first}-{last} (archive {seg['id']})"

        def broken(kind: str, expected: str, got: str) -> ChainBreak:
            return ChainBreak(chain, kind, first, None, expected, got)

        if first != want:
            return broken("archive_gap", f"a segment from seq {want}", span)
        indexed = bytes(seg["last_hash"])
        if stored_hash is not None and stored_hash != indexed:
            return broken("archive_index", indexed.hex(), f"{span}: row {last} differs")
        try:
            data = await self.outside.fetch_segment(seg["backend_id"], seg["locator"])
        except BackendUnavailable as exc:
            self.archive_errors.append(f"{span}: {exc}")
            return None
        if data is None:
            return broken("archive_missing", f"{span} stored", "not found")
        digest = hashlib.sha256(data).digest()
        if digest != bytes(seg["sha256"]):
            return broken("archive_sha256", bytes(seg["sha256"]).hex(), digest.hex())
        return None
