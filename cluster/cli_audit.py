"""Operator commands for the audit log (part of the composition root): ``register(subparsers)``
adds them to the ``bulletproof`` parser.

- ``bulletproof audit verify [--since TIME] [--json]``: recompute every chain and compare it
  with the chain heads and the newest signed checkpoint (in the database or outside it), and
  check the archived segments against their index (SHA-256, chain range); prints each broken
  chain's first broken link (chain, position, row id, what differs).
  Exit code 0 when everything verifies, 1 when something is broken.
- ``bulletproof audit export [--tenant ID] [--since TIME] [--until TIME] [--action A]
  [--out FILE]``: the stored rows as JSON lines (hashes in hex), in global id order; enough to
  recompute every chain elsewhere.

Both read PostgreSQL directly (``database_url``), ``verify`` also the master key file (the
checkpoints' public key derives from it) and the archive backends, not through a gateway: an
auditor need not trust the gateway whose log it checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any, TextIO

from cluster.cli_base import settings_of

__all__ = ["register"]


def _time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. {text}+00:00 or Z)")
    return when


async def _verify(args: argparse.Namespace) -> int:
    from actors.audit_trail import AuditTrail
    from actors.healing import HealingContext

    settings = settings_of(args)
    # Backends reached by clients built here (archive backends hold segments and checkpoints).
    ctx = await HealingContext.connect(settings, use_ray=False, db_pool_size=2)
    try:
        report = await AuditTrail.of(ctx).verify(since=args.since)
    finally:
        await ctx.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        checkpoint = report.checkpoint
        signed = (
            f"newest checkpoint {checkpoint['at']} ({checkpoint['source']})"
            if checkpoint
            else "no checkpoint yet"
        )
        print(f"{report.entries} entries in {len(report.chains)} chains checked; {signed}")
        for broken in report.breaks:
            print(f"BROKEN {broken.describe()}")
        for unchecked in report.unchecked:
            print(f"UNCHECKED {unchecked}")
        if report.ok:
            print("ok")
    return 0 if report.ok else 1


async def _export(args: argparse.Namespace, out: TextIO) -> int:
    from schema.audit import row_json
    from schema.store import MetadataStore

    settings = settings_of(args)
    store = await MetadataStore.connect(settings.database_url, max_size=2)
    try:
        after = 0
        while True:
            async with store.db.connection() as conn:
                rows = await store.audit.rows(
                    conn,
                    tenant_id=args.tenant,
                    since=args.since,
                    until=args.until,
                    action=args.action,
                    after_id=after,
                    limit=5000,
                )
            for row in rows:
                out.write(json.dumps(row_json(row), sort_keys=True) + "\n")
            if not rows:
                return 0
            after = int(rows[-1]["seq"])
    finally:
        await store.close()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    return asyncio.run(_verify(args))


def cmd_audit_export(args: argparse.Namespace) -> int:
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            return asyncio.run(_export(args, out))
    return asyncio.run(_export(args, sys.stdout))


def register(subparsers: Any) -> None:
    """Add ``audit verify`` and ``audit export`` to the ``bulletproof`` parser."""
    audit = subparsers.add_parser("audit", help="verify and export the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser(
        "verify", help="recompute every chain; exit 1 and name the first broken link if any"
    )
    verify.add_argument("--since", type=_time, help="check rows from this time on (ISO 8601)")
    verify.add_argument("--json", action="store_true", help="the full report as JSON")
    verify.set_defaults(func=cmd_audit_verify)
    export = audit.add_parser("export", help="the stored rows as JSON lines")
    export.add_argument("--tenant", type=int, help="one tenant's entries (its id)")
    export.add_argument("--since", type=_time)
    export.add_argument("--until", type=_time)
    export.add_argument("--action")
    export.add_argument("--out", help="write to this file instead of stdout")
    export.set_defaults(func=cmd_audit_export)
