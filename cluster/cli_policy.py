"""``bulletproof policy ...``: the policy engine's operator commands (part of the composition
root, like ``cluster/cli.py``, whose parser calls ``register``).

Commands, each one call of the ``/admin`` API with the admin token
(``cluster.cli_base.admin_call``):

- ``policy apply FILE [--comment C]``: validate and store FILE as the next policy version
  (``-`` reads standard input); prints the version and what changed;
- ``policy show [--version N] [--json]``: the canonical YAML of the policy in force (or of
  version N), with a comment header saying which version it is;
- ``policy history``: every applied version;
- ``policy explain BUCKET KEY [--class C] [--tenant T] [--size BYTES] [--json]``: which
  backends a PUT would use now and why, or which rule makes it impossible; for an existing
  object also where its pieces are and whether each complies. Exit status 1 when the placement
  is impossible;
- ``policy bucket TENANT BUCKET [--class C | --no-class] [--region-lock eu,... |
  --no-region-lock]``: show, or set, a bucket's default class and region lock;
- ``policy tenant TENANT [--class C | --no-class] [--region-lock ...] [--jurisdiction-allow
  EU,...] [--jurisdiction-deny US,...] [--backends b0,b1 | --all-backends]``: show, or set, a
  tenant's placement settings;
- ``policy relocate BACKEND --region R --country CC --jurisdiction J``: record a backend's new
  location.

Every setting command prints the settings after the change and how many objects were marked
for the placement checker. The module does no work itself: the gateway validates everything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cluster.cli_base import admin_call, settings_of

__all__ = ["register"]


def _call(args: argparse.Namespace, method: str, path: str, payload: Any = None) -> Any:
    return admin_call(settings_of(args), method, path, payload)


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))


def cmd_apply(args: argparse.Namespace) -> int:
    source = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    result = _call(args, "PUT", "/admin/policy", {"document": source, "comment": args.comment})
    if result.get("unchanged"):
        print(f"policy unchanged: version {result['version']} is already this document")
        return 0
    print(f"policy version {result['version']} applied (default class {result['default_class']})")
    for word in ("added", "removed", "changed"):
        if result.get(word):
            print(f"  {word}: {', '.join(result[word])}")
    if result.get("marked_objects"):
        print(f"  {result['marked_objects']} object(s) marked for the placement checker")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    path = "/admin/policy" if args.version is None else f"/admin/policy?version={args.version}"
    result = _call(args, "GET", path)
    if args.json:
        _print(result, True)
        return 0
    by = result["applied_by"]
    when = f" at {result['applied_at']}" if result.get("applied_at") else ""
    print(f"# policy version {result['version']}, applied by {by}{when}")
    if result.get("comment"):
        print(f"# {result['comment']}")
    sys.stdout.write(result["document"])
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    rows = _call(args, "GET", "/admin/policy/history")
    if not rows:
        print("no policy applied; the built-in policy (version 0) is in force")
        return 0
    print(f"{'VERSION':>7}  {'APPLIED AT':32}  {'BY':8}  {'SHA-256':16}  COMMENT")
    for r in rows:
        print(
            f"{r['version']:>7}  {r['applied_at']:32}  {r['applied_by']:8}"
            f"  {r['sha256'][:16]}  {r['comment']}"
        )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {"bucket": args.bucket, "key": args.key}
    for field, value in (("class", args.cls), ("tenant", args.tenant), ("size", args.size)):
        if value is not None:
            payload[field] = value
    result = _call(args, "POST", "/admin/policy/explain", payload)
    if args.json:
        _print(result, True)
    else:
        for line in result["lines"]:
            print(line)
    return 0 if result["placeable"] else 1


def _class_field(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    if args.no_class:
        payload["default_class"] = None
    elif args.cls is not None:
        payload["default_class"] = args.cls


def _lock_field(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    if args.no_region_lock:
        payload["region_lock"] = []
    elif args.region_lock is not None:
        payload["region_lock"] = _csv(args.region_lock)


def _report(result: dict[str, Any]) -> None:
    marked = result.pop("marked_objects", None)
    for name, value in result.items():
        shown = ",".join(value) if isinstance(value, list) else value
        print(f"{name}: {'-' if shown in (None, '') else shown}")
    if marked:
        print(f"{marked} object(s) marked for the placement checker")


def cmd_bucket(args: argparse.Namespace) -> int:
    path = f"/admin/tenants/{quote(args.tenant, safe='')}/buckets/{quote(args.bucket, safe='')}"
    payload: dict[str, Any] = {}
    _class_field(args, payload)
    _lock_field(args, payload)
    if payload:
        result = _call(args, "PUT", f"{path}/placement", payload)
    else:
        result = _call(args, "GET", f"{path}/placement")
    _report(result)
    return 0


def cmd_tenant(args: argparse.Namespace) -> int:
    path = f"/admin/tenants/{quote(args.tenant, safe='')}/placement"
    payload: dict[str, Any] = {}
    _class_field(args, payload)
    _lock_field(args, payload)
    if args.jurisdiction_allow is not None:
        payload["jurisdiction_allow"] = _csv(args.jurisdiction_allow)
    if args.jurisdiction_deny is not None:
        payload["jurisdiction_deny"] = _csv(args.jurisdiction_deny)
    if args.all_backends:
        payload["allowed_backends"] = None
    elif args.backends is not None:
        payload["allowed_backends"] = _csv(args.backends)
    result = _call(args, "PUT", path, payload) if payload else _call(args, "GET", path)
    _report(result)
    return 0


def cmd_relocate(args: argparse.Namespace) -> int:
    result = _call(
        args,
        "PUT",
        f"/admin/backends/{quote(args.backend, safe='')}/location",
        {"region": args.region, "country": args.country, "jurisdiction": args.jurisdiction},
    )
    _report(result)
    return 0


def _class_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--class", dest="cls", metavar="CLASS", help="set the default class")
    group.add_argument("--no-class", action="store_true", help="remove the default class")
    lock = parser.add_mutually_exclusive_group()
    lock.add_argument("--region-lock", metavar="LIST", help="comma-separated, e.g. eu or eu,ch")
    lock.add_argument("--no-region-lock", action="store_true", help="remove the region lock")


def register(subparsers: Any) -> None:
    """Add the ``policy`` command and its subcommands to the ``bulletproof`` parser."""
    policy = subparsers.add_parser(
        "policy", help="redundancy policy, placement settings and explanations"
    )
    sub = policy.add_subparsers(dest="policy_command", required=True)

    apply = sub.add_parser("apply", help="validate and store a policy document (PUT /admin/policy)")
    apply.add_argument("file", help="YAML policy document, or - for standard input")
    apply.add_argument("--comment", default="", help="why; kept in the policy's history")
    apply.set_defaults(func=cmd_apply)

    show = sub.add_parser("show", help="the policy in force (canonical YAML)")
    show.add_argument("--version", type=int, help="an earlier version instead")
    show.add_argument("--json", action="store_true", help="the full JSON answer")
    show.set_defaults(func=cmd_show)

    sub.add_parser("history", help="every applied policy version").set_defaults(func=cmd_history)

    explain = sub.add_parser("explain", help="which backends a PUT would use, and why")
    explain.add_argument("bucket")
    explain.add_argument("key")
    explain.add_argument("--class", dest="cls", metavar="CLASS", help="explain this class")
    explain.add_argument("--tenant", help="the bucket's tenant (needed if the name is shared)")
    explain.add_argument("--size", type=int, help="object size in bytes (capacity checks)")
    explain.add_argument("--json", action="store_true", help="the full JSON answer")
    explain.set_defaults(func=cmd_explain)

    bucket = sub.add_parser("bucket", help="show or set a bucket's default class and region lock")
    bucket.add_argument("tenant")
    bucket.add_argument("bucket")
    _class_options(bucket)
    bucket.set_defaults(func=cmd_bucket)

    tenant = sub.add_parser("tenant", help="show or set a tenant's placement settings")
    tenant.add_argument("tenant")
    _class_options(tenant)
    tenant.add_argument("--jurisdiction-allow", metavar="LIST", help="e.g. EU,CH ('' clears)")
    tenant.add_argument("--jurisdiction-deny", metavar="LIST", help="e.g. US ('' clears)")
    backends = tenant.add_mutually_exclusive_group()
    backends.add_argument("--backends", metavar="LIST", help="backend allow-list, e.g. b0,b1")
    backends.add_argument("--all-backends", action="store_true", help="remove the allow-list")
    tenant.set_defaults(func=cmd_tenant)

    relocate = sub.add_parser("relocate", help="record a backend's new location")
    relocate.add_argument("backend")
    relocate.add_argument("--region", required=True)
    relocate.add_argument("--country", required=True)
    relocate.add_argument("--jurisdiction", required=True)
    relocate.set_defaults(func=cmd_relocate)
