"""S3 errors: tiny classes with status, code and message, and the one table from domain errors.

Every error leaving the gateway renders as ``<Error><Code/><Message/><Resource/><RequestId/>``.
An exception that is neither an ``S3Error`` nor a mapped domain error becomes ``InternalError``
and its text never reaches the client (see ``to_s3_error``).
"""

from __future__ import annotations

from core import errors as domain

__all__ = [
    "S3Error",
    "to_s3_error",
    "AccessDenied",
    "AuthorizationHeaderMalformed",
    "BadDigest",
    "ExpiredToken",
    "InvalidToken",
    "BucketAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "BucketNotEmpty",
    "Conflict",
    "EntityTooLarge",
    "EntityTooSmall",
    "IncompleteBody",
    "InternalError",
    "InvalidAccessKeyId",
    "InvalidArgument",
    "InvalidBucketName",
    "InvalidDigest",
    "InvalidPartNumber",
    "InvalidRange",
    "InvalidRequest",
    "InvalidStorageClass",
    "KeyTooLongError",
    "MalformedXML",
    "MetadataTooLarge",
    "MethodNotAllowed",
    "MissingContentLength",
    "NoSuchBucket",
    "NoSuchKey",
    "NotImplemented",
    "NoSuchUpload",
    "NoSuchVersion",
    "InvalidPart",
    "InvalidPartOrder",
    "NotModified",
    "PreconditionFailed",
    "RequestHeaderSectionTooLarge",
    "RequestTimeTooSkewed",
    "ServiceUnavailable",
    "SignatureDoesNotMatch",
    "RequestTimeout",
    "SlowDown",
    "XAmzContentSHA256Mismatch",
]


class S3Error(Exception):
    status: int = 500
    code: str = "InternalError"
    default_message: str = "We encountered an internal error. Please try again."

    def __init__(
        self, message: str | None = None, *, resource: str = "", retry_after_s: int | None = None
    ) -> None:
        self.message = message or self.default_message
        self.resource = resource
        #: Seconds sent as ``Retry-After`` (throttling answers), None: no such header.
        self.retry_after_s = retry_after_s
        super().__init__(self.message)


def _error(name: str, status: int, message: str) -> type[S3Error]:
    return type(name, (S3Error,), {"status": status, "code": name, "default_message": message})


AccessDenied = _error("AccessDenied", 403, "Access Denied")
AuthorizationHeaderMalformed = _error(
    "AuthorizationHeaderMalformed", 400, "The authorization header is malformed."
)
BadDigest = _error("BadDigest", 400, "The Content-MD5 or checksum you specified did not match.")
BucketAlreadyExists = _error(
    "BucketAlreadyExists", 409, "The requested bucket name is not available."
)
BucketAlreadyOwnedByYou = _error(
    "BucketAlreadyOwnedByYou", 409, "Your previous request to create the named bucket succeeded."
)
BucketNotEmpty = _error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty.")
Conflict = _error("Conflict", 409, "The request conflicts with the current state of the resource.")
EntityTooLarge = _error(
    "EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed size."
)
EntityTooSmall = _error(
    "EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed size."
)
ExpiredToken = _error("ExpiredToken", 400, "The provided token has expired.")
IncompleteBody = _error("IncompleteBody", 400, "You did not provide the number of bytes specified.")
InternalError = _error("InternalError", 500, "We encountered an internal error. Please try again.")
InvalidAccessKeyId = _error(
    "InvalidAccessKeyId", 403, "The AWS access key Id you provided does not exist in our records."
)
InvalidArgument = _error("InvalidArgument", 400, "Invalid Argument")
InvalidBucketName = _error("InvalidBucketName", 400, "The specified bucket is not valid.")
InvalidDigest = _error("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
InvalidRange = _error("InvalidRange", 416, "The requested range is not satisfiable")
InvalidPartNumber = _error("InvalidPartNumber", 416, "The requested partnumber is not satisfiable")
InvalidRequest = _error("InvalidRequest", 400, "Invalid Request")
InvalidToken = _error("InvalidToken", 400, "The provided token is malformed or otherwise invalid.")
InvalidStorageClass = _error(
    "InvalidStorageClass", 400, "The storage class you specified is not valid."
)
KeyTooLongError = _error("KeyTooLongError", 400, "Your key is too long")
MalformedXML = _error("MalformedXML", 400, "The XML you provided was not well-formed.")
MetadataTooLarge = _error(
    "MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size."
)
MethodNotAllowed = _error(
    "MethodNotAllowed", 405, "The specified method is not allowed against this resource."
)
MissingContentLength = _error(
    "MissingContentLength", 411, "You must provide the Content-Length HTTP header."
)
NoSuchBucket = _error("NoSuchBucket", 404, "The specified bucket does not exist")
NoSuchKey = _error("NoSuchKey", 404, "The specified key does not exist.")
NoSuchUpload = _error(
    "NoSuchUpload",
    404,
    "The specified multipart upload does not exist. The upload ID might be invalid, or the"
    " multipart upload might have been aborted or completed.",
)
NoSuchVersion = _error(
    "NoSuchVersion",
    404,
    "The version ID specified in the request does not match an existing version.",
)
InvalidPart = _error(
    "InvalidPart",
    400,
    "One or more of the specified parts could not be found. The part might not have been"
    " uploaded, or the specified entity tag might not have matched the part's entity tag.",
)
InvalidPartOrder = _error(
    "InvalidPartOrder",
    400,
    "The list of parts was not in ascending order. Parts must be ordered by part number.",
)
NotModified = _error("NotModified", 304, "Not Modified")
PreconditionFailed = _error(
    "PreconditionFailed", 412, "At least one of the preconditions you specified did not hold."
)
NotImplemented = _error(  # noqa: A001 - the S3 error code is literally NotImplemented
    "NotImplemented",
    501,
    "A header or operation you provided implies functionality that is not implemented.",
)
RequestHeaderSectionTooLarge = _error(
    "RequestHeaderSectionTooLarge",
    400,
    "Your request header section exceeds the maximum allowed size.",
)
RequestTimeTooSkewed = _error(
    "RequestTimeTooSkewed",
    403,
    "The difference between the request time and the server's time is too large.",
)
ServiceUnavailable = _error("ServiceUnavailable", 503, "Service is unable to handle request.")
SignatureDoesNotMatch = _error(
    "SignatureDoesNotMatch",
    403,
    "The request signature we calculated does not match the signature you provided.",
)
SlowDown = _error("SlowDown", 503, "Please reduce your request rate.")
RequestTimeout = _error(
    "RequestTimeout",
    400,
    "Your socket connection to the server was not read from or written to within the timeout"
    " period. Idle connections will be closed.",
)
XAmzContentSHA256Mismatch = _error(
    "XAmzContentSHA256Mismatch",
    400,
    "The provided 'x-amz-content-sha256' header does not match what was computed.",
)

# Domain error class -> S3 error class. Most specific first: the first isinstance match wins.
_DOMAIN_TO_S3: tuple[tuple[type[domain.BulletproofError], type[S3Error]], ...] = (
    (domain.NoSuchBucket, NoSuchBucket),
    (domain.NoSuchKey, NoSuchKey),
    (domain.NoSuchVersion, NoSuchVersion),
    (domain.NoSuchUpload, NoSuchUpload),
    (domain.NotFound, NoSuchKey),
    (domain.BucketAlreadyExists, BucketAlreadyOwnedByYou),
    (domain.BucketNotEmpty, BucketNotEmpty),
    (domain.Conflict, Conflict),
    (domain.PreconditionFailed, PreconditionFailed),
    (domain.InvalidEnvelope, InvalidRequest),
    (domain.InvalidRequest, InvalidRequest),
    (domain.EntityTooLarge, EntityTooLarge),
    (domain.EntityTooSmall, EntityTooSmall),
    (domain.IncompleteBody, IncompleteBody),
    (domain.InvalidPart, InvalidPart),
    (domain.BadDigest, BadDigest),
    (domain.InvalidInput, InvalidArgument),
    (domain.AccessDenied, AccessDenied),
    (domain.LimitExceeded, SlowDown),
    (domain.PolicyViolation, InvalidRequest),
    (domain.InsufficientCapacity, ServiceUnavailable),
    (domain.QuorumNotMet, ServiceUnavailable),
    (domain.BackendUnavailable, ServiceUnavailable),
    (domain.MetadataUnavailable, ServiceUnavailable),
    (domain.IntegrityError, ServiceUnavailable),
)


def to_s3_error(exc: BaseException, resource: str = "") -> S3Error:
    """The S3 error to send for ``exc``; unknown exceptions become a message-less InternalError."""
    if isinstance(exc, S3Error):
        if not exc.resource:
            exc.resource = resource
        return exc
    if isinstance(exc, domain.BulletproofError):
        for domain_cls, s3_cls in _DOMAIN_TO_S3:
            if isinstance(exc, domain_cls):
                retry = exc.retry_after_s if isinstance(exc, domain.LimitExceeded) else None
                return s3_cls(str(exc) or None, resource=resource, retry_after_s=retry)
    return InternalError(resource=resource)
