"""The gateway as seen by ``bp``: a boto3 S3 client and the one seam for its errors.

Only this module imports boto3/botocore (lazily, so ``bp key list`` stays fast). It checks
nothing cryptographic: callers in :mod:`client.transfer` decide what to trust, and every byte
read here is authenticated there before it is used.

botocore exceptions are translated into the :class:`TransferError` tree in :func:`_translate`
and nowhere else, so the CLI maps a closed set of types to exit codes::

    ClientError (client.errors)
    └── TransferError                the gateway refused or could not serve a request
        ├── ObjectNotFound           NoSuchKey, NoSuchBucket, 404
        ├── AccessDenied             403: unknown key id, bad signature, clock skew, denied
        ├── GatewayUnavailable       503/5xx, connection refused, timeouts, a dropped stream
        ├── ObjectChanged            the object was replaced between the two GETs of a range
        └── RequestRefused           any other 4xx (bad request, bucket exists, too large)

Request shaping, and why: path-style SigV4 (the gateway's S3 API); boto3's credential chain
(``~/.aws``, instance metadata) is never consulted, so ``bp`` cannot silently act as someone
else; over ``https://`` botocore streams a PUT body once with a CRC32 trailer, over plain
``http://`` it signs the payload's SHA-256 (which costs one extra read of the body, see
:mod:`client.transfer`) and a CRC32 header on top would be a third read for no added
integrity, so it is only requested on TLS. Multipart parts are shaped the same way (each
part body is read twice over ``http://``, once over ``https://``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from client.errors import ClientError
from client.s3url import S3Url

__all__ = [
    "CONTENT_TYPE",
    "AccessDenied",
    "GatewayUnavailable",
    "ObjectChanged",
    "ObjectInfo",
    "ObjectNotFound",
    "RemoteStore",
    "RequestRefused",
    "TransferError",
    "VersionInfo",
]

#: What ``bp`` stores: BP1 ciphertext, whatever the plaintext was.
CONTENT_TYPE = "application/octet-stream"


# -- errors -------------------------------------------------------------------------------


class TransferError(ClientError):
    """The gateway refused a request or could not be reached."""

    def __init__(self, message: str, *, code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ObjectNotFound(TransferError):
    """No such bucket or key (or, by S3 convention, one this tenant may not see)."""


class AccessDenied(TransferError):
    """The gateway did not accept the credentials or denied the operation."""


class GatewayUnavailable(TransferError):
    """The gateway is unreachable, overloaded, or lost the connection mid-transfer; retry."""


class ObjectChanged(TransferError):
    """The object was overwritten between the requests of one ranged read; retry."""


class RequestRefused(TransferError):
    """Any other refusal (4xx): the message is the gateway's own."""


_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidToken",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})


def _translate(exc: Exception, what: str) -> TransferError:
    """The single seam from botocore's exceptions to :class:`TransferError`."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = str(error.get("Message") or "") or code or f"HTTP {status}"
        text = f"{what}: {message}" + (f" ({code})" if code and code not in message else "")
        if code in _NOT_FOUND_CODES or status == 404:
            return ObjectNotFound(text, code=code, status=status)
        if code in _DENIED_CODES or status in (401, 403):
            return AccessDenied(text, code=code, status=status)
        if status >= 500 or code in ("ServiceUnavailable", "SlowDown", "InternalError"):
            return GatewayUnavailable(text, code=code, status=status)
        return RequestRefused(text, code=code, status=status)
    if isinstance(exc, bx.IncompleteReadError | bx.ResponseStreamingError):
        return GatewayUnavailable(f"{what}: the connection dropped before the object ended")
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionClosedError):
        return GatewayUnavailable(f"{what}: cannot reach the gateway ({exc})")
    if isinstance(exc, bx.ReadTimeoutError | bx.ConnectTimeoutError):
        return GatewayUnavailable(f"{what}: the gateway timed out")
    if isinstance(exc, bx.HTTPClientError):
        return GatewayUnavailable(f"{what}: {exc}")
    if isinstance(exc, bx.BotoCoreError):
        return TransferError(f"{what}: {exc}")
    raise exc


@contextlib.contextmanager
def _remote(what: str) -> Iterator[None]:
    from botocore import exceptions as bx

    try:
        yield
    except (bx.ClientError, bx.BotoCoreError) as exc:
        raise _translate(exc, what) from None


# -- the gateway --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One listed object: its key, stored (ciphertext) size and modification time."""

    key: str
    size: int
    modified: str


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One listed object version (delete markers are not listed): its key, version id
    (``null`` for the null version, which is all an unversioned bucket has), whether it is
    the key's current version, stored size and modification time."""

    key: str
    version_id: str
    is_latest: bool
    size: int
    modified: str


class RemoteStore:
    """A boto3 S3 client for one gateway, configured for path-style SigV4 and streaming bodies.

    Only this class touches boto3. It checks nothing cryptographic: callers decide what to
    trust. Credentials must be given explicitly; boto3's own credential chain (``~/.aws``,
    instance metadata) is never consulted, so ``bp`` cannot silently act as someone else.
    """

    def __init__(
        self,
        endpoint: str,
        access_key_id: str,
        secret_access_key: str,
        *,
        region: str,
        connections: int = 10,
    ) -> None:
        import boto3
        from botocore.config import Config

        tls = endpoint.lower().startswith("https://")
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
            # One connection per part upload in flight (botocore's default pool holds 10).
            max_pool_connections=max(10, connections),
            # See the module docstring: a CRC32 trailer on TLS, the signed SHA-256 otherwise.
            request_checksum_calculation="when_supported" if tls else "when_required",
            response_checksum_validation="when_required",
        )
        with _remote("connecting"):
            session = boto3.session.Session(
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                region_name=region,
            )
            self.s3: Any = session.client("s3", endpoint_url=endpoint, config=config)

    # -- objects ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _redundancy_class(self, operation: str, redundancy_class: str | None) -> Iterator[None]:
        """Send ``X-Redundancy-Class`` on ``operation`` (a botocore operation name) while the
        block runs: the gateway's extension header, which boto3 has no parameter for."""
        if not redundancy_class:
            yield
            return

        def add_class(request: Any, **_: Any) -> None:
            request.headers["X-Redundancy-Class"] = redundancy_class

        events = self.s3.meta.events
        event = f"before-sign.s3.{operation}"
        events.register(event, add_class, unique_id="bp-class")
        try:
            yield
        finally:
            events.unregister(event, unique_id="bp-class")

    def put(
        self,
        url: S3Url,
        body: io.RawIOBase,
        length: int,
        metadata: Mapping[str, str],
        *,
        redundancy_class: str | None = None,
    ) -> dict[str, Any]:
        with self._redundancy_class("PutObject", redundancy_class), _remote(str(url)):
            response: dict[str, Any] = self.s3.put_object(
                Bucket=url.bucket,
                Key=url.key,
                Body=body,
                ContentLength=length,
                ContentType=CONTENT_TYPE,
                Metadata=dict(metadata),
            )
            return response

    # -- multipart uploads --------------------------------------------------------------
    #
    # The envelope, content type and redundancy class go on CreateMultipartUpload exactly as
    # on a single PutObject; parts and completion carry none of them. Thread-safe: the parts
    # of one upload are sent from several threads through this one client.

    def create_multipart_upload(
        self, url: S3Url, metadata: Mapping[str, str], *, redundancy_class: str | None = None
    ) -> str:
        """Start a multipart upload; returns its upload id."""
        with (
            self._redundancy_class("CreateMultipartUpload", redundancy_class),
            _remote(str(url)),
        ):
            response = self.s3.create_multipart_upload(
                Bucket=url.bucket,
                Key=url.key,
                ContentType=CONTENT_TYPE,
                Metadata=dict(metadata),
            )
        upload_id = response.get("UploadId")
        if not upload_id:
            raise RequestRefused(f"{url}: the gateway started an upload without an upload id")
        return str(upload_id)

    def upload_part(
        self, url: S3Url, upload_id: str, number: int, body: io.RawIOBase, length: int
    ) -> str:
        """Send one part; returns its ETag (as the gateway quoted it)."""
        with _remote(f"{url} part {number}"):
            response = self.s3.upload_part(
                Bucket=url.bucket,
                Key=url.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentLength=length,
            )
        etag = response.get("ETag")
        if not etag:
            raise RequestRefused(f"{url} part {number}: the gateway answered without an ETag")
        return str(etag)

    def complete_multipart_upload(
        self, url: S3Url, upload_id: str, etags: Sequence[tuple[int, str]]
    ) -> dict[str, Any]:
        """Assemble the parts ``(number, ETag)``, in part-number order, into the object."""
        parts = [{"PartNumber": number, "ETag": etag} for number, etag in etags]
        with _remote(str(url)):
            response: dict[str, Any] = self.s3.complete_multipart_upload(
                Bucket=url.bucket,
                Key=url.key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return response

    def abort_multipart_upload(self, url: S3Url, upload_id: str) -> None:
        """Discard an upload and every part sent to it."""
        with _remote(f"abort {url} upload {upload_id}"):
            self.s3.abort_multipart_upload(Bucket=url.bucket, Key=url.key, UploadId=upload_id)

    # -- reads --------------------------------------------------------------------------

    def get(
        self,
        url: S3Url,
        byte_range: str | None = None,
        if_match: str | None = None,
        *,
        version_id: str | None = None,
    ) -> Any:
        """GetObject of the current version, or of ``version_id`` (``null``: the null one)."""
        kwargs: dict[str, str] = {"Bucket": url.bucket, "Key": url.key}
        if byte_range:
            kwargs["Range"] = byte_range
        if if_match:
            kwargs["IfMatch"] = if_match
        what = str(url)
        if version_id is not None:
            kwargs["VersionId"] = version_id
            what += f" version {version_id}"
        with _remote(what):
            return self.s3.get_object(**kwargs)

    def head(self, url: S3Url) -> dict[str, Any]:
        with _remote(str(url)):
            response: dict[str, Any] = self.s3.head_object(Bucket=url.bucket, Key=url.key)
            return response

    def delete(self, url: S3Url) -> None:
        with _remote(str(url)):
            self.s3.delete_object(Bucket=url.bucket, Key=url.key)

    def list_objects(self, url: S3Url) -> Iterator[ObjectInfo]:
        """Every object under the URL's key prefix, following continuation tokens."""
        with _remote(str(url)):
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=url.bucket, Prefix=url.key
            )
            for page in pages:
                for item in page.get("Contents", []):
                    modified = item["LastModified"]
                    yield ObjectInfo(
                        key=item["Key"],
                        size=int(item["Size"]),
                        modified=modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    )

    def list_versions(self, url: S3Url) -> Iterator[VersionInfo]:
        """Every object version under the URL's key prefix (ListObjectVersions, following
        its key and version-id markers), keys in order and newest first within a key; delete
        markers are left out (they hold no data)."""
        with _remote(str(url)):
            pages = self.s3.get_paginator("list_object_versions").paginate(
                Bucket=url.bucket, Prefix=url.key
            )
            for page in pages:
                for item in page.get("Versions", []):
                    modified = item["LastModified"]
                    yield VersionInfo(
                        key=item["Key"],
                        version_id=str(item.get("VersionId") or "null"),
                        is_latest=bool(item.get("IsLatest")),
                        size=int(item["Size"]),
                        modified=modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    )

    # -- buckets ------------------------------------------------------------------------

    def buckets(self) -> list[str]:
        with _remote("list buckets"):
            return [b["Name"] for b in self.s3.list_buckets().get("Buckets", [])]

    def make_bucket(self, bucket: str) -> None:
        with _remote(f"s3://{bucket}"):
            self.s3.create_bucket(Bucket=bucket)

    def read_stream(self, response: Any, what: str) -> io.RawIOBase:
        """The response body as a file object whose errors are :class:`TransferError`."""
        return _TranslatedBody(response["Body"], what)


class _TranslatedBody(io.RawIOBase):
    """A botocore StreamingBody whose read errors come out as :class:`TransferError`."""

    def __init__(self, body: Any, what: str) -> None:
        self._body = body
        self._what = what

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        with _remote(self._what):
            data: bytes = self._body.read(None if size is None or size < 0 else size)
            return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()
