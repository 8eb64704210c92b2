"""BP1 key schedule: one data key (DEK) and the header salt give the payload key and commitment.

::

    PRK       = HKDF-Extract(salt, DEK)                       # HMAC-SHA-256(salt, DEK)
    K_payload = HKDF-Expand(PRK, b"BP1 payload" || suite, 32)
    commit    = HKDF-Expand(PRK, b"BP1 commit"  || suite, 32)

Why a commitment: AES-GCM is not key-committing, so without it one ciphertext can be crafted to
decrypt validly under two keys (invisible salamanders); a reader checks ``commit`` in
constant time before opening any segment. Why a fresh salt even though the DEK is fresh: a DEK
reused by a buggy or malicious writer still yields a fresh payload key per object version, and
the salt makes precomputation against the 256-bit DEK pointless. The suite byte in ``info``
separates keys across future suites.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from client.errors import WrongKey
from client.format import SUITE_AES256GCM_HKDFSHA256, Header

__all__ = ["DEK_LEN", "DerivedKeys", "derive_keys", "new_dek", "verify_commitment"]

DEK_LEN = 32
_PAYLOAD_INFO = b"BP1 payload"
_COMMIT_INFO = b"BP1 commit"


def new_dek() -> bytes:
    """A fresh 32-byte data key from the OS CSPRNG; one per object version, never reused."""
    return secrets.token_bytes(DEK_LEN)


@dataclass(frozen=True, slots=True, repr=False)
class DerivedKeys:
    """The payload key and the commitment derived from one DEK and salt (repr hides both)."""

    payload_key: bytes
    commitment: bytes


def _expand(prk: bytes, info: bytes) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(prk)


def derive_keys(dek: bytes, salt: bytes, suite: int = SUITE_AES256GCM_HKDFSHA256) -> DerivedKeys:
    """Run the key schedule above; ``dek`` must be 32 bytes."""
    if len(dek) != DEK_LEN:
        raise ValueError(f"a data key is {DEK_LEN} bytes")
    prk = hmac.digest(salt, dek, "sha256")  # HKDF-Extract(salt, IKM=DEK), RFC 5869 section 2.2
    suite_byte = bytes([suite])
    return DerivedKeys(
        payload_key=_expand(prk, _PAYLOAD_INFO + suite_byte),
        commitment=_expand(prk, _COMMIT_INFO + suite_byte),
    )


def verify_commitment(dek: bytes, header: Header) -> DerivedKeys:
    """Derive the keys for ``header`` and compare its commitment in constant time.

    Raises :class:`WrongKey` when the DEK does not belong to this header; returns the keys so
    the payload key is only ever derived through this check on the read side.
    """
    if len(dek) != DEK_LEN:
        raise WrongKey(f"a data key is {DEK_LEN} bytes")
    keys = derive_keys(dek, header.salt, header.suite)
    if not hmac.compare_digest(keys.commitment, header.commitment):
        raise WrongKey("the data key does not match the object's key commitment")
    return keys
