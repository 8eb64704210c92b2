"""The audit archiver: seals each chain's rows not archived yet, as segments of at most
``audit_archive_segment_rows`` rows, to the archive public key (``audit_archive_public_key_file``,
X25519 or RSA; its private half stays offline), stores them outside PostgreSQL
(``actors/audit_outside.py``: an archive backend, else the configured directory) and indexes
each in ``audit_archives`` (chain range, last entry hash, SHA-256 of the stored bytes).

A segment file is the snapshot file layout (``jobs/snapshot_format.py``: magic, a JSON
descriptor, then a BP1 object sealed with the client SDK's ``seal``), its plaintext the rows
as JSON lines (``schema.audit.row_json``, as ``bulletproof audit export`` writes them). The
BP1 binding (tenant ``bulletproof-operator``, bucket ``audit-archives``, key
``<chain>/<first>-<last>``) makes a segment renamed or spliced from another fail to open. Only
rows that chain correctly are sealed: a broken chain stops that chain's archiving (``verify``
reports it) rather than sealing a forgery.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from actors.audit_outside import OutsideStore
from actors.healing import HealingContext
from client import seal
from core.audit_chain import ChainCheck
from jobs.snapshot_format import BINDING_TENANT, encode_descriptor
from jobs.snapshotter import load_public_key
from jobs.worker import Worker
from schema.audit import row_json, row_of

__all__ = ["ARCHIVE_BUCKET", "AuditArchiver", "segment_key"]

log = logging.getLogger(__name__)

#: The BP1 binding's bucket for audit segments (the tenant is the snapshots' operator one).
ARCHIVE_BUCKET = "audit-archives"


def segment_key(chain_id: str, first: int, last: int) -> str:
    """The BP1 binding's key of a segment: which rows of which chain it holds."""
    return f"{chain_id}/{first}-{last}"


class AuditArchiver(Worker):
    name = "audit_archiver"

    def __init__(
        self,
        ctx: HealingContext,
        *,
        public_key_file: str | None = None,
        segment_rows: int | None = None,
        directory: str | None = None,
    ) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.public_key_file = public_key_file or s.audit_archive_public_key_file
        self.segment_rows = segment_rows or s.audit_archive_segment_rows
        where = Path(directory) if directory else s.audit_checkpoint_path
        self.outside = OutsideStore(where, ctx.registry)

    async def run_once(self) -> dict[str, Any]:
        if not self.public_key_file:
            log.warning("audit_archiver: no audit_archive_public_key_file configured; nothing done")
            return {"skipped_no_key": 1}
        recipient = load_public_key(self.public_key_file)
        store = self.ctx.store
        async with store.db.connection() as conn:
            todo = await store.audit.unarchived(conn)
        segments = rows = stopped = 0
        for chain, first, head in todo:
            while first <= head:
                last = min(head, first + self.segment_rows - 1)
                async with store.db.connection() as conn:
                    records = await store.audit.chain_rows(conn, chain, first, last)
                check = ChainCheck(chain, start=first, prev=None)
                if len(records) != last - first + 1 or any(check.feed(row_of(r)) for r in records):
                    log.warning("audit_archiver: chain %s does not verify from %d", chain, first)
                    stopped += 1
                    break
                plaintext = b"".join(
                    json.dumps(row_json(r), sort_keys=True).encode() + b"\n" for r in records
                )
                key = segment_key(chain, first, last)
                sealed = seal(
                    plaintext,
                    tenant=BINDING_TENANT,
                    bucket=ARCHIVE_BUCKET,
                    key=key,
                    recipients=[recipient],
                )
                assert isinstance(sealed.body, bytes)
                descriptor = {
                    "v": 1,
                    "name": key,
                    "format": "bulletproof-audit-segment",
                    "chain": chain,
                    "first_seq": first,
                    "last_seq": last,
                    "created_at": time.time(),
                    "plaintext_length": len(plaintext),
                    "binding": {"tenant": BINDING_TENANT, "bucket": ARCHIVE_BUCKET, "key": key},
                    "envelope": sealed.headers,
                }
                data = encode_descriptor(descriptor) + sealed.body
                backend_id, locator = await self.outside.put_segment(data)
                async with store.db.transaction() as conn:
                    await store.audit.add_archive(
                        conn,
                        chain_id=chain,
                        first_seq=first,
                        last_seq=last,
                        last_hash=bytes(records[-1]["entry_hash"]),
                        backend_id=backend_id,
                        locator=locator,
                        size=len(data),
                        sha256=hashlib.sha256(data).digest(),
                    )
                segments += 1
                rows += len(records)
                first = last + 1
        return {"segments": segments, "rows": rows, "chains_stopped": stopped}
