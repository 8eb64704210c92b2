"""Wrapping a 32-byte data key for a recipient, bound to the object's header.

Wrapped-key encoding (big-endian, self-describing, concatenable)::

    offset   size  field
         0      1  format version        0x01
         1      1  algorithm id          1 rsa-oaep-256, 2 x25519-hkdf-aes256gcm,
                                         3 p256-ecdh-hkdf-aes256gcm
         2      1  key id length n       1..64
         3      n  key id                ASCII, e.g. "bp:" + 32 base32 characters
       3+n      4  key version           u32, >= 1
       7+n      2  payload length m
       9+n      m  payload               RSA: OAEP ciphertext (modulus size)
                                         HPKE: enc || ct  (X25519: 32 + 48, P-256: 65 + 48)

Context bound into every wrap (the OAEP label, or the HPKE ``info``)::

    context = b"BP1 wrap" || encoding[0 : 7+n] || SHA-256(header)

i.e. the format version, algorithm id, key id and key version exactly as encoded, plus a hash
of the complete 112-byte BP1 header. Why the whole header: it is final before the DEK is
wrapped (the commitment comes from the DEK and salt, not from the wrap), and binding it means a
wrapped key lifted onto another object, or a header with an altered salt, commitment, length or
binding, fails to unwrap. Binding the algorithm id, key id and version stops a server from
relabelling a wrap (a downgrade or a version swap). The cost: re-wrapping for rotation needs
the object's header (a 112-byte ranged GET), never its body.

HPKE (RFC 9180, base mode, single shot) already binds the ephemeral public key (``enc``) and the
recipient's public key into the shared secret through DHKEM's ``kem_context = enc || pkRm``, so
``info`` does not repeat them.

Unwrap errors: a private key whose key id differs from the wrapped key's is :class:`WrongKey`
(told from public data only); a key of the wrong type is :class:`WrongKeyType`; any other
failure is :class:`Tampered` with no further detail (no padding or decryption oracle).
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from client.errors import InvalidEnvelope, Tampered, UnsupportedKey, WrongKey, WrongKeyType
from client.format import Header
from client.keyschedule import DEK_LEN
from client.recipient import (
    MAX_RSA_BITS,
    MIN_RSA_BITS,
    P256_HPKE,
    RSA_OAEP_256,
    WRAP_ALGS,
    X25519_HPKE,
    PrivateKey,
    PublicKeyRef,
    key_id,
    wrap_alg_for,
)
from client.segments import Buffer

__all__ = [
    "WRAPPED_KEY_VERSION",
    "WrappedKey",
    "unwrap",
    "unwrap_any",
    "wrap",
    "wrap_for_all",
]

WRAPPED_KEY_VERSION = 1
_CONTEXT_LABEL = b"BP1 wrap"
_KEY_ID_RE = re.compile(r"[\x21-\x7e]{1,64}")
_ALG_NAMES = {v: k for k, v in WRAP_ALGS.items()}
_HPKE = {
    X25519_HPKE: Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM),
    P256_HPKE: Suite(KEM.P256, KDF.HKDF_SHA256, AEAD.AES_256_GCM),
}
_HPKE_PAYLOAD_LEN = {X25519_HPKE: 32 + DEK_LEN + 16, P256_HPKE: 65 + DEK_LEN + 16}
_RSA_PAYLOAD_RANGE = (MIN_RSA_BITS // 8, MAX_RSA_BITS // 8)


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label)


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key wrapped for one recipient, with what is needed to find that recipient."""

    alg: str
    key_id: str
    key_version: int
    payload: bytes

    def __post_init__(self) -> None:
        if self.alg not in WRAP_ALGS:
            raise InvalidEnvelope(f"unknown wrap algorithm {self.alg!r}")
        if not _KEY_ID_RE.fullmatch(self.key_id):
            raise InvalidEnvelope("key id must be 1..64 printable ASCII characters")
        if not 1 <= self.key_version <= 0xFFFFFFFF:
            raise InvalidEnvelope("key version must be in 1..2**32-1")
        if self.alg == RSA_OAEP_256:
            low, high = _RSA_PAYLOAD_RANGE
            if not low <= len(self.payload) <= high:
                raise InvalidEnvelope("RSA wrapped key has an impossible length")
        elif len(self.payload) != _HPKE_PAYLOAD_LEN[self.alg]:
            raise InvalidEnvelope(f"{self.alg} wrapped key has the wrong length")

    def to_bytes(self) -> bytes:
        return (
            _prefix(self.alg, self.key_id, self.key_version)
            + struct.pack(">H", len(self.payload))
            + self.payload
        )

    @classmethod
    def _read(cls, data: bytes, pos: int) -> tuple[WrappedKey, int]:
        try:
            version, alg_id, kid_len = struct.unpack_from(">BBB", data, pos)
            if version != WRAPPED_KEY_VERSION:
                raise InvalidEnvelope(f"unsupported wrapped-key version {version}")
            if alg_id not in _ALG_NAMES:
                raise InvalidEnvelope(f"unknown wrap algorithm id {alg_id}")
            pos += 3
            kid = data[pos : pos + kid_len]
            pos += kid_len
            (key_version,) = struct.unpack_from(">I", data, pos)
            (payload_len,) = struct.unpack_from(">H", data, pos + 4)
            pos += 6
        except struct.error:
            raise InvalidEnvelope("wrapped key is truncated") from None
        payload = data[pos : pos + payload_len]
        if len(kid) != kid_len or len(payload) != payload_len:
            raise InvalidEnvelope("wrapped key is truncated")
        try:
            kid_text = kid.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidEnvelope("key id is not ASCII") from None
        return cls(_ALG_NAMES[alg_id], kid_text, key_version, payload), pos + payload_len

    @classmethod
    def from_bytes(cls, data: Buffer) -> WrappedKey:
        """Parse exactly one wrapped key; trailing bytes are an error."""
        raw = bytes(data)
        wrapped, end = cls._read(raw, 0)
        if end != len(raw):
            raise InvalidEnvelope("trailing bytes after the wrapped key")
        return wrapped

    @staticmethod
    def encode_list(wrapped: Iterable[WrappedKey]) -> bytes:
        """Several recipients: the encodings concatenated (each carries its own length)."""
        return b"".join(w.to_bytes() for w in wrapped)

    @classmethod
    def decode_list(cls, data: Buffer) -> list[WrappedKey]:
        raw, pos, out = bytes(data), 0, []
        while pos < len(raw):
            wrapped, pos = cls._read(raw, pos)
            out.append(wrapped)
        return out

    def context(self, header: Buffer) -> bytes:
        """The bytes bound into this wrap: see the module docstring."""
        return _context(self.alg, self.key_id, self.key_version, header)


def _prefix(alg: str, kid: str, key_version: int) -> bytes:
    raw = kid.encode("ascii")
    return struct.pack(">BBB", WRAPPED_KEY_VERSION, WRAP_ALGS[alg], len(raw)) + (
        raw + struct.pack(">I", key_version)
    )


def _context(alg: str, kid: str, key_version: int, header: Buffer) -> bytes:
    raw = bytes(header)
    Header.parse(raw)  # MalformedHeader unless it is exactly one BP1 header
    return _CONTEXT_LABEL + _prefix(alg, kid, key_version) + hashlib.sha256(raw).digest()


def wrap(dek: bytes, recipient: PublicKeyRef, header: Buffer) -> WrappedKey:
    """Wrap ``dek`` for ``recipient``, bound to ``header`` (the object's 112-byte header)."""
    if len(dek) != DEK_LEN:
        raise ValueError(f"a data key is {DEK_LEN} bytes")
    alg, kid, version = recipient.wrap_alg, recipient.key_id, recipient.key_version
    context = _context(alg, kid, version, header)
    public_key = recipient.public_key
    if isinstance(public_key, rsa.RSAPublicKey):
        payload = public_key.encrypt(dek, _oaep(context))
    else:
        payload = _HPKE[alg].encrypt(dek, public_key, info=context)
    return WrappedKey(alg, kid, version, payload)


def wrap_for_all(
    dek: bytes, recipients: Sequence[PublicKeyRef], header: Buffer
) -> list[WrappedKey]:
    """Wrap ``dek`` for each recipient, in order; the first is the primary (see envelope)."""
    if not recipients:
        raise ValueError("at least one recipient is needed")
    return [wrap(dek, r, header) for r in recipients]


def unwrap(wrapped: WrappedKey, private_key: PrivateKey, header: Buffer) -> bytes:
    """Recover the data key; the header must be the one the key was wrapped against."""
    try:
        alg = wrap_alg_for(private_key)
    except UnsupportedKey as exc:
        raise WrongKeyType(f"{wrapped.alg} cannot be opened with this key: {exc}") from None
    if alg != wrapped.alg:
        raise WrongKeyType(f"{wrapped.alg} cannot be opened with a {alg} key")
    if key_id(private_key) != wrapped.key_id:
        raise WrongKey(f"the data key is wrapped for {wrapped.key_id}, not this key")
    context = wrapped.context(header)
    try:
        if isinstance(private_key, rsa.RSAPrivateKey):
            dek = private_key.decrypt(wrapped.payload, _oaep(context))
        else:
            dek = _HPKE[wrapped.alg].decrypt(wrapped.payload, private_key, info=context)
    except (InvalidTag, ValueError):
        raise Tampered("the wrapped key does not open for this header") from None
    if len(dek) != DEK_LEN:
        raise Tampered("the wrapped key does not hold a data key")
    return dek


def unwrap_any(
    wrapped_keys: Iterable[WrappedKey], private_key: PrivateKey, header: Buffer
) -> bytes:
    """Unwrap the entry of a multi-recipient list that names ``private_key``'s key id."""
    kid = key_id(private_key)
    for wrapped in wrapped_keys:
        if wrapped.key_id == kid:
            return unwrap(wrapped, private_key, header)
    raise WrongKey(f"no wrapped key for {kid}")
