"""The records of bucket imports (sources, runs, manifest entries, objects) and their row
mappers: what ``schema.imports.ImportRepository`` returns and the jobs and the API pass
around. Plain frozen values, no queries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from schema.jobs import MAX_ERROR_CHARS

__all__ = [
    "MARKER_ETAG",
    "MARKER_RUN",
    "ImportObject",
    "ImportRun",
    "ImportSource",
    "KeyRef",
    "ManifestEntry",
    "ManifestSegment",
    "MarkedObject",
    "error_of",
    "json_value",
    "object_of",
    "run_of",
    "source_of",
]


#: User metadata an imported version carries: the run that wrote it and the source object's
#: ETag (so a transfer that is retried after its commit finds its version: ``written_by_run``).
MARKER_RUN = "bp-import-run"
MARKER_ETAG = "bp-import-etag"


@dataclass(frozen=True)
class ImportSource:
    id: int
    tenant_id: int
    name: str
    endpoint: str
    region: str
    bucket: str
    prefix: str
    sealed: str
    created_at: datetime


@dataclass(frozen=True)
class KeyRef:
    """A published public key an import encrypts to."""

    key_id: str
    key_version: int


@dataclass(frozen=True)
class ImportRun:
    id: int
    tenant_id: int
    source_id: int
    dest_bucket: str
    dest_prefix: str
    redundancy_class: str | None
    region_lock: tuple[str, ...]
    recipients: tuple[KeyRef, ...]
    state: str
    objects_total: int
    objects_done: int
    bytes_total: int
    bytes_done: int
    errors: int
    manifest_complete: bool
    submission_id: str | None
    source_marked_at: datetime | None
    last_error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class ManifestEntry:
    """One source object as listed. ``etag`` without quotes; ``checksum`` is ``ALG:value``, or
    ``ALG:`` when the listing names the algorithm only (the value comes with the object)."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None = None
    checksum: str | None = None


@dataclass(frozen=True)
class ImportObject:
    run_id: int
    key: str
    size: int
    etag: str
    last_modified: datetime | None
    checksum: str | None
    state: str
    attempts: int
    error: str | None
    version_pk: int | None
    #: What the last ``import verify`` found wrong with it (None: nothing, or never verified).
    verify_problem: str | None = None


@dataclass(frozen=True)
class ManifestSegment:
    run_id: int
    seq: int
    keys: int
    bytes: int
    first_key: str
    last_key: str


@dataclass(frozen=True)
class MarkedObject:
    """A deletion-manifest entry: the tenant may delete this source object."""

    key: str
    size: int
    etag: str
    version_pk: int | None


def json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def source_of(row: asyncpg.Record) -> ImportSource:
    return ImportSource(**dict(row))


def run_of(row: asyncpg.Record) -> ImportRun:
    values = dict(row)
    values["region_lock"] = tuple(values["region_lock"] or ())
    values["recipients"] = tuple(
        KeyRef(str(r["key_id"]), int(r["key_version"]))
        for r in json_value(values["recipients"]) or ()
    )
    return ImportRun(**values)


def object_of(row: asyncpg.Record) -> ImportObject:
    return ImportObject(**dict(row))


def error_of(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
