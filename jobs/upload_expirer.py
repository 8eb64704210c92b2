"""The upload expirer: aborts multipart uploads abandoned for longer than ``upload_expiry_s``.

S3 leaves an upload that is never completed or aborted in place (and billed) until a lifecycle
rule aborts it; Bulletproof aborts it after ``upload_expiry_s`` (default 7 days), because every
uploaded part holds backend objects that nothing else would ever free.

One pass: the uploads initiated longer ago than the expiry, oldest first, in batches. Each is
aborted in its own transaction exactly as AbortMultipartUpload does (``UploadRepository.abort``:
every piece to ``garbage``, the upload rows deleted) with its audit entry; an upload whose row is
locked right now (a part commit, a Complete or an Abort in progress) is skipped and looked at
again at the next pass. Then the garbage is collected through the backend pool, so the pieces
leave the backends in the same pass when their backends are up (later passes of this worker or
the vacuumer retry the others).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from actors.garbage import collect_garbage
from actors.healing import HealingContext
from jobs.worker import Worker
from schema.audit import AuditEntry

__all__ = ["UploadExpirer"]

log = logging.getLogger(__name__)


class UploadExpirer(Worker):
    name = "upload_expirer"

    def __init__(
        self,
        ctx: HealingContext,
        *,
        expiry_s: float | None = None,
        batch: int = 100,
        max_batches: int = 50,
        collect: bool = True,
    ) -> None:
        super().__init__(ctx)
        self.expiry_s = expiry_s if expiry_s is not None else ctx.settings.upload_expiry_s
        self.batch = batch
        self.max_batches = max_batches
        self.collect = collect

    async def run_once(self) -> dict[str, Any]:
        report: dict[str, int] = defaultdict(int)
        store = self.ctx.store
        for _ in range(self.max_batches):
            async with store.db.connection() as conn:
                expired = await store.uploads.expired(conn, self.expiry_s, self.batch)
            aborted_now = 0
            for candidate in expired:
                async with store.db.transaction() as conn:
                    upload = await store.uploads.lock_expired(conn, candidate.id, self.expiry_s)
                    if upload is None:  # finished meanwhile, or busy: the next pass sees it
                        report["skipped"] += 1
                        continue
                    pieces = await store.uploads.abort(conn, upload.id, "multipart upload expired")
                    await store.audit.append(
                        conn,
                        AuditEntry(
                            actor=self.name,
                            action="AbortMultipartUpload",
                            resource=f"bucket:{upload.bucket_id}/{upload.key}",
                            request_id=f"{self.name}:{upload.upload_id}",
                            result=(
                                f"ok upload={upload.upload_id} pieces={pieces}"
                                f" expired after {self.expiry_s:g}s"
                            ),
                            tenant_id=upload.tenant_id,
                        ),
                    )
                aborted_now += 1
                report["aborted"] += 1
                report["pieces"] += pieces
            if len(expired) < self.batch or aborted_now == 0:
                break
        if report["aborted"]:
            log.info(
                "upload expirer: %d uploads aborted, %d pieces to garbage",
                report["aborted"],
                report["pieces"],
            )
        if self.collect and report["pieces"]:
            for _ in range(self.max_batches):
                resolved, left = await collect_garbage(store, self.ctx.registry)
                report["garbage_deleted"] += resolved
                report["garbage_left"] = left
                if resolved == 0:
                    break
        return {"aborted": 0, "pieces": 0, **report}
