"""Objects with several recipients: how ``bp put``, ``share``, ``get`` and ``verify`` use them.

An object's envelope has room for one wrapped data key, the *primary* recipient's
(``docs/envelope.md`` section 8). Every further recipient's wrapped key lives in the gateway's
recipient list for the object's current version: added with ``POST ?share``, listed with
``GET ?recipients`` (:class:`client.api.GatewayApi`). That is the only place ``bp`` keeps
them, so there is one way to add a reader and one way to find one's wrap:

- :func:`upload_file` encrypts for every recipient, stores the object with the primary's wrap
  in its envelope, then shares it with each other recipient, and checks the gateway now
  lists them all for this content id.
- :func:`share_object` adds a recipient to an existing object. It needs a private key that
  opens the object: the data key is unwrapped, checked against the header's binding and key
  commitment, and wrapped again for the new recipient against the same header.
- :func:`download` reads (whole or ranged) as :mod:`client.transfer` always did, and asks for
  the recipient list only when the caller holds no key for the primary wrap (one extra small
  request, and only for shared readers). It reads the current version or a named one; the
  recipient list is the current version's only, so a noncurrent version is readable with
  its primary wrap alone.

Why the binding is checked before sharing: the gateway chooses which header and wraps to
answer with. A data key is only re-wrapped after the header proved to be the one for
``tenant/bucket/key`` as asked and the key passed the commitment, so a gateway cannot get
``bp share`` to hand a reader the key of some other object. What the gateway can still do is
drop or withhold a recipient (``docs/envelope.md`` section 10); readers notice that as "not a
recipient", never as wrong plaintext.

The upload strategy (one PutObject, or a multipart upload for a large file) and the I/O
plumbing are :mod:`client.transfer`'s (:func:`_send` is the one place that chooses), reused
here rather than copied.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from client.api import GatewayApi
from client.envelope import CONTENT_ID, Envelope, envelope_headers, parse_envelope_headers
from client.errors import Tampered, Truncated
from client.format import HEADER_LEN, TAG_LEN, Header, ObjectBinding
from client.format import plaintext_range_to_ciphertext_range as _pt_to_ct
from client.progress import Progress
from client.recipient import PrivateKey, PublicKeyRef, key_id
from client.remote import (
    ObjectChanged,
    ObjectNotFound,
    RemoteStore,
    RequestRefused,
    TransferError,
)
from client.s3url import S3Url
from client.segments import SegmentCipher
from client.stream import Encryptor, decrypt_stream
from client.transfer import (
    GetResult,
    PlaintextRange,
    PutResult,
    UploadOptions,
    _metadata_headers,
    _read_exact,
    _send,
)
from client.upload_body import UploadSource
from client.wrap import WrappedKey, unwrap_any, wrap, wrap_for_all

__all__ = [
    "KeyChoice",
    "ShareResult",
    "candidate_keys",
    "download",
    "recover_data_key",
    "share_object",
    "upload_file",
]

_READ_CHUNK = 1024 * 1024


class KeyChoice(Protocol):
    """The caller's private keys, as far as one object is concerned.

    :meth:`holds` must answer from public facts (key ids) without unlocking anything, so a
    reader is asked for a passphrase only for a key that can open the object, and the
    recipient list is fetched only when the primary wrap is not theirs.
    """

    def holds(self, wrapped: Sequence[WrappedKey]) -> bool:
        """Whether one of the caller's keys is named by one of ``wrapped``."""
        ...

    def unlock(self, wrapped: Sequence[WrappedKey]) -> PrivateKey:
        """The private key for one of ``wrapped``; :class:`WrongKey` if there is none."""
        ...


def candidate_keys(
    api: GatewayApi,
    url: S3Url,
    envelope: Envelope,
    keys: KeyChoice,
    *,
    version_id: str | None = None,
) -> list[WrappedKey]:
    """The wrapped keys to try: the primary, plus the shared ones if the primary is not ours.

    The recipient list must belong to the version whose envelope was read (same content id);
    otherwise the object was replaced in between and :class:`ObjectChanged` says to retry.
    The gateway lists recipients of the current version only: for a version read by id that
    is not the current one, the primary wrap is all there is.
    """
    wrapped = [envelope.wrapped_key]
    if keys.holds(wrapped):
        return wrapped
    try:
        listed = api.recipients(url)
    except ObjectNotFound:
        if version_id is None:
            raise
        return wrapped  # the key's current version is a delete marker
    if listed.content_id != envelope.content_id:
        if version_id is not None:
            return wrapped
        raise ObjectChanged(f"{url}: the object was replaced during the read; try again")
    return [*wrapped, *listed.others]


def recover_data_key(
    header_bytes: bytes,
    wrapped: Sequence[WrappedKey],
    private_key: PrivateKey,
    expected: ObjectBinding,
) -> bytes:
    """The object's data key, only after the header passed structure, binding and commitment.

    Everything that re-wraps a data key (share, rotation) goes through here, so a key is
    never re-wrapped for a header other than the one of the object asked for.
    """
    found: list[bytes] = []

    def dek(header: bytes) -> bytes:
        found.append(unwrap_any(wrapped, private_key, header))
        return found[-1]

    SegmentCipher.for_reading(header_bytes, dek, expected)  # raises before returning a key
    return found[-1]


# -- share --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShareResult:
    """What ``bp share`` did: the new recipient, the caller's key that opened the object."""

    recipient_id: str
    recipient_version: int
    opened_with: str
    content_id: str
    already: bool


def share_object(
    api: GatewayApi, url: S3Url, recipient: PublicKeyRef, keys: KeyChoice, *, tenant: str
) -> ShareResult:
    """Let ``recipient`` read ``url``: one header read, an unwrap, a wrap, one ``?share``.

    Afterwards the recipient list is read back: if the object was replaced meanwhile, the new
    wrap (bound to the old header) is useless for the new version and :class:`ObjectChanged`
    says to share again. Sharing with the primary recipient, or again with an existing one,
    changes nothing (``already``).
    """
    head = api.read_header(url)
    envelope = parse_envelope_headers(head.metadata)
    content_id = envelope.content_id.hex()
    primary = envelope.wrapped_key
    if (primary.key_id, primary.key_version) == (recipient.key_id, recipient.key_version):
        return ShareResult(recipient.key_id, recipient.key_version, "", content_id, True)
    listed = api.recipients(url)
    if listed.content_id != envelope.content_id:
        raise ObjectChanged(f"{url}: the object was replaced during the share; try again")
    existing = {(w.key_id, w.key_version) for w in listed.others}
    if (recipient.key_id, recipient.key_version) in existing:
        return ShareResult(recipient.key_id, recipient.key_version, "", content_id, True)
    wrapped = [primary, *listed.others]
    private_key = keys.unlock(wrapped)
    expected = ObjectBinding(tenant, url.bucket, url.key, envelope.content_id)
    dek = recover_data_key(head.header, wrapped, private_key, expected)
    api.share(url, wrap(dek, recipient, head.header))
    after = api.recipients(url)
    if after.content_id != envelope.content_id:
        raise ObjectChanged(f"{url}: the object was replaced during the share; share again")
    return ShareResult(
        recipient.key_id, recipient.key_version, key_id(private_key), content_id, False
    )


# -- upload -------------------------------------------------------------------------------


def upload_file(
    store: RemoteStore,
    api: GatewayApi,
    path: str | os.PathLike[str],
    url: S3Url,
    recipients: Sequence[PublicKeyRef],
    *,
    tenant: str,
    redundancy_class: str | None = None,
    progress: Progress | None = None,
    options: UploadOptions | None = None,
) -> PutResult:
    """Encrypt ``path`` for ``recipients`` and store it at ``url``; the first is primary.

    A file over ``options.multipart_threshold`` bytes goes up as a multipart upload (see
    :mod:`client.transfer`), anything else as one PutObject. The other recipients are added
    with ``?share`` right after the upload (their wraps are made up front, against the
    header, from the data key only this function ever holds). If a share fails, the object is
    stored but readable only by those already added: the error says so and names the command
    that finishes the job.
    """
    started = time.monotonic()
    if os.path.exists(path) and not os.path.isfile(path):
        raise IsADirectoryError(f"{path} is not a regular file")
    with open(path, "rb", buffering=0) as raw:
        source = UploadSource(raw)  # the file as it is now: its size goes into the header
        size = os.fstat(raw.fileno()).st_size if source.size is None else source.size
        binding = ObjectBinding.new(tenant, url.bucket, url.key)
        encryptor = Encryptor(binding, size)
        wrapped = wrap_for_all(encryptor.dek, recipients, encryptor.header_bytes)
        metadata = envelope_headers(wrapped[0], binding.content_id, prefixed=False)
        try:
            sent = _send(
                store, url, source, encryptor, metadata, redundancy_class, progress, options
            )
        finally:
            if progress is not None:
                progress.close()
    for extra in wrapped[1:]:
        try:
            api.share(url, extra)
        except TransferError as exc:
            raise type(exc)(
                f"{url} is stored, but adding recipient {extra.key_id} failed ({exc}); "
                f"finish with: bp share {url} --recipient KEY",
                code=exc.code,
                status=exc.status,
            ) from None
    if len(wrapped) > 1:
        _check_recipients_listed(api, url, binding.content_id, wrapped[1:])
    return PutResult(
        plaintext_length=size,
        ciphertext_length=encryptor.header.ciphertext_length,
        content_id=binding.content_id.hex(),
        key_ids=tuple(w.key_id for w in wrapped),
        etag=str(sent.response.get("ETag", "")).strip('"'),
        seconds=time.monotonic() - started,
        parts=sent.parts,
        part_size=sent.part_size,
    )


def _check_recipients_listed(
    api: GatewayApi, url: S3Url, content_id: bytes, shared: Sequence[WrappedKey]
) -> None:
    """Fail loudly unless the gateway lists every shared recipient for the version we wrote:
    ``bp put`` must not say an object is shared with someone who cannot read it."""
    listed = api.recipients(url)
    if listed.content_id != content_id:
        raise ObjectChanged(
            f"{url} was stored, then replaced by another writer before its other recipients "
            "could be confirmed"
        )
    have = {(w.key_id, w.key_version) for w in listed.others}
    missing = [w.key_id for w in shared if (w.key_id, w.key_version) not in have]
    if missing:
        raise RequestRefused(
            f"{url}: stored, but the gateway does not list recipient(s) {', '.join(missing)}; "
            "only the first --key can read it"
        )


# -- download -----------------------------------------------------------------------------


def download(
    store: RemoteStore,
    api: GatewayApi,
    url: S3Url,
    sink: BinaryIO | None,
    keys: KeyChoice,
    *,
    tenant: str,
    byte_range: PlaintextRange | None = None,
    progress_factory: Callable[[int], Progress] | None = None,
    version_id: str | None = None,
) -> GetResult:
    """Read ``url`` (its current version, or ``version_id``), authenticate it completely,
    and write its plaintext to ``sink``.

    ``sink=None`` decrypts to nowhere (``bp verify``). With ``byte_range`` only the covering
    segments are fetched (plus the 112-byte header) and authenticated. The binding is checked
    against ``tenant`` and the bucket and key *asked for*, never names from the response.
    """
    started = time.monotonic()
    if byte_range is not None:
        return _download_range(store, api, url, sink, keys, tenant, byte_range, started, version_id)
    response = store.get(url, version_id=version_id)
    body = store.read_stream(response, f"get {url}")
    try:
        envelope = parse_envelope_headers(_metadata_headers(response))
        wrapped = candidate_keys(api, url, envelope, keys, version_id=version_id)
        private_key = keys.unlock(wrapped)
        expected = ObjectBinding(tenant, url.bucket, url.key, envelope.content_id)
        total = int(response.get("ContentLength") or 0)
        progress = progress_factory(total) if progress_factory else None
        header_box: list[Header] = []

        def dek(header_bytes: bytes) -> bytes:
            header_box.append(Header.parse(header_bytes))
            return unwrap_any(wrapped, private_key, header_bytes)

        def chunks() -> Iterator[bytes]:
            while chunk := body.read(_READ_CHUNK):
                if progress is not None:
                    progress.update(len(chunk))
                yield chunk

        written = 0
        try:
            for plaintext in decrypt_stream(chunks(), dek=dek, expected=expected):
                if sink is not None:
                    sink.write(plaintext)
                written += len(plaintext)
        finally:
            if progress is not None:
                progress.close()
    finally:
        body.close()
    header = header_box[0]
    return GetResult(
        plaintext_length=header.plaintext_length,
        bytes_written=written,
        segments=header.segment_count,
        key_id=key_id(private_key),
        content_id=envelope.content_id.hex(),
        seconds=time.monotonic() - started,
    )


def _download_range(
    store: RemoteStore,
    api: GatewayApi,
    url: S3Url,
    sink: BinaryIO | None,
    keys: KeyChoice,
    tenant: str,
    wanted: PlaintextRange,
    started: float,
    version_id: str | None,
) -> GetResult:
    first_response = store.get(url, f"bytes=0-{HEADER_LEN - 1}", version_id=version_id)
    head_body = store.read_stream(first_response, f"get {url}")
    try:
        envelope = parse_envelope_headers(_metadata_headers(first_response))
        header_bytes = _read_exact(head_body, HEADER_LEN)
    finally:
        head_body.close()
    if len(header_bytes) < HEADER_LEN:
        raise Truncated("the object ends inside its header")
    wrapped = candidate_keys(api, url, envelope, keys, version_id=version_id)
    private_key = keys.unlock(wrapped)
    expected = ObjectBinding(tenant, url.bucket, url.key, envelope.content_id)
    cipher = SegmentCipher.for_reading(
        header_bytes, lambda h: unwrap_any(wrapped, private_key, h), expected
    )
    header = cipher.header
    first, last = wanted.resolve(header.plaintext_length)
    span = _pt_to_ct(first, last, header)  # RangeNotSatisfiable outside the object
    last = min(last, header.plaintext_length - 1)
    etag = first_response.get("ETag")
    response = store.get(url, span.http_range, if_match=etag, version_id=version_id)
    if _metadata_headers(response).get(CONTENT_ID) != envelope.content_id.hex():
        raise ObjectChanged(f"{url}: the object was replaced during the read; try again")
    content_range = str(response.get("ContentRange") or "")
    if not content_range.startswith(f"bytes {span.offset}-{span.offset + span.length - 1}/"):
        raise Tampered(
            f"the gateway answered the ranged read {span.http_range} with "
            f"{content_range or 'the whole object'}"
        )
    body = store.read_stream(response, f"get {url}")
    written = 0
    try:
        for index in range(span.first_segment, (last >> header.seg_log2) + 1):
            want = header.segment_plaintext_length(index) + TAG_LEN
            data = _read_exact(body, want)
            if len(data) < want:
                raise Truncated(f"the ranged read ended inside segment {index}")
            plaintext = cipher.open(index, data)
            seg_first = index << header.seg_log2
            piece = plaintext[max(first - seg_first, 0) : last - seg_first + 1]
            if sink is not None:
                sink.write(piece)
            written += len(piece)
        if body.read(1):
            raise Tampered("the ranged read returned more bytes than its segments hold")
    finally:
        body.close()
    return GetResult(
        plaintext_length=header.plaintext_length,
        bytes_written=written,
        segments=(last >> header.seg_log2) - span.first_segment + 1,
        key_id=key_id(private_key),
        content_id=envelope.content_id.hex(),
        seconds=time.monotonic() - started,
    )
