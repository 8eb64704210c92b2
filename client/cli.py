"""``bp``: the command-line client. Encrypts before upload, authenticates before it writes.

Commands (``bp COMMAND --help`` for each)::

    bp keygen [--type rsa|x25519|p256] [--bits 3072|4096] NAME
    bp key list
    bp key export NAME [--version N]
    bp put FILE s3://bucket/key [--key NAME|PEM ...] [--class C]
    bp get s3://bucket/key FILE|- [--key NAME] [--range A-B]
    bp verify s3://bucket/key [--key NAME]
    bp ls [s3://bucket[/prefix]]
    bp rm s3://bucket/key
    bp mb s3://bucket

Deliberately absent: ``rotate``, ``share`` and ``key publish``. Each needs a gateway endpoint
(metadata re-wrap, recipient list, key registry) that does not exist yet, and a client-only
imitation (re-uploading ciphertext, keeping recipients outside the gateway) would contradict
the design (rotation never rewrites ciphertext).

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
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

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
from client.keyring import Keyring
from client.progress import Progress, format_bytes, make_progress
from client.recipient import PrivateKey, PublicKeyRef
from client.remote import (
    AccessDenied,
    GatewayUnavailable,
    ObjectChanged,
    ObjectNotFound,
    RemoteStore,
)
from client.s3url import S3Url, parse_s3_url
from client.transfer import KeySource, atomic_output, download, parse_range, upload_file
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

    key = command("key", "inspect the keyring")
    key_commands = key.add_subparsers(dest="key_command", metavar="ACTION", parser_class=_Parser)
    key_commands.required = True
    key_list = key_commands.add_parser("list", help="list every key version")
    key_list.set_defaults(handler=_cmd_key_list)
    key_export = key_commands.add_parser("export", help="print a public key as PEM")
    key_export.add_argument("name", metavar="NAME")
    key_export.add_argument("--version", type=int, help="key version (default: the latest)")
    key_export.set_defaults(handler=_cmd_key_export)

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
    put.set_defaults(handler=_cmd_put)

    get = command("get", "download, authenticate and decrypt an object")
    get.add_argument("url", metavar="s3://bucket/key")
    get.add_argument("output", metavar="FILE|-", help="destination file or directory; - = stdout")
    get.add_argument("--key", metavar="NAME", help=_KEY_HELP)
    get.add_argument(
        "--range", dest="byte_range", metavar="A-B", help="plaintext bytes A..B inclusive, A- or -N"
    )
    get.set_defaults(handler=_cmd_get)

    verify = command("verify", "download and authenticate an object without writing it anywhere")
    verify.add_argument("url", metavar="s3://bucket/key")
    verify.add_argument("--key", metavar="NAME", help=_KEY_HELP)
    verify.set_defaults(handler=_cmd_verify)

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

    def store(self) -> RemoteStore:
        settings = self.settings
        endpoint = settings.require_endpoint()
        if not settings.access_key_id or not settings.secret_access_key:
            raise ConfigError(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "access_key_id and secret_access_key in the config profile"
            )
        return RemoteStore(
            endpoint, settings.access_key_id, settings.secret_access_key, region=settings.region
        )

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
    refs: list[PublicKeyRef] = []
    for name in names:
        if os.sep in name or name.endswith(".pem"):
            refs.append(_load_pem_recipient(name))
        else:
            refs.append(keyring.load_public(name))
    if len({ref.key_id for ref in refs}) != len(refs):
        raise UsageError("the same recipient key is given twice")
    return refs


def _key_source(ctx: _Context, name: str | None) -> KeySource:
    """Pick the keyring key whose id the object's wrapped keys name; unlock it only then.

    Matching by key id needs no passphrase, so a reader without a matching key is told so
    (exit 6) without being prompted, and the prompt names the key it is for.
    """
    keyring = ctx.keyring()

    def source(candidates: Sequence[WrappedKey]) -> PrivateKey:
        wanted = {w.key_id for w in candidates}
        infos = keyring.list_keys()
        if name is not None:
            infos = [info for info in infos if info.name == name]
            if not infos:
                raise KeyNotFound(f"no key named {name!r} in {keyring.path}")
        matches = [info for info in infos if info.key_id in wanted]
        readable = ", ".join(sorted(f"{w.key_id} v{w.key_version}" for w in candidates))
        if not matches:
            whose = f"key {name!r}" if name is not None else f"no key in {keyring.path}"
            verb = "is not" if name is not None else "is"
            raise WrongKey(f"the object is encrypted for {readable}; {whose} {verb} a recipient")
        info = matches[-1]
        return keyring.load_private(
            info.name, _read_passphrase(f"passphrase for key {info.name!r}"), info.version
        )

    return source


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


def _cmd_put(ctx: _Context) -> int:
    args = ctx.args
    url = _url(args.url, require_key=True)
    if url.key.endswith("/"):
        raise UsageError(f"{url} ends with '/'; name the object key in full")
    tenant = ctx.settings.require_tenant("put")
    recipients = _recipients(ctx, args.keys)
    size = os.stat(args.file).st_size
    store = ctx.store()
    progress = make_progress(f"put {url}", size, ctx.stderr, quiet=ctx.quiet)
    result = upload_file(
        store,
        args.file,
        url,
        recipients,
        tenant=tenant,
        redundancy_class=args.redundancy_class,
        progress=progress,
    )
    ctx.say(
        f"put {args.file} -> {url}: {format_bytes(result.plaintext_length)} encrypted for "
        f"{', '.join(result.key_ids)} (content id {result.content_id}) in {result.seconds:.2f} s"
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


def _cmd_get(ctx: _Context) -> int:
    args = ctx.args
    url = _url(args.url, require_key=True)
    tenant = ctx.settings.require_tenant("get")
    try:
        wanted = parse_range(args.byte_range) if args.byte_range else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    destination = _destination(args.output, url)
    store = ctx.store()
    keys = _key_source(ctx, args.key)
    try:
        with atomic_output(destination) as sink:
            result = download(
                store,
                url,
                sink,
                keys,
                tenant=tenant,
                byte_range=wanted,
                progress_factory=ctx.progress(f"get {url}"),
            )
    except DecryptionFailed as exc:
        # The temporary file is gone: nothing plausible-looking was left behind.
        where = "stdout" if destination == "-" else destination
        raise type(exc)(f"{exc}; nothing was written to {where}") from None
    where = "stdout" if destination == "-" else destination
    ctx.say(
        f"get {url} -> {where}: {format_bytes(result.bytes_written)} authenticated "
        f"({result.segments} segments, key {result.key_id}) in {result.seconds:.2f} s"
    )
    return EXIT_OK


def _cmd_verify(ctx: _Context) -> int:
    args = ctx.args
    url = _url(args.url, require_key=True)
    tenant = ctx.settings.require_tenant("verify")
    store = ctx.store()
    result = download(
        store,
        url,
        None,
        _key_source(ctx, args.key),
        tenant=tenant,
        progress_factory=ctx.progress(f"verify {url}"),
    )
    print(
        f"OK {url}: {result.plaintext_length} bytes, {result.segments} segments authenticated, "
        f"binding and key commitment checked (key {result.key_id}, content id "
        f"{result.content_id})",
        file=ctx.stdout,
    )
    return EXIT_OK


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
