"""The import API's own errors, each an ``S3Error`` with the status and code the API renders,
and the one mapping of a source's domain errors (``core.import_source``) to them."""

from __future__ import annotations

from core.import_source import (
    SourceAccessDenied,
    SourceBucketMissing,
    SourceError,
    SourceUnreachable,
)
from gateway.s3 import errors as s3e

__all__ = [
    "InvalidSealedCredentials",
    "JobApiUnavailable",
    "PassphraseRequired",
    "SourceFailed",
    "WrongPassphrase",
    "source_failed",
]


class WrongPassphrase(s3e.S3Error):
    status = 403
    code = "WrongPassphrase"
    default_message = "The passphrase does not open this source's sealed credentials."


class PassphraseRequired(s3e.S3Error):
    status = 400
    code = "PassphraseRequired"
    default_message = (
        "The cluster no longer holds this import's passphrase (it restarted, or the passphrase"
        " expired): send it again."
    )


class InvalidSealedCredentials(s3e.S3Error):
    status = 400
    code = "InvalidSealedCredentials"
    default_message = "The sealed credentials are malformed."


class SourceFailed(s3e.S3Error):
    """The source answered badly (the ``code`` says how)."""

    status = 502
    code = "SourceError"
    default_message = "The source failed."


class _SourceUnreachable(SourceFailed):
    status = 502
    code = "SourceUnreachable"


class _SourceAccessDenied(SourceFailed):
    status = 403
    code = "SourceAccessDenied"


class _SourceBucketMissing(SourceFailed):
    status = 404
    code = "SourceBucketMissing"


class JobApiUnavailable(s3e.S3Error):
    status = 503
    code = "JobApiUnavailable"
    default_message = "Ray's Job Submission API is unavailable."


def source_failed(exc: SourceError) -> SourceFailed:
    for kind, error in (
        (SourceUnreachable, _SourceUnreachable),
        (SourceAccessDenied, _SourceAccessDenied),
        (SourceBucketMissing, _SourceBucketMissing),
    ):
        if isinstance(exc, kind):
            return error(str(exc))
    return SourceFailed(str(exc))
