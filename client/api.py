"""The gateway calls ``bp`` makes outside boto3: the Bulletproof extensions, and header reads.

Two kinds of request live here, both SigV4-signed with the tenant's S3 credentials exactly as
boto3 would sign them (botocore's own signer, the payload's SHA-256 in
``x-amz-content-sha256``), so the gateway authenticates and authorises them like any S3 call:

- **The extensions** (JSON; formats in ``docs/client.md`` and the gateway's handlers):
  ``POST /?publish-key`` and ``GET /?keys`` (the tenant's published public keys),
  ``POST /{bucket}/{key}?share`` and ``GET /{bucket}/{key}?recipients`` (the wrapped keys of
  further recipients), ``POST /{bucket}?rewrap`` (batch re-wrap for rotation, of a named
  version or the current one), ``POST /{bucket}?envelopes`` (the envelope and stored BP1
  header of up to 1,000 versions, rotation's read side),
  ``GET /{bucket}/{key}?placement-proof`` (a signed proof of where the pieces are,
  ``client/placement_proof.py``) and the unauthenticated
  ``GET /.well-known/bulletproof/deployment-key``. boto3 has no operation for them.
- **Header reads** (``GET`` with ``Range: bytes=0-111``, and ``versionId`` to read a given
  version): rotation reads the 112-byte BP1 header of an object version from the object
  when ``?envelopes`` has none stored for it (a version written before the gateway kept
  headers, migration 0022).
  boto3 spends about 1.8 ms of CPU per call on this machine against about 0.7 ms for a signed
  urllib3 request, which alone would cap a rotation well under its 1,000 objects/s target;
  a thread-safe urllib3 pool also lets rotation run as many requests in parallel as it has
  workers.

What the calls take and return are the records of :mod:`client.api_records`.

Errors are the :class:`~client.remote.TransferError` tree of :mod:`client.remote`, so the CLI
maps them to exit codes in one table; a refused precondition (HTTP 412) is
:class:`PreconditionFailed`. Like :mod:`client.remote`, nothing here checks anything
cryptographic: callers authenticate every byte and every wrapped key they use.

Retries: idempotent requests (GET, and the upserting ``?share``/``?publish-key``) are retried
on connection errors and 503 (up to :data:`ATTEMPTS` attempts). A ``?rewrap`` batch is never
retried: whether a lost answer means "applied" is unknown, and re-running ``bp rotate`` finds
out safely (it skips what is already under the new key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from client.api_records import (
    EnvelopeResult,
    ObjectHead,
    PublishedKey,
    Recipients,
    RewrapItem,
    RewrapResult,
    parse_wrapped,
    wrapped_document,
)
from client.errors import InvalidEnvelope, Tampered, Truncated
from client.format import CONTENT_ID_LEN, HEADER_LEN
from client.remote import (
    AccessDenied,
    GatewayUnavailable,
    ObjectNotFound,
    RequestRefused,
    TransferError,
)
from client.s3url import S3Url
from client.wrap import WrappedKey

__all__ = ["ATTEMPTS", "GatewayApi", "PreconditionFailed"]

#: Attempts for an idempotent request (connection errors and 503 are retried with backoff).
ATTEMPTS = 3
_BACKOFF_S = 0.25
_CONNECT_TIMEOUT_S = 10.0
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_ERROR_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")


class PreconditionFailed(RequestRefused):
    """HTTP 412: the object is no longer in the state the request expected."""


def _error_fields(body: bytes) -> tuple[str, str]:
    """``(Code, Message)`` of an S3 XML error body (either may be empty)."""
    found = dict(_ERROR_FIELD.findall(body[:8192].decode("utf-8", "replace")))
    return found.get("Code", ""), found.get("Message", "")


def _refusal(status: int, body: bytes, what: str) -> TransferError:
    code, message = _error_fields(body)
    text = f"{what}: {message or code or f'HTTP {status}'}"
    if code and code not in text:
        text += f" ({code})"
    if status == 404:
        return ObjectNotFound(text, code=code, status=status)
    if status in (401, 403):
        return AccessDenied(text, code=code, status=status)
    if status == 412:
        return PreconditionFailed(text, code=code, status=status)
    if status >= 500:
        return GatewayUnavailable(text, code=code, status=status)
    return RequestRefused(text, code=code, status=status)


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


class GatewayApi:
    """Signed HTTP to one gateway, for the calls boto3 does not make (see the module doc).

    Thread-safe: rotation shares one instance between its workers. ``connections`` bounds the
    pool; a worker waits for a free connection rather than opening more.
    """

    def __init__(
        self,
        endpoint: str,
        access_key_id: str,
        secret_access_key: str,
        *,
        region: str,
        connections: int = 10,
        read_timeout: float = 120.0,
    ) -> None:
        import urllib3
        from botocore.credentials import Credentials

        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{endpoint!r} is not an http(s):// URL")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._credentials = Credentials(access_key_id, secret_access_key)
        self._region = region
        self._pool: Any = urllib3.connection_from_url(
            self._origin,
            maxsize=max(1, connections),
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=_CONNECT_TIMEOUT_S, read=read_timeout),
        )

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> GatewayApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------

    def _path(self, bucket: str = "", key: str = "") -> str:
        path = self._base_path + "/" + quote(bucket, safe="")
        if key:
            path += "/" + quote(key, safe="/~")
        return path

    def _signed_headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        request.headers["x-amz-content-sha256"] = (
            hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        )
        S3SigV4Auth(self._credentials, "s3", self._region).add_auth(request)
        return dict(request.headers.items())

    def _open(
        self,
        method: str,
        path: str,
        query: str,
        body: bytes,
        headers: Mapping[str, str],
        what: str,
        *,
        retry: bool,
    ) -> Any:
        """Send one request; the response is returned unread (``preload_content=False``).

        Connection errors and 503 are retried when ``retry``; any other status is returned
        for the caller to judge.
        """
        import urllib3

        target = path + (f"?{query}" if query else "")
        attempts = ATTEMPTS if retry else 1
        for attempt in range(1, attempts + 1):
            # Signed afresh per attempt: the signature carries a timestamp.
            signed = self._signed_headers(method, self._origin + target, body, headers)
            try:
                response = self._pool.urlopen(
                    method,
                    target,
                    body=body or None,
                    headers=signed,
                    preload_content=False,
                    redirect=False,
                    assert_same_host=False,
                )
            except urllib3.exceptions.HTTPError as exc:
                if attempt < attempts:
                    time.sleep(_BACKOFF_S * 4 ** (attempt - 1))
                    continue
                raise GatewayUnavailable(f"{what}: cannot reach the gateway ({exc})") from None
            if response.status == 503 and attempt < attempts:
                _discard(response)
                time.sleep(_BACKOFF_S * 4 ** (attempt - 1))
                continue
            return response
        raise AssertionError("unreachable")

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: str = "",
        document: Any = None,
        retry: bool = True,
    ) -> Any:
        """One JSON request and its JSON answer; any non-2xx status is a TransferError."""
        import urllib3

        body = b"" if document is None else json.dumps(document).encode("utf-8")
        headers = {"Content-Type": "application/json"} if body else {}
        response = self._open(method, path, query, body, headers, what, retry=retry)
        try:
            data = response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise GatewayUnavailable(f"{what}: the connection dropped ({exc})") from None
        finally:
            response.release_conn()
        if not 200 <= response.status < 300:
            raise _refusal(response.status, data, what)
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestRefused(f"{what}: the gateway's answer is not JSON") from None

    # -- public keys ----------------------------------------------------------------------

    def publish_key(self, key_id: str, key_version: int, public_key_pem: str) -> str:
        """Register a public key for the tenant; returns the gateway's wrap algorithm for it.

        A key id and version published before is refused with 409 (RequestRefused).
        """
        answer = self._call(
            "POST",
            self._path(),
            f"publish {key_id} v{key_version}",
            query="publish-key",
            document={
                "key_id": key_id,
                "key_version": key_version,
                "public_key_pem": public_key_pem,
            },
        )
        return str(answer.get("wrap_alg", "")) if isinstance(answer, dict) else ""

    def published_keys(self) -> list[PublishedKey]:
        answer = self._call("GET", self._path(), "list published keys", query="keys")
        entries = answer.get("keys") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise RequestRefused("list published keys: the answer has no 'keys' list")
        try:
            return [
                PublishedKey(
                    str(e["key_id"]),
                    int(e["key_version"]),
                    str(e["wrap_alg"]),
                    str(e["public_key_pem"]),
                )
                for e in entries
            ]
        except (KeyError, TypeError, ValueError):
            raise RequestRefused("list published keys: a malformed entry") from None

    # -- recipients -----------------------------------------------------------------------

    def share(self, url: S3Url, wrapped: WrappedKey) -> None:
        """Add a recipient to the object's current version (replaces one with the same key
        id and version). The gateway cannot check the wrap: it has no key to open it."""
        self._call(
            "POST",
            self._path(url.bucket, url.key),
            f"share {url}",
            query="share",
            document=wrapped_document(wrapped),
        )

    def recipients(self, url: S3Url) -> Recipients:
        """The primary and shared wrapped keys of the object's current version."""
        what = f"recipients of {url}"
        answer = self._call("GET", self._path(url.bucket, url.key), what, query="recipients")
        entries = answer.get("recipients") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise InvalidEnvelope(f"{what}: the answer has no 'recipients' list")
        try:
            content_id = bytes.fromhex(str(answer.get("content_id") or ""))
        except ValueError:
            content_id = b""
        if len(content_id) != CONTENT_ID_LEN:
            raise InvalidEnvelope(f"{what}: the answer has no valid content id")
        primary = [
            parse_wrapped(e, what) for e in entries if isinstance(e, dict) and e.get("primary")
        ]
        others = [
            parse_wrapped(e, what)
            for e in entries
            if not (isinstance(e, dict) and e.get("primary"))
        ]
        if len(primary) != 1:
            raise InvalidEnvelope(f"{what}: expected exactly one primary recipient")
        return Recipients(content_id, primary[0], tuple(others))

    # -- rotation -------------------------------------------------------------------------

    def rewrap(self, bucket: str, items: Sequence[RewrapItem]) -> list[RewrapResult]:
        """Apply a batch of re-wraps in one gateway transaction; one result per item, in order.

        Never retried (see the module docstring). Per-item refusals (precondition, missing
        object or version) are results, not exceptions; a refused batch raises. A result must
        name the item's key, and its version if the item named one.
        """
        what = f"rewrap {len(items)} objects in s3://{bucket}"
        answer = self._call(
            "POST",
            self._path(bucket),
            what,
            query="rewrap",
            document={"items": [item.document() for item in items]},
            retry=False,
        )
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(items):
            raise RequestRefused(f"{what}: the answer does not have one result per item")
        out: list[RewrapResult] = []
        for item, result in zip(items, results, strict=True):
            if not isinstance(result, dict) or result.get("key") != item.key:
                raise RequestRefused(f"{what}: the results do not match the items")
            if item.version_id is not None and result.get("version_id") != item.version_id:
                raise RequestRefused(f"{what}: the results do not match the items' versions")
            out.append(
                RewrapResult(
                    item.key,
                    str(result.get("status")),
                    str(result.get("message") or ""),
                    item.version_id,
                )
            )
        return out

    def envelopes(
        self, bucket: str, refs: Sequence[tuple[str, str | None]]
    ) -> list[EnvelopeResult]:
        """The envelope and stored BP1 header of each ``(key, version_id)`` (None: the current
        version) in one request (``POST /{bucket}?envelopes``, at most 1,000), in order.

        A result must name its item's key (and version, if the item named one), and a header
        must be 112 bytes, or the whole answer is refused. What the header and envelope say is
        not checked here: :func:`client.sharing.recover_data_key` checks the header's
        structure, binding and key commitment before anything is wrapped against it.
        """
        what = f"read {len(refs)} envelopes in s3://{bucket}"
        items = [{"key": k} if v is None else {"key": k, "version_id": v} for k, v in refs]
        answer = self._call(
            "POST", self._path(bucket), what, query="envelopes", document={"items": items}
        )
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(refs):
            raise RequestRefused(f"{what}: the answer does not have one result per item")
        out: list[EnvelopeResult] = []
        for (key, version_id), result in zip(refs, results, strict=True):
            if not isinstance(result, dict) or result.get("key") != key:
                raise RequestRefused(f"{what}: the results do not match the items")
            got_version = result.get("version_id")
            if version_id is not None and got_version != version_id:
                raise RequestRefused(f"{what}: the results do not match the items' versions")
            metadata = result.get("metadata") or {}
            if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
            ):
                raise RequestRefused(f"{what}: malformed metadata for {key!r}")
            header = None
            if result.get("header") is not None:
                try:
                    header = base64.b64decode(str(result["header"]), validate=True)
                except (binascii.Error, ValueError):
                    header = b""
                if len(header) != HEADER_LEN:
                    raise RequestRefused(f"{what}: the header of {key!r} is not 112 bytes")
            out.append(
                EnvelopeResult(
                    key,
                    str(got_version) if got_version is not None else version_id,
                    str(result.get("status")),
                    str(result.get("message") or ""),
                    {k.lower(): v for k, v in metadata.items()},
                    header,
                )
            )
        return out

    # -- placement proofs (docs/placement-proof.md) ---------------------------------------

    def placement_proof(self, url: S3Url, version_id: str | None = None) -> Any:
        """The signed placement proof of the object (of ``version_id``, else the current
        version), unverified: :mod:`client.placement_proof` checks it."""
        query = "placement-proof"
        if version_id is not None:
            query += "&versionId=" + quote(version_id, safe="")
        return self._call(
            "GET", self._path(url.bucket, url.key), f"placement proof of {url}", query=query
        )

    def deployment_keys(self) -> Any:
        """The gateway's published deployment keys (``/.well-known/bulletproof/
        deployment-key``): only as trustworthy as the gateway itself; pin them instead."""
        return self._call(
            "GET",
            self._base_path + "/.well-known/bulletproof/deployment-key",
            "fetch the deployment key",
        )

    # -- objects --------------------------------------------------------------------------

    def read_header(self, url: S3Url, version_id: str | None = None) -> ObjectHead:
        """``GET bytes=0-111``: the BP1 header and the envelope, never more of the body; of
        the version ``version_id`` (``"null"``: the null version), else of the current one.

        A gateway that ignores the range (200 with the whole object) is refused without
        reading the body; so is an answer with more or fewer than 112 bytes. A missing object
        or version is :class:`ObjectNotFound`.
        """
        import urllib3

        what = f"read the header of {url}"
        query = ""
        if version_id is not None:
            what += f" version {version_id}"
            query = "versionId=" + quote(version_id, safe="")
        path = self._path(url.bucket, url.key)
        response = self._open(
            "GET", path, query, b"", {"Range": f"bytes=0-{HEADER_LEN - 1}"}, what, retry=True
        )
        try:
            if response.status != 206:
                if 200 <= response.status < 300:
                    raise Tampered(f"{what}: the gateway ignored the range and sent the object")
                raise _refusal(response.status, response.read(), what)
            content_range = str(response.headers.get("Content-Range", ""))
            if not content_range.startswith(f"bytes 0-{HEADER_LEN - 1}/"):
                raise Truncated(f"{what}: the object is shorter than a BP1 header")
            try:
                size = int(content_range.rpartition("/")[2])
                header = response.read(HEADER_LEN + 1)
            except (ValueError, urllib3.exceptions.HTTPError) as exc:
                raise GatewayUnavailable(f"{what}: the connection dropped ({exc})") from None
            if len(header) != HEADER_LEN:
                raise Truncated(f"{what}: got {len(header)} bytes for a 112-byte range")
        except BaseException:
            _discard(response)
            raise
        response.release_conn()
        metadata = {
            name.lower(): value
            for name, value in response.headers.items()
            if name.lower().startswith("x-amz-meta-")
        }
        etag = str(response.headers.get("ETag", ""))
        return ObjectHead(header, metadata, etag, size)


def _discard(response: Any) -> None:
    """Drop a response without reading its body: close the connection, free the pool slot."""
    response.close()
    response.release_conn()
