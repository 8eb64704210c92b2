"""``bp``'s command line: every command, option, default and help text, and nothing else.

Parsing has no side effects (tests call :func:`build_parser` directly): it reads no
configuration, keyring or network, and each command's handler is only recorded
(``handler``). A usage error raises :class:`~client.exit_codes.UsageError`, one line and exit 2,
instead of argparse's usage text and ``sys.exit`` from deep inside the parser. Options that
check a value (``--part-size``, ``--concurrency``, ``--batch``, ...) reject it here, before any
command runs.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from client.cli_commands_keys import (
    cmd_key_export,
    cmd_key_list,
    cmd_key_publish,
    cmd_key_published,
    cmd_keygen,
)
from client.cli_commands_sharing import cmd_rotate, cmd_share
from client.cli_commands_transfer import cmd_get, cmd_ls, cmd_mb, cmd_put, cmd_rm, cmd_verify
from client.exit_codes import EXIT_CODES, UsageError
from client.format import DEFAULT_SEG_LOG2
from client.parts import check_part_size
from client.rotation import DEFAULT_BATCH, DEFAULT_WORKERS, MAX_BATCH, MAX_WORKERS
from client.transfer import (
    DEFAULT_CONCURRENCY,
    DEFAULT_PART_SIZE,
    MAX_CONCURRENCY,
    MULTIPART_THRESHOLD,
)

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors raise :class:`UsageError` (one line, exit 2) instead of
    printing the whole usage text and exiting from deep inside the parser."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _common_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options accepted before or after the command (``bp --quiet put ...`` or ``bp put -q``).

    On subcommands the defaults are suppressed so a value given before the command is not
    overwritten by the subcommand's default.
    """
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument("--endpoint", help="gateway URL (else BP_ENDPOINT)", **default)
    parser.add_argument("--tenant", help="tenant name (else BP_TENANT)", **default)
    parser.add_argument("--profile", help="config file profile (else BP_PROFILE)", **default)
    parser.add_argument("--region", help="SigV4 region (default us-east-1)", **default)
    quiet: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {"default": False}
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress and no summaries", **quiet
    )


_KEY_HELP = "keyring key to decrypt with (default: whichever key the object names)"
_VERSION_HELP = (
    "read this version of the object (as ListObjectVersions names it; null: the null version)"
    " instead of the current one"
)


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type for an integer in ``low..high`` (a usage error, exit 2, otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


_SIZE = re.compile(r"(\d+)\s*(?:([kmg])(?:i?b)?)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _part_size(text: str) -> int:
    """An argparse type for ``--part-size``: bytes, or with a K/M/G (binary) suffix, and a
    size S3 and BP1 accept (a multiple of the 64 KiB segment, 5 MiB to about 5 GiB)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 16M or 16777216")
    value = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    try:
        check_part_size(value, DEFAULT_SEG_LOG2)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; parsing has no side effects, so tests call this directly."""
    parser = _Parser(
        prog="bp",
        description="Bulletproof client: end-to-end encrypted objects through the gateway.",
        epilog="exit codes:\n"
        + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _common_options(sub, suppress=True)
        return sub

    keygen = command("keygen", "create a key pair in the keyring (private half under a passphrase)")
    keygen.add_argument("--type", choices=("rsa", "x25519", "p256"), default="x25519")
    keygen.add_argument(
        "--bits", type=int, choices=(3072, 4096), help="RSA modulus size (default 3072)"
    )
    keygen.add_argument("name", metavar="NAME")
    keygen.set_defaults(handler=cmd_keygen)

    key = command("key", "inspect the keyring; publish public keys to the gateway")
    key_commands = key.add_subparsers(dest="key_command", metavar="ACTION", parser_class=_Parser)
    key_commands.required = True
    key_list = key_commands.add_parser("list", help="list every key version")
    key_list.set_defaults(handler=cmd_key_list)
    key_export = key_commands.add_parser("export", help="print a public key as PEM")
    key_export.add_argument("name", metavar="NAME")
    key_export.add_argument("--version", type=int, help="key version (default: the latest)")
    key_export.set_defaults(handler=cmd_key_export)
    key_publish = key_commands.add_parser(
        "publish",
        help="register a public key with the gateway for the tenant (others can encrypt to it)",
    )
    _common_options(key_publish, suppress=True)
    key_publish.add_argument("name", metavar="NAME")
    key_publish.add_argument("--version", type=int, help="key version (default: the latest)")
    key_publish.set_defaults(handler=cmd_key_publish)
    key_published = key_commands.add_parser(
        "published", help="list the public keys published for the tenant"
    )
    _common_options(key_published, suppress=True)
    key_published.set_defaults(handler=cmd_key_published)

    put = command("put", "encrypt a local file and upload it")
    put.add_argument("file", metavar="FILE")
    put.add_argument("url", metavar="s3://bucket/key")
    put.add_argument(
        "--key",
        dest="keys",
        action="append",
        metavar="NAME|PEM",
        help="recipient: a keyring key name or a public-key PEM file; repeat for several "
        "recipients, the first is primary (default: the config's default_key)",
    )
    put.add_argument("--class", dest="redundancy_class", metavar="C", help="redundancy class")
    put.add_argument(
        "--part-size",
        type=_part_size,
        default=DEFAULT_PART_SIZE,
        metavar="SIZE",
        help=f"plaintext bytes per part of a multipart upload (files over "
        f"{MULTIPART_THRESHOLD // 2**20} MiB): a multiple of 64 KiB, at least 5M "
        f"(default {DEFAULT_PART_SIZE // 2**20}M; raised if the file would need over "
        "10,000 parts)",
    )
    put.add_argument(
        "--concurrency",
        type=_int_in(1, MAX_CONCURRENCY),
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"parts encrypted and sent at once, 1..{MAX_CONCURRENCY} "
        f"(default {DEFAULT_CONCURRENCY})",
    )
    put.set_defaults(handler=cmd_put)

    get = command("get", "download, authenticate and decrypt an object")
    get.add_argument("url", metavar="s3://bucket/key")
    get.add_argument("output", metavar="FILE|-", help="destination file or directory; - = stdout")
    get.add_argument("--key", metavar="NAME", help=_KEY_HELP)
    get.add_argument(
        "--range", dest="byte_range", metavar="A-B", help="plaintext bytes A..B inclusive, A- or -N"
    )
    get.add_argument("--version-id", metavar="ID", help=_VERSION_HELP)
    get.set_defaults(handler=cmd_get)

    verify = command(
        "verify",
        "download and authenticate an object without writing it anywhere, or (--placement)"
        " check its signed proof of placement",
    )
    verify.add_argument("url", metavar="s3://bucket/key")
    verify.add_argument("--key", metavar="NAME", help=_KEY_HELP)
    verify.add_argument("--version-id", metavar="ID", help=_VERSION_HELP)
    verify.add_argument(
        "--placement",
        action="store_true",
        help="check the gateway's signed proof of where the object's pieces are instead",
    )
    verify.add_argument(
        "--deployment-key",
        metavar="FILE",
        help="pinned deployment key document (the trust anchor; default: fetch the gateway's)",
    )
    verify.set_defaults(handler=cmd_verify)

    share = command(
        "share", "let another key read an object (adds a wrapped data key; copies no data)"
    )
    share.add_argument("url", metavar="s3://bucket/key")
    share.add_argument(
        "--recipient",
        required=True,
        metavar="NAME|PEM",
        help="the key to share with: a keyring key name or a public-key PEM file",
    )
    share.add_argument("--key", metavar="NAME", help="keyring key to open the object with")
    share.set_defaults(handler=cmd_share)

    rot = command(
        "rotate",
        "re-wrap objects' data keys from one key to another (metadata only, no data moves)",
    )
    rot.add_argument("url", metavar="s3://bucket[/prefix]")
    rot.add_argument(
        "--from", dest="from_key", required=True, metavar="NAME", help="keyring key to leave"
    )
    rot.add_argument(
        "--from-version",
        type=_int_in(1, 2**32 - 1),
        metavar="N",
        help="only this version of --from (default: every version but the --to one)",
    )
    rot.add_argument(
        "--to",
        dest="to_key",
        required=True,
        metavar="NAME|PEM",
        help="key to move to: a keyring key name or a public-key PEM file",
    )
    rot.add_argument(
        "--to-version",
        type=_int_in(1, 2**32 - 1),
        metavar="N",
        help="version of --to (default: the latest keyring version; 1 for a PEM file)",
    )
    rot.add_argument(
        "--batch",
        type=_int_in(1, MAX_BATCH),
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"objects per gateway request, 1..{MAX_BATCH} (default {DEFAULT_BATCH})",
    )
    rot.add_argument(
        "--workers",
        type=_int_in(1, MAX_WORKERS),
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"parallel header reads, 1..{MAX_WORKERS} (default {DEFAULT_WORKERS})",
    )
    rot.set_defaults(handler=cmd_rotate)

    ls = command("ls", "list buckets, or the objects under s3://bucket[/prefix]")
    ls.add_argument("url", nargs="?", metavar="s3://bucket[/prefix]")
    ls.set_defaults(handler=cmd_ls)

    rm = command("rm", "delete an object")
    rm.add_argument("url", metavar="s3://bucket/key")
    rm.set_defaults(handler=cmd_rm)

    mb = command("mb", "create a bucket")
    mb.add_argument("url", metavar="s3://bucket")
    mb.set_defaults(handler=cmd_mb)
    return parser
