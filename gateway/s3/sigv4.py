"""Server-side AWS Signature Version 4 verification for S3 requests.

Verification is split in two because the secret is looked up in between:

1. ``parse_credential(req)`` needs no secret: it says which access key claims to have signed the
   request (``Authorization`` header or presigned ``X-Amz-*`` query parameters).
2. ``verify(req, secret, region=..., now=...)`` rebuilds the canonical request, checks the scope,
   the clock, the signed-header policy and the payload-hash declaration, and compares signatures
   in constant time. It returns a ``VerifiedRequest`` that ``gateway.s3.chunked`` needs to check
   the body (chunk signatures chain from ``signature`` with ``signing_key``).

Invariants kept here:

- The canonical URI is the raw path percent-decoded once and re-encoded with our own UriEncode:
  S3 neither normalizes (``//``, ``.``, ``..`` stay) nor double-encodes.
- The canonical query decodes each name and value with *form* semantics (``+`` is a space, as
  ``urllib.parse.parse_qsl`` and Starlette read it; botocore writes spaces as ``+`` when it
  builds a URL from ``params``) and re-encodes them. Whatever the router parses out of the query
  string is therefore exactly what was signed; two raw query strings that parse differently never
  share a canonical form.
- ``host`` and every ``x-amz-*`` header must be signed. The exceptions are values the signature
  covers anyway: ``x-amz-content-sha256`` is the payload-hash line of the canonical request, and in
  header mode ``x-amz-date`` is a line of the string to sign.
- So must every header that changes what is stored (``STORE_HEADERS``: the ``/objects`` API's
  envelope headers, ``X-Redundancy-Class``, and every ``x-bp-*``), in header and presigned mode
  alike: otherwise a request captured within the clock skew could be replayed with another
  wrapped key or a lower redundancy class and still verify.
- Signatures are compared with ``hmac.compare_digest``.
- Header values are canonicalised from the bytes the client sent (``_canonical_bytes``), so a
  UTF-8 ``x-amz-meta-*`` value verifies as the AWS SDKs sign it.

Deliberately not done here: looking up secrets or raising ``InvalidAccessKeyId`` (the caller does
that between the two steps), checking the body (``PayloadHashVerifier`` and ``decode_aws_chunked``
in ``gateway.s3.chunked``), SigV2 (``gateway.s3.sigv2``), SigV4a, browser POST policies, and
session tokens (``X-Amz-Security-Token`` is covered by the signature like any other ``x-amz-*``
value; ``gateway/auth.py`` compares it with the session's, for temporary credentials).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from gateway.s3.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    InvalidArgument,
    InvalidRequest,
    MissingContentLength,
    RequestHeaderSectionTooLarge,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
)

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_CLOCK_SKEW",
    "MAX_PRESIGN_EXPIRES",
    "AuthorizationQueryParametersError",
    "Credential",
    "HttpRequestView",
    "PayloadMode",
    "STORE_HEADERS",
    "STORE_HEADER_PREFIX",
    "VerifiedRequest",
    "changes_what_is_stored",
    "parse_credential",
    "signing_key",
    "uri_encode",
    "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_CLOCK_SKEW = timedelta(minutes=15)
MAX_PRESIGN_EXPIRES = 604800  # seven days, S3's own limit

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

#: Headers outside ``x-amz-*`` that change what a write stores (lower case): when present they
#: must be signed, as S3 requires of ``x-amz-*``.
STORE_HEADERS = frozenset(
    {
        "x-encrypted-key",
        "x-key-id",
        "x-key-version",
        "x-encryption-alg",
        "x-content-id",
        "x-redundancy-class",
    }
)
#: Every header under this prefix is a Bulletproof option and must be signed too.
STORE_HEADER_PREFIX = "x-bp-"

# Caps: the HTTP server bounds the header section as a whole; these bound what we parse.
_MAX_AUTH_HEADER = 16 * 1024
_MAX_PATH = 16 * 1024
_MAX_QUERY = 32 * 1024
_MAX_HEADER_BYTES = 64 * 1024
_MAX_SIGNED_HEADERS = 128
_MAX_TRAILER_NAMES = 8

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX64_ANY_CASE = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE = re.compile(r"\d{8}")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_ACCESS_KEY = re.compile(r"[\x21-\x7e]{1,128}")
_REGION = re.compile(r"[\x21-\x7e]{1,64}")
_TRAILER_NAME = re.compile(r"x-amz-checksum-[a-z0-9]{1,32}")
_DIGITS = re.compile(r"\d{1,18}")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_WIRE_CHARS = re.compile(r"[\x21-\x7e]*")

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ENCODED = tuple(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256))

_UNSUPPORTED_MECHANISM = (
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
)
_AUTH_FIELDS = (
    "The Authorization header must hold exactly Credential=, SignedHeaders= and Signature=."
)

_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)


# S3's code for a malformed presigned URL. It subclasses AuthorizationHeaderMalformed (made with
# type() as errors.py does) so callers that catch "malformed authorization" catch both flavours.
AuthorizationQueryParametersError: type[S3Error] = type(
    "AuthorizationQueryParametersError",
    (AuthorizationHeaderMalformed,),
    {
        "status": 400,
        "code": "AuthorizationQueryParametersError",
        "default_message": "The presigned URL's authorization query parameters are malformed.",
    },
)


@dataclass(frozen=True)
class HttpRequestView:
    """What the verifier needs of an HTTP request, exactly as it came off the wire."""

    method: str
    raw_path: str  # still percent-encoded, e.g. "/bucket/a%20b/c"
    query_string: str  # raw, without the leading "?", may be ""
    headers: Mapping[str, str]  # lower-cased names; a repeated header's values joined by ","
    #: The path-style raw path the router saw (``/bucket/key``, also for a virtual-hosted
    #: request); SigV2 signs this one. Empty: the same as ``raw_path``.
    routed_path: str = ""


@dataclass(frozen=True)
class Credential:
    """The credential scope a request names: which key signed it, for which day/region/service."""

    access_key_id: str
    date: str  # YYYYMMDD
    region: str
    service: str


class PayloadMode(enum.Enum):
    """What ``x-amz-content-sha256`` promises about the body."""

    SIGNED = "signed"
    UNSIGNED = "unsigned"
    STREAMING_SIGNED = "streaming-signed"
    STREAMING_SIGNED_TRAILER = "streaming-signed-trailer"
    STREAMING_UNSIGNED_TRAILER = "streaming-unsigned-trailer"


_STREAMING_MODES: dict[str, PayloadMode] = {
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": PayloadMode.STREAMING_SIGNED,
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": PayloadMode.STREAMING_SIGNED_TRAILER,
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER": PayloadMode.STREAMING_UNSIGNED_TRAILER,
}
_TRAILER_MODES = (PayloadMode.STREAMING_SIGNED_TRAILER, PayloadMode.STREAMING_UNSIGNED_TRAILER)


@dataclass(frozen=True)
class VerifiedRequest:
    """A request whose headers were authenticated; its body is still to be checked."""

    credential: Credential
    amz_date: str  # e.g. 20261128T101500Z (also when the client dated the request with Date:)
    signature: str  # hex seed signature, the first link of the chunk-signature chain
    signing_key: bytes  # derived kSigning, needed for chunk and trailer signatures
    signed_headers: tuple[str, ...]
    payload_mode: PayloadMode
    payload_sha256: str | None  # lower-case hex when payload_mode is SIGNED
    decoded_content_length: int | None  # x-amz-decoded-content-length in streaming modes
    trailer_names: tuple[str, ...]  # lower-cased names from x-amz-trailer
    presigned: bool

    @property
    def scope(self) -> str:
        """The credential scope string (``date/region/service/aws4_request``)."""
        c = self.credential
        return f"{c.date}/{c.region}/{c.service}/aws4_request"


@dataclass(frozen=True)
class _Auth:
    """The parsed, not yet checked, authentication parameters of a request."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool
    query: tuple[tuple[str, str], ...]  # decoded (name, value) pairs, in wire order
    amz_date: str | None  # presigned only: X-Amz-Date
    expires: int | None  # presigned only: X-Amz-Expires


# --------------------------------------------------------------------------- encoding


def uri_encode(s: str, *, keep_slash: bool) -> str:
    """SigV4 UriEncode: UTF-8, then every byte but ``A-Za-z0-9-._~`` (and ``/`` if kept) as %XX."""
    return _uri_encode_bytes(s.encode("utf-8"), keep_slash=keep_slash)


def _uri_encode_bytes(data: bytes, *, keep_slash: bool) -> str:
    if keep_slash:
        return "/".join("".join(_ENCODED[b] for b in part) for part in data.split(b"/"))
    return "".join(_ENCODED[b] for b in data)


def _percent_decode(s: str, what: str) -> bytes:
    """Decode %XX escapes exactly once; a ``%`` not followed by two hex digits is refused."""
    if _BAD_PERCENT.search(s):
        raise InvalidArgument(f"Malformed percent-encoding in the {what}.")
    out = bytearray()
    i = 0
    n = len(s)
    while i < n:
        pos = s.find("%", i)
        if pos < 0:
            out += s[i:].encode("ascii")
            break
        out += s[i:pos].encode("ascii")
        out.append(int(s[pos + 1 : pos + 3], 16))
        i = pos + 3
    return bytes(out)


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"The {what} is not valid UTF-8 once decoded.") from None


def _check_wire_text(s: str, what: str, limit: int) -> None:
    if len(s) > limit:
        raise InvalidArgument(f"The {what} is longer than {limit} characters.")
    if not _WIRE_CHARS.fullmatch(s):
        raise InvalidArgument(f"The {what} contains characters that must be percent-encoded.")


def _parse_query(query_string: str) -> tuple[tuple[str, str], ...]:
    """Split and form-decode the raw query (``+`` is a space); a bare name has an empty value."""
    _check_wire_text(query_string, "query string", _MAX_QUERY)
    pairs: list[tuple[str, str]] = []
    for part in query_string.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append(
            (
                _utf8(_percent_decode(name.replace("+", " "), "query string"), "query string"),
                _utf8(_percent_decode(value.replace("+", " "), "query string"), "query string"),
            )
        )
    return tuple(pairs)


def _canonical_uri(raw_path: str) -> str:
    _check_wire_text(raw_path, "request path", _MAX_PATH)
    if not raw_path.startswith("/"):
        raise InvalidArgument("The request path must start with '/'.")
    decoded = _percent_decode(raw_path, "request path")
    _utf8(decoded, "request path")
    return _uri_encode_bytes(decoded, keep_slash=True)


def _canonical_query(pairs: tuple[tuple[str, str], ...], *, presigned: bool) -> str:
    encoded = sorted(
        (uri_encode(name, keep_slash=False), uri_encode(value, keep_slash=False))
        for name, value in pairs
        if not (presigned and name == "X-Amz-Signature")
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


_ASCII_SPACE = re.compile(r"[ \t\n\r\x0b\x0c]+")


def _canonical_header_value(value: str) -> str:
    """Trim and collapse runs of whitespace, as botocore and the SigV4 spec do. Only ASCII
    whitespace: the value holds the header's raw bytes one character each (latin-1), and a
    byte like 0xA0 is part of a UTF-8 character, not a space."""
    return _ASCII_SPACE.sub(" ", value).strip(" ")


# --------------------------------------------------------------------------- keys


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    """kSigning = HMAC chain over date, region, service and ``aws4_request``."""
    k = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


# --------------------------------------------------------------------------- parsing


def _header_error(presigned: bool) -> type[S3Error]:
    return AuthorizationQueryParametersError if presigned else AuthorizationHeaderMalformed


def _parse_credential_value(value: str, *, presigned: bool) -> Credential:
    err = _header_error(presigned)
    parts = value.split("/")
    if len(parts) != 5:
        raise err(
            "The Credential is malformed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
        )
    access_key, date, region, service, terminator = parts
    if not _ACCESS_KEY.fullmatch(access_key):
        raise err("The Credential is malformed: the access key is missing or invalid.")
    if not _SCOPE_DATE.fullmatch(date) or not _valid_date(date):
        raise err(f"The Credential is malformed: invalid date '{date}'.")
    if not _REGION.fullmatch(region) or not _REGION.fullmatch(service):
        raise err("The Credential is malformed: invalid region or service.")
    if terminator != "aws4_request":
        raise err(
            "The Credential is malformed: the terminator must be 'aws4_request', "
            f"not '{terminator}'."
        )
    return Credential(access_key_id=access_key, date=date, region=region, service=service)


def _valid_date(date: str) -> bool:
    try:
        datetime.strptime(date, "%Y%m%d")
    except ValueError:
        return False
    return True


def _parse_signed_headers(value: str, *, presigned: bool) -> tuple[str, ...]:
    err = _header_error(presigned)
    names = value.split(";")
    if len(names) > _MAX_SIGNED_HEADERS:
        raise err(f"SignedHeaders lists more than {_MAX_SIGNED_HEADERS} headers.")
    for name in names:
        if not _HEADER_NAME.fullmatch(name):
            raise err(f"SignedHeaders contains an invalid header name {name!r}.")
    if any(a >= b for a, b in zip(names, names[1:], strict=False)):
        raise err("SignedHeaders must be lower-case, sorted and without duplicates.")
    return tuple(names)


def _parse_signature(value: str, *, presigned: bool) -> str:
    if not _HEX64.fullmatch(value):
        raise _header_error(presigned)("The Signature must be 64 lower-case hex digits.")
    return value


def _parse_authorization_header(value: str, query: tuple[tuple[str, str], ...]) -> _Auth:
    if len(value) > _MAX_AUTH_HEADER:
        raise AuthorizationHeaderMalformed("The Authorization header is too long.")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise InvalidRequest(_UNSUPPORTED_MECHANISM)
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or key not in ("Credential", "SignedHeaders", "Signature") or key in fields:
            raise AuthorizationHeaderMalformed(_AUTH_FIELDS)
        fields[key] = val
    if len(fields) != 3:
        raise AuthorizationHeaderMalformed(_AUTH_FIELDS)
    return _Auth(
        credential=_parse_credential_value(fields["Credential"], presigned=False),
        signed_headers=_parse_signed_headers(fields["SignedHeaders"], presigned=False),
        signature=_parse_signature(fields["Signature"], presigned=False),
        presigned=False,
        query=query,
        amz_date=None,
        expires=None,
    )


def _parse_presigned(query: tuple[tuple[str, str], ...]) -> _Auth:
    err = AuthorizationQueryParametersError
    found: dict[str, str] = {}
    for name, value in query:
        if name in _PRESIGN_PARAMS:
            if name in found:
                raise err(f"The query parameter {name} appears more than once.")
            found[name] = value
    missing = [p for p in _PRESIGN_PARAMS if p not in found]
    if missing:
        raise err(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters; "
            f"missing: {', '.join(missing)}."
        )
    if found["X-Amz-Algorithm"] != ALGORITHM:
        raise err('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256".')
    if not _AMZ_DATE.fullmatch(found["X-Amz-Date"]):
        raise err("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\".")
    expires_text = found["X-Amz-Expires"]
    if not _DIGITS.fullmatch(expires_text):
        raise err("X-Amz-Expires should be a number of seconds.")
    expires = int(expires_text)
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise err(
            f"X-Amz-Expires must be between 1 and {MAX_PRESIGN_EXPIRES} seconds (one week); "
            f"got {expires}."
        )
    return _Auth(
        credential=_parse_credential_value(found["X-Amz-Credential"], presigned=True),
        signed_headers=_parse_signed_headers(found["X-Amz-SignedHeaders"], presigned=True),
        signature=_parse_signature(found["X-Amz-Signature"], presigned=True),
        presigned=True,
        query=query,
        amz_date=found["X-Amz-Date"],
        expires=expires,
    )


def _parse_auth(req: HttpRequestView) -> _Auth:
    header_bytes = sum(len(k) + len(v) for k, v in req.headers.items())
    if header_bytes > _MAX_HEADER_BYTES:
        raise RequestHeaderSectionTooLarge()
    query = _parse_query(req.query_string)
    names = {name for name, _ in query}
    authorization = req.headers.get("authorization")
    presign_markers = names & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"}
    if authorization is not None and presign_markers:
        raise InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified."
        )
    if authorization is not None:
        return _parse_authorization_header(authorization, query)
    if presign_markers:
        return _parse_presigned(query)
    if "AWSAccessKeyId" in names or "Signature" in names:
        raise InvalidRequest(_UNSUPPORTED_MECHANISM)
    raise AccessDenied("Anonymous access is not allowed")


def parse_credential(req: HttpRequestView) -> Credential:
    """Step 1, without any secret: which access key signs this request (header or presigned query).

    Raises AccessDenied ('Anonymous access is not allowed') when there is no authentication at
    all, InvalidRequest for mechanisms other than AWS4-HMAC-SHA256, InvalidArgument when both a
    header and a query signature are present, and AuthorizationHeaderMalformed (or its presigned
    flavour AuthorizationQueryParametersError) when the parameters do not parse.
    """
    return _parse_auth(req).credential


# --------------------------------------------------------------------------- verification


def _request_time(req: HttpRequestView) -> tuple[str, datetime]:
    """The header-mode timestamp: X-Amz-Date, else the Date header (as botocore signs it)."""
    missing = AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    amz_date = req.headers.get("x-amz-date")
    if amz_date is not None:
        if not _AMZ_DATE.fullmatch(amz_date):
            raise missing
        try:
            return amz_date, datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise missing from None
    date = req.headers.get("date")
    if date is None:
        raise missing
    try:
        when = parsedate_to_datetime(date)
        # A date at the edge of the calendar (year 9999 with a negative offset, year 1 with a
        # positive one) parses but has no UTC instant: astimezone raises OverflowError.
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise missing from None
    if not 1000 <= when.year <= 9999:
        raise missing  # no four-digit year: cannot be written as an x-amz-date
    return when.strftime("%Y%m%dT%H%M%SZ"), when


def _parse_amz_date(value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise AuthorizationQueryParametersError(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"."
        ) from None


@dataclass(frozen=True)
class _Payload:
    line: str  # the last line of the canonical request
    mode: PayloadMode
    sha256: str | None
    decoded_content_length: int | None
    trailer_names: tuple[str, ...]


def _payload(req: HttpRequestView, *, presigned: bool) -> _Payload:
    """Classify x-amz-content-sha256; presigned requests default to UNSIGNED-PAYLOAD."""
    value = req.headers.get("x-amz-content-sha256")
    if value is None:
        if presigned:
            return _Payload(UNSIGNED_PAYLOAD, PayloadMode.UNSIGNED, None, None, _no_trailer(req))
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    if _HEX64_ANY_CASE.fullmatch(value):
        return _Payload(value, PayloadMode.SIGNED, value.lower(), None, _no_trailer(req))
    if value == UNSIGNED_PAYLOAD:
        return _Payload(value, PayloadMode.UNSIGNED, None, None, _no_trailer(req))
    mode = _STREAMING_MODES.get(value)
    if mode is None:
        if value.startswith("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"):
            raise InvalidRequest(
                "SigV4a (AWS4-ECDSA-P256-SHA256) streaming payloads are not supported."
            )
        raise InvalidArgument(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER "
            "or a valid sha256 value."
        )
    if presigned:
        raise InvalidRequest(
            "Streaming (aws-chunked) payloads cannot be sent with a presigned URL."
        )
    decoded = req.headers.get("x-amz-decoded-content-length")
    if decoded is None:
        raise MissingContentLength(
            "Streaming uploads must send the x-amz-decoded-content-length header."
        )
    if not _DIGITS.fullmatch(decoded):
        raise InvalidArgument(
            "x-amz-decoded-content-length must be a non-negative decimal integer."
        )
    trailers = _trailer_names(req) if mode in _TRAILER_MODES else _no_trailer(req)
    return _Payload(value, mode, None, int(decoded), trailers)


def _no_trailer(req: HttpRequestView) -> tuple[str, ...]:
    if "x-amz-trailer" in req.headers:
        raise InvalidRequest(
            "x-amz-trailer needs x-amz-content-sha256 STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
            "or STREAMING-UNSIGNED-PAYLOAD-TRAILER."
        )
    return ()


def _trailer_names(req: HttpRequestView) -> tuple[str, ...]:
    raw = req.headers.get("x-amz-trailer", "")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if len(names) > _MAX_TRAILER_NAMES or len(set(names)) != len(names):
        raise InvalidRequest("x-amz-trailer lists too many or duplicate trailers.")
    for name in names:
        if not _TRAILER_NAME.fullmatch(name):
            raise InvalidRequest(
                f"Unsupported trailer {name!r}: only x-amz-checksum-* trailers are accepted."
            )
    return tuple(names)


def changes_what_is_stored(name: str) -> bool:
    """Whether header ``name`` (lower case) is one of ``STORE_HEADERS`` or ``x-bp-*``."""
    return name in STORE_HEADERS or name.startswith(STORE_HEADER_PREFIX)


def _check_signed_header_policy(req: HttpRequestView, auth: _Auth) -> None:
    """host must be signed, and so must every x-amz-* header the signature does not cover and
    every header that changes what is stored."""
    signed = set(auth.signed_headers)
    if "host" not in signed:
        raise AccessDenied("The host header must be signed.")
    exempt = {"x-amz-content-sha256"} if auth.presigned else {"x-amz-content-sha256", "x-amz-date"}
    unsigned = sorted(
        name
        for name in req.headers
        if name not in signed
        and name not in exempt
        and (name.startswith("x-amz-") or changes_what_is_stored(name))
    )
    if unsigned:
        raise AccessDenied(
            "There were headers present in the request which were not signed: "
            + ", ".join(unsigned)
            + " (every x-amz-* header, and every header that changes what is stored, must be"
            " in SignedHeaders)"
        )


def _canonical_headers(req: HttpRequestView, auth: _Auth) -> str:
    lines = []
    for name in auth.signed_headers:
        value = req.headers.get(name)
        if value is None:
            raise SignatureDoesNotMatch(
                f"The signed header '{name}' is not present in the request."
            )
        lines.append(f"{name}:{_canonical_header_value(value)}\n")
    return "".join(lines)


def _canonical_bytes(canonical_request: str) -> list[bytes]:
    """The canonical request as the client hashed it. Everything but header values is ASCII;
    header values hold the bytes sent, one character each (latin-1). The AWS SDKs sign the
    UTF-8 they send (a non-ASCII ``x-amz-meta-*`` value), so the bytes as sent come first.
    A Python client handing ``http.client`` a latin-1 value (``Content-Disposition`` with an
    ``é``) sends one byte but signs its UTF-8: that reading is tried second, for non-ASCII
    requests only. Both readings name the same header bytes, so neither admits another
    request."""
    if canonical_request.isascii():
        return [canonical_request.encode("ascii")]
    return [canonical_request.encode("latin-1"), canonical_request.encode("utf-8")]


def verify(
    req: HttpRequestView, secret_access_key: str, *, region: str, now: datetime
) -> VerifiedRequest:
    """Step 2: recompute the signature and check everything in the checklist. Raises S3 errors.

    ``now`` must be timezone-aware. The body is not read: for SIGNED payloads feed it to
    ``PayloadHashVerifier``; for streaming modes decode it with ``decode_aws_chunked``.
    """
    if now.tzinfo is None:
        raise ValueError("verify() needs a timezone-aware 'now'")
    auth = _parse_auth(req)
    cred = auth.credential
    err = _header_error(auth.presigned)
    where = "the X-Amz-Credential parameter" if auth.presigned else "the authorization header"
    if cred.service != "s3":
        raise err(f"Error parsing {where}; the service '{cred.service}' is wrong; expecting 's3'")
    if cred.region != region:
        raise err(
            f"Error parsing {where}; the region '{cred.region}' is wrong; expecting '{region}'"
        )

    if auth.presigned:
        assert auth.amz_date is not None and auth.expires is not None
        amz_date, when = auth.amz_date, _parse_amz_date(auth.amz_date)
    else:
        amz_date, when = _request_time(req)
    if cred.date != amz_date[:8]:
        raise err(
            f"Error parsing {where}; the date '{cred.date}' is wrong; expecting '{amz_date[:8]}'"
        )

    if auth.presigned:
        assert auth.expires is not None
        if when - now > MAX_CLOCK_SKEW:
            raise AccessDenied("Request is not valid yet")
        if now > when + timedelta(seconds=auth.expires):
            raise AccessDenied("Request has expired")
    elif abs(now - when) > MAX_CLOCK_SKEW:
        raise RequestTimeTooSkewed()

    payload = _payload(req, presigned=auth.presigned)
    _check_signed_header_policy(req, auth)

    canonical_request = "\n".join(
        (
            req.method.upper(),
            _canonical_uri(req.raw_path),
            _canonical_query(auth.query, presigned=auth.presigned),
            _canonical_headers(req, auth),
            ";".join(auth.signed_headers),
            payload.line,
        )
    )
    scope = f"{cred.date}/{cred.region}/{cred.service}/aws4_request"
    key = signing_key(secret_access_key, cred.date, cred.region, cred.service)
    matched = False
    for encoded in _canonical_bytes(canonical_request):
        string_to_sign = "\n".join(
            (ALGORITHM, amz_date, scope, hashlib.sha256(encoded).hexdigest())
        )
        expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(expected, auth.signature)
    if not matched:
        raise SignatureDoesNotMatch()

    return VerifiedRequest(
        credential=cred,
        amz_date=amz_date,
        signature=auth.signature,
        signing_key=key,
        signed_headers=auth.signed_headers,
        payload_mode=payload.mode,
        payload_sha256=payload.sha256,
        decoded_content_length=payload.decoded_content_length,
        trailer_names=payload.trailer_names,
        presigned=auth.presigned,
    )
