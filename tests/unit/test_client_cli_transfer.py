"""The CLI's transfer layer without a network: an in-memory store stands in for the gateway.

Covers what the integration tests cannot reach cheaply: the rewindable encrypting body (a
second pass is byte-identical; a file changed between passes, or growing/shrinking, aborts),
the ranged read fetching only the header and the covering segments, further recipients through
the gateway's recipient list (``?share`` / ``?recipients``, :class:`FakeApi`), atomic output,
range parsing, progress display and the botocore error seam.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError as BotoClientError,
)
from botocore.exceptions import (
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
)
from cryptography.hazmat.primitives.asymmetric import x25519

from client import ObjectBinding, PublicKeyRef
from client.api_records import EnvelopeResult, ObjectHead, Recipients, RewrapItem, RewrapResult
from client.envelope import envelope_headers, parse_envelope_headers
from client.errors import (
    BindingMismatch,
    PlaintextLengthMismatch,
    RangeNotSatisfiable,
    SegmentReuse,
    Tampered,
    WrongKey,
)
from client.format import HEADER_LEN, ciphertext_length
from client.progress import Progress, format_bytes, make_progress
from client.recipient import PrivateKey, key_id
from client.remote import (
    AccessDenied,
    GatewayUnavailable,
    ObjectChanged,
    ObjectNotFound,
    RequestRefused,
    _translate,
)
from client.s3url import S3Url
from client.sharing import download, share_object, upload_file
from client.stream import Encryptor
from client.transfer import PlaintextRange, atomic_output, parse_range
from client.upload_body import BodyStopped, EncryptingBody
from client.wrap import WrappedKey

SEG = 64 * 1024
TENANT = "acme"


class FakeStore:
    """Stores what ``put`` receives (read the way botocore reads over HTTP: hash, rewind, send)
    and serves GETs with S3's range semantics; records every range requested."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, dict[str, str]]] = {}
        self.ranges: list[str | None] = []
        self.drop_metadata: set[str] = set()
        self.replace_after_first_get: tuple[bytes, dict[str, str]] | None = None

    def put(self, url: S3Url, body: Any, length: int, metadata: Any, **_: Any) -> dict[str, Any]:
        first_pass = body.read()  # botocore's payload hash pass
        body.seek(0)
        sent = b"".join(iter(lambda: body.read(8192), b""))
        assert sent == first_pass and len(sent) == length
        kept = {k: v for k, v in metadata.items() if k not in self.drop_metadata}
        self.objects[(url.bucket, url.key)] = (sent, kept)
        return {"ETag": '"etag"'}

    def head(self, url: S3Url) -> dict[str, Any]:
        return {"Metadata": dict(self.objects[(url.bucket, url.key)][1])}

    def get(
        self,
        url: S3Url,
        byte_range: str | None = None,
        if_match: str | None = None,
        *,
        version_id: str | None = None,
    ) -> Any:
        assert version_id in (None, "null"), "FakeStore holds the current version only"
        self.ranges.append(byte_range)
        data, meta = self.objects[(url.bucket, url.key)]
        if self.replace_after_first_get is not None and len(self.ranges) == 2:
            data, meta = self.replace_after_first_get
        response: dict[str, Any] = {"Metadata": dict(meta), "ETag": '"etag"'}
        if byte_range:
            first, last = (int(x) for x in byte_range.removeprefix("bytes=").split("-"))
            last = min(last, len(data) - 1)
            response["ContentRange"] = f"bytes {first}-{last}/{len(data)}"
            data = data[first : last + 1]
        response["ContentLength"] = len(data)
        response["Body"] = io.BytesIO(data)
        return response

    def read_stream(self, response: Any, what: str) -> Any:
        return response["Body"]


class FakeApi:
    """The gateway's extensions over a :class:`FakeStore`: header reads, a recipient list per
    object version (keyed by content id, as the gateway keys it by version), and ``?rewrap``
    with the gateway's precondition. Records every call; never touches an object's bytes."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.shared: dict[tuple[str, str, str], dict[tuple[str, int], WrappedKey]] = {}
        self.calls: list[str] = []
        self.batches: list[list[RewrapItem]] = []
        self.drop_shares = False
        self.header_reads = 0
        #: called with each batch before it is applied (to simulate a concurrent writer)
        self.before_rewrap: Any = None
        self.refuse_batches: Exception | None = None
        #: ``?envelopes``: the size of each batch read; which keys have a stored header (None:
        #: all, as for objects written since migration 0022); stored headers to serve instead
        #: of the object's own (a tampering gateway); an exception to refuse every batch with.
        self.envelope_reads: list[int] = []
        self.stored_headers: set[str] | None = None
        self.forged_headers: dict[str, bytes] = {}
        self.refuse_envelopes: Exception | None = None

    def _version(self, url: S3Url) -> tuple[str, str, str]:
        meta = self.store.objects[(url.bucket, url.key)][1]
        return (url.bucket, url.key, meta["bp-content-id"])

    def share(self, url: S3Url, wrapped: WrappedKey) -> None:
        self.calls.append(f"share {url}")
        if (url.bucket, url.key) not in self.store.objects:
            raise ObjectNotFound(f"share {url}: NoSuchKey", code="NoSuchKey", status=404)
        if not self.drop_shares:
            entries = self.shared.setdefault(self._version(url), {})
            entries[(wrapped.key_id, wrapped.key_version)] = wrapped

    def recipients(self, url: S3Url) -> Recipients:
        self.calls.append(f"recipients {url}")
        envelope = parse_envelope_headers(self.store.objects[(url.bucket, url.key)][1])
        others = tuple(self.shared.get(self._version(url), {}).values())
        return Recipients(envelope.content_id, envelope.wrapped_key, others)

    def read_header(self, url: S3Url, version_id: str | None = None) -> ObjectHead:
        assert version_id in (None, "null"), "FakeStore holds the current version only"
        self.header_reads += 1
        try:
            data, meta = self.store.objects[(url.bucket, url.key)]
        except KeyError:
            raise ObjectNotFound(f"{url}: NoSuchKey", code="NoSuchKey", status=404) from None
        prefixed = {f"x-amz-meta-{name}": value for name, value in meta.items()}
        return ObjectHead(data[:HEADER_LEN], prefixed, '"etag"', len(data))

    def envelopes(self, bucket: str, refs: list[tuple[str, str | None]]) -> list[EnvelopeResult]:
        self.envelope_reads.append(len(refs))
        if self.refuse_envelopes is not None:
            raise self.refuse_envelopes
        out = []
        for key, version_id in refs:
            assert version_id in (None, "null"), "FakeStore holds the current version only"
            if (bucket, key) not in self.store.objects:
                out.append(EnvelopeResult(key, version_id, "NoSuchKey", "gone"))
                continue
            data, meta = self.store.objects[(bucket, key)]
            envelope = {f"x-amz-meta-{n}": v for n, v in meta.items() if n.startswith("bp-")}
            stored = self.stored_headers is None or key in self.stored_headers
            header = self.forged_headers.get(key, data[:HEADER_LEN]) if stored else None
            out.append(
                EnvelopeResult(key, "null", "ok", "", envelope, header if envelope else None)
            )
        return out

    def rewrap(self, bucket: str, items: list[RewrapItem]) -> list[RewrapResult]:
        self.batches.append(list(items))
        if self.refuse_batches is not None:
            raise self.refuse_batches
        if self.before_rewrap is not None:
            self.before_rewrap(items)
        results = []
        for item in items:
            if (bucket, item.key) not in self.store.objects:
                results.append(RewrapResult(item.key, "NoSuchKey", "gone"))
                continue
            data, meta = self.store.objects[(bucket, item.key)]
            current = (meta["bp-key-id"], int(meta["bp-key-version"]))
            if current != (item.expect_key_id, item.expect_key_version):
                results.append(RewrapResult(item.key, "PreconditionFailed", f"under {current}"))
                continue
            content_id = bytes.fromhex(meta["bp-content-id"])
            new_meta = {**meta, **envelope_headers(item.wrapped, content_id, prefixed=False)}
            self.store.objects[(bucket, item.key)] = (data, new_meta)
            results.append(RewrapResult(item.key, "ok"))
        return results


class Holder:
    """A :class:`client.sharing.KeyChoice` holding one private key (and unlocking it even when
    it is not named, so the SDK's own WrongKey check is what a stranger runs into)."""

    def __init__(self, private: PrivateKey) -> None:
        self.private = private
        self.unlocked = 0

    def holds(self, wrapped: Any) -> bool:
        return key_id(self.private) in {w.key_id for w in wrapped}

    def unlock(self, wrapped: Any) -> PrivateKey:
        self.unlocked += 1
        return self.private


@pytest.fixture
def alice() -> x25519.X25519PrivateKey:
    return x25519.X25519PrivateKey.generate()


def put(
    store: FakeStore, tmp_path: Path, data: bytes, key: str, *recipients: Any, api: Any = None
) -> S3Url:
    src = tmp_path / "src"
    src.write_bytes(data)
    url = S3Url("bkt", key)
    refs = [PublicKeyRef(r.public_key()) for r in recipients]
    upload_file(store, api or FakeApi(store), src, url, refs, tenant=TENANT)  # type: ignore[arg-type]
    return url


def get(
    store: FakeStore,
    url: S3Url,
    private: Any,
    rng: PlaintextRange | None = None,
    api: Any = None,
) -> bytes:
    sink = io.BytesIO()
    gateway: Any = api or FakeApi(store)
    download(
        store,  # type: ignore[arg-type]
        gateway,
        url,
        sink,
        Holder(private),
        tenant=TENANT,
        byte_range=rng,
    )
    return sink.getvalue()


# -- upload -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 9 * 1024 * 1024 + 7])
def test_round_trip_through_the_fake_gateway(
    size: int, tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    store = FakeStore()
    data = os.urandom(size)
    url = put(store, tmp_path, data, "k", alice)
    stored, meta = store.objects[("bkt", "k")]
    assert len(stored) == ciphertext_length(size)
    assert set(meta) == {"bp-wrapped-key", "bp-key-id", "bp-key-version", "bp-wrap-alg",
                         "bp-content-id"}  # fmt: skip
    assert get(store, url, alice) == data


def test_a_second_pass_is_identical_and_a_changed_file_aborts(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(os.urandom(3 * SEG + 5))
    enc = Encryptor(ObjectBinding.new(TENANT, "bkt", "k"), src.stat().st_size)
    with open(src, "rb", buffering=0) as f:
        body = EncryptingBody(f, enc)
        assert len(body) == enc.header.ciphertext_length
        first = body.read()
        assert body.read() == b"" and body.tell() == len(first)
        assert body.seek(0, io.SEEK_END) == len(first) and body.seek(0) == 0
        assert body.read() == first
        with pytest.raises(io.UnsupportedOperation):
            body.seek(10)
        body.seek(0)
        with open(src, "r+b") as w:  # same length, one byte different (flipped, not random)
            w.seek(SEG + 3)
            old = w.read(1)[0]
            w.seek(SEG + 3)
            w.write(bytes([old ^ 0xFF]))
        assert isinstance(failure_of(body), SegmentReuse)
        # The failure sticks: a later pass (botocore retrying) ends at once, for the same reason.
        body.seek(0)
        assert isinstance(failure_of(body), SegmentReuse)


def failure_of(body: EncryptingBody) -> BaseException | None:
    """Read the body to its end; what stopped it. A body ends its request with a
    CancelledError (botocore passes those through unretried) and keeps the reason."""
    try:
        body.read()
    except BodyStopped:
        return body.failure
    return None


@pytest.mark.parametrize("change", ["grow", "shrink"])
def test_a_file_that_changes_length_during_upload_stores_nothing(
    change: str, tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"a" * (2 * SEG))
    enc = Encryptor(ObjectBinding.new(TENANT, "bkt", "k"), 2 * SEG)
    with open(src, "rb", buffering=0) as f:
        body = EncryptingBody(f, enc)
        body.read(HEADER_LEN)
        if change == "grow":
            src.write_bytes(b"a" * (2 * SEG + 1))
        else:
            src.write_bytes(b"a" * SEG)
        failure = failure_of(body)
        assert isinstance(failure, PlaintextLengthMismatch)
        assert "nothing was stored" in str(failure)


def test_further_recipients_go_through_the_recipient_list_not_metadata(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    bob, carol = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    store = FakeStore()
    api = FakeApi(store)
    data = b"shared" * 1000
    url = put(store, tmp_path, data, "k", alice, bob, carol, api=api)
    meta = store.objects[("bkt", "k")][1]
    # The envelope names the primary only; nothing else rides in user metadata.
    assert set(meta) == {"bp-wrapped-key", "bp-key-id", "bp-key-version", "bp-wrap-alg",
                         "bp-content-id"}  # fmt: skip
    assert meta["bp-key-id"] == key_id(alice)
    assert api.calls == ["share s3://bkt/k", "share s3://bkt/k", "recipients s3://bkt/k"]
    # The primary reads without asking for the list; the others fetch it, whole and ranged.
    api.calls.clear()
    assert get(store, url, alice, api=api) == data and api.calls == []
    for reader in (bob, carol):
        assert get(store, url, reader, api=api) == data
        assert get(store, url, reader, PlaintextRange(10, 20), api=api) == data[10:21]
    assert api.calls == ["recipients s3://bkt/k"] * 4
    with pytest.raises(WrongKey):
        get(store, url, x25519.X25519PrivateKey.generate(), api=api)


def test_a_gateway_that_drops_shares_or_a_replaced_object_is_reported(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    bob = x25519.X25519PrivateKey.generate()
    store = FakeStore()
    api = FakeApi(store)
    api.drop_shares = True
    with pytest.raises(RequestRefused, match="only the first --key"):
        put(store, tmp_path, b"x" * 100, "k", alice, bob, api=api)
    # A recipient list of another version (the object was replaced between the two reads).
    api.drop_shares = False
    url = put(store, tmp_path, b"y" * 100, "k", alice, bob, api=api)
    real = api.recipients

    def stale(u: S3Url) -> Recipients:
        listed = real(u)
        return Recipients(b"\0" * 16, listed.primary, listed.others)

    api.recipients = stale  # type: ignore[method-assign,assignment]
    with pytest.raises(ObjectChanged):
        get(store, url, bob, api=api)
    assert get(store, url, alice, api=api) == b"y" * 100  # the primary never needed the list


def test_share_unwraps_checks_and_wraps_for_the_new_reader(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    bob, carol = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    store = FakeStore()
    api = FakeApi(store)
    url = put(store, tmp_path, b"for later readers", "k", alice, api=api)
    holder = Holder(alice)
    done = share_object(api, url, PublicKeyRef(bob.public_key()), holder, tenant=TENANT)  # type: ignore[arg-type]
    assert not done.already and done.opened_with == key_id(alice)
    assert get(store, url, bob, api=api) == b"for later readers"
    # bob (a shared reader himself) can share on; sharing again changes nothing.
    share_object(api, url, PublicKeyRef(carol.public_key()), Holder(bob), tenant=TENANT)  # type: ignore[arg-type]
    assert get(store, url, carol, api=api) == b"for later readers"
    again = share_object(api, url, PublicKeyRef(bob.public_key()), holder, tenant=TENANT)  # type: ignore[arg-type]
    assert again.already and holder.unlocked == 1
    # A header that is not this object's (swapped by the gateway) is never re-wrapped for anyone.
    put(store, tmp_path, b"other", "other", alice, api=api)
    store.objects[("bkt", "k")] = store.objects[("bkt", "other")]
    before = dict(api.shared)
    with pytest.raises(BindingMismatch):
        share_object(
            api,  # type: ignore[arg-type]
            url,
            PublicKeyRef(x25519.X25519PrivateKey.generate().public_key()),
            holder,
            tenant=TENANT,
        )
    assert api.shared == before


# -- download ---------------------------------------------------------------------------------


def test_ranged_reads_fetch_the_header_and_only_the_covering_segments(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    store = FakeStore()
    data = os.urandom(5 * SEG + 100)
    url = put(store, tmp_path, data, "r", alice)
    stride = SEG + 16
    cases = [
        (PlaintextRange(0, 0), data[:1], f"bytes={HEADER_LEN}-{HEADER_LEN + stride - 1}"),
        (PlaintextRange(SEG - 1, SEG), data[SEG - 1 : SEG + 1],
         f"bytes={HEADER_LEN}-{HEADER_LEN + 2 * stride - 1}"),
        (PlaintextRange(2 * SEG, 3 * SEG - 1), data[2 * SEG : 3 * SEG],
         f"bytes={HEADER_LEN + 2 * stride}-{HEADER_LEN + 3 * stride - 1}"),
        (PlaintextRange(None, None, 1), data[-1:],
         f"bytes={HEADER_LEN + 5 * stride}-{HEADER_LEN + 5 * stride + 100 + 16 - 1}"),
        (PlaintextRange(5 * SEG), data[5 * SEG :], None),
        (PlaintextRange(7, 10**12), data[7:], None),
    ]  # fmt: skip
    for rng, expected, ct_range in cases:
        store.ranges.clear()
        assert get(store, url, alice, rng) == expected
        assert store.ranges[0] == f"bytes=0-{HEADER_LEN - 1}"
        assert len(store.ranges) == 2
        if ct_range is not None:
            assert store.ranges[1] == ct_range
    with pytest.raises(RangeNotSatisfiable):
        get(store, url, alice, PlaintextRange(len(data)))


def test_ranged_read_of_a_replaced_object_is_refused(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    store = FakeStore()
    url = put(store, tmp_path, os.urandom(2 * SEG), "r", alice)
    put(store, tmp_path, os.urandom(2 * SEG), "other", alice)
    store.replace_after_first_get = store.objects[("bkt", "other")]
    with pytest.raises(ObjectChanged):
        get(store, url, alice, PlaintextRange(0, 10))


def test_swapped_and_tampered_objects_fail_full_and_ranged_reads(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    store = FakeStore()
    url = put(store, tmp_path, os.urandom(3 * SEG), "a", alice)
    put(store, tmp_path, os.urandom(3 * SEG), "b", alice)
    store.objects[("bkt", "b")] = store.objects[("bkt", "a")]
    for rng in (None, PlaintextRange(SEG, SEG + 1)):
        with pytest.raises(BindingMismatch):
            get(store, S3Url("bkt", "b"), alice, rng)
    body, meta = store.objects[("bkt", "a")]
    flipped = bytearray(body)
    flipped[HEADER_LEN + SEG + 16 + 5] ^= 1
    store.objects[("bkt", "a")] = (bytes(flipped), meta)
    with pytest.raises(Tampered):
        get(store, url, alice)
    with pytest.raises(Tampered):
        get(store, url, alice, PlaintextRange(SEG, SEG))
    # A range that reads only intact segments succeeds: ranges authenticate what they read.
    assert len(get(store, url, alice, PlaintextRange(0, 9))) == 10
    with pytest.raises(WrongKey):
        get(store, url, x25519.X25519PrivateKey.generate())


# -- output, ranges, progress -----------------------------------------------------------------


def test_atomic_output_publishes_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with atomic_output(str(target)) as sink:
        sink.write(b"complete")
        assert not target.exists()
    assert target.read_bytes() == b"complete"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(Tampered), atomic_output(str(target)) as sink:
        sink.write(b"partial plaintext")
        raise Tampered("segment 1 failed authentication")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_output_to_stdout_is_spooled_until_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Out:
        buffer = io.BytesIO()

    monkeypatch.setattr("sys.stdout", Out)
    with pytest.raises(Tampered), atomic_output("-") as sink:
        sink.write(b"unauthenticated")
        raise Tampered("x")
    assert Out.buffer.getvalue() == b""
    with atomic_output("-") as sink:
        sink.write(b"all good")
    assert Out.buffer.getvalue() == b"all good"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-99", PlaintextRange(0, 99)),
        ("5-5", PlaintextRange(5, 5)),
        ("100-", PlaintextRange(100)),
        ("-10", PlaintextRange(None, None, 10)),
    ],
)
def test_parse_range(text: str, expected: PlaintextRange) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["", "-", "5", "a-b", "5-2", "-0", "1-2-3", " -x"])
def test_parse_range_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_range(text)


def test_range_resolution() -> None:
    assert PlaintextRange(None, None, 10).resolve(4) == (0, 3)
    assert PlaintextRange(3).resolve(10) == (3, 9)
    assert PlaintextRange(3, 5).resolve(10) == (3, 5)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_tty_for_large_transfers() -> None:
    assert make_progress("x", 100 * 2**20, io.StringIO(), quiet=False)._stream is None
    assert make_progress("x", 2**20, _Tty(), quiet=False)._stream is None
    assert make_progress("x", 100 * 2**20, _Tty(), quiet=True)._stream is None
    tty = _Tty()
    progress = make_progress("put s3://b/k", 100 * 2**20, tty, quiet=False)
    assert isinstance(progress, Progress)
    progress.update(50 * 2**20)
    progress.close()
    text = tty.getvalue()
    assert "put s3://b/k" in text and "50.0 MiB / 100.0 MiB" in text and text.endswith("\n")
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KiB"


# -- the botocore seam ------------------------------------------------------------------------


def _client_error(code: str, status: int) -> BotoClientError:
    return BotoClientError(
        {"Error": {"Code": code, "Message": f"msg {code}"},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error("NoSuchKey", 404), ObjectNotFound),
        (_client_error("NoSuchBucket", 404), ObjectNotFound),
        (_client_error("404", 404), ObjectNotFound),
        (_client_error("AccessDenied", 403), AccessDenied),
        (_client_error("SignatureDoesNotMatch", 403), AccessDenied),
        (_client_error("InvalidAccessKeyId", 403), AccessDenied),
        (_client_error("ServiceUnavailable", 503), GatewayUnavailable),
        (_client_error("InternalError", 500), GatewayUnavailable),
        (_client_error("InvalidRequest", 400), RequestRefused),
        (_client_error("BucketAlreadyOwnedByYou", 409), RequestRefused),
        (EndpointConnectionError(endpoint_url="http://x"), GatewayUnavailable),
        (ReadTimeoutError(endpoint_url="http://x"), GatewayUnavailable),
        (IncompleteReadError(actual_bytes=1, expected_bytes=2), GatewayUnavailable),
    ],
)
def test_botocore_errors_are_translated_at_one_seam(exc: Exception, kind: type) -> None:
    translated = _translate(exc, "s3://bkt/k")
    assert type(translated) is kind
    assert str(translated).startswith("s3://bkt/k: ")
