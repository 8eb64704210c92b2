"""The audit checkpointer: signs every audit chain's head with the deployment key, stores the
checkpoint in PostgreSQL and writes a copy outside it (``actors/audit_trail.py`` says why).

One pass is one checkpoint; it is cheap (one read of ``audit_heads``, one insert, one file),
so the interval (``audit_checkpoint_interval_s``) bounds how many newest rows a database
superuser could remove unseen: those appended since the last checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.audit_trail import AuditTrail
from actors.healing import HealingContext
from jobs.worker import Worker

__all__ = ["AuditCheckpointer"]


class AuditCheckpointer(Worker):
    name = "audit_checkpointer"

    def __init__(self, ctx: HealingContext, *, directory: str | None = None) -> None:
        super().__init__(ctx)
        self.trail = AuditTrail.of(ctx)
        if directory:
            self.trail.outside.directory = Path(directory)

    async def run_once(self) -> dict[str, Any]:
        return await self.trail.checkpoint()
