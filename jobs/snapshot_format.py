"""The encrypted metadata snapshot file ("BPSNAP1") and its manifest.

A snapshot file is self-describing so that restoring needs nothing but the file (or its parts)
and the operator's private key::

    magic     8  b"BPSNAP1\\n"
    length    4  big-endian length n of the descriptor
    descriptor n  UTF-8 JSON: {"v": 1, "name", "created_at", "pg_dump_version",
                  "format": "pg_dump-custom", "plaintext_length",
                  "binding": {"tenant", "bucket", "key"}, "envelope": {<x-amz-meta-bp-* headers>}}
    body      ..  a BP1 object (client SDK ``seal_stream``): the pg_dump custom-format archive
                  encrypted to the operator's public key (X25519 or RSA wrap)

The descriptor is not secret. It is covered by the BP1 binding where it matters: ``unseal``
checks the object binding (tenant, bucket, key = the snapshot's name, content id), so a file
renamed or spliced from another snapshot fails to decrypt. The gateway never holds the private
key: a snapshot can be read only by the operator.

The *manifest* is the small JSON that says where a snapshot's parts are: part sizes and
SHA-256, their locators on each backend, and how to reach those backends (endpoint, bucket or
path, credentials sealed with the master key). It is written beside the database rows and
into ``<state_dir>/snapshots/<name>.json``: with it, the master key file and the private key,
a snapshot is restorable when the metadata database is gone.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import IO, Any

__all__ = [
    "BINDING_BUCKET",
    "BINDING_TENANT",
    "MAGIC",
    "SnapshotFormatError",
    "encode_descriptor",
    "iter_file",
    "read_descriptor",
]

MAGIC = b"BPSNAP1\n"
BINDING_TENANT = "bulletproof-operator"
BINDING_BUCKET = "metadata-snapshots"
_MAX_DESCRIPTOR = 64 * 1024


class SnapshotFormatError(Exception):
    """Not a Bulletproof snapshot file, or a damaged one."""


def encode_descriptor(descriptor: dict[str, Any]) -> bytes:
    body = json.dumps(descriptor, sort_keys=True, separators=(",", ":")).encode()
    if len(body) > _MAX_DESCRIPTOR:
        raise SnapshotFormatError("snapshot descriptor too large")
    return MAGIC + struct.pack(">I", len(body)) + body


def read_descriptor(handle: IO[bytes]) -> dict[str, Any]:
    """Read magic and descriptor; ``handle`` is left at the start of the BP1 body."""
    head = handle.read(len(MAGIC) + 4)
    if len(head) != len(MAGIC) + 4 or head[: len(MAGIC)] != MAGIC:
        raise SnapshotFormatError("not a Bulletproof snapshot (bad magic)")
    (length,) = struct.unpack(">I", head[len(MAGIC) :])
    if length > _MAX_DESCRIPTOR:
        raise SnapshotFormatError("snapshot descriptor too large")
    raw = handle.read(length)
    if len(raw) != length:
        raise SnapshotFormatError("snapshot truncated in its descriptor")
    try:
        descriptor = json.loads(raw)
    except ValueError as exc:
        raise SnapshotFormatError("snapshot descriptor is not JSON") from exc
    if not isinstance(descriptor, dict) or descriptor.get("v") != 1:
        raise SnapshotFormatError("unsupported snapshot descriptor version")
    return descriptor


def iter_file(handle: IO[bytes], chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """A file's bytes in ``chunk``-sized pieces (streams feed the BP1 encryptor/decryptor)."""
    while True:
        data = handle.read(chunk)
        if not data:
            return
        yield data
