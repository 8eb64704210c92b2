"""``bp verify --placement s3://bucket/key [--version-id ID] [--deployment-key FILE]``: check
the gateway's signed proof of where an object's pieces are (``client/placement_proof.py``,
format in ``docs/placement-proof.md``) and print its jurisdictions.

The deployment key is the pinned file when given (the trust anchor: the operator hands it
out once, out of band), else fetched from the gateway's well-known URL, which only shows the
proof is intact, not that the gateway is honest; ``bp`` says which one it used. Exit 0 when
the signature verifies and the object is fully placed; 5 when the proof does not verify (or
is about another object); 1 when it verifies but the object is not fully placed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from client.cli_context import CommandContext, s3_url
from client.errors import ProofInvalid
from client.exit_codes import EXIT_ERROR, EXIT_OK
from client.placement_proof import parse_published_keys, verify_placement_proof

__all__ = ["cmd_verify_placement"]


def _pinned_keys(path: str) -> dict[str, bytes]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ProofInvalid(f"{path}: not a JSON deployment key document") from None
    return parse_published_keys(document)


def _piece_line(piece: dict[str, Any]) -> str:
    shard = f" shard {piece['shard']}" if piece.get("shard") is not None else ""
    verified = piece.get("verified_at") or "never"
    return (
        f"  piece {piece['piece']}: part {piece['part']}{shard} on {piece['holder']}"
        f" ({piece['jurisdiction']}, {piece['country']}, {piece['region']}): {piece['state']},"
        f" verified {verified}, sha256 {str(piece['sha256'])[:16]}..."
    )


def cmd_verify_placement(ctx: CommandContext) -> int:
    args = ctx.args
    url = s3_url(args.url, require_key=True)
    version_id = getattr(args, "version_id", None)
    with ctx.api() as api:
        if args.deployment_key:
            keys, source = _pinned_keys(args.deployment_key), f"pinned {args.deployment_key}"
        else:
            keys = parse_published_keys(api.deployment_keys())
            source = "fetched from the gateway (not pinned: use --deployment-key to trust it)"
        signed = api.placement_proof(url, version_id)
    proof = verify_placement_proof(
        signed,
        keys,
        bucket=url.bucket,
        key=url.key,
        version_id=version_id,
        tenant=ctx.settings.tenant or None,
    )
    s = proof.statement
    out = ctx.stdout
    print(
        f"OK signature of the placement proof of {url} version {s['version_id']}: deployment"
        f" key {proof.key_id} ({source}); issued {s['issued_at']}, policy version"
        f" {s['policy_version']}, class {s['redundancy_class']}",
        file=out,
    )
    for piece in s.get("pieces", []):
        print(_piece_line(piece), file=out)
    print(f"jurisdictions: {', '.join(proof.jurisdictions) or 'none'}", file=out)
    if proof.fully_placed:
        print("fully placed", file=out)
        return EXIT_OK
    short = "; ".join(
        f"part {x['part']}: {x['ok']} ok of {x['required'] or '?'}" for x in s.get("shortfall", [])
    )
    print(f"NOT fully placed: {short}", file=out)
    return EXIT_ERROR
