"""The safe recipe: seal an object for recipients, unseal it with a private key.

This is the Fernet of BP1: one call each way, sensible defaults, and one exception family
(:class:`DecryptionFailed`) for everything that does not authenticate. It composes the layers
below (:class:`Encryptor`, :func:`wrap`, :func:`envelope_headers`, :func:`decrypt_stream`) and
adds no cryptography of its own. Use the layers directly for multipart parts or ranged reads.

Named ``seal``/``unseal`` rather than ``seal``/``open`` so that importing the SDK never shadows
the builtin ``open``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from client.envelope import Envelope, envelope_headers, parse_envelope_headers
from client.format import DEFAULT_SEG_LOG2, ObjectBinding
from client.recipient import PrivateKey, PublicKeyRef
from client.segments import Buffer
from client.stream import Encryptor, decrypt_stream
from client.wrap import WrappedKey, unwrap_any, wrap_for_all

__all__ = ["SealedObject", "seal", "seal_stream", "unseal", "unseal_stream"]


@dataclass(frozen=True, slots=True)
class SealedObject:
    """What to upload: the body (or body iterator), the envelope headers, all wrapped keys."""

    body: bytes | Iterator[bytes]
    headers: dict[str, str]
    wrapped_keys: tuple[WrappedKey, ...]
    binding: ObjectBinding


def seal_stream(
    chunks: Iterable[Buffer],
    plaintext_length: int,
    *,
    tenant: str,
    bucket: str,
    key: str,
    recipients: Sequence[PublicKeyRef],
    seg_log2: int = DEFAULT_SEG_LOG2,
) -> SealedObject:
    """Encrypt a stream for ``recipients`` (the first is the primary one in the headers)."""
    binding = ObjectBinding.new(tenant, bucket, key)
    encryptor = Encryptor(binding, plaintext_length, seg_log2=seg_log2)
    wrapped = tuple(wrap_for_all(encryptor.dek, recipients, encryptor.header_bytes))
    headers = envelope_headers(wrapped[0], binding.content_id)
    return SealedObject(encryptor.encrypt(chunks), headers, wrapped, binding)


def seal(
    plaintext: Buffer,
    *,
    tenant: str,
    bucket: str,
    key: str,
    recipients: Sequence[PublicKeyRef],
    seg_log2: int = DEFAULT_SEG_LOG2,
) -> SealedObject:
    """Encrypt a whole in-memory object; ``body`` is ``bytes``."""
    sealed = seal_stream(
        (plaintext,),
        len(plaintext),
        tenant=tenant,
        bucket=bucket,
        key=key,
        recipients=recipients,
        seg_log2=seg_log2,
    )
    assert not isinstance(sealed.body, bytes)
    return SealedObject(b"".join(sealed.body), sealed.headers, sealed.wrapped_keys, sealed.binding)


def _expected(envelope: Envelope, tenant: str, bucket: str, key: str) -> ObjectBinding:
    return ObjectBinding(tenant, bucket, key, envelope.content_id)


def unseal_stream(
    chunks: Iterable[Buffer],
    headers: Mapping[str, str],
    private_key: PrivateKey,
    *,
    tenant: str,
    bucket: str,
    key: str,
    other_wrapped_keys: Sequence[WrappedKey] = (),
) -> Iterator[bytes]:
    """Decrypt a streamed object with its envelope headers; see :func:`decrypt_stream`.

    ``tenant``, ``bucket`` and ``key`` are what the caller asked for, never values taken from
    the response: that is what makes the binding check meaningful. ``other_wrapped_keys`` are
    the non-primary recipients' wraps, for a reader who is not the primary recipient.
    """
    envelope = parse_envelope_headers(headers)
    candidates = (envelope.wrapped_key, *other_wrapped_keys)
    return decrypt_stream(
        chunks,
        dek=lambda header: unwrap_any(candidates, private_key, header),
        expected=_expected(envelope, tenant, bucket, key),
    )


def unseal(
    body: Buffer,
    headers: Mapping[str, str],
    private_key: PrivateKey,
    *,
    tenant: str,
    bucket: str,
    key: str,
    other_wrapped_keys: Sequence[WrappedKey] = (),
) -> bytes:
    """Decrypt a whole in-memory object with its envelope headers."""
    chunks = unseal_stream(
        (body,),
        headers,
        private_key,
        tenant=tenant,
        bucket=bucket,
        key=key,
        other_wrapped_keys=other_wrapped_keys,
    )
    return b"".join(chunks)
