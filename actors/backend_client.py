"""Clients for one storage backend: the ``BackendClient`` protocol and its two implementations.

A client stores opaque byte blobs under opaque locators and knows nothing of tenants, buckets,
keys or encryption (invariant 2). Vendor errors are translated here, at the one seam, into
``BackendUnavailable`` / ``BackendNotFound`` so only our exceptions cross Ray.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import secrets
import ssl
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import boto3
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import get_cert_path

from core.errors import BackendNotFound, BackendUnavailable

__all__ = [
    "BackendClient",
    "LocalDirectoryClient",
    "ObjectReader",
    "S3BackendClient",
    "SeekableBody",
    "SignedGet",
    "ViewBody",
    "new_locator",
    "proxied",
]

_LOCATOR = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}$")
Blob = bytes | bytearray | memoryview


def new_locator() -> str:
    """A random backend object name: 128 bits, two-level fan-out, nothing derived from names."""
    token = secrets.token_hex(16)
    return f"{token[:2]}/{token}"


def _check(locator: str) -> str:
    if not _LOCATOR.match(locator):
        raise ValueError(f"not a Bulletproof locator: {locator!r}")
    return locator


class ObjectReader(Protocol):
    """What a read lane needs of a backend (``actors/read_lanes.py``): its objects' bytes."""

    def get(self, locator: str) -> bytes: ...


class BackendClient(Protocol):
    def ensure_ready(self) -> None: ...

    def put(self, locator: str, data: Blob, sha256: bytes | None = None) -> None: ...

    def get(self, locator: str) -> bytes: ...

    def head(self, locator: str) -> int | None: ...

    def delete(self, locator: str) -> None: ...

    def list(self) -> Iterator[str]: ...

    def ping(self) -> None: ...


class S3BackendClient:
    """An S3-compatible bucket (AWS, MinIO, Ceph RGW, Wasabi, GCS interop, moto) reached with
    boto3, signed for ``region`` with the given addressing style. ``create_bucket``: a missing
    bucket is created (only when the operator allowed it at registration); otherwise it is an
    error like any other unavailability."""

    _NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
    _NO_BUCKET = {"404", "NoSuchBucket", "NotFound"}

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        addressing_style: str = "path",
        timeout_s: float = 30.0,
        create_bucket: bool = False,
    ) -> None:
        self.bucket = bucket
        self._region = region
        self._create_bucket = create_bucket
        self._reader = (
            None
            if proxied(endpoint)
            else SignedGet(
                endpoint=endpoint,
                bucket=bucket,
                credentials=Credentials(access_key, secret_key),
                region=region,
                addressing_style=addressing_style,
                timeout_s=timeout_s,
            )
        )
        session = boto3.session.Session()

        def client(payload_signing: bool | None) -> object:
            s3: dict[str, object] = {"addressing_style": addressing_style}
            if payload_signing is not None:
                s3["payload_signing_enabled"] = payload_signing
            return session.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                region_name=region,
                config=Config(
                    connect_timeout=min(5.0, timeout_s),
                    read_timeout=timeout_s,
                    retries={"max_attempts": 2, "mode": "standard"},
                    max_pool_connections=64,
                    s3=s3,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )

        self._s3: Any = client(None)
        # For bodies whose SHA-256 the caller already computed (every part of a write): sent
        # as ``x-amz-checksum-sha256``, which the backend checks against the bytes it
        # receives, with an unsigned payload, so botocore does not hash every byte again
        # (over plain HTTP it otherwise always does, for the signature).
        self._s3_checked: Any = client(False)
        #: Cleared for good when the backend refuses the checksum header (Backblaze B2 and
        #: Cloudflare R2 do): its puts are then signed over the payload as before.
        self.checksums_accepted = True

    @contextlib.contextmanager
    def _translate(self, locator: str = "") -> Iterator[None]:
        """The one seam: vendor errors become ``BackendNotFound`` or ``BackendUnavailable``
        with a ``reason`` (see ``_reason``)."""
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in self._NOT_FOUND and locator:
                raise BackendNotFound(f"backend object {locator} not found") from None
            reason = "bucket-missing" if code in self._NO_BUCKET else _refusal(code)
            raise BackendUnavailable(f"backend refused the request: {code}", reason) from None
        except (BotoCoreError, OSError) as exc:
            raise BackendUnavailable(
                f"backend unreachable: {type(exc).__name__}", _reason(exc)
            ) from None

    def _missing(self) -> BackendUnavailable:
        return BackendUnavailable(f"bucket {self.bucket} is missing", "bucket-missing")

    def create(self) -> None:
        """Create the bucket (the operator asked for it: ``--create-bucket``)."""
        with self._translate():
            self._create_call()

    def _create_call(self) -> None:
        # Outside us-east-1, S3 wants the region restated as the location constraint.
        if self._region == "us-east-1":
            self._s3.create_bucket(Bucket=self.bucket)
        else:
            self._s3.create_bucket(
                Bucket=self.bucket,
                CreateBucketConfiguration={"LocationConstraint": self._region},
            )

    def ensure_ready(self) -> None:
        with self._translate():
            try:
                self._s3.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in self._NO_BUCKET:
                    raise
                if not self._create_bucket:
                    raise self._missing() from None
                self._create_call()

    def put(self, locator: str, data: Blob, sha256: bytes | None = None) -> None:
        """Store ``data`` (read straight from the caller's buffer, ``ViewBody``). ``sha256``:
        its digest when the caller has it; the backend then verifies the body against it and
        the client skips its own payload hash."""
        with self._translate(locator):
            if sha256 is not None and self.checksums_accepted:
                try:
                    with ViewBody(data) as body:
                        self._s3_checked.put_object(
                            Bucket=self.bucket,
                            Key=_check(locator),
                            Body=body,
                            ChecksumSHA256=base64.b64encode(sha256).decode(),
                        )
                    return
                except ClientError as exc:
                    code = str(exc.response.get("Error", {}).get("Code", ""))
                    if code not in _CHECKSUM_REFUSED:
                        raise
                    self.checksums_accepted = False  # this backend: signed payloads only
            with ViewBody(data) as body:
                self._s3.put_object(Bucket=self.bucket, Key=_check(locator), Body=body)

    def get(self, locator: str) -> bytes:
        if self._reader is not None:
            return self._reader.get(locator)
        with self._translate(locator):
            body = self._s3.get_object(Bucket=self.bucket, Key=_check(locator))["Body"]
            try:
                return body.read()  # type: ignore[no-any-return]
            finally:
                body.close()

    def head(self, locator: str) -> int | None:
        try:
            with self._translate(locator):
                return int(
                    self._s3.head_object(Bucket=self.bucket, Key=_check(locator))["ContentLength"]
                )
        except BackendNotFound:
            return None

    def delete(self, locator: str) -> None:
        with self._translate(locator):
            self._s3.delete_object(Bucket=self.bucket, Key=_check(locator))

    def list(self) -> Iterator[str]:
        with self._translate():
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"]

    def ping(self) -> None:
        with self._translate():
            try:
                self._s3.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) in self._NO_BUCKET:
                    raise self._missing() from None
                raise


class SignedGet:
    """``GET`` of one object, SigV4-signed by botocore's own signer and sent over a pooled
    urllib3 connection, without the botocore client around it.

    Why: the read path's one call. Measured against moto on this machine, a 4 KiB
    ``get_object`` costs ~1.8 ms of client CPU (request serialisation, the event hooks,
    response parsing), the same signed request sent like this ~0.9 ms, and the gateway
    replica makes one per part it serves (``actors/read_lanes.py``). Everything else a
    backend is asked keeps boto3 (retries, paginators, bucket creation); a failed read is
    not retried here because the reader moves to the next replica instead. Proxies configured
    in the environment are honoured only by boto3, so with one set reads use boto3 too."""

    _CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        credentials: Credentials,
        region: str,
        addressing_style: str,
        timeout_s: float,
        pool_size: int = 64,
    ) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        root = parts.path.rstrip("/")
        if addressing_style == "virtual":
            self._base = f"{parts.scheme}://{bucket}.{parts.netloc}{root}"
        else:
            self._base = f"{parts.scheme}://{parts.netloc}{root}/{bucket}"
        self._signer = S3SigV4Auth(credentials, "s3", region)
        self._pool = urllib3.PoolManager(
            maxsize=pool_size,
            retries=False,
            timeout=urllib3.Timeout(connect=min(5.0, timeout_s), read=timeout_s),
            cert_reqs="CERT_REQUIRED",
            # The CA bundle boto3 would use: AWS_CA_BUNDLE, else certifi's.
            ca_certs=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True),
        )

    def get(self, locator: str) -> bytes:
        url = f"{self._base}/{_check(locator)}"
        request = AWSRequest(method="GET", url=url)
        self._signer.add_auth(request)
        try:
            response = self._pool.request(
                "GET", url, headers=dict(request.headers.items()), preload_content=True
            )
        except urllib3.exceptions.HTTPError as exc:
            raise BackendUnavailable(
                f"backend unreachable: {type(exc).__name__}", _urllib3_reason(exc)
            ) from None
        if response.status == 200:
            return response.data  # type: ignore[no-any-return]
        found = self._CODE.search(response.data or b"")
        code = found.group(1).decode("ascii", "replace") if found else str(response.status)
        if response.status == 404 and code in ("NoSuchKey", "404"):
            raise BackendNotFound(f"backend object {locator} not found")
        reason = "bucket-missing" if code == "NoSuchBucket" else _refusal(code)
        raise BackendUnavailable(f"backend refused the request: {code}", reason)


def proxied(endpoint: str) -> bool:
    """Whether the environment routes ``endpoint`` through a proxy (boto3 honours it)."""
    scheme = urllib.parse.urlsplit(endpoint).scheme or "http"
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    proxies = urllib.request.getproxies()
    return scheme in proxies and not urllib.request.proxy_bypass(host)


def _urllib3_reason(exc: BaseException) -> str:
    """As ``_reason`` for botocore's errors. A refused connection is a ``NewConnectionError``,
    which urllib3 2 derives from its connect-timeout error: it is asked first."""
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "unreachable"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "tls"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timeout"
    return "unreachable"


class SeekableBody(io.RawIOBase):
    """A request body of known length that botocore can size, read and rewind: it asks
    ``len()``, reads the body once to sign it (SigV4 payload hash over plain HTTP), rewinds,
    and http.client reads it again in blocks while sending (and rewinds once more on a
    retry). Subclasses give the bytes (``readinto`` from ``self._pos``)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._pos = 0

    def __len__(self) -> int:
        return max(0, self._size - self._pos)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos


class ViewBody(SeekableBody):
    """A request body read straight out of ``data`` (an object-store view of a part), so a PUT
    does not first copy the part into a private ``bytes``: with 32 concurrent 8 MiB puts that
    copy was up to 256 MiB per backend actor, and glibc kept much of it after the burst. Each
    read copies one block only."""

    def __init__(self, data: Blob) -> None:
        view = memoryview(data).cast("B")
        super().__init__(view.nbytes)
        self._view = view

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        count = max(0, min(target.nbytes, self._view.nbytes - self._pos))
        target[:count] = self._view[self._pos : self._pos + count]
        self._pos += count
        return count

    def close(self) -> None:
        """Let go of the part's buffer now, so nothing botocore keeps (a request object in a
        traceback) pins the object-store part after the PUT."""
        with contextlib.suppress(BufferError):
            self._view.release()
        super().close()


#: How S3-compatible services that do not implement ``x-amz-checksum-*`` refuse it (B2:
#: ``InvalidArgument``, R2: ``NotImplemented``); the put is then sent the old way.
_CHECKSUM_REFUSED = frozenset({"InvalidArgument", "NotImplemented", "InvalidRequest"})

_CREDENTIAL_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
        "InvalidClientTokenId",
    }
)


def _refusal(code: str) -> str:
    """A refused request: ``credentials`` when the backend rejected who we are or what we
    may do (the caller knows which step: a 403 on DELETE is a refused delete), else
    ``refused``."""
    return "credentials" if code in _CREDENTIAL_CODES else "refused"


def _reason(exc: BaseException) -> str:
    """``tls`` for a TLS handshake or certificate failure, ``timeout``, or ``unreachable``."""
    if isinstance(exc, SSLError | ssl.SSLError):
        return "tls"
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError | TimeoutError):
        return "timeout"
    text = str(exc)
    if "SSL" in text or "CERTIFICATE" in text.upper():
        return "tls"
    return "unreachable"


class LocalDirectoryClient:
    """A directory on a local or mounted disk. Writes are atomic (temp file + fsync + rename)."""

    def __init__(self, path: str) -> None:
        self.root = Path(path)

    def ensure_ready(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(f"backend directory unusable: {exc.strerror}") from None

    def _path(self, locator: str) -> Path:
        return self.root / _check(locator)

    def put(self, locator: str, data: Blob, sha256: bytes | None = None) -> None:
        """``sha256`` is not needed here: no network between the bytes and the disk."""
        target = self._path(locator)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise BackendUnavailable(f"backend write failed: {exc.strerror}") from None

    def get(self, locator: str) -> bytes:
        try:
            return self._path(locator).read_bytes()
        except FileNotFoundError:
            raise BackendNotFound(f"backend object {locator} not found") from None
        except OSError as exc:
            raise BackendUnavailable(f"backend read failed: {exc.strerror}") from None

    def head(self, locator: str) -> int | None:
        try:
            return self._path(locator).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendUnavailable(f"backend stat failed: {exc.strerror}") from None

    def delete(self, locator: str) -> None:
        try:
            self._path(locator).unlink(missing_ok=True)
        except OSError as exc:
            raise BackendUnavailable(f"backend delete failed: {exc.strerror}") from None

    def list(self) -> Iterator[str]:
        if not self.root.is_dir():
            raise BackendUnavailable("backend directory missing")
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for item in sorted(sub.iterdir()):
                    if not item.name.startswith(".tmp-"):
                        yield f"{sub.name}/{item.name}"

    def ping(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise BackendUnavailable("backend directory missing or not writable")
