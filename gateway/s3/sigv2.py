"""Server-side AWS Signature Version 2 (HMAC-SHA1) verification for S3 requests.

boto3's ``generate_presigned_url`` and ``aws s3 presign`` still make SigV2 URLs
(``AWSAccessKeyId``, ``Signature``, ``Expires``) for us-east-1, and older clients sign
headers with ``Authorization: AWS <key>:<signature>``; S3 and MinIO accept both. So does this
gateway, unless ``BP_SIGV2=off`` (``gateway/auth.py`` then refuses SigV2 as an unsupported
mechanism, as before).

As with SigV4 (``gateway/s3/sigv4.py``), verification is split around the secret lookup:
``parse_access_key(req)`` says which key claims to have signed, ``verify(req, secret, now)``
rebuilds the string to sign exactly as botocore's ``HmacV1Auth`` / ``HmacV1QueryAuth`` do and
compares in constant time::

    VERB \\n Content-MD5 \\n Content-Type \\n Date-or-Expires \\n
    x-amz-name:value \\n ... (every x-amz-* header, lower-cased, sorted)  CanonicalizedResource

The canonical resource is the path-style path as sent (the bucket first, also for a
virtual-hosted request; a bucket alone as ``/bucket`` or, as botocore signs it, ``/bucket/``),
then the S3 subresources and response overrides of the query,
sorted, with their values percent-decoded.

The checks SigV4 makes hold here too:

- Presigned: ``Expires`` (epoch seconds) in the past is 403 ``AccessDenied``; more than seven
  days ahead (S3's SigV4 limit, with the SigV4 clock skew) is refused.
- Header mode: the ``x-amz-date`` or ``Date`` header within 15 minutes of our clock.
- Every ``x-amz-*`` header is part of the string to sign by construction, so one added after
  signing fails the signature (``SignatureDoesNotMatch``); ``x-amz-*`` values carried as
  presigned *query* parameters are refused, since the handlers read them from headers only.
- Signatures compare with ``hmac.compare_digest``.

SigV2 does not sign the body: the payload is UNSIGNED, unless the client sent a (signed)
``x-amz-content-sha256`` hash or a ``Content-MD5``, which the body checks then verify. The
aws-chunked streaming modes chain SigV4 signatures and are refused under SigV2.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from gateway.s3.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    InvalidRequest,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from gateway.s3.sigv4 import (
    MAX_CLOCK_SKEW,
    MAX_PRESIGN_EXPIRES,
    AuthorizationQueryParametersError,
    Credential,
    HttpRequestView,
    PayloadMode,
    VerifiedRequest,
    changes_what_is_stored,
)

__all__ = ["SUBRESOURCES", "is_sigv2", "parse_access_key", "string_to_sign", "verify"]

#: Query parameters that are part of the canonical resource (botocore's ``QSAOfInterest``).
SUBRESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)

_HEADER = re.compile(r"^AWS ([\x21-\x39\x3b-\x7e]{1,128}):([A-Za-z0-9+/=]{1,128})$")
_DIGITS = re.compile(r"\d{1,12}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ACCESS_KEY = re.compile(r"[\x21-\x7e]{1,128}")
_QUERY_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")


def _query_pairs(query_string: str) -> list[tuple[str, str]]:
    """(name, value) as written on the wire, still encoded; a bare name has value None-like
    ``"\\0"`` so that ``?uploads`` and ``?uploads=`` stay distinct, as botocore signs them."""
    pairs = []
    for part in query_string.split("&"):
        if part:
            name, sep, value = part.partition("=")
            pairs.append((name, value if sep else "\0"))
    return pairs


def is_sigv2(req: HttpRequestView) -> bool:
    """Whether the request claims SigV2: ``Authorization: AWS key:sig``, or the SigV2 query
    parameters without SigV4's."""
    authorization = req.headers.get("authorization")
    if authorization is not None:
        return authorization.startswith("AWS ")
    names = {unquote(name) for name, _ in _query_pairs(req.query_string)}
    return "AWSAccessKeyId" in names and "X-Amz-Algorithm" not in names


def _presigned(req: HttpRequestView) -> tuple[str, str, int]:
    """(access key, signature, expires) of a presigned URL."""
    found: dict[str, str] = {}
    for name, value in _query_pairs(req.query_string):
        name = unquote(name)
        if name in _QUERY_PARAMS:
            if name in found:
                raise AuthorizationQueryParametersError(
                    f"The query parameter {name} appears more than once."
                )
            found[name] = unquote(value.replace("+", " ")) if value != "\0" else ""
        elif name.lower().startswith("x-amz-"):
            raise InvalidRequest(
                f"{name} must be sent as a header, not as a presigned URL query parameter."
            )
    missing = [p for p in _QUERY_PARAMS if p not in found]
    if missing:
        raise AuthorizationQueryParametersError(
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId "
            f"parameters; missing: {', '.join(missing)}."
        )
    if not _ACCESS_KEY.fullmatch(found["AWSAccessKeyId"]):
        raise AuthorizationQueryParametersError("AWSAccessKeyId is malformed.")
    if not _DIGITS.fullmatch(found["Expires"]):
        raise AuthorizationQueryParametersError("Expires must be a number of seconds (epoch).")
    return found["AWSAccessKeyId"], found["Signature"], int(found["Expires"])


def _from_header(req: HttpRequestView) -> tuple[str, str]:
    authorization = req.headers.get("authorization", "")
    match = _HEADER.match(authorization.strip())
    if not match:
        raise AuthorizationHeaderMalformed(
            "The SigV2 Authorization header must be 'AWS <AccessKeyId>:<Signature>'."
        )
    names = {unquote(name) for name, _ in _query_pairs(req.query_string)}
    if names & {"AWSAccessKeyId", "Signature", "X-Amz-Algorithm", "X-Amz-Signature"}:
        from gateway.s3.errors import InvalidArgument

        raise InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified."
        )
    return match.group(1), match.group(2)


def parse_access_key(req: HttpRequestView) -> str:
    """Step 1, without any secret: the access key a SigV2 request names."""
    if "authorization" in req.headers:
        return _from_header(req)[0]
    return _presigned(req)[0]


def _canonical_resource(path: str, query_string: str) -> str:
    picked = []
    for name, value in _query_pairs(query_string):
        if name in SUBRESOURCES:
            # latin-1: one character per byte, so the string to sign keeps the bytes sent.
            picked.append((name, None if value == "\0" else unquote(value, encoding="latin-1")))
    picked.sort(key=lambda item: item[0])
    if not picked:
        return path
    return (
        path
        + "?"
        + "&".join(name if value is None else f"{name}={value}" for name, value in picked)
    )


def _amz_headers(req: HttpRequestView) -> str:
    amz = sorted(
        (name, value.strip()) for name, value in req.headers.items() if name.startswith("x-amz-")
    )
    return "".join(f"{name}:{value}\n" for name, value in amz)


def string_to_sign(req: HttpRequestView, date: str, path: str) -> str:
    """The SigV2 string to sign of ``req`` with this Date (or Expires) line and resource path."""
    return "\n".join(
        (
            req.method.upper(),
            req.headers.get("content-md5", "").strip(),
            req.headers.get("content-type", "").strip(),
            date,
            _amz_headers(req) + _canonical_resource(path, req.query_string),
        )
    )


def _sign(secret: str, text: str) -> str:
    """base64(HMAC-SHA1). The text holds the request's bytes one character each (headers
    are read as latin-1), so it is signed as exactly the bytes the client sent."""
    digest = hmac.new(secret.encode("utf-8"), text.encode("latin-1"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _request_time(req: HttpRequestView) -> datetime:
    raw = req.headers.get("x-amz-date") or req.headers.get("date")
    if raw is None:
        raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    try:
        when = parsedate_to_datetime(raw)
        # Year 9999 with a negative offset (or year 1 with a positive one) has no UTC instant.
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise AccessDenied(
            "AWS authentication requires a valid Date or x-amz-date header"
        ) from None


def _payload(req: HttpRequestView) -> tuple[PayloadMode, str | None]:
    value = req.headers.get("x-amz-content-sha256")
    if value is None or value == "UNSIGNED-PAYLOAD":
        return PayloadMode.UNSIGNED, None
    if _HEX64.fullmatch(value):
        return PayloadMode.SIGNED, value.lower()
    raise InvalidRequest(
        "Streaming (aws-chunked) payloads need SigV4 (AWS4-HMAC-SHA256) authentication."
    )


def verify(
    req: HttpRequestView, secret_access_key: str, *, now: datetime, resource_path: str
) -> VerifiedRequest:
    """Step 2: rebuild the string to sign, check the clock and compare the signature.

    ``resource_path``: the raw path-style path (``/bucket/key`` as sent, percent-encoded),
    which is what SigV2 signs also for virtual-hosted requests. Raises S3 errors.
    """
    if now.tzinfo is None:
        raise ValueError("verify() needs a timezone-aware 'now'")
    presigned = "authorization" not in req.headers
    unsignable = sorted(name for name in req.headers if changes_what_is_stored(name))
    if unsignable:
        # SigV2 signs only x-amz-* headers: these would travel unsigned and could be swapped
        # in a replayed request (sigv4.STORE_HEADERS).
        raise AccessDenied(
            "These headers change what is stored and cannot be signed with Signature Version 2;"
            " sign the request with AWS4-HMAC-SHA256: " + ", ".join(unsignable)
        )
    if presigned:
        access_key, signature, expires = _presigned(req)
        if expires - now.timestamp() > MAX_PRESIGN_EXPIRES + MAX_CLOCK_SKEW.total_seconds():
            # Checked on the number first: an epoch past year 9999 has no datetime.
            raise AuthorizationQueryParametersError(
                f"Expires must be at most {MAX_PRESIGN_EXPIRES} seconds (one week) ahead."
            )
        moment = datetime.fromtimestamp(expires, UTC)
        if now > moment:
            raise AccessDenied("Request has expired")
        if moment - now > timedelta(seconds=MAX_PRESIGN_EXPIRES) + MAX_CLOCK_SKEW:
            raise AuthorizationQueryParametersError(
                f"Expires must be at most {MAX_PRESIGN_EXPIRES} seconds (one week) ahead."
            )
        dates = [str(expires)]
    else:
        access_key, signature = _from_header(req)
        moment = _request_time(req)
        if abs(now - moment) > MAX_CLOCK_SKEW:
            raise RequestTimeTooSkewed()
        # botocore signs the Date header's value; the S3 documentation says the Date line
        # is empty when x-amz-date is sent. Either form is accepted.
        dates = [req.headers.get("date", "").strip()]
        if "x-amz-date" in req.headers and dates[0]:
            dates.append("")
    payload_mode, payload_sha256 = _payload(req)
    paths = [resource_path]
    if resource_path.count("/") == 1 and len(resource_path) > 1:
        paths.append(resource_path + "/")  # botocore signs a bucket request as "/bucket/"
    matched = False
    for date in dates:
        for path in paths:
            expected = _sign(secret_access_key, string_to_sign(req, date, path))
            matched |= hmac.compare_digest(expected.encode(), signature.encode("ascii"))
    if not matched:
        raise SignatureDoesNotMatch()
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    return VerifiedRequest(
        credential=Credential(access_key, stamp[:8], "", "s3"),
        amz_date=stamp,
        signature=signature,
        signing_key=b"",
        signed_headers=tuple(sorted(name for name in req.headers if name.startswith("x-amz-"))),
        payload_mode=payload_mode,
        payload_sha256=payload_sha256,
        decoded_content_length=None,
        trailer_names=(),
        presigned=presigned,
    )
