"""``GET /admin/tenants/{tenant}/compliance``: what a tenant holds in each jurisdiction, and
which of its objects are not fully placed (``bulletproof compliance report --tenant T``).

Per jurisdiction: the stored versions with an ``ok`` piece there, the bytes and number of
those pieces, the countries. Then every stored version (not a delete marker) with fewer ``ok``
pieces than its class requires, judged by ``core.placement_proof.placement_shortfall`` (the
rule a placement proof's ``fully_placed`` uses), listed up to ``?limit=`` (default 1000,
at most 10000) with the total count. Read-only; the whole tenant is scanned in pages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.placement_proof import placement_shortfall
from gateway.admin.route import AdminCall, operation
from gateway.s3 import errors as s3e
from schema.placement_facts import PlacementFactsRepository

__all__ = ["compliance_report"]

_facts = PlacementFactsRepository()
_PAGE = 1000
_DEFAULT_LIMIT = 1000
_MAX_LIMIT = 10_000


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return _DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise s3e.InvalidArgument(f"limit must be an integer between 0 and {_MAX_LIMIT}")
    return min(int(raw), _MAX_LIMIT)


@operation(body=False)
async def compliance_report(call: AdminCall) -> dict[str, Any]:
    ctx, name = call.ctx, call.path["tenant"]
    limit = _limit(call.query.get("limit"))
    policy = await ctx.current_policy()
    unplaced: list[dict[str, Any]] = []
    total_unplaced = versions = 0
    async with ctx.store.db.connection() as conn:
        tenant = await ctx.store.tenants.get_by_name(conn, name)
        holdings = await _facts.by_jurisdiction(conn, tenant.id)
        after = 0
        while True:
            page = await _facts.stored_versions(conn, tenant.id, after_pk=after, limit=_PAGE)
            if not page:
                break
            after = page[-1].version_pk
            for v in page:
                versions += 1
                rc = policy.classes.get(v.redundancy_class)
                short = placement_shortfall(rc, v.part_count, v.ok_pieces)
                if not short:
                    continue
                total_unplaced += 1
                if len(unplaced) < limit:
                    unplaced.append(
                        {
                            "bucket": v.bucket,
                            "key": v.key,
                            "version_id": v.version_id,
                            "class": v.redundancy_class,
                            "size": v.size,
                            "shortfall": [
                                {"part": s.part_number, "ok": s.ok, "required": s.required}
                                for s in short
                            ],
                        }
                    )
    return {
        "tenant": name,
        "generated_at": datetime.now(UTC).isoformat(),
        "policy_version": ctx.policy_version,
        "versions": versions,
        "jurisdictions": [
            {
                "jurisdiction": h.jurisdiction,
                "countries": list(h.countries),
                "objects": h.objects,
                "bytes": h.bytes,
                "pieces": h.pieces,
            }
            for h in holdings
        ],
        "not_fully_placed": unplaced,
        "not_fully_placed_total": total_unplaced,
    }
