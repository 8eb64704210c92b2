"""Bulletproof client SDK: encrypt before upload, decrypt after download (BP1 format).

The gateway never sees plaintext or a private key; everything cryptographic happens here.
Layers, safest first:

- :mod:`client.recipe`: ``seal`` / ``unseal`` (and ``*_stream``): one call each way.
- :mod:`client.stream`, :mod:`client.ranged`, :mod:`client.parts`: streaming, ranged and
  parallel multipart encryption of one object.
- :mod:`client.wrap`, :mod:`client.envelope`, :mod:`client.recipient`: data-key wrapping for
  recipients and the PUT metadata that carries it.
- :mod:`client.keyring`: recipient key pairs on disk, private halves under a passphrase.
- :mod:`client.format`, :mod:`client.keyschedule`, :mod:`client.segments`: the wire format.

Every authentication failure is a :class:`DecryptionFailed` (see :mod:`client.errors`).
The normative format description is ``docs/envelope.md``. This package imports nothing else of
Bulletproof (no Ray, no gateway code).
"""

from __future__ import annotations

from client.envelope import Envelope, envelope_headers, parse_envelope_headers
from client.errors import (
    BindingMismatch,
    ClientError,
    DecryptionFailed,
    InvalidEnvelope,
    KeyExists,
    KeyNotFound,
    KeyringError,
    MalformedHeader,
    PlaintextLengthMismatch,
    RangeNotSatisfiable,
    SegmentReuse,
    SourceChanged,
    Tampered,
    Truncated,
    UnsupportedKey,
    WrongKey,
    WrongKeyType,
    WrongPassphrase,
)
from client.format import (
    DEFAULT_SEG_LOG2,
    HEADER_LEN,
    CiphertextRange,
    Header,
    ObjectBinding,
    ciphertext_length,
    plaintext_range_to_ciphertext_range,
)
from client.keyring import KeyInfo, Keyring
from client.parts import PartPlan, choose_part_size, encrypt_part, encrypt_parts, plan_parts
from client.ranged import decrypt_range
from client.recipe import SealedObject, seal, seal_stream, unseal, unseal_stream
from client.recipient import PublicKeyRef, key_id
from client.stream import Encryptor, decrypt, decrypt_stream
from client.wrap import WrappedKey, unwrap, unwrap_any, wrap, wrap_for_all

__all__ = [
    "DEFAULT_SEG_LOG2",
    "HEADER_LEN",
    "BindingMismatch",
    "CiphertextRange",
    "ClientError",
    "DecryptionFailed",
    "Encryptor",
    "Envelope",
    "Header",
    "InvalidEnvelope",
    "KeyExists",
    "KeyInfo",
    "KeyNotFound",
    "Keyring",
    "KeyringError",
    "MalformedHeader",
    "ObjectBinding",
    "PartPlan",
    "PlaintextLengthMismatch",
    "PublicKeyRef",
    "RangeNotSatisfiable",
    "SealedObject",
    "SegmentReuse",
    "SourceChanged",
    "Tampered",
    "Truncated",
    "UnsupportedKey",
    "WrappedKey",
    "WrongKey",
    "WrongKeyType",
    "WrongPassphrase",
    "choose_part_size",
    "ciphertext_length",
    "decrypt",
    "decrypt_range",
    "decrypt_stream",
    "encrypt_part",
    "encrypt_parts",
    "envelope_headers",
    "key_id",
    "parse_envelope_headers",
    "plaintext_range_to_ciphertext_range",
    "plan_parts",
    "seal",
    "seal_stream",
    "unseal",
    "unseal_stream",
    "unwrap",
    "unwrap_any",
    "wrap",
    "wrap_for_all",
]
