"""``bulletproof backend add|list|show|update|drain|remove`` (part of the composition root):
each command is one ``/admin`` call (``cluster/cli_base.admin_call``), so the gateway stays the
one writer and every change is validated, probed and audited there.

- ``add NAME --type T ...``: ``POST /admin/add-storage``; prints the probe's RTT/throughput.
  ``--create-bucket`` lets the gateway create a missing bucket (otherwise a missing bucket
  fails the probe at step ``bucket-missing``).
- ``list``: ``GET /admin/backends`` as a table (state, health state, RTT, availability).
- ``show NAME``: ``GET /admin/backends/NAME`` as JSON, drain progress included.
- ``update NAME ...``: ``PATCH /admin/backends/NAME`` with the options given.
- ``drain NAME [--wait]``: ``POST /admin/backends/NAME/drain``; ``--wait`` polls ``show``
  until no piece is left (or only blocked ones), printing progress.
- ``remove NAME``: ``DELETE /admin/backends/NAME`` (refused while metadata references it).

``bulletproof status`` prints the same table as ``list``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cluster.cli_base import admin_call, settings_of

__all__ = ["print_table", "register"]

_TYPES = ("aws", "wasabi", "minio", "ceph", "gcs-interop", "local", "other", "s3")


def _path(name: str, suffix: str = "") -> str:
    return f"/admin/backends/{quote(name, safe='')}{suffix}"


def print_table(backends: list[dict[str, Any]]) -> None:
    print(
        f"{'NAME':16} {'TYPE':11} {'REGION':12} {'CC':3} {'JUR':4} {'STATE':9} {'HEALTH':9}"
        f" {'RTT(ms)':>8} {'AVAIL':>6} {'ERR':>6} {'Mbit/s':>8}"
    )
    for b in backends:
        health = b.get("health") or {}
        state = health.get("state", "healthy")
        if state == "down":
            shown = "DOWN"
        elif not b["healthy"]:
            shown = "DOWN*"  # marked down by this gateway after a failed call
        else:
            shown = state

        def num(value: Any, fmt: str) -> str:
            return "-" if value is None else format(value, fmt)

        print(
            f"{b['name']:16} {b.get('type', b['kind']):11} {b['region']:12} {b['country']:3}"
            f" {b['jurisdiction']:4} {b['state']:9} {shown:9} {b['rtt_ms']:>8}"
            f" {num(health.get('availability'), '.3f'):>6}"
            f" {num(health.get('error_rate'), '.3f'):>6}"
            f" {num(health.get('throughput_mbps'), '.1f'):>8}"
        )


def _declared(args: argparse.Namespace) -> dict[str, Any]:
    """The fields an add or update sets, from the options given (None: not given)."""
    payload: dict[str, Any] = {}
    for option in (
        "type", "provider", "endpoint", "bucket", "access_key", "secret_key", "signing_region",
        "addressing_style", "region", "country", "jurisdiction", "capacity_bytes",
    ):  # fmt: skip
        value = getattr(args, option, None)
        if value is not None:
            payload[option] = value
    if getattr(args, "path", None):
        payload["path"] = str(Path(args.path).resolve())
    if getattr(args, "node", None):
        payload["node"] = args.node
    sla = {
        k: v
        for k, v in (("availability", args.sla_availability), ("latency_ms", args.sla_latency_ms))
        if v is not None
    }
    if sla:
        payload["sla"] = sla
    given = (("residency", args.residency), ("supports_sse", args.sse))
    flags = {k: v for k, v in given if v is not None}
    if flags:
        payload["flags"] = flags
    if args.tenants is not None:
        payload["tenants"] = None if args.tenants == "*" else args.tenants.split(",")
    return payload


def cmd_add(args: argparse.Namespace) -> int:
    payload = {"name": args.name, **_declared(args)}
    if args.create_bucket:
        payload["create_bucket"] = True
    if args.archive:
        payload["archive"] = True
    result = admin_call(settings_of(args), "POST", "/admin/add-storage", payload)
    probe = result.get("probe") or {}
    print(
        f"backend {result['name']} added ({result['type']}, {result['region']}):"
        f" probe rtt {probe.get('rtt_ms')} ms, throughput {probe.get('throughput_mbps')} Mbit/s"
        + (", bucket created" if probe.get("bucket_created") else "")
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print_table(admin_call(settings_of(args), "GET", "/admin/backends"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(json.dumps(admin_call(settings_of(args), "GET", _path(args.name)), indent=2))
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    payload = _declared(args)
    result = admin_call(settings_of(args), "PATCH", _path(args.name), payload)
    print(
        f"backend {result['name']} updated: {', '.join(result['changed']) or 'nothing'}"
        f" ({result['marked_objects']} objects to re-check)"
    )
    return 0


def _progress_line(drain: dict[str, Any]) -> str:
    return (
        f"pieces left {drain['pieces_left']}, bytes left {drain['bytes_left']},"
        f" objects left {drain['objects_left']}, blocked {drain['blocked_objects']}"
    )


def cmd_drain(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    result = admin_call(settings, "POST", _path(args.name, "/drain"))
    print(f"backend {args.name} draining: {result['moves_queued']} moves queued")
    drain = result["drain"]
    print(_progress_line(drain))
    deadline = time.monotonic() + args.wait
    while args.wait and not drain["done"] and time.monotonic() < deadline:
        time.sleep(args.interval)
        drain = admin_call(settings, "GET", _path(args.name))["drain"]
        print(_progress_line(drain), flush=True)
        if drain["pieces_left"] and drain["pieces_left"] == drain["blocked_objects"]:
            break  # only blocked objects are left: waiting longer changes nothing
    for blocked in drain["blocked"]:
        print(
            f"blocked: {blocked['tenant']}/{blocked['bucket']}/{blocked['key']}"
            f" ({blocked['version_id']}): {blocked['rule']}"
        )
    return 0 if drain["done"] or not args.wait else 1


def cmd_remove(args: argparse.Namespace) -> int:
    admin_call(settings_of(args), "DELETE", _path(args.name))
    print(f"backend {args.name} removed; its credentials are forgotten")
    return 0


def _flag(value: str) -> bool:
    if value.lower() in ("true", "yes", "on", "1"):
        return True
    if value.lower() in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError("expected true or false")


def _declare_options(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    parser.add_argument("--type", choices=_TYPES, default="other" if adding else None)
    parser.add_argument("--provider")
    if adding:
        parser.add_argument("--endpoint")
        parser.add_argument("--bucket")
        parser.add_argument("--path", help="directory of a --type local backend")
        parser.add_argument(
            "--node", help="Ray node label bp-node of the local directory's machine (pinned there)"
        )
        parser.add_argument(
            "--create-bucket", action="store_true", help="create the bucket if it is missing"
        )
        parser.add_argument(
            "--archive",
            action="store_true",
            help="designate it for audit archives: it never holds data",
        )
    parser.add_argument("--access-key")
    parser.add_argument("--secret-key")
    parser.add_argument("--signing-region", help="SigV4 region (default us-east-1)")
    parser.add_argument("--addressing-style", choices=("path", "virtual", "auto"))
    parser.add_argument("--region", required=adding)
    parser.add_argument("--country", required=adding)
    parser.add_argument("--jurisdiction", required=adding)
    parser.add_argument("--capacity-bytes", type=int)
    parser.add_argument("--sla-availability", type=float, help="target, percent (e.g. 99.9)")
    parser.add_argument("--sla-latency-ms", type=float)
    parser.add_argument("--residency", type=_flag, help="true/false: contractual residency")
    parser.add_argument("--sse", type=_flag, help="true/false: supports server-side encryption")
    parser.add_argument("--tenants", help="comma-separated tenant names it serves ('*': all)")


def register(sub: Any) -> None:
    backend = sub.add_parser("backend", help="manage storage backends").add_subparsers(
        dest="backend_command", required=True
    )
    add = backend.add_parser("add", help="probe and add a backend (POST /admin/add-storage)")
    add.add_argument("name")
    _declare_options(add, adding=True)
    add.set_defaults(func=cmd_add)
    backend.add_parser("list", help="backends and their health").set_defaults(func=cmd_list)
    show = backend.add_parser("show", help="one backend, with drain progress (JSON)")
    show.add_argument("name")
    show.set_defaults(func=cmd_show)
    update = backend.add_parser("update", help="change a backend's settings (PATCH)")
    update.add_argument("name")
    _declare_options(update, adding=False)
    update.set_defaults(func=cmd_update)
    drain = backend.add_parser("drain", help="stop writes and move everything off a backend")
    drain.add_argument("name")
    drain.add_argument("--wait", type=float, default=0.0, help="poll up to this many seconds")
    drain.add_argument("--interval", type=float, default=2.0)
    drain.set_defaults(func=cmd_drain)
    remove = backend.add_parser("remove", help="forget a drained backend (DELETE)")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_remove)
