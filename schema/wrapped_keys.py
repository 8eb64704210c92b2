"""Re-wrapping a version's data key: key rotation without moving a byte.

A client that rotates its key-encryption key sends each version's data key wrapped under the
new one; the swap is a metadata change only (the ciphertext does not depend on how its data key
is wrapped). The rule it keeps: a version is re-wrapped only if it is still wrapped under the
key id and version the client unwrapped (and, if named, is the same content), checked under the
version row's lock, so two rotations racing on one object cannot lose a wrap. The previous
wrapped key is kept in ``wrapped_key_history`` in the same transaction, and the change is
logged (``schema/changelog.py``).

The read side of a rotation is :meth:`WrappedKeyRepository.envelopes`: the envelope and the
stored BP1 header of up to a batch of versions in one query, so a client re-wraps N objects
with O(N/1000) requests instead of a ranged GET each. The header is served as recorded at the
commit, unverified: the client checks it (structure, binding to tenant/bucket/key/content id,
key commitment) before it wraps anything against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from core.errors import NoSuchKey, PreconditionFailed
from schema.changelog import ChangelogRepository

__all__ = ["Rewrap", "VersionEnvelope", "WrappedKeyRepository"]


@dataclass(frozen=True, slots=True)
class VersionEnvelope:
    """What rotation needs of one version: its envelope and its BP1 header.

    ``bp1_header`` is None for plaintext and for versions committed before migration 0022
    (the client then reads the header from the object itself).
    """

    key: str
    #: The id S3 clients know (``null`` for the null version).
    version_id: str
    encrypted: bool
    wrapped_key: bytes | None
    key_id: str | None
    key_version: int | None
    wrap_alg: str | None
    content_id: str | None
    bp1_header: bytes | None


# One row per requested (key, version) found, with the request's ordinal: a NULL version
# names the key's current version (never a delete marker), ``null`` the null version, else
# the version id. A named version may be a delete marker (callers say so).
_LOOKUP = """
SELECT i.ord, v.id, v.tenant_id, v.key, v.version_id, v.null_version, v.is_delete_marker,
       v.encrypted, v.wrapped_key, v.key_id, v.key_version, v.wrap_alg, v.content_id,
       v.bp1_header
FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS i(key, vid, ord)
JOIN LATERAL (
    SELECT o.* FROM object_versions o
    WHERE o.bucket_id = $1 AND o.key = i.key AND (
        (i.vid IS NULL AND o.is_latest AND NOT o.is_delete_marker)
        OR (i.vid = 'null' AND o.null_version)
        OR (i.vid <> 'null' AND o.version_id = i.vid AND NOT o.null_version))
    LIMIT 1
) v ON TRUE
"""


@dataclass(frozen=True, slots=True)
class Rewrap:
    """One re-wrap of a batch: the version (``version_id`` None: the current one), what it
    must still be wrapped under (and, if given, which content it must be), the new wrap."""

    key: str
    expect_key_id: str
    expect_key_version: int
    wrapped_key: bytes
    key_id: str
    key_version: int
    wrap_alg: str
    expect_content_id: str | None = None
    version_id: str | None = None


class WrappedKeyRepository:
    def __init__(self) -> None:
        self._changelog = ChangelogRepository()

    async def envelopes(
        self, conn: asyncpg.Connection, bucket_id: int, refs: Sequence[tuple[str, str | None]]
    ) -> list[VersionEnvelope | None]:
        """The envelope and stored header of each ``(key, version_id)`` of one bucket, in
        order: ``version_id`` None is the key's current version, ``"null"`` the null version.
        None where there is no such object or version, or it is a delete marker (the caller
        tells those apart for its error codes). One query whatever the batch size; the bucket
        id is the caller's tenant's (resolved by authorization), so nothing of another tenant
        can match."""
        rows = await conn.fetch(
            _LOOKUP, bucket_id, [key for key, _ in refs], [vid for _, vid in refs]
        )
        found: list[VersionEnvelope | None] = [None] * len(refs)
        for row in rows:
            if row["is_delete_marker"]:
                continue
            wrapped, header = row["wrapped_key"], row["bp1_header"]
            found[row["ord"] - 1] = VersionEnvelope(
                key=row["key"],
                version_id="null" if row["null_version"] else row["version_id"],
                encrypted=row["encrypted"],
                wrapped_key=bytes(wrapped) if wrapped is not None else None,
                key_id=row["key_id"],
                key_version=row["key_version"],
                wrap_alg=row["wrap_alg"],
                content_id=row["content_id"],
                bp1_header=bytes(header) if header is not None else None,
            )
        return found

    async def rewrap_many(
        self, conn: asyncpg.Connection, bucket_id: int, items: Sequence[Rewrap]
    ) -> list[str | NoSuchKey | PreconditionFailed]:
        """Swap the wrapped data key of each item's version if it still is the expected one,
        in the caller's transaction, items in order; per item the API version id re-wrapped
        (``null`` for the null version), or the error that refused it (nothing is raised).

        Without ``version_id`` the key's current version is re-wrapped; with it, that version
        (the id S3 clients know, ``null`` for the null version), current or not, so that a
        rotation can leave no version wrapped under a retired key. NoSuchKey: no current
        object, no such version, or the version is a delete marker. PreconditionFailed: not
        (or no longer) wrapped under the expected key id and version (a concurrent rotation,
        or plaintext), or another content than ``expect_content_id``. The previous entry moves
        to ``wrapped_key_history`` and the change to the changelog; no backend is touched (the
        ciphertext does not depend on how its data key is wrapped).

        A constant number of statements whatever the batch size (look up, lock, history,
        update, changelog), where one item at a time cost about seven round trips each. The
        rows are locked ``FOR UPDATE`` in id order (two batches over the same versions cannot
        deadlock) and the preconditions checked under the lock; an item naming a version an
        earlier item of the batch re-wrapped sees that re-wrap (its precondition then fails,
        as it would one request later).
        """
        if not items:
            return []
        found = await conn.fetch(
            _LOOKUP, bucket_id, [i.key for i in items], [i.version_id for i in items]
        )
        pk_of: dict[int, int] = {row["ord"] - 1: row["id"] for row in found}
        locked = {
            row["id"]: dict(row)
            for row in await conn.fetch(
                "SELECT id, tenant_id, key, version_id, null_version, is_latest,"
                " is_delete_marker, encrypted, wrapped_key, key_id, key_version, wrap_alg,"
                " content_id FROM object_versions WHERE id = ANY($1::bigint[])"
                " ORDER BY id FOR UPDATE",
                sorted(set(pk_of.values())),
            )
        }
        results: list[str | NoSuchKey | PreconditionFailed] = []
        history: list[tuple[int, bytes, str, int, str]] = []
        changes: list[tuple[int, str, str]] = []
        for index, item in enumerate(items):
            vid = item.version_id
            what = f"object {item.key!r}" if vid is None else f"version {vid!r} of {item.key!r}"
            row = locked.get(pk_of.get(index, -1))
            if row is None or (vid is None and not row["is_latest"]):
                results.append(NoSuchKey(f"no {what}"))  # gone, or replaced meanwhile
                continue
            if row["is_delete_marker"]:
                results.append(NoSuchKey(f"{what} is a delete marker"))
                continue
            refusal = _refusal(row, item, what)
            if refusal is not None:
                results.append(refusal)
                continue
            history.append(
                (row["id"], row["wrapped_key"], row["key_id"], row["key_version"], row["wrap_alg"])
            )
            row.update(
                wrapped_key=item.wrapped_key,
                key_id=item.key_id,
                key_version=item.key_version,
                wrap_alg=item.wrap_alg,
                changed=True,
            )
            changes.append((row["tenant_id"], row["key"], row["version_id"]))
            results.append("null" if row["null_version"] else row["version_id"])
        if history:
            await conn.execute(
                "INSERT INTO wrapped_key_history (version_pk, wrapped_key, key_id, key_version,"
                " wrap_alg) SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[],"
                " $4::int[], $5::text[])",
                *(list(column) for column in zip(*history, strict=True)),
            )
            final = [r for r in locked.values() if r.get("changed")]
            await conn.execute(
                "UPDATE object_versions o SET wrapped_key = u.wrapped_key, key_id = u.key_id,"
                " key_version = u.key_version, wrap_alg = u.wrap_alg"
                " FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::int[], $5::text[])"
                " AS u(id, wrapped_key, key_id, key_version, wrap_alg) WHERE o.id = u.id",
                [r["id"] for r in final],
                [r["wrapped_key"] for r in final],
                [r["key_id"] for r in final],
                [r["key_version"] for r in final],
                [r["wrap_alg"] for r in final],
            )
            await self._changelog.record_many(
                conn,
                [(tenant, bucket_id, key, version) for tenant, key, version in changes],
                "rewrap",
            )
        return results


def _refusal(row: dict[str, object], item: Rewrap, what: str) -> PreconditionFailed | None:
    """Why a locked version may not be re-wrapped as ``item`` asks, or None."""
    if not row["encrypted"]:
        return PreconditionFailed(f"{what} is not encrypted; nothing to re-wrap")
    if (row["key_id"], row["key_version"]) != (item.expect_key_id, item.expect_key_version):
        return PreconditionFailed(
            f"{what} is wrapped under {row['key_id']} v{row['key_version']},"
            f" not the expected {item.expect_key_id} v{item.expect_key_version}"
        )
    if item.expect_content_id is not None and row["content_id"] != item.expect_content_id.lower():
        return PreconditionFailed(
            f"{what} is another version (content id {row['content_id']}) than the"
            f" expected {item.expect_content_id}"
        )
    return None
