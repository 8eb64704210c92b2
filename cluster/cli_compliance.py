"""``bulletproof compliance report --tenant T [--limit N] [--json]``: what a tenant holds in
each jurisdiction (versions, bytes, pieces, countries) and every object not fully placed
(fewer ``ok`` pieces than its class requires), from ``GET /admin/tenants/{tenant}/compliance``
(``gateway/admin/compliance.py``). Part of the composition root like ``cluster/cli.py``, whose
parser calls ``register``. Exit status 1 when any object is not fully placed, so a cron job or
CI step can alert on it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

from cluster.cli_base import admin_call, settings_of

__all__ = ["register"]


def cmd_report(args: argparse.Namespace) -> int:
    path = f"/admin/tenants/{quote(args.tenant, safe='')}/compliance?limit={args.limit}"
    report = admin_call(settings_of(args), "GET", path)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print_report(report)
    return 1 if report["not_fully_placed_total"] else 0


def _print_report(report: dict[str, Any]) -> None:
    print(
        f"tenant {report['tenant']}: {report['versions']} stored version(s), policy version "
        f"{report['policy_version']}, at {report['generated_at']}"
    )
    print(f"{'JURISDICTION':<14}{'COUNTRIES':<20}{'OBJECTS':>10}{'PIECES':>10}{'BYTES':>16}")
    for row in report["jurisdictions"]:
        countries = ",".join(row["countries"])
        print(
            f"{row['jurisdiction']:<14}{countries:<20}{row['objects']:>10}"
            f"{row['pieces']:>10}{row['bytes']:>16}"
        )
    total = report["not_fully_placed_total"]
    if not total:
        print("every object is fully placed")
        return
    print(f"{total} object(s) not fully placed:")
    for item in report["not_fully_placed"]:
        parts = "; ".join(
            f"part {s['part']}: {s['ok']} ok of {s['required'] or '? (class unknown)'}"
            for s in item["shortfall"]
        )
        print(
            f"  {item['bucket']}/{item['key']} (version {item['version_id']}, {item['class']}): "
            f"{parts}"
        )
    if total > len(report["not_fully_placed"]):
        print(f"  ... and {total - len(report['not_fully_placed'])} more (--limit)")


def register(subparsers: Any) -> None:
    """Add the ``compliance`` command and its subcommands to the ``bulletproof`` parser."""
    compliance = subparsers.add_parser("compliance", help="where a tenant's data is held")
    sub = compliance.add_subparsers(dest="compliance_command", required=True)
    report = sub.add_parser(
        "report", help="per jurisdiction: objects and bytes held; objects not fully placed"
    )
    report.add_argument("--tenant", required=True, help="the tenant's name")
    report.add_argument(
        "--limit", type=int, default=1000, help="list at most this many unplaced objects"
    )
    report.add_argument("--json", action="store_true", help="the full JSON answer")
    report.set_defaults(func=cmd_report)
