"""An import's source bucket reached with boto3: the one seam between a source and our errors.

Every call to the source goes through ``_translate``: connection failures and timeouts become
``SourceUnreachable``, refused credentials or permissions ``SourceAccessDenied``, a missing
bucket ``SourceBucketMissing``, anything else the source answers ``SourceError`` with its
code. Messages name the endpoint, the bucket and the provider's error code; never a
credential, never a provider's free-text message (it may echo request details). No botocore
exception escapes, and none is chained (a traceback in a log or the Ray dashboard then shows
only ours).

Listing is ``list_objects_v2`` page by page (``pages``), from the start or after a key
(``StartAfter``), so a lister that restarts continues where its last stored page ended; keys
arrive decoded (botocore asks for ``EncodingType=url`` and decodes), in UTF-8 binary order.

It lives in ``actors/`` because both sides of an import use it: the gateway's "test connection"
(``probe`` and the first page, ``gateway/imports/``) and the job's lister and transfers
(``jobs/``), which may not import each other.

Reading an object for the transfer (``open_object``, ``read``) asks for the ETag the listing
saw (``If-Match``): an object replaced or deleted since is ``SourceObjectChanged``, never a
silent copy of other bytes. ``first_part_size`` learns a multipart object's part size (a
``HEAD`` of part 1) for the multipart ETag rule. Bodies are read in bounded chunks.

It reads; it never writes or deletes at the source.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import urllib3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from core.credential_seal import open_sealed
from core.import_source import (
    SourceAccessDenied,
    SourceBucketMissing,
    SourceCredentials,
    SourceError,
    SourceLocation,
    SourceObjectChanged,
    SourceUnreachable,
)
from schema.import_records import ImportSource, ManifestEntry

__all__ = ["SourceBucket", "SourceObject", "entry_of", "open_source"]

#: Provider error codes that mean "these credentials may not do this".
_DENIED = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "403",
        "Forbidden",
    }
)
_MISSING = frozenset({"NoSuchBucket"})
#: Codes of a conditional read whose object is no longer the one listed.
_CHANGED = frozenset({"PreconditionFailed", "412", "NoSuchKey", "404"})
_UNREACHABLE = (
    BotoConnectionError,
    ReadTimeoutError,
    ConnectionClosedError,
    OSError,
    urllib3.exceptions.HTTPError,
)
#: The checksum response fields of a GetObject, by the algorithm's manifest name.
_CHECKSUM_FIELDS = {
    "CRC32": "ChecksumCRC32",
    "CRC32C": "ChecksumCRC32C",
    "CRC64NVME": "ChecksumCRC64NVME",
    "SHA1": "ChecksumSHA1",
    "SHA256": "ChecksumSHA256",
}


@dataclass
class SourceObject:
    """An open source object: its body (read with ``SourceBucket.read``), its length and, when
    the source has one, its full-object checksum (``ALG``, base64 value)."""

    key: str
    body: Any = field(repr=False)
    length: int
    checksum: tuple[str, str] | None = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.body.close()


def entry_of(item: dict[str, Any]) -> ManifestEntry:
    """A ``list_objects_v2`` ``Contents`` item as a manifest entry: ETag without quotes, the
    checksum algorithm (``ALG:``; listings carry no checksum value) when the source has one."""
    algorithms = item.get("ChecksumAlgorithm") or []
    return ManifestEntry(
        key=item["Key"],
        size=int(item["Size"]),
        etag=str(item.get("ETag", "")).strip('"'),
        last_modified=item.get("LastModified"),
        checksum=f"{str(algorithms[0]).upper()}:" if algorithms else None,
    )


class SourceBucket:
    """Read access to one source bucket and prefix with one set of credentials."""

    def __init__(
        self,
        location: SourceLocation,
        credentials: SourceCredentials,
        *,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
        addressing_style: str = "path",
        max_connections: int = 10,
    ) -> None:
        self.location = location
        self._s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint,
            region_name=location.region,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.session_token,
            config=Config(
                connect_timeout=min(10.0, timeout_s),
                read_timeout=timeout_s,
                retries={"max_attempts": max_attempts, "mode": "standard"},
                s3={"addressing_style": addressing_style},
                max_pool_connections=max_connections,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def __repr__(self) -> str:
        return f"SourceBucket({self._where})"

    @property
    def _where(self) -> str:
        return f"{self.location.endpoint} bucket {self.location.bucket!r}"

    @contextlib.contextmanager
    def _translate(self, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "")) or "unknown"
            if key is not None and code in _CHANGED:
                raise SourceObjectChanged(
                    f"source object changed or deleted since it was listed ({code})"
                ) from None
            if code in _DENIED:
                raise SourceAccessDenied(f"source {self._where} refused access: {code}") from None
            if code in _MISSING:
                raise SourceBucketMissing(f"source {self._where} does not exist: {code}") from None
            raise SourceError(f"source {self._where} answered {code}") from None
        except _UNREACHABLE as exc:
            raise SourceUnreachable(
                f"source {self._where} unreachable: {type(exc).__name__}"
            ) from None
        except BotoCoreError as exc:
            raise SourceError(f"source {self._where} failed: {type(exc).__name__}") from None

    def probe(self) -> None:
        """One cheap listing call: the source answers and these credentials may list it."""
        with self._translate():
            self._s3.list_objects_v2(
                Bucket=self.location.bucket, Prefix=self.location.prefix, MaxKeys=1
            )

    def pages(
        self, *, start_after: str | None = None, page_size: int = 1000
    ) -> Iterator[list[ManifestEntry]]:
        """The objects under the prefix after ``start_after``, one list per non-empty page, in
        key order. Each page is fetched when the previous one has been consumed."""
        kwargs: dict[str, Any] = {
            "Bucket": self.location.bucket,
            "Prefix": self.location.prefix,
            "PaginationConfig": {"PageSize": page_size},
        }
        if start_after:
            kwargs["StartAfter"] = start_after
        with self._translate():
            pages = iter(self._s3.get_paginator("list_objects_v2").paginate(**kwargs))
        while True:
            with self._translate():
                page = next(pages, None)
            if page is None:
                return
            contents = page.get("Contents") or []
            if contents:
                yield [entry_of(item) for item in contents]

    def open_object(self, key: str, etag: str, *, checksum: str | None = None) -> SourceObject:
        """GET the object as listed (``If-Match`` its ETag). ``checksum``: the manifest's
        ``ALG:`` when the source has one; its full-object value is then asked for too (a
        composite value of a multipart object, ``...-N``, is not returned as one)."""
        kwargs: dict[str, Any] = {"Bucket": self.location.bucket, "Key": key}
        if etag:
            kwargs["IfMatch"] = f'"{etag}"'
        algorithm = (checksum or "").split(":", 1)[0].upper()
        if algorithm in _CHECKSUM_FIELDS:
            kwargs["ChecksumMode"] = "ENABLED"
        with self._translate(key):
            response = self._s3.get_object(**kwargs)
        value = response.get(_CHECKSUM_FIELDS.get(algorithm, ""), None)
        full = None
        whole = response.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
        if isinstance(value, str) and "-" not in value and whole:
            full = (algorithm, value)
        return SourceObject(key, response["Body"], int(response["ContentLength"]), full)

    def read(self, source: SourceObject, size: int) -> bytes:
        """Exactly ``size`` bytes of the body, or fewer only where it ends."""
        chunks: list[bytes] = []
        got = 0
        with self._translate(source.key):
            while got < size:
                chunk = source.body.read(size - got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def first_part_size(self, key: str, etag: str) -> int:
        """The size of part 1 of a multipart object (as uploaded): what the multipart ETag
        rule cuts the object by. (Not ``If-Match``: some servers compare it with the part's
        own ETag; the whole object's ETag in the answer is compared instead.)"""
        with self._translate(key):
            response = self._s3.head_object(Bucket=self.location.bucket, Key=key, PartNumber=1)
        answered = str(response.get("ETag", "")).strip('"')
        if etag and "-" in answered and answered != etag:
            raise SourceObjectChanged("source object changed since it was listed (ETag)")
        return int(response["ContentLength"])


def open_source(source: ImportSource, passphrase: str, **options: Any) -> SourceBucket:
    """The source of an import, its sealed credentials opened with ``passphrase`` in this
    process's memory only (``SealOpenFailed`` if they do not open)."""
    credentials = SourceCredentials.from_opened(open_sealed(source.sealed, passphrase))
    location = SourceLocation(source.endpoint, source.bucket, source.prefix, source.region)
    return SourceBucket(location, credentials, **options)
