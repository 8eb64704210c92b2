"""The checksums S3 names (``x-amz-checksum-<algorithm>``) and the object-level values built
from them: which algorithms this gateway can really compute, a multipart object's ETag and its
COMPOSITE checksum, and which verified checksum a whole object keeps.

An algorithm is offered only if it can be computed here (``supported_checksums``): one that
is missing is refused, never accepted unchecked. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from core.errors import InvalidRequest

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "CHECKSUM_FACTORIES",
    "Checksum",
    "composite_checksum",
    "multipart_etag",
    "new_checksum",
    "stored_checksum",
    "supported_checksums",
]


class Checksum(Protocol):
    def update(self, data: bytes | bytearray, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    """A CRC accumulated by ``fn(data, previous)``, rendered big-endian as S3 does."""

    def __init__(self, fn: Callable[[bytes | bytearray, int], int], width: int) -> None:
        self._fn = fn
        self._width = width
        self._value = 0

    def update(self, data: bytes | bytearray, /) -> None:
        self._value = self._fn(data, self._value) & ((1 << (8 * self._width)) - 1)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


def _hashlib_factory(name: str) -> Callable[[], Checksum]:
    return lambda: hashlib.new(name)


#: Algorithm (the part after "x-amz-checksum-") -> factory. Only what we can really compute.
CHECKSUM_FACTORIES: dict[str, Callable[[], Checksum]] = {
    "crc32": lambda: _Crc(zlib.crc32, 4),
    "sha1": _hashlib_factory("sha1"),
    "sha256": _hashlib_factory("sha256"),
    "sha512": _hashlib_factory("sha512"),
}
try:  # the AWS CRT (a pinned dependency; botocore uses it for the same algorithms)
    from awscrt import checksums as _crt  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - an install without it verifies the others only
    _crt = None
if _crt is not None:
    CHECKSUM_FACTORIES["crc32c"] = lambda: _Crc(_crt.crc32c, 4)
    if hasattr(_crt, "crc64nvme"):
        CHECKSUM_FACTORIES["crc64nvme"] = lambda: _Crc(_crt.crc64nvme, 8)


def supported_checksums() -> frozenset[str]:
    """The ``x-amz-checksum-*`` algorithms this gateway can verify in this environment."""
    return frozenset(CHECKSUM_FACTORIES)


def new_checksum(algorithm: str) -> Checksum:
    """A fresh checksum of ``algorithm`` (lower case); InvalidRequest if it is not offered."""
    factory = CHECKSUM_FACTORIES.get(algorithm)
    if factory is None:
        raise InvalidRequest(
            f"The checksum algorithm {algorithm!r} is not supported by this gateway; "
            f"use one of: {', '.join(sorted(CHECKSUM_FACTORIES))}."
        )
    return factory()


def multipart_etag(part_etags: Sequence[str]) -> str:
    """S3's ETag of a multipart object: MD5 of the parts' binary MD5s, then ``-<count>``."""
    digest = hashlib.md5()  # noqa: S324 - the S3 ETag, not security
    for etag in part_etags:
        digest.update(bytes.fromhex(etag))
    return f"{digest.hexdigest()}-{len(part_etags)}"


def composite_checksum(algorithm: str, part_values: Sequence[str]) -> str:
    """S3's COMPOSITE checksum: the algorithm over the parts' raw checksums, base64, ``-N``."""
    digest = new_checksum(algorithm)
    for value in part_values:
        digest.update(base64.b64decode(value))
    return f"{base64.b64encode(digest.digest()).decode()}-{len(part_values)}"


#: ``x-amz-checksum-*`` algorithms in the order one is chosen to be stored when a client sent
#: several (all of them were verified).
CHECKSUM_ALGORITHMS = ("crc64nvme", "crc32c", "crc32", "sha256", "sha1")


def stored_checksum(verified: Mapping[str, str]) -> tuple[str, str] | None:
    """(algorithm, base64 value) to store of the checksums a body was verified against."""
    for algorithm in CHECKSUM_ALGORITHMS:
        if algorithm in verified:
            return algorithm, verified[algorithm]
    for algorithm in sorted(verified):
        return algorithm, verified[algorithm]
    return None
