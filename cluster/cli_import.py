"""``bulletproof import ...``: the operator's commands for bucket imports (part of the
composition root, like ``cluster/cli.py``, whose parser calls ``register``).

Every command is a call of the gateway's admin API (``/admin/imports/...``,
``/admin/tenants/T/import/...``, ``gateway/imports/routes.py``) with the admin token; the
gateway checks, starts and controls the Ray job. Secrets:

- Source keys come from ``BP_SOURCE_ACCESS_KEY`` / ``BP_SOURCE_SECRET_KEY`` or the terminal;
  they are sealed here (``core.credential_seal.seal``) and only the sealed blob is sent.
- The passphrase comes from ``BP_IMPORT_PASSPHRASE`` or the terminal (typed twice when it seals
  new credentials); it is sent in the body of the start/resume/verify call over the
  authenticated channel, and never printed, stored or put on a command line.

Commands: ``start`` (prints the import id alone on its last line), ``list``, ``status ID
[--watch] [--json]``, ``cancel ID``, ``resume ID``, ``verify ID``, ``mark-source ID [--out
FILE]``, ``seal-credentials --out FILE``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

from cluster.cli_base import admin_response, settings_of
from core.credential_seal import MIN_PASSPHRASE_CHARS, seal
from core.import_source import parse_source_url
from core.import_state import Progress
from jobs.import_progress import progress_line

__all__ = ["register"]

ENV_ACCESS_KEY = "BP_SOURCE_ACCESS_KEY"
ENV_SECRET_KEY = "BP_SOURCE_SECRET_KEY"
ENV_PASSPHRASE = "BP_IMPORT_PASSPHRASE"
_FINAL = ("done", "failed", "cancelled")


class _ApiError(SystemExit):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"error {status} {code}: {message}")
        self.status, self.error_code = status, code


def _error_of(status: int, body: str) -> _ApiError:
    """The code and message of an admin error (S3 XML document, or JSON)."""
    code, message = "Error", body.strip()[:500]
    try:
        root = ElementTree.fromstring(body)
        code = root.findtext("Code") or code
        message = root.findtext("Message") or message
    except ElementTree.ParseError:
        try:
            doc = json.loads(body)
            code, message = doc.get("error", code), doc.get("message", message)
        except (ValueError, AttributeError):
            pass
    return _ApiError(status, code, message)


def _call(args: argparse.Namespace, method: str, path: str, payload: Any = None) -> Any:
    response = admin_response(settings_of(args), method, path, payload)
    if response.status_code != 200:
        raise _error_of(response.status_code, response.text)
    return response.json()


def _secret(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise SystemExit(f"{env} is not set and there is no terminal to ask")
    value = getpass.getpass(prompt)
    if not value:
        raise SystemExit("nothing entered")
    return value


def _passphrase(*, confirm: bool = False) -> str:
    value = os.environ.get(ENV_PASSPHRASE)
    if value:
        return value
    if not sys.stdin.isatty():
        raise SystemExit(f"{ENV_PASSPHRASE} is not set and there is no terminal to ask")
    value = getpass.getpass("Import passphrase: ")
    if confirm:
        if len(value) < MIN_PASSPHRASE_CHARS:
            raise SystemExit(f"the passphrase needs at least {MIN_PASSPHRASE_CHARS} characters")
        if getpass.getpass("Again: ") != value:
            raise SystemExit("the passphrases differ")
    return value


def _sealed_credentials() -> str:
    access_key = os.environ.get(ENV_ACCESS_KEY) or (
        input("Source access key: ") if sys.stdin.isatty() else ""
    )
    if not access_key:
        raise SystemExit(f"{ENV_ACCESS_KEY} is not set and there is no terminal to ask")
    secret_key = _secret(ENV_SECRET_KEY, "Source secret key: ")
    return seal({"access_key": access_key, "secret_key": secret_key}, _passphrase(confirm=True))


def cmd_seal(args: argparse.Namespace) -> int:
    blob = _sealed_credentials()
    out = Path(args.out)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(blob + "\n")
    print(f"sealed credentials written to {out}")
    return 0


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def cmd_start(args: argparse.Namespace) -> int:
    bucket, prefix = parse_source_url(args.source)
    if args.credentials:
        sealed = Path(args.credentials).read_text(encoding="utf-8").strip()
        passphrase = _passphrase()
    else:
        sealed = _sealed_credentials()
        passphrase = _passphrase()
    tenant = quote(args.tenant, safe="")
    name = re.sub(r"[^A-Za-z0-9._-]", "-", bucket)[:50] + "-" + secrets.token_hex(3)
    source = _call(
        args,
        "POST",
        f"/admin/tenants/{tenant}/import/sources",
        {
            "name": name,
            "endpoint": args.source_endpoint,
            "region": args.source_region,
            "bucket": bucket,
            "prefix": prefix,
            "sealed": sealed,
        },
    )
    payload: dict[str, Any] = {"source": source["id"], "destination": args.to}
    if args.cls:
        payload["class"] = args.cls
    if args.region_lock:
        payload["region_lock"] = _csv(args.region_lock)
    if args.recipient:
        payload["recipients"] = args.recipient
    run = _call(args, "POST", f"/admin/tenants/{tenant}/import/runs", payload)
    started = _call(args, "POST", f"/admin/imports/{run['id']}/start", {"passphrase": passphrase})
    print(f"source {source['name']} ({source['endpoint']} {bucket}/{prefix})")
    print(f"import {run['id']} -> {args.to}, submitted as Ray job {started['submission_id']}")
    print(run["id"])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    path = "/admin/imports" + (f"?tenant={quote(args.tenant, safe='')}" if args.tenant else "")
    result = _call(args, "GET", path)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    rows = result["imports"]
    if not rows:
        print("no imports")
        return 0
    print(f"{'ID':>5}  {'TENANT':12}  {'STATE':6}  {'RUN':9}  {'OBJECTS':>15}  DESTINATION")
    for r in rows:
        dest = r["destination"]["bucket"] + "/" + r["destination"]["prefix"]
        counts = f"{r['objects_done']}/{r['objects_total']}"
        print(
            f"{r['id']:>5}  {str(r['tenant'])[:12]:12}  {r['state']:6}  {r['run_state']:9}"
            f"  {counts:>15}  {dest}"
        )
    return 0


def _line(status: dict[str, Any]) -> str:
    progress = Progress(status["objects_per_s"], status["bytes_per_s"], status["eta_s"])
    bar = progress_line(
        objects_done=status["objects_done"],
        objects_total=status["objects_total"],
        bytes_done=status["bytes_done"],
        bytes_total=status["bytes_total"],
        progress=progress,
    )
    return f"{status['state']:6} {status['run_state']:9} {bar} errors {status['errors']}"


def cmd_status(args: argparse.Namespace) -> int:
    path = f"/admin/imports/{args.id}"
    status = _call(args, "GET", path)
    if args.json:
        print(json.dumps(status, sort_keys=True))
        return 0
    if args.watch:
        while status["run_state"] not in _FINAL:
            end = "\r" if sys.stdout.isatty() else "\n"
            print(_line(status), end=end, flush=True)
            time.sleep(args.interval)
            status = _call(args, "GET", path)
    print(_line(status))
    print(f"reason: {status['reason']}")
    if status.get("last_error"):
        print(f"last error: {status['last_error']}")
    if status["errors"]:
        failed = _call(args, "GET", f"{path}/errors?limit=10")["errors"]
        for item in failed:
            print(f"  {item['key']}: {item['error']}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    result = _call(args, "POST", f"/admin/imports/{args.id}/cancel", {})
    stopped = {True: "stopped", False: "not running", None: "unknown (Ray unreachable)"}
    print(
        f"import {args.id} cancelled; Ray job {result['submission_id']}:"
        f" {stopped[result['job_stopped']]}"
    )
    return 0


def _resubmit(args: argparse.Namespace, action: str) -> int:
    payload: dict[str, Any] = {}
    if os.environ.get(ENV_PASSPHRASE) or args.passphrase:
        payload["passphrase"] = _passphrase()
    try:
        result = _call(args, "POST", f"/admin/imports/{args.id}/{action}", payload)
    except _ApiError as exc:
        if exc.error_code != "PassphraseRequired" or "passphrase" in payload:
            raise
        print("the cluster no longer holds this import's passphrase", file=sys.stderr)
        payload["passphrase"] = _passphrase()
        result = _call(args, "POST", f"/admin/imports/{args.id}/{action}", payload)
    print(f"import {args.id}: {action} submitted as Ray job {result['submission_id']}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    return _resubmit(args, "resume")


def cmd_verify(args: argparse.Namespace) -> int:
    return _resubmit(args, "verify")


def cmd_mark_source(args: argparse.Namespace) -> int:
    result = _call(args, "POST", f"/admin/imports/{args.id}/mark-source", {})
    print(f"import {args.id}: {result['marked']} source objects recorded for deletion")
    if args.out:
        manifest = _call(args, "GET", f"/admin/imports/{args.id}/deletion-manifest")
        Path(args.out).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        print(f"deletion manifest written to {args.out} (nothing was deleted at the source)")
    return 0


def register(sub: Any) -> None:
    """Add ``import ...`` to the ``bulletproof`` parser."""
    imp = sub.add_parser("import", help="import buckets from other S3 stores").add_subparsers(
        dest="import_command", required=True
    )
    start = imp.add_parser("start", help="create and start an import; prints its id last")
    start.add_argument("--tenant", required=True)
    start.add_argument("--source", required=True, metavar="s3://BUCKET[/PREFIX]")
    start.add_argument("--source-endpoint", required=True, metavar="URL")
    start.add_argument("--source-region", default="us-east-1")
    start.add_argument("--to", required=True, metavar="BUCKET[/PREFIX]")
    start.add_argument("--class", dest="cls", metavar="CLASS")
    start.add_argument("--region-lock", metavar="EU,...")
    start.add_argument("--recipient", action="append", metavar="KEYID")
    start.add_argument("--credentials", metavar="sealed.json", help="from seal-credentials")
    start.set_defaults(func=cmd_start)

    listing = imp.add_parser("list", help="every import (of one tenant with --tenant)")
    listing.add_argument("--tenant")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)

    status = imp.add_parser("status", help="GREEN / YELLOW / RED, progress and errors")
    status.add_argument("id", type=int)
    status.add_argument("--watch", action="store_true", help="a progress bar until it ends")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    status.set_defaults(func=cmd_status)

    for name, func, text in (
        ("resume", cmd_resume, "submit the next attempt of a stopped import"),
        ("verify", cmd_verify, "check a done import against its source again"),
    ):
        cmd = imp.add_parser(name, help=text)
        cmd.add_argument("id", type=int)
        cmd.add_argument("--passphrase", action="store_true", help="ask for the passphrase")
        cmd.set_defaults(func=func)

    cancel = imp.add_parser("cancel", help="stop the import's Ray job")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(func=cmd_cancel)

    mark = imp.add_parser("mark-source", help="record the deletion manifest of a GREEN import")
    mark.add_argument("id", type=int)
    mark.add_argument("--out", metavar="FILE", help="write the deletion manifest (JSON)")
    mark.set_defaults(func=cmd_mark_source)

    sealer = imp.add_parser("seal-credentials", help="seal source keys under a passphrase")
    sealer.add_argument("--out", required=True, metavar="sealed.json")
    sealer.set_defaults(func=cmd_seal)
