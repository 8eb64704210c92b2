"""``bulletproof tenant ...``, ``bulletproof key ...`` and ``bulletproof admin token rotate``:
tenants, their access keys and the bootstrap admin token (part of the composition root, like
``cluster/cli.py``, whose parser calls ``register``).

Commands, each one call of the ``/admin`` API (``cluster.cli_base.admin_call``):

- ``tenant create NAME [--allow-plaintext]``: prints ``ACCESS_KEY_ID SECRET`` on one line;
- ``tenant list``, ``tenant show NAME [--json]``;
- ``tenant disable NAME`` / ``tenant enable NAME``: refuse (or accept again) all its keys;
- ``tenant delete NAME``: refused while it has buckets;
- ``key create TENANT``: prints ``ACCESS_KEY_ID SECRET`` (a tenant may hold several keys);
- ``key list TENANT``; ``key disable|enable|delete TENANT KEY_ID``;
- ``key rotate TENANT KEY_ID``: a new secret for the key, printed once; the old one is refused;
- ``admin token rotate``: a new bootstrap token replaces the one in force, which is refused
  from then on. The new token is written to the state directory's ``admin.token`` (mode 0600)
  when that is where the token came from; with ``BP_ADMIN_TOKEN`` set it is printed instead,
  and the setting must be changed to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from typing import Any
from urllib.parse import quote

from cluster.cli_base import admin_call, settings_of

__all__ = ["register"]


def _call(args: argparse.Namespace, method: str, path: str, payload: Any = None) -> Any:
    return admin_call(settings_of(args), method, path, payload)


def _tenant_path(args: argparse.Namespace) -> str:
    return f"/admin/tenants/{quote(args.tenant, safe='')}"


def _key_path(args: argparse.Namespace) -> str:
    return f"{_tenant_path(args)}/keys/{quote(args.key, safe='')}"


def cmd_tenant_create(args: argparse.Namespace) -> int:
    payload = {"name": args.tenant, "allow_plaintext": args.allow_plaintext}
    result = _call(args, "POST", "/admin/tenants", payload)
    print(f"{result['access_key_id']} {result['secret_access_key']}")
    return 0


def cmd_tenant_list(args: argparse.Namespace) -> int:
    rows = _call(args, "GET", "/admin/tenants")
    print(f"{'TENANT':24} {'STATE':9} {'KEYS':>4} {'BUCKETS':>7}  CREATED")
    for r in rows:
        print(
            f"{r['tenant']:24} {r['state']:9} {r['keys']:>4} {r['buckets']:>7}  {r['created_at']}"
        )
    return 0


def cmd_tenant_show(args: argparse.Namespace) -> int:
    result = _call(args, "GET", _tenant_path(args))
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    for field in ("tenant", "state", "allow_plaintext", "created_at", "buckets"):
        print(f"{field}: {result[field]}")
    print("access keys:")
    for k in result["access_keys"]:
        print(f"  {k['access_key_id']}  {k['state']:8}  created {k['created_at']}")
    return 0


def cmd_tenant_state(args: argparse.Namespace) -> int:
    result = _call(args, "POST", f"{_tenant_path(args)}/{args.action}")
    print(f"tenant {result['tenant']}: {result['state']}")
    return 0


def cmd_tenant_delete(args: argparse.Namespace) -> int:
    result = _call(args, "DELETE", _tenant_path(args))
    print(f"tenant {result['tenant']} deleted ({result['keys_deleted']} key(s))")
    return 0


def cmd_key_create(args: argparse.Namespace) -> int:
    result = _call(args, "POST", f"{_tenant_path(args)}/keys")
    print(f"{result['access_key_id']} {result['secret_access_key']}")
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    for k in _call(args, "GET", f"{_tenant_path(args)}/keys"):
        print(f"{k['access_key_id']}  {k['state']:8}  created {k['created_at']}")
    return 0


def cmd_key_change(args: argparse.Namespace) -> int:
    if args.action == "delete":
        _call(args, "DELETE", _key_path(args))
        print(f"key {args.key} deleted")
    elif args.action == "rotate":
        result = _call(args, "POST", f"{_key_path(args)}/rotate")
        print(f"{result['access_key_id']} {result['secret_access_key']}")
    else:
        result = _call(args, "POST", f"{_key_path(args)}/{args.action}")
        print(f"key {result['access_key_id']}: {result['state']}")
    return 0


def _write_private(path: Any, text: str) -> None:
    """Replace ``path`` with ``text`` (mode 0600) in one rename: never a half-written token."""
    tmp = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def cmd_admin_token_rotate(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    result = admin_call(settings, "POST", "/admin/token/rotate")
    token = result["token"]
    if settings.admin_token:
        print(token)
        print(
            f"bootstrap admin token rotated ({result['revoked']} revoked); set BP_ADMIN_TOKEN"
            " (or admin_token in the config file) to the token above",
        )
        return 0
    try:
        _write_private(settings.admin_token_path, token + "\n")
    except OSError as exc:
        print(token)
        raise SystemExit(
            f"token rotated, but {settings.admin_token_path} could not be written ({exc}):"
            " the new token is printed above"
        ) from exc
    print(
        f"bootstrap admin token rotated ({result['revoked']} revoked); the new one is in"
        f" {settings.admin_token_path}"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``tenant``, ``key`` and ``admin`` to the ``bulletproof`` parser."""
    tenant = subparsers.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="tenant_command", required=True
    )
    create = tenant.add_parser("create", help="create a tenant; prints ACCESS_KEY_ID SECRET")
    create.add_argument("tenant", metavar="name")
    create.add_argument("--allow-plaintext", action="store_true")
    create.set_defaults(func=cmd_tenant_create)
    tenant.add_parser("list", help="every tenant").set_defaults(func=cmd_tenant_list)
    show = tenant.add_parser("show", help="a tenant and its access keys")
    show.add_argument("tenant", metavar="name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_tenant_show)
    for action, text in (
        ("disable", "refuse every key of the tenant at once"),
        ("enable", "accept the tenant's keys again"),
    ):
        state = tenant.add_parser(action, help=text)
        state.add_argument("tenant", metavar="name")
        state.set_defaults(func=cmd_tenant_state, action=action)
    delete = tenant.add_parser("delete", help="delete a tenant that has no bucket")
    delete.add_argument("tenant", metavar="name")
    delete.set_defaults(func=cmd_tenant_delete)

    key = subparsers.add_parser("key", help="manage tenants' access keys").add_subparsers(
        dest="key_command", required=True
    )
    create = key.add_parser("create", help="a new key for TENANT; prints ACCESS_KEY_ID SECRET")
    create.add_argument("tenant")
    create.set_defaults(func=cmd_key_create)
    listing = key.add_parser("list", help="TENANT's keys (never their secrets)")
    listing.add_argument("tenant")
    listing.set_defaults(func=cmd_key_list)
    for action, text in (
        ("disable", "refuse the key at once on every gateway replica"),
        ("enable", "accept the key again"),
        ("delete", "delete the key"),
        ("rotate", "a new secret for the key; prints ACCESS_KEY_ID SECRET"),
    ):
        change = key.add_parser(action, help=text)
        change.add_argument("tenant")
        change.add_argument("key", metavar="access_key_id")
        change.set_defaults(func=cmd_key_change, action=action)

    admin = subparsers.add_parser("admin", help="the bootstrap admin token").add_subparsers(
        dest="admin_command", required=True
    )
    token = admin.add_parser("token", help="the bootstrap admin token").add_subparsers(
        dest="token_command", required=True
    )
    token.add_parser(
        "rotate", help="replace the bootstrap token; the old one is refused at once"
    ).set_defaults(func=cmd_admin_token_rotate)
