"""Checking S3 request bodies: the signed SHA-256 of a plain body, and aws-chunked bodies.

An aws-chunked body (``Content-Encoding: aws-chunked``) is a sequence of chunks::

    <hex size>[;chunk-signature=<64 hex>]\\r\\n<size bytes>\\r\\n      (repeated)
    0[;chunk-signature=<64 hex>]\\r\\n                               (the final, empty chunk)
    <name>:<value>\\r\\n ... [x-amz-trailer-signature:<64 hex>\\r\\n]  (trailer modes only)
    \\r\\n

In the signed modes each chunk signature chains from the previous one, starting at the seed
signature of the request, so chunks can be neither altered, dropped nor reordered; the trailer
signature chains from the final chunk's. Trailing ``x-amz-checksum-*`` values are checked
against the decoded bytes.

Invariants: memory stays bounded by one chunk (at most ``max_chunk_size``) plus one input piece;
every malformation becomes an ``S3Error`` (IncompleteBody when the body ends early, InvalidRequest
for bad framing, SignatureDoesNotMatch, BadDigest), never another exception. Decoded bytes are
yielded as soon as they are authenticated, but the *object* is only good once the iterator
finishes without raising: a trailer checksum or the total length is known only at the end, so the
caller must not commit anything before that.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import AsyncIterator

from core import errors as domain
from core.checksums import Checksum, new_checksum, supported_checksums
from gateway.s3.errors import (
    BadDigest,
    IncompleteBody,
    InvalidRequest,
    MissingContentLength,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)
from gateway.s3.sigv4 import EMPTY_SHA256, PayloadMode, VerifiedRequest

__all__ = [
    "MAX_CHUNK_LINE",
    "MAX_TRAILER_BYTES",
    "ChecksumVerifier",
    "PayloadHashVerifier",
    "chunk_signature",
    "decode_aws_chunked",
    "trailer_signature",
]

MAX_CHUNK_LINE = 4 * 1024  # bytes of a chunk-size line, CRLF excluded
MAX_TRAILER_BYTES = 16 * 1024  # the whole trailer section, CRLFs included

_SIGNED_MODES = (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)
_TRAILER_MODES = (PayloadMode.STREAMING_SIGNED_TRAILER, PayloadMode.STREAMING_UNSIGNED_TRAILER)
_SIG_PREFIX = b"chunk-signature="
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_LOWER_HEX = frozenset(b"0123456789abcdef")
_TRAILER_SIGNATURE = "x-amz-trailer-signature"
_CHECKSUM_PREFIX = "x-amz-checksum-"


# --------------------------------------------------------------------------- checksums


def _new_checksum(header_name: str) -> Checksum:
    """The checksum an ``x-amz-checksum-*`` header or trailer names (``core.checksums``)."""
    algorithm = header_name.removeprefix(_CHECKSUM_PREFIX)
    try:
        if not header_name.startswith(_CHECKSUM_PREFIX):
            raise domain.InvalidRequest(f"{header_name!r} is not a checksum")
        return new_checksum(algorithm)
    except domain.InvalidRequest as exc:
        raise InvalidRequest(
            f"The checksum algorithm of {header_name!r} is not supported by this gateway; "
            f"use one of: {', '.join(sorted(supported_checksums()))}."
        ) from exc


def _expected_digest(header_name: str, value: str, size: int) -> bytes:
    """Decode a base64 checksum value, refusing anything that is not exactly ``size`` bytes."""
    try:
        raw = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != size:
        raise InvalidRequest(f"Value for {header_name} is invalid.")
    return raw


def _check_digest(header_name: str, actual: bytes, expected: bytes) -> None:
    if not hmac.compare_digest(actual, expected):
        raise BadDigest(f"The {header_name} you specified did not match the calculated checksum.")


class ChecksumVerifier:
    """Checks one ``x-amz-checksum-<algorithm>`` value (base64) against streamed bytes.

    The decoder uses the same checks for trailers; handlers can use this class for the same
    checksums sent as ordinary headers (botocore does so over plain http).
    """

    def __init__(self, header_name: str, expected_b64: str) -> None:
        self.header_name = header_name
        self._checksum = _new_checksum(header_name)
        self._expected = _expected_digest(header_name, expected_b64, len(self._checksum.digest()))

    def feed(self, data: bytes) -> None:
        self._checksum.update(data)

    def finish(self) -> None:
        """Raise BadDigest unless the bytes fed so far have the expected checksum."""
        _check_digest(self.header_name, self._checksum.digest(), self._expected)


class PayloadHashVerifier:
    """For PayloadMode.SIGNED: ``feed`` the body while streaming, then ``finish``.

    ``finish`` raises XAmzContentSHA256Mismatch if the SHA-256 differs from the signed
    ``x-amz-content-sha256``; nothing fed may be committed before it returns.
    """

    def __init__(self, expected_sha256_hex: str) -> None:
        self._expected = expected_sha256_hex.lower()
        self._hash = hashlib.sha256()
        self.length = 0

    def feed(self, data: bytes) -> None:
        self._hash.update(data)
        self.length += len(data)

    def finish(self) -> None:
        if not hmac.compare_digest(self._hash.hexdigest(), self._expected):
            raise XAmzContentSHA256Mismatch()


# --------------------------------------------------------------------------- signatures


def chunk_signature(
    signing_key: bytes, amz_date: str, scope: str, previous: str, data: bytes
) -> str:
    """The signature of one chunk: ``AWS4-HMAC-SHA256-PAYLOAD`` chained from ``previous``."""
    string_to_sign = "\n".join(
        (
            "AWS4-HMAC-SHA256-PAYLOAD",
            amz_date,
            scope,
            previous,
            EMPTY_SHA256,
            hashlib.sha256(data).hexdigest(),
        )
    )
    return hmac.new(signing_key, string_to_sign.encode("ascii"), hashlib.sha256).hexdigest()


def trailer_signature(
    signing_key: bytes, amz_date: str, scope: str, previous: str, trailers: list[tuple[str, str]]
) -> str:
    """The trailer signature: ``AWS4-HMAC-SHA256-TRAILER`` over sorted ``name:value\\n`` lines."""
    canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers))
    string_to_sign = "\n".join(
        (
            "AWS4-HMAC-SHA256-TRAILER",
            amz_date,
            scope,
            previous,
            hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        )
    )
    return hmac.new(signing_key, string_to_sign.encode("ascii"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- framing


class _Reader:
    """Pulls pieces of the body on demand and hands out lines and exact byte counts."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._it = aiter(body)
        self._buf = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        try:
            piece = await self._it.__anext__()
        except StopAsyncIteration:
            self._eof = True
            return False
        self._buf += piece
        return True

    async def read_line(self, limit: int, what: str) -> bytes:
        """One CRLF-terminated line of at most ``limit`` bytes, without its CRLF."""
        searched = 0
        while True:
            lf = self._buf.find(b"\n", searched)
            if lf >= 0:
                if lf == 0 or self._buf[lf - 1] != 0x0D:
                    raise InvalidRequest(
                        f"Malformed aws-chunked body: {what} does not end with CRLF."
                    )
                line = bytes(self._buf[: lf - 1])
                del self._buf[: lf + 1]
                if len(line) > limit:
                    raise InvalidRequest(
                        f"Malformed aws-chunked body: {what} is longer than {limit} bytes."
                    )
                if b"\r" in line:
                    raise InvalidRequest(f"Malformed aws-chunked body: stray CR in {what}.")
                return line
            if len(self._buf) > limit + 1:  # room for the line and its CR
                raise InvalidRequest(
                    f"Malformed aws-chunked body: {what} is longer than {limit} bytes."
                )
            searched = len(self._buf)
            if not await self._fill():
                raise IncompleteBody(f"The body ended inside {what}.")

    async def read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not await self._fill():
                raise IncompleteBody("The body ended inside a chunk.")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def read_some(self, n: int) -> bytes:
        """Between 1 and ``n`` bytes, as soon as any are available."""
        while not self._buf:
            if not await self._fill():
                raise IncompleteBody("The body ended inside a chunk.")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def expect_crlf(self, what: str) -> None:
        if await self.read_exact(2) != b"\r\n":
            raise InvalidRequest(f"Malformed aws-chunked body: missing CRLF after {what}.")

    async def expect_eof(self) -> None:
        while True:
            if self._buf:
                raise InvalidRequest("Malformed aws-chunked body: data after the final chunk.")
            if not await self._fill():
                return


def _parse_chunk_line(line: bytes, *, signed: bool) -> tuple[int, str | None]:
    size_hex, sep, extension = line.partition(b";")
    if not size_hex or len(size_hex) > 16 or not _HEX_DIGITS.issuperset(size_hex):
        raise InvalidRequest("Malformed aws-chunked body: the chunk size is not a hex number.")
    size = int(size_hex, 16)
    if not signed:
        if sep:
            raise InvalidRequest(
                "Malformed aws-chunked body: chunk extensions are not allowed here."
            )
        return size, None
    signature = extension[len(_SIG_PREFIX) :]
    if (
        not sep
        or not extension.startswith(_SIG_PREFIX)
        or len(signature) != 64
        or not _LOWER_HEX.issuperset(signature)
    ):
        raise InvalidRequest(
            "Malformed aws-chunked body: every chunk needs ';chunk-signature=<64 hex>'."
        )
    return size, signature.decode("ascii")


async def _read_trailers(
    reader: _Reader, *, signed: bool
) -> tuple[list[tuple[str, str]], str | None]:
    """The trailer lines up to the empty line: (name, value) pairs and the trailer signature."""
    entries: list[tuple[str, str]] = []
    signature: str | None = None
    budget = MAX_TRAILER_BYTES
    while True:
        if budget < 2:
            raise InvalidRequest(f"The trailer section is longer than {MAX_TRAILER_BYTES} bytes.")
        line = await reader.read_line(budget - 2, "the trailer section")
        budget -= len(line) + 2
        if not line:
            return entries, signature
        raw_name, sep, raw_value = line.partition(b":")
        try:
            name = raw_name.decode("ascii").strip().lower()
            value = raw_value.decode("ascii").strip(" \t")
        except UnicodeDecodeError:
            raise InvalidRequest("Malformed trailer: not ASCII.") from None
        if not sep or not name:
            raise InvalidRequest("Malformed trailer: expected 'name:value'.")
        if signature is not None:
            raise InvalidRequest("Malformed trailer: x-amz-trailer-signature must come last.")
        if name == _TRAILER_SIGNATURE:
            if not signed:
                raise InvalidRequest(
                    "x-amz-trailer-signature is not allowed in an unsigned-payload body."
                )
            signature = value
        elif any(name == seen for seen, _ in entries):
            raise InvalidRequest(f"The trailer {name} appears more than once.")
        else:
            entries.append((name, value))


async def decode_aws_chunked(
    body: AsyncIterator[bytes],
    verified: VerifiedRequest,
    *,
    max_chunk_size: int = 16 * 1024 * 1024,
    checksums_out: dict[str, str] | None = None,
) -> AsyncIterator[bytes]:
    """Yield the decoded payload bytes of an aws-chunked body.

    Signed modes: every chunk signature is verified, chained from ``verified.signature``, before
    its data is yielded; the trailer signature (``-TRAILER`` mode) chains from the final chunk's.
    Trailer modes: every name declared in ``x-amz-trailer`` must arrive and no other, and each
    ``x-amz-checksum-*`` value is compared with the decoded bytes (BadDigest on mismatch; an
    algorithm this gateway cannot compute is refused with InvalidRequest before any byte is read).
    The total decoded length must equal ``verified.decoded_content_length`` (IncompleteBody).
    ``checksums_out`` receives each verified trailer checksum (algorithm -> base64 value).
    """
    mode = verified.payload_mode
    if mode not in (*_SIGNED_MODES, PayloadMode.STREAMING_UNSIGNED_TRAILER):
        raise InvalidRequest("The request does not declare an aws-chunked (STREAMING-*) payload.")
    expected_length = verified.decoded_content_length
    if expected_length is None:
        raise MissingContentLength(
            "Streaming uploads must send the x-amz-decoded-content-length header."
        )
    signed = mode in _SIGNED_MODES
    declared = verified.trailer_names if mode in _TRAILER_MODES else ()
    checksums = {name: _new_checksum(name) for name in declared}
    scope = verified.scope

    reader = _Reader(body)
    previous = verified.signature
    total = 0
    while True:
        size, signature = _parse_chunk_line(
            await reader.read_line(MAX_CHUNK_LINE, "a chunk-size line"), signed=signed
        )
        if size > max_chunk_size:
            raise InvalidRequest(
                f"An aws-chunked chunk of {size} bytes exceeds the limit of {max_chunk_size}."
            )
        if total + size > expected_length:
            raise IncompleteBody(
                f"The body holds more than the {expected_length} bytes declared in "
                "x-amz-decoded-content-length."
            )
        if signed:
            data = await reader.read_exact(size) if size else b""
            expected = chunk_signature(
                verified.signing_key, verified.amz_date, scope, previous, data
            )
            if not hmac.compare_digest(expected, signature or ""):
                raise SignatureDoesNotMatch("A chunk signature does not match.")
            previous = expected
            if size == 0:
                break
            await reader.expect_crlf("chunk data")
            for checksum in checksums.values():
                checksum.update(data)
            total += size
            yield data
            continue
        if size == 0:
            break
        remaining = size
        while remaining:
            piece = await reader.read_some(min(remaining, 1024 * 1024))
            remaining -= len(piece)
            for checksum in checksums.values():
                checksum.update(piece)
            yield piece
        await reader.expect_crlf("chunk data")
        total += size

    if total != expected_length:
        raise IncompleteBody(
            f"Received {total} bytes, but x-amz-decoded-content-length declared {expected_length}."
        )
    if mode in _TRAILER_MODES:
        entries, trailer_sig = await _read_trailers(reader, signed=signed)
        if signed:
            expected = trailer_signature(
                verified.signing_key, verified.amz_date, scope, previous, entries
            )
            if trailer_sig is None or not hmac.compare_digest(expected, trailer_sig):
                raise SignatureDoesNotMatch("The trailer signature is missing or does not match.")
        received = {name for name, _ in entries}
        if received != set(declared):
            raise InvalidRequest(
                "The trailers sent ("
                + ", ".join(sorted(received))
                + ") differ from those declared "
                "in x-amz-trailer (" + ", ".join(declared) + ")."
            )
        for name, value in entries:
            actual = checksums[name].digest()
            _check_digest(name, actual, _expected_digest(name, value, len(actual)))
            if checksums_out is not None and name.startswith(_CHECKSUM_PREFIX):
                checksums_out[name[len(_CHECKSUM_PREFIX) :]] = value.strip()
    else:
        await reader.expect_crlf("the final chunk")
    await reader.expect_eof()
