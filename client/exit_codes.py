"""``bp``'s exit codes, and the one table that decides which failure gets which.

Every failure ends ``bp`` with one line on stderr, ``bp: <what>: <why>`` (:func:`describe_error`
writes the part after the colon), and a distinct exit code (:data:`EXIT_CODES`, documented in
``docs/client.md``). The mapping from exception types to codes is the table
:data:`_EXIT_TABLE` and nothing else decides an exit code: commands raise our errors (or
:class:`UsageError`) and return :data:`EXIT_OK` or, for a partial failure, :data:`EXIT_ERROR`;
they never pick a code for an exception themselves.
"""

from __future__ import annotations

from client.config import ConfigError
from client.errors import (
    BindingMismatch,
    ClientError,
    DecryptionFailed,
    InvalidEnvelope,
    KeyNotFound,
    MalformedHeader,
    ProofInvalid,
    RangeNotSatisfiable,
    Tampered,
    Truncated,
    UnsupportedKey,
    WrongKey,
    WrongPassphrase,
)
from client.remote import AccessDenied, GatewayUnavailable, ObjectChanged, ObjectNotFound

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
    "describe_error",
    "exit_code_for",
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
    EXIT_INTEGRITY: (
        "the object failed authentication (tampered, truncated, swapped, malformed),"
        " or its placement proof does not verify"
    ),
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
    (ProofInvalid, EXIT_INTEGRITY),
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
