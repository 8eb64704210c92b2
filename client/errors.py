"""Errors of the client-side encryption SDK.

The tree::

    ClientError
    ├── DecryptionFailed          an object, segment or wrapped key did not open; catch this one
    │   ├── MalformedHeader       not a BP1 header (magic, version, suite, seg_log2, reserved, size)
    │   ├── BindingMismatch       the header names another tenant/bucket/key/content id
    │   ├── WrongKey              the key offered is not the one this object or wrap was made for
    │   │   └── WrongKeyType      ... and is not even of the wrap algorithm's key type
    │   ├── Tampered              an authentication tag failed, or bytes follow the final segment
    │   └── Truncated             the ciphertext ended before its final segment
    ├── InvalidEnvelope           envelope metadata or a wrapped key is missing or malformed
    ├── UnsupportedKey            a key type, curve or size this SDK refuses (e.g. RSA < 3072)
    ├── PlaintextLengthMismatch   the plaintext fed to an encryptor differs from its declared length
    ├── SegmentReuse              an encryptor was asked to seal one segment index twice differently
    ├── SourceChanged             the file being uploaded was modified during the upload
    ├── RangeNotSatisfiable       a plaintext byte range outside the object
    ├── ProofInvalid              a placement proof does not verify, or is about another object
    └── KeyringError
        ├── KeyNotFound
        ├── KeyExists
        └── WrongPassphrase

Like Fernet's single ``InvalidToken``, every authentication failure is a ``DecryptionFailed``:
callers that only need "did it open?" catch that and nothing else. The subclasses exist for
diagnostics and are only raised where the distinction leaks nothing an attacker could not
compute without any key: the header fields and the binding are public, the commitment check
is a keyed comparison of 32 public bytes done in constant time, and the truncation check is a
byte count. A failed tag is never reported as anything more specific than ``Tampered``.

The usage errors (``UnsupportedKey``, ``PlaintextLengthMismatch``, ...) also derive from the
builtin exception a Python caller would expect (``ValueError``, ``RuntimeError``).
"""

from __future__ import annotations

__all__ = [
    "BindingMismatch",
    "ClientError",
    "DecryptionFailed",
    "InvalidEnvelope",
    "KeyExists",
    "KeyNotFound",
    "KeyringError",
    "MalformedHeader",
    "PlaintextLengthMismatch",
    "ProofInvalid",
    "RangeNotSatisfiable",
    "SegmentReuse",
    "SourceChanged",
    "Tampered",
    "Truncated",
    "UnsupportedKey",
    "WrongKey",
    "WrongKeyType",
    "WrongPassphrase",
]


class ClientError(Exception):
    """Base of every error this SDK raises on purpose; messages never contain key material."""


class DecryptionFailed(ClientError):
    """The ciphertext, header or wrapped key could not be authenticated.

    Nothing decrypted before this was raised may be trusted as the complete object.
    """


class MalformedHeader(DecryptionFailed):
    """The first 112 bytes are not a BP1 header this SDK can read."""


class BindingMismatch(DecryptionFailed):
    """The header is bound to a different tenant, bucket, key or content id than expected.

    Typical cause: the server returned another object (or another version) than was asked for.
    """


class WrongKey(DecryptionFailed):
    """The data key fails the header's key commitment, or a private key is not the recipient.

    A commitment failure means either a different object's data key or an altered salt or
    commitment field; the two cannot be told apart, and neither can be decrypted.
    """


class WrongKeyType(WrongKey):
    """The private key is of another type than the wrapped key's algorithm needs."""


class Tampered(DecryptionFailed):
    """An AEAD tag failed to verify, or data follows the final segment."""


class Truncated(DecryptionFailed):
    """The ciphertext ended before the final segment the header announces."""


class InvalidEnvelope(ClientError, ValueError):
    """Envelope metadata or a wrapped-key encoding is missing a field or malformed."""


class UnsupportedKey(ClientError, ValueError):
    """A key this SDK refuses to use: unknown type, a curve other than P-256, RSA < 3072 bits."""


class PlaintextLengthMismatch(ClientError, ValueError):
    """The plaintext fed to an encryptor is longer or shorter than the length in its header."""


class SegmentReuse(ClientError, RuntimeError):
    """An encryptor was asked to seal a segment index it already sealed with other content.

    Sealing two different plaintexts under one (key, nonce) pair breaks AES-GCM completely, so
    the encryptor refuses to release the second ciphertext.
    """


class SourceChanged(ClientError, RuntimeError):
    """The file being uploaded was modified (size, modification or change time) between the
    first byte read and the last; the upload is abandoned rather than store a mix of two
    versions of the file."""


class RangeNotSatisfiable(ClientError, ValueError):
    """A plaintext byte range that starts outside the object or ends before it starts."""


class KeyringError(ClientError):
    """A keyring operation failed."""


class KeyNotFound(KeyringError, LookupError):
    """No key (or no such version) of that name in the keyring."""


class KeyExists(KeyringError):
    """A key of that name already exists; use ``rotate`` to add a version."""


class WrongPassphrase(KeyringError):
    """The passphrase does not decrypt the private key file."""


class ProofInvalid(ClientError):
    """A signed placement proof does not verify under the deployment key (unknown key id,
    malformed, or any byte altered), or verifies but is about another object or format."""
