"""Domain errors of the federation, independent of any wire protocol.

The tree::

    BulletproofError
    ├── NotFound                 a tenant, bucket, object, version or backend does not exist
    │   ├── NoSuchBucket
    │   ├── NoSuchKey
    │   ├── NoSuchVersion        a version named by id does not exist
    │   └── NoSuchUpload         a multipart upload is unknown, finished or another's
    ├── Conflict                 the request contradicts current state (bucket exists, not empty)
    │   ├── BucketAlreadyExists
    │   └── BucketNotEmpty
    ├── PreconditionFailed       a conditional request's condition does not hold
    ├── InvalidInput             the caller sent something malformed; message names the field
    │   ├── InvalidEnvelope      the client-side encryption envelope is missing or malformed
    │   ├── InvalidRequest       well-formed, but not something that can be done as asked
    │   ├── EntityTooLarge       an object or part over the size limit
    │   ├── EntityTooSmall       a multipart part under the minimum size
    │   ├── IncompleteBody       a body shorter or longer than its declared length
    │   ├── InvalidPart          a listed multipart part is missing or does not match
    │   └── BadDigest            a checksum the caller sent does not match the computed one
    ├── AccessDenied             authenticated principal may not do this
    ├── LimitExceeded(retry_after_s)  a tenant is over one of its limits (rate, open uploads)
    ├── PolicyViolation          no placement can satisfy the class, region lock or jurisdiction
    ├── InsufficientCapacity     the policy is satisfiable but not enough healthy backends now
    ├── QuorumNotMet(needed, got)  fewer replicas acknowledged than the write quorum
    ├── BackendUnavailable       one backend could not be reached or refused the call
    ├── BackendNotFound          one backend does not hold the requested locator
    ├── IntegrityError           bytes read from a backend do not match their recorded SHA-256
    └── MetadataUnavailable      the metadata database cannot be reached

Only these cross module and Ray boundaries: vendor exceptions (botocore, asyncpg, redis) are
translated where they are raised. ``gateway/s3/errors.py`` maps each class to an S3 error.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BackendNotFound",
    "BadDigest",
    "BackendUnavailable",
    "BucketAlreadyExists",
    "BucketNotEmpty",
    "BulletproofError",
    "Conflict",
    "EntityTooLarge",
    "EntityTooSmall",
    "IncompleteBody",
    "InsufficientCapacity",
    "IntegrityError",
    "LimitExceeded",
    "InvalidEnvelope",
    "InvalidInput",
    "InvalidPart",
    "InvalidRequest",
    "MetadataUnavailable",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "NoSuchVersion",
    "NotFound",
    "PolicyViolation",
    "PreconditionFailed",
    "QuorumNotMet",
]


class BulletproofError(Exception):
    """Base of every domain error; ``str(err)`` is safe to show to the caller."""


class NotFound(BulletproofError):
    pass


class NoSuchBucket(NotFound):
    pass


class NoSuchKey(NotFound):
    pass


class NoSuchVersion(NotFound):
    pass


class NoSuchUpload(NotFound):
    pass


class Conflict(BulletproofError):
    pass


class BucketAlreadyExists(Conflict):
    pass


class BucketNotEmpty(Conflict):
    pass


class PreconditionFailed(BulletproofError):
    pass


class InvalidInput(BulletproofError):
    pass


class InvalidEnvelope(InvalidInput):
    pass


class InvalidRequest(InvalidInput):
    """Well-formed, but not something that can be done as asked (a copy of ciphertext under
    another name, parts stored under two schemes, a size that contradicts the parts...)."""


class EntityTooLarge(InvalidInput):
    pass


class EntityTooSmall(InvalidInput):
    pass


class IncompleteBody(InvalidInput):
    pass


class InvalidPart(InvalidInput):
    pass


class BadDigest(InvalidInput):
    pass


class AccessDenied(BulletproofError):
    pass


class LimitExceeded(BulletproofError):
    """A tenant is over a limit that frees up by itself (S3's ``SlowDown``): the caller may
    retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


class PolicyViolation(BulletproofError):
    """No placement can ever satisfy the request's class and constraints (a 400, not a 503)."""


class InsufficientCapacity(BulletproofError):
    """The policy could be satisfied, but not with the backends healthy right now (a 503)."""


class QuorumNotMet(BulletproofError):
    def __init__(self, needed: int, got: int, detail: str = "") -> None:
        self.needed = needed
        self.got = got
        super().__init__(
            f"write quorum not met: {got} of {needed} required replicas acknowledged"
            + (f" ({detail})" if detail else "")
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the extra constructor arguments when the error crosses a Ray boundary.
        return (QuorumNotMet, (self.needed, self.got))


class BackendUnavailable(BulletproofError):
    """``reason``: what kind of trouble, as the client seam classified it (``unreachable``,
    ``tls``, ``credentials``, ``bucket-missing``, ``refused``, ``timeout`` or ``unavailable``),
    so the onboarding probe can name the step that failed."""

    def __init__(self, message: str = "", reason: str = "unavailable") -> None:
        self.reason = reason
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (BackendUnavailable, (str(self), self.reason))


class BackendNotFound(BulletproofError):
    pass


class IntegrityError(BulletproofError):
    pass


class MetadataUnavailable(BulletproofError):
    pass
