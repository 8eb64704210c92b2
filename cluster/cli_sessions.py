"""``bulletproof session ...``: temporary credentials issued by the STS endpoint
(``AssumeRoleWithWebIdentity``, ``gateway/sts.py``). Part of the composition root like
``cluster/cli.py``, whose parser calls ``register``.

- ``session list [--tenant T] [--subject S] [--all]``: live sessions (``--all``: expired and
  revoked ones too);
- ``session revoke ACCESS_KEY_ID``: revoke one session;
- ``session revoke --subject S [--issuer URL]``: revoke every session of an OIDC subject.

Revocation takes effect at once on every gateway replica (docs/admin.md).
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote, urlencode

from cluster.cli_base import admin_call, settings_of

__all__ = ["register"]


def cmd_list(args: argparse.Namespace) -> int:
    query = {k: v for k, v in (("tenant", args.tenant), ("subject", args.subject)) if v}
    if args.all:
        query["all"] = "true"
    path = "/admin/sessions" + (f"?{urlencode(query)}" if query else "")
    for s in admin_call(settings_of(args), "GET", path):
        state = "revoked" if s["revoked"] else f"until {s['expires_at']}"
        print(f"{s['access_key_id']}  {s['tenant']:<16} {s['subject']:<24} {state}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if (args.key is None) == (args.subject is None):
        raise SystemExit("name one session (ACCESS_KEY_ID) or --subject S")
    if args.key is not None:
        path = f"/admin/sessions/{quote(args.key, safe='')}/revoke"
        result = admin_call(settings, "POST", path)
    else:
        payload: dict[str, Any] = {"subject": args.subject}
        if args.issuer:
            payload["issuer"] = args.issuer
        result = admin_call(settings, "POST", "/admin/sessions/revoke", payload)
    print(f"revoked {len(result['revoked'])} session(s): {' '.join(result['revoked'])}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``session`` command and its subcommands to the ``bulletproof`` parser."""
    session = subparsers.add_parser("session", help="temporary credentials from the STS endpoint")
    sub = session.add_subparsers(dest="session_command", required=True)
    listing = sub.add_parser("list", help="live sessions")
    listing.add_argument("--tenant")
    listing.add_argument("--subject")
    listing.add_argument("--all", action="store_true", help="also expired and revoked ones")
    listing.set_defaults(func=cmd_list)
    revoke = sub.add_parser("revoke", help="revoke a session, or every session of a subject")
    revoke.add_argument("key", nargs="?", metavar="ACCESS_KEY_ID")
    revoke.add_argument("--subject", help="revoke every session of this OIDC subject")
    revoke.add_argument("--issuer", help="only the subject's sessions from this issuer")
    revoke.set_defaults(func=cmd_revoke)
