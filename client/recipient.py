"""Recipients of a data key: public keys, their stable key ids, and their wrap algorithm.

A key id is ``"bp:"`` + the first 32 characters of the lowercase, unpadded base32 of
SHA-256(SubjectPublicKeyInfo DER), i.e. 160 bits of the hash. It is the same for a key
wherever it is stored, needs no registry, and is what a reader matches to pick the wrapped key
meant for them. It is a name, not a security boundary: unwrapping authenticates anyway.

A key version is a positive integer chosen by whoever manages the key (the keyring counts
1, 2, ... per key name); it travels with each wrapped key so rotation can tell old wraps apart.

Accepted key types, each with exactly one wrap algorithm:

====================  ============================  =========================================
key                   algorithm id                  construction
====================  ============================  =========================================
RSA 3072..4096 bits   ``rsa-oaep-256``              RSA-OAEP, SHA-256, MGF1-SHA-256
X25519                ``x25519-hkdf-aes256gcm``     HPKE base mode, DHKEM(X25519), HKDF-SHA256,
                                                    AES-256-GCM (RFC 9180)
EC P-256              ``p256-ecdh-hkdf-aes256gcm``  HPKE base mode, DHKEM(P-256), HKDF-SHA256,
                                                    AES-256-GCM (RFC 9180)
====================  ============================  =========================================
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

from client.errors import UnsupportedKey

__all__ = [
    "MAX_RSA_BITS",
    "MIN_RSA_BITS",
    "WRAP_ALGS",
    "PrivateKey",
    "PublicKey",
    "PublicKeyRef",
    "key_id",
    "wrap_alg_for",
]

MIN_RSA_BITS = 3072
#: A 4096-bit wrap is 557 bytes encoded (~744 base64 characters): larger keys would not fit the
#: gateway's cap on a wrapped key nor leave room in S3's 2 KiB of user metadata.
MAX_RSA_BITS = 4096
RSA_OAEP_256 = "rsa-oaep-256"
X25519_HPKE = "x25519-hkdf-aes256gcm"
P256_HPKE = "p256-ecdh-hkdf-aes256gcm"
#: wrap algorithm name -> the one-byte id used in the wrapped-key encoding
WRAP_ALGS: dict[str, int] = {RSA_OAEP_256: 1, X25519_HPKE: 2, P256_HPKE: 3}

PublicKey = rsa.RSAPublicKey | x25519.X25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey

_KEY_ID_CHARS = 32


def wrap_alg_for(key: PublicKey | PrivateKey) -> str:
    """The wrap algorithm for a key; raises :class:`UnsupportedKey` for anything else."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise UnsupportedKey(
                f"RSA keys must be {MIN_RSA_BITS}..{MAX_RSA_BITS} bits, got {key.key_size}"
            )
        return RSA_OAEP_256
    if isinstance(key, x25519.X25519PublicKey | x25519.X25519PrivateKey):
        return X25519_HPKE
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise UnsupportedKey(f"EC keys must be P-256, got {key.curve.name}")
        return P256_HPKE
    raise UnsupportedKey(f"unsupported key type {type(key).__name__}")


def key_id(key: PublicKey | PrivateKey) -> str:
    """Stable fingerprint of a public key (a private key is fingerprinted by its public half)."""
    if isinstance(key, rsa.RSAPrivateKey | x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey):
        key = key.public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(spki).digest()).decode("ascii").lower()
    return "bp:" + b32[:_KEY_ID_CHARS]


@dataclass(frozen=True, slots=True)
class PublicKeyRef:
    """A recipient: a public key and the version number its owner gave it."""

    public_key: PublicKey
    key_version: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.key_version <= 0xFFFFFFFF:
            raise ValueError("key_version must be in 1..2**32-1")
        wrap_alg_for(self.public_key)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    @property
    def wrap_alg(self) -> str:
        return wrap_alg_for(self.public_key)
