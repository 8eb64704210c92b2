"""aws-chunked decoding: AWS's published vectors, what boto3 really sends, and malformed streams.

The signed-stream encoder below is written independently of gateway.s3.chunked (plain hmac and
hashlib), so a shared mistake would have to be made twice; the published AWS vectors anchor both.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import checksums
from gateway.s3 import errors
from gateway.s3.chunked import (
    MAX_CHUNK_LINE,
    ChecksumVerifier,
    PayloadHashVerifier,
    chunk_signature,
    decode_aws_chunked,
    trailer_signature,
)
from gateway.s3.sigv4 import (
    Credential,
    HttpRequestView,
    PayloadMode,
    VerifiedRequest,
    signing_key,
    verify,
)

# --------------------------------------------------------------------------- AWS example data
# "Signature Calculations for the Authorization Header: Transferring Payload in Multiple Chunks"
# (S3 API reference, sigv4-streaming) and its trailer sibling (sigv4-streaming-trailers). The
# signatures are the ones AWS publishes, as reproduced in awslabs/aws-c-auth's sigv4 signing tests.
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_ACCESS = "AKIAIOSFODNN7EXAMPLE"
AWS_DATE = "20130524T000000Z"
AWS_NOW = datetime(2013, 5, 24, tzinfo=UTC)
AWS_SCOPE = "20130524/us-east-1/s3/aws4_request"
AWS_DATA = b"a" * 66560
AWS_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
AWS_CHUNK_SIGS = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)
# Trailer variant (x-amz-checksum-crc32c), same data and chunking.
AWS_TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
AWS_TRAILER_CHUNK_SIGS = (
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
)
AWS_TRAILER_CRC32C = "sOO8/Q=="
AWS_TRAILER_SIG = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
# awslabs/aws-c-auth sigv4_trailing_headers_signing_test: trailers first/second/third chained
# from the final chunk signature of the first example.
AWS_CRT_TRAILER_SIG = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"


def aws_view(*, trailer: bool) -> HttpRequestView:
    if trailer:
        signed = (
            "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
        )
        signed += "x-amz-storage-class;x-amz-trailer"
        mode, seed = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", AWS_TRAILER_SEED
    else:
        signed = "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        signed += "x-amz-decoded-content-length;x-amz-storage-class"
        mode, seed = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", AWS_SEED
    headers = {
        "host": "s3.amazonaws.com",
        "x-amz-date": AWS_DATE,
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": mode,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560",
        "content-length": "66946" if trailer else "66824",
        "authorization": (
            f"AWS4-HMAC-SHA256 Credential={AWS_ACCESS}/{AWS_SCOPE}, "
            f"SignedHeaders={signed}, Signature={seed}"
        ),
    }
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32c"
    return HttpRequestView("PUT", "/examplebucket/chunkObject.txt", "", headers)


def aws_body(*, trailer: bool) -> bytes:
    sigs = AWS_TRAILER_CHUNK_SIGS if trailer else AWS_CHUNK_SIGS
    body = b"".join(
        b"%x;chunk-signature=%s\r\n%s\r\n" % (size, sig.encode(), b"a" * size)
        for size, sig in zip((65536, 1024), sigs[:2], strict=True)
    )
    body += b"0;chunk-signature=%s\r\n" % sigs[2].encode()
    if trailer:
        body += b"x-amz-checksum-crc32c:%s\r\n" % AWS_TRAILER_CRC32C.encode()
        body += b"x-amz-trailer-signature:%s\r\n" % AWS_TRAILER_SIG.encode()
    return body + b"\r\n"


# --------------------------------------------------------------------------- helpers


async def _agen(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def slices(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def decode(parts: bytes | Iterable[bytes], verified: VerifiedRequest, **kwargs: Any) -> bytes:
    if isinstance(parts, bytes):
        parts = [parts]

    async def run() -> bytes:
        out = bytearray()
        async for piece in decode_aws_chunked(_agen(parts), verified, **kwargs):
            assert piece, "the decoder never yields empty pieces"
            out += piece
        return bytes(out)

    return asyncio.run(run())


def synthetic(mode: PayloadMode, length: int, trailers: tuple[str, ...] = ()) -> VerifiedRequest:
    key = signing_key("secret", "20260101", "us-east-1")
    return VerifiedRequest(
        credential=Credential("AKID", "20260101", "us-east-1", "s3"),
        amz_date="20260101T000000Z",
        signature="1" * 64,
        signing_key=key,
        signed_headers=("host",),
        payload_mode=mode,
        payload_sha256=None,
        decoded_content_length=length,
        trailer_names=trailers,
        presigned=False,
    )


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def encode(
    chunks: list[bytes],
    verified: VerifiedRequest,
    *,
    trailers: dict[str, str] | None = None,
) -> bytes:
    """An aws-chunked body for ``verified``'s mode, signed the way AWS documents it."""
    signed = verified.payload_mode in (
        PayloadMode.STREAMING_SIGNED,
        PayloadMode.STREAMING_SIGNED_TRAILER,
    )
    scope = "/".join((verified.credential.date, verified.credential.region, "s3", "aws4_request"))
    previous = verified.signature
    empty = hashlib.sha256(b"").hexdigest()
    out = bytearray()
    for data in [*chunks, b""]:
        if signed:
            sts = f"AWS4-HMAC-SHA256-PAYLOAD\n{verified.amz_date}\n{scope}\n{previous}\n{empty}\n"
            previous = _hmac_hex(verified.signing_key, sts + hashlib.sha256(data).hexdigest())
            out += b"%x;chunk-signature=%s\r\n" % (len(data), previous.encode())
        else:
            out += b"%x\r\n" % len(data)
        if data:
            out += data + b"\r\n"
    if trailers is None:
        return bytes(out + b"\r\n")
    for name, value in trailers.items():
        out += f"{name}:{value}\r\n".encode()
    if signed:
        canonical = "".join(f"{n}:{v}\n" for n, v in sorted(trailers.items()))
        sts = f"AWS4-HMAC-SHA256-TRAILER\n{verified.amz_date}\n{scope}\n{previous}\n"
        sig = _hmac_hex(verified.signing_key, sts + hashlib.sha256(canonical.encode()).hexdigest())
        out += f"x-amz-trailer-signature:{sig}\r\n".encode()
    return bytes(out + b"\r\n")


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


class PyCrc32c:
    """Reference CRC-32C (Castagnoli, reflected), for tests only: slow but obviously right."""

    _TABLE = _crc32c_table()

    def __init__(self) -> None:
        self._crc = 0xFFFFFFFF

    def update(self, data: bytes, /) -> None:
        crc, table = self._crc, self._TABLE
        for b in data:
            crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
        self._crc = crc

    def digest(self) -> bytes:
        return (self._crc ^ 0xFFFFFFFF).to_bytes(4, "big")


@pytest.fixture
def with_py_crc32c(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(checksums.CHECKSUM_FACTORIES, "crc32c", PyCrc32c)


# --------------------------------------------------------------------------- published vectors


def test_reference_crc32c_matches_its_standard_check_value() -> None:
    c = PyCrc32c()
    c.update(b"123456789")
    assert c.digest().hex() == "e3069283"
    c = PyCrc32c()
    c.update(AWS_DATA)
    assert base64.b64encode(c.digest()).decode() == AWS_TRAILER_CRC32C


def test_chunk_and_trailer_signature_functions_match_aws_vectors() -> None:
    key = signing_key(AWS_SECRET, "20130524", "us-east-1")
    previous = AWS_SEED
    for data, expected in zip((b"a" * 65536, b"a" * 1024, b""), AWS_CHUNK_SIGS, strict=True):
        previous = chunk_signature(key, AWS_DATE, AWS_SCOPE, previous, data)
        assert previous == expected
    trailers = [("first", "1st"), ("second", "2nd"), ("third", "3rd")]
    assert (
        trailer_signature(key, AWS_DATE, AWS_SCOPE, AWS_CHUNK_SIGS[2], trailers)
        == AWS_CRT_TRAILER_SIG
    )


def test_aws_chunked_example_decodes_at_any_split() -> None:
    verified = verify(aws_view(trailer=False), AWS_SECRET, region="us-east-1", now=AWS_NOW)
    assert verified.signature == AWS_SEED
    body = aws_body(trailer=False)
    assert len(body) == 66824  # the Content-Length the example signs
    assert decode(body, verified) == AWS_DATA
    for size in (1, 7, 88, 777, 65536, 256 * 1024):
        assert decode(slices(body, size), verified) == AWS_DATA
    for cut in [*range(0, 120), *range(65600, 65720), *range(len(body) - 100, len(body) + 1)]:
        assert decode([body[:cut], body[cut:]], verified) == AWS_DATA


def _aws_chunks(body: bytes) -> list[bytes]:
    """Split the example body into its three framed chunks (header + data + CRLF)."""
    first = 88 + 65536 + 2
    second = first + 86 + 1024 + 2
    return [body[:first], body[first:second], body[second:]]


@pytest.mark.parametrize(
    "tamper", ["swap", "drop-second", "duplicate-first", "data-byte", "signature", "size"]
)
def test_aws_chunked_example_tampering(tamper: str) -> None:
    verified = verify(aws_view(trailer=False), AWS_SECRET, region="us-east-1", now=AWS_NOW)
    one, two, final = _aws_chunks(aws_body(trailer=False))
    body = {
        "swap": two + one + final,
        "drop-second": one + final,
        "duplicate-first": one + one + two + final,
        "data-byte": one[:200] + b"b" + one[201:] + two + final,
        "signature": one.replace(AWS_CHUNK_SIGS[0][:8].encode(), b"00000000", 1) + two + final,
        "size": b"0" + one + two + final,  # leading zero: same size, signature still good
    }[tamper]
    if tamper == "size":
        assert decode(body, verified) == AWS_DATA
        return
    expected: type[errors.S3Error] = errors.SignatureDoesNotMatch
    if tamper == "duplicate-first":
        expected = (
            errors.IncompleteBody
        )  # more bytes than x-amz-decoded-content-length, refused early
    with pytest.raises(expected):
        decode(slices(body, 4096), verified)


def test_aws_trailer_example_decodes(with_py_crc32c: None) -> None:
    verified = verify(aws_view(trailer=True), AWS_SECRET, region="us-east-1", now=AWS_NOW)
    assert verified.trailer_names == ("x-amz-checksum-crc32c",)
    body = aws_body(trailer=True)
    assert len(body) == 66946
    assert decode(slices(body, 1000), verified) == AWS_DATA
    for cut in range(len(body) - 140, len(body) + 1):
        assert decode([body[:cut], body[cut:]], verified) == AWS_DATA


@pytest.mark.parametrize(
    "tamper", ["trailer-signature", "checksum-value", "no-signature", "chunk-signature"]
)
def test_aws_trailer_example_tampering(with_py_crc32c: None, tamper: str) -> None:
    verified = verify(aws_view(trailer=True), AWS_SECRET, region="us-east-1", now=AWS_NOW)
    body = aws_body(trailer=True)
    if tamper == "trailer-signature":
        body = body.replace(AWS_TRAILER_SIG[:6].encode(), b"000000")
    elif tamper == "checksum-value":
        body = body.replace(AWS_TRAILER_CRC32C.encode(), b"AAAAAA==")
    elif tamper == "no-signature":
        body = body.replace(b"x-amz-trailer-signature:%s\r\n" % AWS_TRAILER_SIG.encode(), b"")
    else:
        body = body.replace(AWS_TRAILER_CHUNK_SIGS[1][:6].encode(), b"000000")
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(body, verified)


def test_crc32c_without_an_implementation_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(checksums.CHECKSUM_FACTORIES, "crc32c", raising=False)
    verified = verify(aws_view(trailer=True), AWS_SECRET, region="us-east-1", now=AWS_NOW)
    with pytest.raises(errors.InvalidRequest, match="not supported"):
        decode(aws_body(trailer=True), verified)


# --------------------------------------------------------------------------- real boto3 uploads

SECRET = "s3cr3t/for+boto3"


class _Raw:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


def capture_put(
    endpoint: str, body: bytes, key: str = "dir/a b+c.txt", **config: Any
) -> tuple[HttpRequestView, bytes]:
    """What boto3's put_object sends, intercepted before the network."""
    sent: dict[str, Any] = {}

    def before_send(request: Any, **_: Any) -> AWSResponse:
        sent["method"], sent["url"], sent["headers"] = (
            request.method,
            request.url,
            dict(request.headers),
        )
        raw = request.body
        sent["body"] = raw.read() if hasattr(raw, "read") else bytes(raw or b"")
        return AWSResponse(request.url, 200, {}, _Raw())

    session = boto3.session.Session(
        aws_access_key_id="AKIDBOTO", aws_secret_access_key=SECRET, region_name="us-east-1"
    )
    client = session.client(
        "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}, **config)
    )
    client.meta.events.register("before-send.s3", before_send)
    client.put_object(Bucket="bkt", Key=key, Body=body)
    parts = urlsplit(sent["url"])
    headers = {
        k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in sent["headers"].items()
    }
    headers.setdefault("host", parts.netloc)
    return HttpRequestView(sent["method"], parts.path, parts.query, headers), sent["body"]


def check_upload(view: HttpRequestView, wire: bytes) -> tuple[VerifiedRequest, bytes]:
    stamp = datetime.strptime(view.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    verified = verify(view, SECRET, region="us-east-1", now=stamp)
    if verified.payload_mode is PayloadMode.SIGNED:
        assert verified.payload_sha256 is not None
        hasher = PayloadHashVerifier(verified.payload_sha256)
        for piece in slices(wire, 1000):
            hasher.feed(piece)
        hasher.finish()
        for name, value in view.headers.items():
            if name.startswith("x-amz-checksum-"):
                checker = ChecksumVerifier(name, value)
                checker.feed(wire)
                checker.finish()
        return verified, wire
    return verified, decode(slices(wire, 256 * 1024), verified)


BODY = bytes(range(256)) * 12289  # ~3 MiB: several of botocore's 1 MiB aws-chunked chunks


@pytest.mark.parametrize("calculation", [None, "when_supported", "when_required"])
def test_boto3_put_object_over_http_signs_the_payload(calculation: str | None) -> None:
    config = {} if calculation is None else {"request_checksum_calculation": calculation}
    view, wire = capture_put("http://127.0.0.1:9000", BODY, **config)
    verified, decoded = check_upload(view, wire)
    assert verified.payload_mode is PayloadMode.SIGNED
    assert decoded == BODY
    if calculation != "when_required":  # default is when_supported: a CRC32 header, signed
        assert view.headers["x-amz-checksum-crc32"] == crc32_b64(BODY)
        assert "x-amz-checksum-crc32" in verified.signed_headers
    with pytest.raises(errors.XAmzContentSHA256Mismatch):
        check_upload(view, wire[:-1] + b"!")


@pytest.mark.parametrize("size", [0, 11, 1024 * 1024, len(BODY)])
def test_boto3_put_object_over_https_uses_unsigned_trailer(size: int) -> None:
    body = BODY[:size]
    view, wire = capture_put(
        "https://127.0.0.1:9000", body, request_checksum_calculation="when_supported"
    )
    assert view.headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert view.headers["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert view.headers["content-encoding"] == "aws-chunked"
    assert view.headers["x-amz-decoded-content-length"] == str(size)
    assert wire.endswith(b"0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % crc32_b64(body).encode())
    verified, decoded = check_upload(view, wire)
    assert verified.payload_mode is PayloadMode.STREAMING_UNSIGNED_TRAILER
    assert decoded == body

    if size:
        index = wire.index(b"\r\n") + 2 + size // 2  # a byte inside the first chunk's data
        flipped = wire[:index] + bytes([wire[index] ^ 0x01]) + wire[index + 1 :]
        with pytest.raises(errors.BadDigest):
            decode(slices(flipped, 256 * 1024), verified)
    other = crc32_b64(body + b"x").encode()
    with pytest.raises(errors.BadDigest):
        decode(wire.replace(crc32_b64(body).encode(), other), verified)
    with pytest.raises(errors.InvalidRequest):
        decode(wire.replace(crc32_b64(body).encode(), b"not base64!"), verified)


def test_boto3_default_config_over_https_is_the_same_as_when_supported() -> None:
    view, wire = capture_put("https://127.0.0.1:9000", b"hello world")
    assert view.headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert wire == b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"
    assert check_upload(view, wire)[1] == b"hello world"


# --------------------------------------------------------------------------- synthetic streams

SIGNED = PayloadMode.STREAMING_SIGNED
SIGNED_TRAILER = PayloadMode.STREAMING_SIGNED_TRAILER
UNSIGNED_TRAILER = PayloadMode.STREAMING_UNSIGNED_TRAILER
SMALL = [
    b"hello ",
    b"aws-chunked",
    b"\r\n0\r\n",
]  # data that looks like framing must not confuse us
SMALL_DATA = b"".join(SMALL)


def small_stream(mode: PayloadMode) -> tuple[VerifiedRequest, bytes]:
    if mode is SIGNED:
        verified = synthetic(mode, len(SMALL_DATA))
        return verified, encode(SMALL, verified)
    verified = synthetic(mode, len(SMALL_DATA), ("x-amz-checksum-crc32",))
    return verified, encode(
        SMALL, verified, trailers={"x-amz-checksum-crc32": crc32_b64(SMALL_DATA)}
    )


@pytest.mark.parametrize("mode", [SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER])
def test_every_split_point_and_byte_by_byte(mode: PayloadMode) -> None:
    verified, body = small_stream(mode)
    for cut in range(len(body) + 1):
        assert decode([body[:cut], body[cut:]], verified) == SMALL_DATA
    assert decode(slices(body, 1), verified) == SMALL_DATA
    assert decode([b"", *slices(body, 3), b""], verified) == SMALL_DATA


@pytest.mark.parametrize("mode", [SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER])
def test_every_truncation_is_an_incomplete_body(mode: PayloadMode) -> None:
    verified, body = small_stream(mode)
    for cut in range(len(body)):
        with pytest.raises(errors.IncompleteBody):
            decode(slices(body[:cut], 5), verified)


@pytest.mark.parametrize("mode", [SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER])
def test_extra_bytes_after_the_final_chunk(mode: PayloadMode) -> None:
    verified, body = small_stream(mode)
    for extra in (b"x", b"\r\n", b"0\r\n\r\n"):
        with pytest.raises(errors.InvalidRequest, match="after the final chunk"):
            decode([body, b"", extra], verified)


@pytest.mark.parametrize("mode", [SIGNED, UNSIGNED_TRAILER])
def test_decoded_length_must_match(mode: PayloadMode) -> None:
    verified, body = small_stream(mode)
    for wrong in (len(SMALL_DATA) - 1, len(SMALL_DATA) + 1, 0):
        with pytest.raises(errors.IncompleteBody):
            decode(body, replace(verified, decoded_content_length=wrong))
    with pytest.raises(errors.MissingContentLength):
        decode(body, replace(verified, decoded_content_length=None))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"zz\r\nhello\r\n0\r\n\r\n", "hex"),
        (b"0x5\r\nhello\r\n0\r\n\r\n", "hex"),
        (b" 5\r\nhello\r\n0\r\n\r\n", "hex"),
        (b"\r\nhello\r\n0\r\n\r\n", "hex"),
        (b"5\nhello\r\n0\r\n\r\n", "CRLF"),
        (b"5\r\nhelloXY0\r\n\r\n", "CRLF"),
        (b"5\r\nhello\n0\r\n\r\n", "CRLF"),
        (b"5;ext=1\r\nhello\r\n0\r\n\r\n", "extension"),
        (b"5\r\nhello\r\n0\r\n\r\r\n", "CR"),
        (b"11111111111111111\r\n", "hex"),
        (b"f" * (MAX_CHUNK_LINE + 10), "longer than"),
        (b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32\r\n\r\n", "name:value"),
        (b"5\r\nhello\r\n0\r\nx-amz-meta-x:1\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n", "differ"),
        (b"5\r\nhello\r\n0\r\n\r\n", "differ"),
        (
            b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n",
            "more than once",
        ),
        (
            b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\nx-amz-trailer-signature:"
            + b"0" * 64
            + b"\r\n\r\n",
            "not allowed",
        ),
        (b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:" + b"A" * 20000 + b"\r\n\r\n", "longer than"),
        (
            b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n"
            + b"x-amz-meta-a:b\r\n" * 2000
            + b"\r\n",
            "trailer",
        ),
    ],
)
def test_malformed_unsigned_streams(body: bytes, message: str) -> None:
    verified = synthetic(UNSIGNED_TRAILER, 5, ("x-amz-checksum-crc32",))
    assert crc32_b64(b"hello") == "NhCmhg=="
    with pytest.raises(errors.InvalidRequest, match=message):
        decode(slices(body, 7), verified)


def test_malformed_signed_streams() -> None:
    verified = synthetic(SIGNED, 5)
    good = encode([b"hello"], verified)
    sig_line_end = good.index(b"\r\n")
    cases = {
        "no signature": b"5\r\nhello\r\n" + good[good.index(b"\r\n0;") + 2 :],
        "short signature": good[: sig_line_end - 1] + good[sig_line_end:],
        "upper-case signature": good[:sig_line_end].upper() + good[sig_line_end:],
        "other extension": good.replace(b"chunk-signature=", b"chunk-signatur=", 1),
    }
    for name, body in cases.items():
        with pytest.raises(errors.InvalidRequest, match="chunk-signature"):
            decode(body, verified)
        assert name
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(good, replace(verified, signature="2" * 64))  # another seed: the chain breaks
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(good, replace(verified, signing_key=signing_key("other", "20260101", "us-east-1")))


def test_signed_trailer_with_valid_signature_but_wrong_checksum_is_bad_digest() -> None:
    verified = synthetic(SIGNED_TRAILER, len(SMALL_DATA), ("x-amz-checksum-crc32",))
    body = encode(SMALL, verified, trailers={"x-amz-checksum-crc32": crc32_b64(b"other")})
    with pytest.raises(errors.BadDigest):
        decode(body, verified)
    undeclared = encode(SMALL, verified, trailers={"x-amz-checksum-sha256": "x"})
    with pytest.raises(errors.InvalidRequest, match="differ"):
        decode(undeclared, verified)


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_hash_trailers(algorithm: str) -> None:
    name = f"x-amz-checksum-{algorithm}"
    verified = synthetic(UNSIGNED_TRAILER, len(SMALL_DATA), (name,))
    value = base64.b64encode(hashlib.new(algorithm, SMALL_DATA).digest()).decode()
    assert decode(encode(SMALL, verified, trailers={name: value}), verified) == SMALL_DATA
    wrong = base64.b64encode(hashlib.new(algorithm, b"x").digest()).decode()
    with pytest.raises(errors.BadDigest):
        decode(encode(SMALL, verified, trailers={name: wrong}), verified)


def test_unknown_checksum_algorithms_are_refused_up_front() -> None:
    for name in ("x-amz-checksum-xxhash128", "x-amz-checksum-md4", "x-amz-meta-foo"):
        verified = synthetic(UNSIGNED_TRAILER, 0, (name,))
        with pytest.raises(errors.InvalidRequest, match="not supported"):
            decode([], verified)
    with pytest.raises(errors.InvalidRequest):
        ChecksumVerifier("x-amz-checksum-crc32", "AAAA")  # 3 bytes, a CRC32 is 4


def test_non_streaming_modes_are_refused() -> None:
    for mode in (PayloadMode.SIGNED, PayloadMode.UNSIGNED):
        with pytest.raises(errors.InvalidRequest):
            decode(b"0\r\n\r\n", synthetic(mode, 0))


def test_chunk_size_cap_is_enforced_before_reading_data() -> None:
    verified = synthetic(UNSIGNED_TRAILER, 10**12, ())
    consumed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal consumed
        yield b"ffffffff\r\n"
        while True:
            consumed += 1
            yield b"a" * 65536

    async def run() -> None:
        async for _ in decode_aws_chunked(endless(), verified, max_chunk_size=1024 * 1024):
            pass

    with pytest.raises(errors.InvalidRequest, match="exceeds"):
        asyncio.run(run())
    assert consumed == 0


@pytest.mark.parametrize("mode", [SIGNED, UNSIGNED_TRAILER])
def test_decoding_is_streaming_not_buffering(mode: PayloadMode) -> None:
    """An endless body: the first chunks come out after a bounded number of input pieces."""
    verified = synthetic(mode, 10**12, ())
    chunk = b"x" * 4096
    framed = encode([chunk] * 64, verified)
    framed = framed[: framed.rindex(b"0;" if mode is SIGNED else b"0\r\n")]  # drop the final chunk
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            for piece in slices(framed, 1000):
                pulled += 1
                yield piece

    async def first_bytes(n: int) -> int:
        got = 0
        stream = decode_aws_chunked(endless(), verified)
        async for piece in stream:
            got += len(piece)
            if got >= n:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return got

    assert asyncio.run(first_bytes(8192)) >= 8192
    assert pulled <= 12


def test_payload_hash_verifier() -> None:
    data = b"some body"
    verifier = PayloadHashVerifier(hashlib.sha256(data).hexdigest().upper())
    for piece in slices(data, 2):
        verifier.feed(piece)
    verifier.finish()
    assert verifier.length == len(data)
    verifier = PayloadHashVerifier(hashlib.sha256(data).hexdigest())
    verifier.feed(data + b"!")
    with pytest.raises(errors.XAmzContentSHA256Mismatch):
        verifier.finish()


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    mode=st.sampled_from([SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER]),
    edits=st.lists(
        st.tuples(
            st.integers(0, 10**6), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"])
        ),
        min_size=1,
        max_size=3,
    ),
    piece=st.integers(1, 64),
)
def test_mutated_streams_fail_cleanly(
    mode: PayloadMode, edits: list[tuple[int, int, str]], piece: int
) -> None:
    verified, body = small_stream(mode)
    data = bytearray(body)
    for position, value, action in edits:
        i = position % (len(data) + 1)
        if action == "insert":
            data[i:i] = bytes([value])
        elif i < len(data):
            if action == "set":
                data[i] = value
            else:
                del data[i]
    try:
        out = decode(slices(bytes(data), piece), verified)
    except errors.S3Error:
        return
    assert out == SMALL_DATA  # only harmless edits (e.g. a hex digit's case) may survive


@FUZZ
@given(garbage=st.binary(max_size=200), length=st.integers(0, 50))
def test_random_bytes_fail_cleanly(garbage: bytes, length: int) -> None:
    for mode in (SIGNED, UNSIGNED_TRAILER):
        with contextlib.suppress(errors.S3Error):
            decode(slices(garbage, 9), synthetic(mode, length, ()))
