"""``bp share`` and ``bp rotate``: who can read an object, changed without moving its data.

Both re-wrap the data key in metadata only (:mod:`client.sharing`, :mod:`client.rotation`)
and never rewrite an object. ``rotate`` unlocks every ``--from`` key before its first request,
so a wrong passphrase fails before anything changes; it ends with exit 1 if any object failed,
after trying them all.
"""

from __future__ import annotations

from client.cli_context import CommandContext, s3_url
from client.cli_keys import KeyringChoice, read_passphrase, resolve_recipient
from client.errors import KeyNotFound
from client.exit_codes import EXIT_ERROR, EXIT_OK, UsageError
from client.keyring import Keyring
from client.recipient import PrivateKey, PublicKeyRef
from client.rotation import (
    POSTS_IN_FLIGHT,
    READS_IN_FLIGHT,
    ObjectOutcome,
    RotationPlan,
    RotationProgress,
    VersionRef,
    rotate,
)
from client.s3url import S3Url
from client.sharing import share_object

__all__ = ["cmd_rotate", "cmd_share"]


def cmd_share(ctx: CommandContext) -> int:
    args = ctx.args
    url = s3_url(args.url, require_key=True)
    tenant = ctx.settings.require_tenant("share")
    keyring = ctx.keyring()
    recipient = resolve_recipient(keyring, args.recipient)
    with ctx.api() as api:
        result = share_object(api, url, recipient, KeyringChoice(keyring, args.key), tenant=tenant)
    who = f"{result.recipient_id} v{result.recipient_version}"
    if result.already:
        ctx.say(f"{url} is already readable by {who}; nothing to do")
    else:
        ctx.say(
            f"shared {url} with {who} (data key opened with {result.opened_with}, "
            f"content id {result.content_id})"
        )
    return EXIT_OK


def _rotation_keys(
    ctx: CommandContext, keyring: Keyring, target: PublicKeyRef
) -> dict[str, PrivateKey]:
    """The ``--from`` private keys by key id, unlocked up front (one passphrase prompt).

    Unlocking before any request means a wrong passphrase fails before anything changes,
    and no worker thread ever has to prompt.
    """
    args = ctx.args
    infos = [info for info in keyring.list_keys() if info.name == args.from_key]
    if not infos:
        raise KeyNotFound(f"no key named {args.from_key!r} in {keyring.path}")
    if args.from_version is not None:
        infos = [info for info in infos if info.version == args.from_version]
        if not infos:
            raise KeyNotFound(f"key {args.from_key!r} has no version {args.from_version}")
    infos = [i for i in infos if (i.key_id, i.version) != (target.key_id, target.key_version)]
    if not infos:
        raise UsageError("--from and --to name the same key version; nothing to rotate")
    passphrase = read_passphrase(f"passphrase for key {args.from_key!r}")
    return {
        info.key_id: keyring.load_private(info.name, passphrase, info.version) for info in infos
    }


def cmd_rotate(ctx: CommandContext) -> int:
    args = ctx.args
    url = s3_url(args.url)
    tenant = ctx.settings.require_tenant("rotate")
    keyring = ctx.keyring()
    target = resolve_recipient(keyring, args.to_key, args.to_version)
    old_keys = _rotation_keys(ctx, keyring, target)
    plan = RotationPlan(
        bucket=url.bucket,
        tenant=tenant,
        old_keys=old_keys,
        new=target,
        batch_size=args.batch,
        workers=args.workers,
    )
    store = ctx.store()
    show = not ctx.quiet and ctx.stderr.isatty()
    progress = RotationProgress(f"rotate {url}", ctx.stderr) if show else None

    def report(outcome: ObjectOutcome) -> None:
        where = f"{S3Url(url.bucket, outcome.key)}{outcome.version_note}"
        print(f"{outcome.outcome} {where}: {outcome.reason}", file=ctx.stdout)

    # Every version, not only the current ones: a noncurrent version left under the old key
    # is lost once its private key is retired. An unversioned bucket lists as null versions.
    with ctx.api(connections=args.workers + POSTS_IN_FLIGHT + READS_IN_FLIGHT) as api:
        summary = rotate(
            api,
            (VersionRef(v.key, v.version_id, v.is_latest) for v in store.list_versions(url)),
            plan,
            report=report,
            progress=progress,
        )
    ctx.say(
        f"rotate {url} to {target.key_id} v{target.key_version}: {summary.rotated} rotated, "
        f"{summary.skipped} skipped, {summary.failed} failed of {summary.listed} objects in "
        f"{summary.seconds:.2f} s ({summary.rate:.0f} objects/s)"
    )
    return EXIT_ERROR if summary.failed else EXIT_OK
