"""``bp put|get|verify|ls|rm|mb``: objects and buckets, encrypted before upload.

``put`` encrypts to public keys only; ``get`` and ``verify`` authenticate every byte before
anything is published (``get`` writes through :func:`~client.transfer.atomic_output`, so a
failed read leaves nothing plausible-looking behind). ``ls``, ``rm`` and ``mb`` are plain S3
through :class:`~client.remote.RemoteStore`; ``rm`` checks the key exists first, since S3
reports deleting a missing key as success.
"""

from __future__ import annotations

import argparse
import os

from client.cli_commands_placement import cmd_verify_placement
from client.cli_context import CommandContext, s3_url
from client.cli_keys import KeyringChoice, resolve_recipients
from client.errors import DecryptionFailed
from client.exit_codes import EXIT_OK, UsageError
from client.format import ciphertext_length
from client.progress import format_bytes, make_progress
from client.s3url import S3Url
from client.sharing import download, upload_file
from client.transfer import UploadOptions, atomic_output, parse_range

__all__ = ["cmd_get", "cmd_ls", "cmd_mb", "cmd_put", "cmd_rm", "cmd_verify"]


def cmd_put(ctx: CommandContext) -> int:
    args = ctx.args
    url = s3_url(args.url, require_key=True)
    if url.key.endswith("/"):
        raise UsageError(f"{url} ends with '/'; name the object key in full")
    tenant = ctx.settings.require_tenant("put")
    recipients = resolve_recipients(ctx, args.keys)
    size = os.stat(args.file).st_size
    options = UploadOptions(part_size=args.part_size, concurrency=args.concurrency)
    store = ctx.store(connections=args.concurrency + 2)
    progress = make_progress(f"put {url}", ciphertext_length(size), ctx.stderr, quiet=ctx.quiet)
    with ctx.api() as api:
        result = upload_file(
            store,
            api,
            args.file,
            url,
            recipients,
            tenant=tenant,
            redundancy_class=args.redundancy_class,
            progress=progress,
            options=options,
        )
    how = f", {result.parts} parts of {format_bytes(result.part_size)}" if result.parts else ""
    ctx.say(
        f"put {args.file} -> {url}: {format_bytes(result.plaintext_length)} encrypted for "
        f"{', '.join(result.key_ids)} (content id {result.content_id}) in {result.seconds:.2f} s"
        f"{how}"
    )
    return EXIT_OK


def _destination(output: str, url: S3Url) -> str:
    """``FILE``, ``-``, or a directory (then the key's last path component inside it)."""
    if output != "-" and os.path.isdir(output):
        name = url.key.rsplit("/", 1)[-1]
        if not name or name in (".", ".."):
            raise UsageError(f"cannot derive a file name from {url}; give the output file name")
        return os.path.join(output, name)
    return output


def _version_id(args: argparse.Namespace) -> str | None:
    version_id: str | None = args.version_id
    if version_id is not None and not version_id:
        raise UsageError("--version-id must not be empty (null names the null version)")
    return version_id


def _named(url: S3Url, version_id: str | None) -> str:
    return str(url) if version_id is None else f"{url} (version {version_id})"


def cmd_get(ctx: CommandContext) -> int:
    args = ctx.args
    url = s3_url(args.url, require_key=True)
    version_id = _version_id(args)
    tenant = ctx.settings.require_tenant("get")
    try:
        wanted = parse_range(args.byte_range) if args.byte_range else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    destination = _destination(args.output, url)
    store = ctx.store()
    keys = KeyringChoice(ctx.keyring(), args.key)
    try:
        with ctx.api() as api, atomic_output(destination) as sink:
            result = download(
                store,
                api,
                url,
                sink,
                keys,
                tenant=tenant,
                byte_range=wanted,
                progress_factory=ctx.progress(f"get {url}"),
                version_id=version_id,
            )
    except DecryptionFailed as exc:
        # The temporary file is gone: nothing plausible-looking was left behind.
        where = "stdout" if destination == "-" else destination
        raise type(exc)(f"{exc}; nothing was written to {where}") from None
    where = "stdout" if destination == "-" else destination
    ctx.say(
        f"get {_named(url, version_id)} -> {where}: {format_bytes(result.bytes_written)} "
        f"authenticated ({result.segments} segments, key {result.key_id}) in "
        f"{result.seconds:.2f} s"
    )
    return EXIT_OK


def cmd_verify(ctx: CommandContext) -> int:
    args = ctx.args
    if getattr(args, "placement", False):
        return cmd_verify_placement(ctx)
    if getattr(args, "deployment_key", None):
        raise UsageError("--deployment-key goes with --placement")
    url = s3_url(args.url, require_key=True)
    version_id = _version_id(args)
    tenant = ctx.settings.require_tenant("verify")
    store = ctx.store()
    with ctx.api() as api:
        result = download(
            store,
            api,
            url,
            None,
            KeyringChoice(ctx.keyring(), args.key),
            tenant=tenant,
            progress_factory=ctx.progress(f"verify {url}"),
            version_id=version_id,
        )
    print(
        f"OK {_named(url, version_id)}: {result.plaintext_length} bytes, {result.segments} "
        f"segments authenticated, binding and key commitment checked (key {result.key_id}, "
        f"content id {result.content_id})",
        file=ctx.stdout,
    )
    return EXIT_OK


def cmd_ls(ctx: CommandContext) -> int:
    store = ctx.store()
    if ctx.args.url is None:
        for name in store.buckets():
            print(f"s3://{name}", file=ctx.stdout)
        return EXIT_OK
    url = s3_url(ctx.args.url)
    for info in store.list_objects(url):
        print(f"{info.modified}  {info.size:>12}  {info.key}", file=ctx.stdout)
    return EXIT_OK


def cmd_rm(ctx: CommandContext) -> int:
    url = s3_url(ctx.args.url, require_key=True)
    store = ctx.store()
    store.head(url)  # S3 deletes of a missing key "succeed"; a typo should not
    store.delete(url)
    ctx.say(f"deleted {url}")
    return EXIT_OK


def cmd_mb(ctx: CommandContext) -> int:
    url = s3_url(ctx.args.url, allow_key=False)
    ctx.store().make_bucket(url.bucket)
    ctx.say(f"created {url}")
    return EXIT_OK
