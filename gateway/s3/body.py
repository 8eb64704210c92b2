"""The request body as authenticated payload bytes.

Whatever the wire form (plain, signed SHA-256, aws-chunked with chunk signatures or with
trailing checksums) the handler sees one async iterator of payload bytes. Every integrity
promise the client made (x-amz-content-sha256, chunk signatures, x-amz-checksum-* as header or
trailer, Content-MD5) is checked as the bytes stream, and the last check raises *before* the
iterator ends: a consumer that reads to the end before committing never commits a body that
failed one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Mapping

from core.request_limits import BodyPace
from gateway.metrics import count_admission
from gateway.s3 import errors as s3e
from gateway.s3.chunked import ChecksumVerifier, PayloadHashVerifier, decode_aws_chunked
from gateway.s3.sigv4 import PayloadMode, VerifiedRequest

__all__ = [
    "CHECKSUM_HEADERS",
    "declared_length",
    "paced",
    "payload",
    "read_json",
    "read_small_body",
]

CHECKSUM_HEADERS = (
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
)


async def paced(raw: AsyncIterator[bytes], pace: BodyPace) -> AsyncIterator[bytes]:
    """The raw body, cut with ``RequestTimeout`` when the client sends it too slowly
    (slowloris; the rule is ``BodyPace``). Only the time spent waiting for the next chunk
    counts. The error reaches the client as S3's 400 ``RequestTimeout`` while it is still
    sending; the connection is then closed, freeing the request's slot."""
    waited, received = 0.0, 0
    while True:
        allowed = pace.wait_allowed(waited, received)
        if allowed <= 0:
            count_admission("too_slow")
            raise s3e.RequestTimeout()
        started = time.monotonic()
        try:
            chunk = await asyncio.wait_for(anext(raw), None if allowed == float("inf") else allowed)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            count_admission("too_slow")
            raise s3e.RequestTimeout() from exc
        waited += time.monotonic() - started
        received += len(chunk)
        yield chunk


def declared_length(verified: VerifiedRequest, headers: Mapping[str, str]) -> int:
    """The payload length the client declared; MissingContentLength if it declared none."""
    if verified.payload_mode in (
        PayloadMode.STREAMING_SIGNED,
        PayloadMode.STREAMING_SIGNED_TRAILER,
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
    ):
        assert verified.decoded_content_length is not None
        return verified.decoded_content_length
    raw = headers.get("content-length")
    if raw is None:
        raise s3e.MissingContentLength()
    if not (raw.strip().isascii() and raw.strip().isdigit()):
        raise s3e.InvalidArgument("Content-Length must be a non-negative integer")
    return int(raw)


async def payload(
    raw: AsyncIterator[bytes],
    verified: VerifiedRequest,
    headers: Mapping[str, str],
    *,
    checksums_out: dict[str, str] | None = None,
) -> AsyncIterator[bytes]:
    """The verified payload bytes. ``checksums_out`` receives every ``x-amz-checksum-*`` the
    client sent (header or trailer) once it verified: algorithm (``crc32``...) -> base64 value,
    to store with the object and return on ``x-amz-checksum-mode: ENABLED``."""
    if verified.payload_mode is PayloadMode.SIGNED:
        assert verified.payload_sha256 is not None
        signed: PayloadHashVerifier | None = PayloadHashVerifier(verified.payload_sha256)
        source = raw
    elif verified.payload_mode is PayloadMode.UNSIGNED:
        signed = None
        source = raw
    else:
        signed = None
        source = decode_aws_chunked(raw, verified, checksums_out=checksums_out)
    checks = [ChecksumVerifier(name, headers[name]) for name in CHECKSUM_HEADERS if name in headers]
    md5_expected: bytes | None = None
    if "content-md5" in headers:
        try:
            md5_expected = base64.b64decode(headers["content-md5"], validate=True)
        except (binascii.Error, ValueError):
            md5_expected = b""
        if len(md5_expected) != 16:
            raise s3e.InvalidDigest()
    md5 = hashlib.md5() if md5_expected is not None else None  # noqa: S324 - Content-MD5
    async for chunk in source:
        if signed is not None:
            signed.feed(chunk)
        for check in checks:
            check.feed(chunk)
        if md5 is not None:
            md5.update(chunk)
        yield chunk
    if signed is not None:
        signed.finish()
    for check in checks:
        check.finish()
        if checksums_out is not None:
            checksums_out[check.header_name.removeprefix("x-amz-checksum-")] = headers[
                check.header_name
            ].strip()
    if (
        md5 is not None
        and md5_expected is not None
        and not hmac.compare_digest(md5.digest(), md5_expected)
    ):
        raise s3e.BadDigest()


async def read_small_body(
    raw: AsyncIterator[bytes], verified: VerifiedRequest, headers: Mapping[str, str], limit: int
) -> bytes:
    """A whole, verified request document (XML configuration) of at most ``limit`` bytes."""
    out = bytearray()
    async for chunk in payload(raw, verified, headers):
        out += chunk
        if len(out) > limit:
            raise s3e.MalformedXML("The XML you provided was too large.")
    return bytes(out)


async def read_json(
    raw: AsyncIterator[bytes], verified: VerifiedRequest, headers: Mapping[str, str], limit: int
) -> object:
    """A verified JSON request document (the Bulletproof extensions speak JSON), parsed with
    ``core.json_limits`` (depth and number limits)."""
    from core.json_limits import InvalidJson, loads_document

    body = bytearray()
    async for chunk in payload(raw, verified, headers):
        body += chunk
        if len(body) > limit:
            raise s3e.InvalidRequest(f"request document larger than {limit} bytes")
    try:
        return loads_document(body)
    except InvalidJson as exc:
        raise s3e.InvalidRequest(str(exc)) from None
