"""``bp``: the command-line client. Encrypts before upload, authenticates before it writes.

Commands (``bp COMMAND --help`` for each)::

    bp keygen [--type rsa|x25519|p256] [--bits 3072|4096] NAME
    bp key list
    bp key export NAME [--version N]
    bp key publish NAME [--version N]
    bp key published
    bp put FILE s3://bucket/key [--key NAME|PEM ...] [--class C] [--part-size SIZE]
           [--concurrency N]
    bp get s3://bucket/key FILE|- [--key NAME] [--range A-B] [--version-id ID]
    bp verify s3://bucket/key [--key NAME] [--version-id ID]
    bp share s3://bucket/key --recipient NAME|PEM [--key NAME]
    bp rotate --from NAME --to NAME|PEM s3://bucket[/prefix] [--from-version N]
              [--to-version N] [--batch 500] [--workers 8]
    bp ls [s3://bucket[/prefix]]
    bp rm s3://bucket/key
    bp mb s3://bucket

Recipients beyond the primary one live only in the gateway's recipient list (``?share`` /
``?recipients``, :mod:`client.sharing`); rotation re-wraps metadata only and never reads more
than an object's 112-byte header (:mod:`client.rotation`). Both talk to the gateway's
extensions through :mod:`client.api`; plain S3 goes through :mod:`client.remote` (boto3).

Every failure is one line on stderr, ``bp: <what>: <why>``, and a distinct exit code
(:data:`EXIT_CODES`, documented in ``docs/client.md``); the mapping from exception types to
codes is the table :data:`_EXIT_TABLE` and nothing else decides an exit code. Tracebacks are
never shown for expected failures; an unexpected exception prints its type and message only
(set ``BP_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

from client.api import GatewayApi
from client.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    ConfigError,
    Overrides,
    Settings,
    load_config_file,
    resolve_settings,
)
from client.errors import (
    BindingMismatch,
    ClientError,
    DecryptionFailed,
    InvalidEnvelope,
    KeyExists,
    KeyNotFound,
    MalformedHeader,
    RangeNotSatisfiable,
    Tampered,
    Truncated,
    UnsupportedKey,
    WrongKey,
    WrongPassphrase,
)
from client.format import DEFAULT_SEG_LOG2, ciphertext_length
from client.keyring import KeyInfo, Keyring
from client.parts import check_part_size
from client.progress import Progress, format_bytes, make_progress
from client.recipient import PrivateKey, PublicKeyRef
from client.remote import (
    AccessDenied,
    GatewayUnavailable,
    ObjectChanged,
    ObjectNotFound,
    RemoteStore,
)
from client.rotation import (
    DEFAULT_BATCH,
    DEFAULT_WORKERS,
    MAX_BATCH,
    MAX_WORKERS,
    POSTS_IN_FLIGHT,
    ObjectOutcome,
    RotationPlan,
    RotationProgress,
    VersionRef,
    rotate,
)
from client.s3url import S3Url, parse_s3_url
from client.sharing import download, share_object, upload_file
from client.transfer import (
    DEFAULT_CONCURRENCY,
    DEFAULT_PART_SIZE,
    MAX_CONCURRENCY,
    MULTIPART_THRESHOLD,
    UploadOptions,
    atomic_output,
    parse_range,
)
from client.wrap import WrappedKey

__all__ = [
    "EXIT_CODES",
    "EXIT_DENIED",
    "EXIT_ERROR",
    "EXIT_INTEGRITY",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "EXIT_WRONG_KEY",
    "UsageError",
    "build_parser",
    "describe_error",
    "exit_code_for",
    "main",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_DENIED = 4
EXIT_INTEGRITY = 5
EXIT_WRONG_KEY = 6
EXIT_UNAVAILABLE = 7
EXIT_INTERRUPTED = 130
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_ERROR: "any other failure (local I/O, a request the gateway refused, ...)",
    EXIT_USAGE: "bad command line or configuration (missing endpoint, tenant, credentials)",
    EXIT_NOT_FOUND: "no such object, bucket, local file or keyring key",
    EXIT_DENIED: "the gateway refused the credentials or the operation",
    EXIT_INTEGRITY: "the object failed authentication (tampered, truncated, swapped, malformed)",
    EXIT_WRONG_KEY: "no usable private key for the object, or a wrong passphrase",
    EXIT_UNAVAILABLE: "the gateway is unreachable or overloaded, or the object changed; retry",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class UsageError(Exception):
    """The command line asks for something impossible; the message says what to do instead."""


# Most specific first: the first isinstance match decides the exit code.
_EXIT_TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (UsageError, EXIT_USAGE),
    (ConfigError, EXIT_USAGE),
    (RangeNotSatisfiable, EXIT_USAGE),
    (UnsupportedKey, EXIT_USAGE),
    (WrongPassphrase, EXIT_WRONG_KEY),
    (WrongKey, EXIT_WRONG_KEY),
    (DecryptionFailed, EXIT_INTEGRITY),
    (InvalidEnvelope, EXIT_INTEGRITY),
    (KeyNotFound, EXIT_NOT_FOUND),
    (ObjectNotFound, EXIT_NOT_FOUND),
    (FileNotFoundError, EXIT_NOT_FOUND),
    (AccessDenied, EXIT_DENIED),
    (GatewayUnavailable, EXIT_UNAVAILABLE),
    (ObjectChanged, EXIT_UNAVAILABLE),
    (KeyboardInterrupt, EXIT_INTERRUPTED),
)


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an exception (:data:`EXIT_ERROR` for anything not in the table)."""
    for kind, code in _EXIT_TABLE:
        if isinstance(exc, kind):
            return code
    return EXIT_ERROR


_INTEGRITY_PREFIX: tuple[tuple[type[DecryptionFailed], str], ...] = (
    (
        BindingMismatch,
        "integrity check failed: the gateway returned a different object than the one asked for",
    ),
    (Truncated, "integrity check failed: the object is truncated"),
    (Tampered, "integrity check failed: the object was modified"),
    (MalformedHeader, "not a BP1-encrypted object"),
    (WrongKey, "wrong key"),
)


def describe_error(exc: BaseException) -> str:
    """One line for the user: what kind of failure, then the specific reason."""
    notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
    return _describe(exc) + notes


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, WrongPassphrase):
        return f"{detail}; check BP_PASSPHRASE"
    if isinstance(exc, DecryptionFailed):
        for kind, prefix in _INTEGRITY_PREFIX:
            if isinstance(exc, kind):
                if isinstance(exc, BindingMismatch | WrongKey):
                    return f"{prefix}: {detail}"
                return f"{prefix} ({detail})"
        return f"decryption failed ({detail})"
    if isinstance(exc, InvalidEnvelope):
        return f"the object's encryption envelope is missing or malformed: {detail}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    if isinstance(exc, ClientError | ConfigError | UsageError | ValueError):
        return detail
    return f"{type(exc).__name__}: {detail}"


# -- parser -------------------------------------------------------------------------------


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
    keygen.set_defaults(handler=_cmd_keygen)

    key = command("key", "inspect the keyring; publish public keys to the gateway")
    key_commands = key.add_subparsers(dest="key_command", metavar="ACTION", parser_class=_Parser)
    key_commands.required = True
    key_list = key_commands.add_parser("list", help="list every key version")
    key_list.set_defaults(handler=_cmd_key_list)
    key_export = key_commands.add_parser("export", help="print a public key as PEM")
    key_export.add_argument("name", metavar="NAME")
    key_export.add_argument("--version", type=int, help="key version (default: the latest)")
    key_export.set_defaults(handler=_cmd_key_export)
    key_publish = key_commands.add_parser(
        "publish",
        help="register a public key with the gateway for the tenant (others can encrypt to it)",
    )
    _common_options(key_publish, suppress=True)
    key_publish.add_argument("name", metavar="NAME")
    key_publish.add_argument("--version", type=int, help="key version (default: the latest)")
    key_publish.set_defaults(handler=_cmd_key_publish)
    key_published = key_commands.add_parser(
        "published", help="list the public keys published for the tenant"
    )
    _common_options(key_published, suppress=True)
    key_published.set_defaults(handler=_cmd_key_published)

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
    put.set_defaults(handler=_cmd_put)

    get = command("get", "download, authenticate and decrypt an object")
    get.add_argument("url", metavar="s3://bucket/key")
    get.add_argument("output", metavar="FILE|-", help="destination file or directory; - = stdout")
    get.add_argument("--key", metavar="NAME", help=_KEY_HELP)
    get.add_argument(
        "--range", dest="byte_range", metavar="A-B", help="plaintext bytes A..B inclusive, A- or -N"
    )
    get.add_argument("--version-id", metavar="ID", help=_VERSION_HELP)
    get.set_defaults(handler=_cmd_get)

    verify = command("verify", "download and authenticate an object without writing it anywhere")
    verify.add_argument("url", metavar="s3://bucket/key")
    verify.add_argument("--key", metavar="NAME", help=_KEY_HELP)
    verify.add_argument("--version-id", metavar="ID", help=_VERSION_HELP)
    verify.set_defaults(handler=_cmd_verify)

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
    share.set_defaults(handler=_cmd_share)

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
    rot.set_defaults(handler=_cmd_rotate)

    ls = command("ls", "list buckets, or the objects under s3://bucket[/prefix]")
    ls.add_argument("url", nargs="?", metavar="s3://bucket[/prefix]")
    ls.set_defaults(handler=_cmd_ls)

    rm = command("rm", "delete an object")
    rm.add_argument("url", metavar="s3://bucket/key")
    rm.set_defaults(handler=_cmd_rm)

    mb = command("mb", "create a bucket")
    mb.add_argument("url", metavar="s3://bucket")
    mb.set_defaults(handler=_cmd_mb)
    return parser


# -- shared plumbing ----------------------------------------------------------------------


class _Context:
    """Everything a command needs, resolved lazily so ``bp key list`` touches no network."""

    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.quiet: bool = bool(getattr(args, "quiet", False))
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            path = os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
            overrides = Overrides(
                endpoint=getattr(self.args, "endpoint", None),
                tenant=getattr(self.args, "tenant", None),
                region=getattr(self.args, "region", None),
                profile=getattr(self.args, "profile", None),
            )
            self._settings = resolve_settings(overrides, os.environ, load_config_file(path))
        return self._settings

    def _credentials(self) -> tuple[str, str, str]:
        settings = self.settings
        endpoint = settings.require_endpoint()
        if not settings.access_key_id or not settings.secret_access_key:
            raise ConfigError(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "access_key_id and secret_access_key in the config profile"
            )
        return endpoint, settings.access_key_id, settings.secret_access_key

    def store(self, connections: int = 10) -> RemoteStore:
        endpoint, access_key_id, secret = self._credentials()
        return RemoteStore(
            endpoint, access_key_id, secret, region=self.settings.region, connections=connections
        )

    def api(self, connections: int = 4) -> GatewayApi:
        """The gateway's extensions (keys, recipients, rewrap), same endpoint and credentials."""
        endpoint, access_key_id, secret = self._credentials()
        try:
            return GatewayApi(
                endpoint,
                access_key_id,
                secret,
                region=self.settings.region,
                connections=connections,
            )
        except ValueError as exc:
            raise ConfigError(f"bad gateway endpoint: {exc}") from None

    def keyring(self) -> Keyring:
        return Keyring()

    def progress(self, label: str) -> Callable[[int], Progress]:
        return lambda total: make_progress(label, total, self.stderr, quiet=self.quiet)

    def say(self, text: str) -> None:
        """A human summary on stderr (stdout may be carrying object data)."""
        if not self.quiet:
            print(text, file=self.stderr)


def _url(text: str, **kwargs: bool) -> S3Url:
    try:
        return parse_s3_url(text, **kwargs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _terminal_available() -> bool:
    """Whether getpass can prompt without echo (it reads /dev/tty, not stdin)."""
    try:
        with open("/dev/tty"):
            return True
    except OSError:
        return False


def _read_passphrase(prompt: str, *, confirm: bool = False) -> str:
    """``BP_PASSPHRASE``, else a prompt on the terminal (never echoed); never an empty one."""
    value = os.environ.get("BP_PASSPHRASE")
    if value:
        return value
    if not _terminal_available():
        raise UsageError("a passphrase is needed: set BP_PASSPHRASE or run bp in a terminal")
    value = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass(f"{prompt} (again): ") != value:
        raise UsageError("the passphrases do not match")
    if not value:
        raise UsageError("an empty passphrase would leave the private key unprotected")
    return value


def _load_pem_recipient(path: str) -> PublicKeyRef:
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_public_key(f.read())
    except ValueError:
        raise UsageError(f"{path} is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey | x25519.X25519PublicKey | ec.EllipticCurvePublicKey):
        raise UsageError(f"{path}: only RSA, X25519 and P-256 public keys can be recipients")
    return PublicKeyRef(key, 1)


def _recipient(keyring: Keyring, name: str, version: int | None = None) -> PublicKeyRef:
    """A keyring key name, or the path of a PEM public key (anything with a ``/`` or ending in
    ``.pem``); only public halves are read, so no passphrase is needed."""
    if os.sep in name or name.endswith(".pem"):
        ref = _load_pem_recipient(name)
        return PublicKeyRef(ref.public_key, version) if version is not None else ref
    return keyring.load_public(name, version)


def _recipients(ctx: _Context, names: Sequence[str] | None) -> list[PublicKeyRef]:
    """Public keys to encrypt to; no passphrase needed (only public halves are read)."""
    keyring = ctx.keyring()
    if not names:
        default = ctx.settings.default_key
        if default:
            names = [default]
        else:
            available = sorted({info.name for info in keyring.list_keys()})
            if len(available) != 1:
                choice = ", ".join(available) if available else "none; run bp keygen NAME"
                raise UsageError(
                    f"which recipient key? pass --key NAME or set default_key (keys: {choice})"
                )
            names = available
    refs = [_recipient(keyring, name) for name in names]
    if len({ref.key_id for ref in refs}) != len(refs):
        raise UsageError("the same recipient key is given twice")
    return refs


class _KeyringChoice:
    """The keyring keys whose ids an object's wrapped keys name; unlocked only when used.

    Matching by key id needs no passphrase, so a reader without a matching key is told so
    (exit 6) without being prompted, the prompt names the key it is for, and ``holds`` lets
    :mod:`client.sharing` ask for the recipient list only when the primary wrap is not ours.
    """

    def __init__(self, keyring: Keyring, name: str | None) -> None:
        self._keyring = keyring
        self._name = name

    def _infos(self) -> list[KeyInfo]:
        infos = self._keyring.list_keys()
        if self._name is not None:
            infos = [info for info in infos if info.name == self._name]
            if not infos:
                raise KeyNotFound(f"no key named {self._name!r} in {self._keyring.path}")
        return infos

    def holds(self, wrapped: Sequence[WrappedKey]) -> bool:
        wanted = {w.key_id for w in wrapped}
        return any(info.key_id in wanted for info in self._infos())

    def unlock(self, wrapped: Sequence[WrappedKey]) -> PrivateKey:
        wanted = {w.key_id for w in wrapped}
        matches = [info for info in self._infos() if info.key_id in wanted]
        readable = ", ".join(sorted(f"{w.key_id} v{w.key_version}" for w in wrapped))
        if not matches:
            name = self._name
            whose = f"key {name!r}" if name is not None else f"no key in {self._keyring.path}"
            verb = "is not" if name is not None else "is"
            raise WrongKey(f"the object is encrypted for {readable}; {whose} {verb} a recipient")
        info = matches[-1]
        return self._keyring.load_private(
            info.name, _read_passphrase(f"passphrase for key {info.name!r}"), info.version
        )


# -- commands -----------------------------------------------------------------------------


def _cmd_keygen(ctx: _Context) -> int:
    args = ctx.args
    if args.bits is not None and args.type != "rsa":
        raise UsageError("--bits applies to --type rsa only")
    keyring = ctx.keyring()
    if keyring.versions(args.name):
        raise KeyExists(f"a key named {args.name!r} already exists in {keyring.path}")
    passphrase = _read_passphrase(f"passphrase for the new key {args.name!r}", confirm=True)
    info = keyring.generate(args.name, args.type, passphrase, bits=args.bits or 3072)
    print(f"{info.name} v{info.version} {info.type} {info.key_id}", file=ctx.stdout)
    ctx.say(f"created in {keyring.path}; export the public key with: bp key export {info.name}")
    return EXIT_OK


def _cmd_key_list(ctx: _Context) -> int:
    infos = ctx.keyring().list_keys()
    if not infos:
        ctx.say(f"no keys in {ctx.keyring().path}; create one with: bp keygen NAME")
        return EXIT_OK
    width = max(4, *(len(info.name) for info in infos))
    print(f"{'NAME':<{width}}  VERSION  TYPE    KEY ID{'':<29}  CREATED", file=ctx.stdout)
    for info in infos:
        print(
            f"{info.name:<{width}}  {info.version:<7}  {info.type:<6}  {info.key_id:<35}"
            f"  {info.created}",
            file=ctx.stdout,
        )
    return EXIT_OK


def _cmd_key_export(ctx: _Context) -> int:
    ctx.stdout.write(ctx.keyring().export_public_pem(ctx.args.name, ctx.args.version))
    return EXIT_OK


def _cmd_key_publish(ctx: _Context) -> int:
    """Publish a keyring public key; publishing the same key again is a no-op, not an error
    (checked by listing first, so a retry after a lost answer also ends in success)."""
    keyring = ctx.keyring()
    info = keyring.info(ctx.args.name, ctx.args.version)
    pem = keyring.export_public_pem(info.name, info.version)
    with ctx.api() as api:
        published = {(k.key_id, k.key_version): k for k in api.published_keys()}
        same = published.get((info.key_id, info.version))
        if same is not None:
            if same.public_key_pem.strip() != pem.strip():
                raise KeyExists(
                    f"{info.key_id} v{info.version} is published with a different public key"
                )
            ctx.say(f"{info.name} v{info.version} ({info.key_id}) is already published")
            wrap_alg = same.wrap_alg
        else:
            wrap_alg = api.publish_key(info.key_id, info.version, pem)
            ctx.say(f"published {info.name} v{info.version} for tenant writers and imports")
    print(f"{info.name} v{info.version} {info.key_id} {wrap_alg}", file=ctx.stdout)
    return EXIT_OK


def _cmd_key_published(ctx: _Context) -> int:
    with ctx.api() as api:
        keys = api.published_keys()
    if not keys:
        ctx.say("no public keys are published for this tenant; publish one: bp key publish NAME")
        return EXIT_OK
    local = {info.key_id: f"{info.name} v{info.version}" for info in ctx.keyring().list_keys()}
    print(f"{'KEY ID':<35}  VERSION  {'ALGORITHM':<24}  KEYRING", file=ctx.stdout)
    for key in keys:
        print(
            f"{key.key_id:<35}  {key.key_version:<7}  {key.wrap_alg:<24}  "
            f"{local.get(key.key_id, '-')}",
            file=ctx.stdout,
        )
    return EXIT_OK


def _cmd_put(ctx: _Context) -> int:
    args = ctx.args
    url = _url(args.url, require_key=True)
    if url.key.endswith("/"):
        raise UsageError(f"{url} ends with '/'; name the object key in full")
    tenant = ctx.settings.require_tenant("put")
    recipients = _recipients(ctx, args.keys)
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


def _cmd_get(ctx: _Context) -> int:
    args = ctx.args
    url = _url(args.url, require_key=True)
    version_id = _version_id(args)
    tenant = ctx.settings.require_tenant("get")
    try:
        wanted = parse_range(args.byte_range) if args.byte_range else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    destination = _destination(args.output, url)
    store = ctx.store()
    keys = _KeyringChoice(ctx.keyring(), args.key)
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


def _cmd_verify(ctx: _Context) -> int:
    args = ctx.args
    url = _url(args.url, require_key=True)
    version_id = _version_id(args)
    tenant = ctx.settings.require_tenant("verify")
    store = ctx.store()
    with ctx.api() as api:
        result = download(
            store,
            api,
            url,
            None,
            _KeyringChoice(ctx.keyring(), args.key),
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


def _cmd_share(ctx: _Context) -> int:
    args = ctx.args
    url = _url(args.url, require_key=True)
    tenant = ctx.settings.require_tenant("share")
    keyring = ctx.keyring()
    recipient = _recipient(keyring, args.recipient)
    with ctx.api() as api:
        result = share_object(api, url, recipient, _KeyringChoice(keyring, args.key), tenant=tenant)
    who = f"{result.recipient_id} v{result.recipient_version}"
    if result.already:
        ctx.say(f"{url} is already readable by {who}; nothing to do")
    else:
        ctx.say(
            f"shared {url} with {who} (data key opened with {result.opened_with}, "
            f"content id {result.content_id})"
        )
    return EXIT_OK


def _rotation_keys(ctx: _Context, keyring: Keyring, target: PublicKeyRef) -> dict[str, PrivateKey]:
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
    passphrase = _read_passphrase(f"passphrase for key {args.from_key!r}")
    return {
        info.key_id: keyring.load_private(info.name, passphrase, info.version) for info in infos
    }


def _cmd_rotate(ctx: _Context) -> int:
    args = ctx.args
    url = _url(args.url)
    tenant = ctx.settings.require_tenant("rotate")
    keyring = ctx.keyring()
    target = _recipient(keyring, args.to_key, args.to_version)
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
    with ctx.api(connections=args.workers + POSTS_IN_FLIGHT) as api:
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


def _cmd_ls(ctx: _Context) -> int:
    store = ctx.store()
    if ctx.args.url is None:
        for name in store.buckets():
            print(f"s3://{name}", file=ctx.stdout)
        return EXIT_OK
    url = _url(ctx.args.url)
    for info in store.list_objects(url):
        print(f"{info.modified}  {info.size:>12}  {info.key}", file=ctx.stdout)
    return EXIT_OK


def _cmd_rm(ctx: _Context) -> int:
    url = _url(ctx.args.url, require_key=True)
    store = ctx.store()
    store.head(url)  # S3 deletes of a missing key "succeed"; a typo should not
    store.delete(url)
    ctx.say(f"deleted {url}")
    return EXIT_OK


def _cmd_mb(ctx: _Context) -> int:
    url = _url(ctx.args.url, allow_key=False)
    ctx.store().make_bucket(url.bucket)
    ctx.say(f"created {url}")
    return EXIT_OK


# -- entry point --------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one ``bp`` command and return its exit code (the console script exits with it)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    args: argparse.Namespace | None = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help / --version printed and asked to exit
            return int(exc.code or 0)
        handler: Callable[[_Context], int] = args.handler
        return handler(_Context(args, out, err))
    except BaseException as exc:
        if isinstance(exc, SystemExit | GeneratorExit):
            raise
        code = exit_code_for(exc)
        command = getattr(args, "command", None)
        prefix = f"bp {command}" if command else "bp"
        message = describe_error(exc)
        if isinstance(exc, UsageError) and message.startswith("bp"):
            print(message, file=err)
        else:
            print(f"{prefix}: {message}", file=err)
        if code == EXIT_ERROR and os.environ.get("BP_DEBUG"):
            traceback.print_exc(file=err)
        return code


if __name__ == "__main__":
    sys.exit(main())
