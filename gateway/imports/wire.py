"""The import API's wire format: the fields a request body may carry, checked one by one, and
the JSON each source and run is rendered as. No I/O; the service calls these."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from core.credential_seal import SealOpenFailed, check_sealed
from gateway.imports.errors import InvalidSealedCredentials
from gateway.s3 import errors as s3e
from schema.import_records import ImportRun, ImportSource

__all__ = [
    "iso_time",
    "optional_passphrase",
    "optional_text",
    "page_limit",
    "passphrase_of",
    "run_json",
    "sealed_blob",
    "source_json",
    "split_destination",
]

#: Fields that would carry plaintext credentials: refused, whatever else the body holds.
_PLAINTEXT_FIELDS = ("access_key", "secret_key", "session_token", "credentials", "secret")
_MAX_PAGE = 1000


def iso_time(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def source_json(source: ImportSource) -> dict[str, Any]:
    return {
        "id": source.id,
        "name": source.name,
        "endpoint": source.endpoint,
        "region": source.region,
        "bucket": source.bucket,
        "prefix": source.prefix,
        "sealed": True,
        "created_at": iso_time(source.created_at),
    }


def run_json(run: ImportRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "source_id": run.source_id,
        "destination": {"bucket": run.dest_bucket, "prefix": run.dest_prefix},
        "class": run.redundancy_class,
        "region_lock": list(run.region_lock),
        "recipients": [{"key_id": k.key_id, "key_version": k.key_version} for k in run.recipients],
        "run_state": run.state,
        "objects_total": run.objects_total,
        "objects_done": run.objects_done,
        "bytes_total": run.bytes_total,
        "bytes_done": run.bytes_done,
        "errors": run.errors,
        "manifest_complete": run.manifest_complete,
        "submission_id": run.submission_id,
        "last_error": run.last_error,
        "source_marked_at": iso_time(run.source_marked_at),
        "created_at": iso_time(run.created_at),
        "started_at": iso_time(run.started_at),
        "finished_at": iso_time(run.finished_at),
    }


def passphrase_of(data: dict[str, Any]) -> str:
    """The body's passphrase: a non-empty string, else a 400."""
    value = data.get("passphrase")
    if not isinstance(value, str) or not value:
        raise s3e.InvalidArgument("field 'passphrase' must be a non-empty string")
    return value


def optional_passphrase(data: dict[str, Any]) -> str | None:
    """The body's passphrase when it carries one (``passphrase_of``'s rule), else None."""
    return None if data.get("passphrase") is None else passphrase_of(data)


def optional_text(data: dict[str, Any], name: str, default: str) -> str:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > 1024:
        raise s3e.InvalidArgument(f"field {name!r} must be a string of at most 1024 characters")
    return value


def sealed_blob(data: dict[str, Any]) -> str:
    present = [name for name in _PLAINTEXT_FIELDS if name in data]
    if present:
        raise InvalidSealedCredentials(
            f"plaintext credentials are refused (field {present[0]!r}): seal them under a"
            " passphrase first (bulletproof import seal-credentials, or the console)"
        )
    blob = data.get("sealed")
    if isinstance(blob, dict):
        blob = json.dumps(blob, separators=(",", ":"))
    if not isinstance(blob, str) or not blob:
        raise InvalidSealedCredentials("field 'sealed' (the sealed credentials) is required")
    try:
        check_sealed(blob)
    except SealOpenFailed as exc:
        raise InvalidSealedCredentials(str(exc)) from None
    return blob


def split_destination(value: str) -> tuple[str, str]:
    bucket, _, prefix = value.removeprefix("s3://").partition("/")
    if not bucket:
        raise s3e.InvalidArgument("field 'destination' must be BUCKET[/PREFIX]")
    return bucket, prefix


def page_limit(value: str | None) -> int:
    if value is None:
        return 100
    try:
        limit = int(value)
    except ValueError:
        raise s3e.InvalidArgument("limit must be an integer") from None
    if not 1 <= limit <= _MAX_PAGE:
        raise s3e.InvalidArgument(f"limit must be in 1..{_MAX_PAGE}")
    return limit
