"""Import-source credentials sealed under a passphrase: the one blob format of ``docs/import.md``.

A browser (WebCrypto) or the CLI seals a source's access key under a passphrase the server
never stores; the server keeps only the blob; the import job opens it in memory with the
passphrase it was handed for that run. The format is deliberately the one WebCrypto can
produce with no extra code::

    {"v": 1, "kdf": "PBKDF2-SHA256", "iter": 600000, "salt": b64, "iv": b64,
     "aad": "bulletproof-import-source:v1", "ct": b64}

key = PBKDF2-HMAC-SHA256(NFC(passphrase) as UTF-8, salt, iter, 32 bytes);
ct = AES-256-GCM(key, iv, plaintext = JSON credentials, associated data = aad as UTF-8),
the 16-byte tag appended (as both WebCrypto and ``AESGCM`` do).

What it keeps true:

- **Parameters are bounded both ways** before any work is done: ``iter`` in
  600,000..10,000,000 (a floor against a weak blob, a cap against a blob that burns a worker's
  CPU), salt 16..64 bytes, iv exactly 12 bytes, the whole blob at most ``MAX_BLOB_CHARS``.
- **Fresh salt and iv on every seal** (``os.urandom``); nothing here is deterministic.
- **The aad binds the blob to its purpose**: it is authenticated by GCM and must equal the
  purpose the opener expects, so a blob sealed for something else never opens as source
  credentials.
- **One error for every failure to open** (``SealOpenFailed``: wrong passphrase, tampered or
  malformed blob, credentials of the wrong shape), with a message that names a field at most,
  never a value; no third-party exception escapes and none is chained.

It does not store, log or cache the key or the passphrase, and knows nothing of where the blob
lives (``schema/imports.py``) or who hands the passphrase to the job.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import unicodedata
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from core.errors import BulletproofError, InvalidInput

__all__ = [
    "CREDENTIAL_FIELDS",
    "DEFAULT_ITERATIONS",
    "FORMAT_VERSION",
    "IV_BYTES",
    "KDF",
    "MAX_AAD_CHARS",
    "MAX_BLOB_CHARS",
    "MAX_ITERATIONS",
    "MAX_SALT_BYTES",
    "MIN_ITERATIONS",
    "MIN_PASSPHRASE_CHARS",
    "MIN_SALT_BYTES",
    "SOURCE_AAD",
    "SealOpenFailed",
    "check_sealed",
    "open_sealed",
    "seal",
]

FORMAT_VERSION = 1
KDF = "PBKDF2-SHA256"
#: The purpose an import source's credentials are sealed for.
SOURCE_AAD = "bulletproof-import-source:v1"
MIN_ITERATIONS = 600_000
DEFAULT_ITERATIONS = MIN_ITERATIONS
MAX_ITERATIONS = 10_000_000
MIN_SALT_BYTES = 16
MAX_SALT_BYTES = 64
IV_BYTES = 12
#: The whole blob, as text. Generous for STS session tokens (a few KiB), small enough that a
#: hostile blob costs nothing to refuse.
MAX_BLOB_CHARS = 16 * 1024
MAX_AAD_CHARS = 256
#: A floor for new seals only; opening never reveals anything about the passphrase's length.
MIN_PASSPHRASE_CHARS = 8
_KEY_BYTES = 32
_TAG_BYTES = 16
_FIELDS = ("v", "kdf", "iter", "salt", "iv", "aad", "ct")
#: The credential fields a blob may hold; the first two are required.
CREDENTIAL_FIELDS = ("access_key", "secret_key", "session_token")
_REQUIRED_CREDENTIALS = ("access_key", "secret_key")


class SealOpenFailed(BulletproofError):
    """Sealed credentials could not be opened: wrong passphrase, or the blob is malformed or
    was altered. The message names a field at most; it never holds a value."""


def _key(passphrase: str, salt: bytes, iterations: int) -> bytes:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=salt, iterations=iterations)
    return kdf.derive(unicodedata.normalize("NFC", passphrase).encode("utf-8"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _credential_problem(credentials: Any) -> str | None:
    """What is wrong with a credentials document (a field name at most), or None."""
    if not isinstance(credentials, dict):
        return "credentials must be a JSON object"
    unknown = sorted(set(credentials) - set(CREDENTIAL_FIELDS))
    if unknown:
        return f"unknown credential field {unknown[0]!r}"
    for name in CREDENTIAL_FIELDS:
        if name not in credentials and name not in _REQUIRED_CREDENTIALS:
            continue
        value = credentials.get(name)
        if not isinstance(value, str) or not value:
            return f"credential field {name!r} must be a non-empty string"
    return None


def seal(
    credentials: dict[str, str],
    passphrase: str,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    aad: str = SOURCE_AAD,
) -> str:
    """Seal ``credentials`` ({"access_key", "secret_key"[, "session_token"]}) under
    ``passphrase``; returns the blob as compact JSON text. Bad input: ``InvalidInput``."""
    problem = _credential_problem(credentials)
    if problem:
        raise InvalidInput(problem)
    if type(iterations) is not int or not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise InvalidInput(f"iterations must be in {MIN_ITERATIONS}..{MAX_ITERATIONS}")
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise InvalidInput(f"the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")
    if not aad or len(aad) > MAX_AAD_CHARS:
        raise InvalidInput(f"aad must have 1..{MAX_AAD_CHARS} characters")
    salt, iv = os.urandom(MIN_SALT_BYTES), os.urandom(IV_BYTES)
    plaintext = json.dumps(
        {name: credentials[name] for name in CREDENTIAL_FIELDS if name in credentials},
        separators=(",", ":"),
    ).encode("utf-8")
    ct = AESGCM(_key(passphrase, salt, iterations)).encrypt(iv, plaintext, aad.encode("utf-8"))
    blob = json.dumps(
        {
            "v": FORMAT_VERSION,
            "kdf": KDF,
            "iter": iterations,
            "salt": _b64(salt),
            "iv": _b64(iv),
            "aad": aad,
            "ct": _b64(ct),
        },
        separators=(",", ":"),
    )
    if len(blob) > MAX_BLOB_CHARS:
        raise InvalidInput(f"the sealed credentials would exceed {MAX_BLOB_CHARS} characters")
    return blob


def _field_bytes(doc: dict[str, Any], name: str) -> bytes:
    value = doc[name]
    if not isinstance(value, str):
        raise SealOpenFailed(f"sealed credentials: {name!r} must be base64 text")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SealOpenFailed(f"sealed credentials: {name!r} is not valid base64") from None


def _parse(blob: str, aad: str) -> tuple[int, bytes, bytes, bytes]:
    """(iterations, salt, iv, ct) of a well-formed blob sealed for ``aad``; checks every bound
    before any key is derived."""
    if not isinstance(blob, str) or len(blob) > MAX_BLOB_CHARS:
        raise SealOpenFailed(f"sealed credentials must be text of at most {MAX_BLOB_CHARS} chars")
    try:
        doc = json.loads(blob)
    except (ValueError, RecursionError):
        raise SealOpenFailed("sealed credentials are not valid JSON") from None
    if not isinstance(doc, dict):
        raise SealOpenFailed("sealed credentials must be a JSON object")
    missing = [name for name in _FIELDS if name not in doc]
    if missing:
        raise SealOpenFailed(f"sealed credentials: field {missing[0]!r} is missing")
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise SealOpenFailed(f"sealed credentials: unknown field {unknown[0]!r}")
    version = doc["v"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise SealOpenFailed(
            f"sealed credentials: unsupported format version (want {FORMAT_VERSION})"
        )
    if doc["kdf"] != KDF:
        raise SealOpenFailed(f"sealed credentials: unsupported kdf (want {KDF})")
    iterations = doc["iter"]
    if type(iterations) is not int or not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise SealOpenFailed(
            f"sealed credentials: 'iter' must be an integer in {MIN_ITERATIONS}..{MAX_ITERATIONS}"
        )
    if doc["aad"] != aad:
        raise SealOpenFailed("sealed credentials: 'aad' does not name this purpose")
    salt, iv, ct = _field_bytes(doc, "salt"), _field_bytes(doc, "iv"), _field_bytes(doc, "ct")
    if not MIN_SALT_BYTES <= len(salt) <= MAX_SALT_BYTES:
        raise SealOpenFailed(
            f"sealed credentials: 'salt' must be {MIN_SALT_BYTES}..{MAX_SALT_BYTES} bytes"
        )
    if len(iv) != IV_BYTES:
        raise SealOpenFailed(f"sealed credentials: 'iv' must be {IV_BYTES} bytes")
    if len(ct) <= _TAG_BYTES:
        raise SealOpenFailed("sealed credentials: 'ct' is too short")
    return iterations, salt, iv, ct


def check_sealed(blob: str, *, aad: str = SOURCE_AAD) -> None:
    """``SealOpenFailed`` unless ``blob`` is well formed and sealed for ``aad`` (every bound,
    no key derived): what a server can check of a blob it cannot open."""
    _parse(blob, aad)


def open_sealed(blob: str, passphrase: str, *, aad: str = SOURCE_AAD) -> dict[str, str]:
    """The credentials sealed in ``blob``, or ``SealOpenFailed``."""
    iterations, salt, iv, ct = _parse(blob, aad)
    if not isinstance(passphrase, str) or not passphrase:
        raise SealOpenFailed("a passphrase is required to open sealed credentials")
    try:
        plaintext = AESGCM(_key(passphrase, salt, iterations)).decrypt(iv, ct, aad.encode("utf-8"))
    except InvalidTag:
        raise SealOpenFailed(
            "sealed credentials cannot be opened: wrong passphrase, or the blob was altered"
        ) from None
    try:
        credentials = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SealOpenFailed("sealed credentials do not hold a JSON document") from None
    problem = _credential_problem(credentials)
    if problem:
        raise SealOpenFailed(f"sealed credentials: {problem}")
    return {str(k): str(v) for k, v in credentials.items()}
