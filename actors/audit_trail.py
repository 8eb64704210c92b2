"""The audit trail beyond its rows: signed checkpoints of every chain head, kept in PostgreSQL
and outside it, and the one full verification (chains, heads, newest checkpoint).

Why checkpoints: the hash chain has no secret, so whoever can write the database (a superuser
with the trigger disabled) can delete the newest rows and rewind the heads to match. A
checkpoint is every chain's (position, hash) and the time, signed with the deployment key
(``core/deployment_key.py``, derived from the master key, which the database never holds), and
a copy of it is written outside the database (``audit_checkpoint_dir``). ``verify`` takes the
newest checkpoint whose signature holds, from either place, and every chain must still reach
its signed position with the signed hash. A checkpoint found outside but missing from the
database is reported too (someone deleted checkpoint rows).

Written by the checkpointer worker (``jobs/audit_checkpointer.py``); verified by ``bulletproof
audit verify`` and ``GET /admin/audit/verify``.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from actors.data_path import DataPath
from core.audit_chain import ChainBreak, ChainMark, checkpoint_heads, checkpoint_statement
from core.deployment_key import DeploymentKey, SignatureInvalid, verify_signed
from core.sealing import MasterKey
from core.settings import Settings
from schema.audit import AuditReport
from schema.store import MetadataStore

__all__ = ["CHECKPOINTS_CHAIN", "AuditTrail"]

#: The ``chain_id`` of breaks that concern the checkpoints themselves, not one chain.
CHECKPOINTS_CHAIN = "*checkpoints"


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
    outside: Path

    @classmethod
    def of(cls, ctx: DataPath, master: MasterKey | None = None) -> AuditTrail:
        """The trail of a data-path context; the master key is read from its file unless the
        caller holds it already (the gateway does)."""
        return cls.from_settings(ctx.store, ctx.settings, master)

    @classmethod
    def from_settings(
        cls, store: MetadataStore, settings: Settings, master: MasterKey | None = None
    ) -> AuditTrail:
        if master is None:
            master = MasterKey.from_file_text(settings.master_key_path.read_text())
        return cls(store, DeploymentKey.from_master(master), settings.audit_checkpoint_path)

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
        await asyncio.to_thread(self._write_outside, name, text)
        return {"checkpoint": checkpoint_id, "chains": len(heads)}

    def _write_outside(self, name: str, text: str) -> None:
        self.outside.mkdir(parents=True, exist_ok=True)
        partial = self.outside / f".{name}.partial"
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, self.outside / name)

    def _newest_outside(self) -> tuple[str, str] | None:
        if not self.outside.is_dir():
            return None
        names = sorted(p.name for p in self.outside.glob("checkpoint-*.json"))
        if not names:
            return None
        return names[-1], (self.outside / names[-1]).read_text(encoding="utf-8")

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
        outside = await asyncio.to_thread(self._newest_outside)
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
        if outside is not None:
            opened = self._open(f"outside copy {outside[0]}", outside[1])
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
        if newest is not None:
            report.checkpoint = {
                "at": newest.at.isoformat(),
                "source": newest.source,
                "key_id": newest.key_id,
                "chains": len(newest.marks),
            }
        return report
