"""Restoring a metadata snapshot into a fresh database (``bulletproof restore SNAPSHOT``).

SNAPSHOT is one of:

- a manifest (``<state_dir>/snapshots/<name>.json``, written by the snapshotter): the parts
  are fetched from the backends it names, with clients built from the credentials it carries
  sealed under the master key. This is the disaster case: no metadata database is needed.
- a BPSNAP1 file (a snapshot fetched by any other means);
- ``backend:/DIR`` or ``backend:ENDPOINT_URL/BUCKET``: the newest manifest, read from any
  backend that holds that snapshot (every snapshot writes it there under one fixed locator);
  for when the database and the node that kept the manifest files are both gone;
- a snapshot name or id known to the *current* metadata database (``BP_DATABASE_URL``), e.g.
  to restore a copy into a staging database.

Every part is checked against its SHA-256 (and the whole file against the snapshot's), the file
is decrypted with the operator's private key (BP1 authenticates every byte and the binding to
the snapshot's name), and ``pg_restore`` loads it into the target database, which must be
empty (created if it does not exist): a restore never merges into live metadata.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from actors.backend_actor import BackendSpec, build_client
from actors.backend_client import LocalDirectoryClient, S3BackendClient
from actors.healing import HealingContext
from client import unseal_stream
from client.recipient import PrivateKey
from core.errors import BackendNotFound, BackendUnavailable
from core.settings import Settings
from jobs.snapshot_format import SnapshotFormatError, iter_file, read_descriptor
from jobs.snapshotter import manifest_of, open_manifest, run_tool
from schema.db import count_tables, ensure_database
from schema.garbage import LATEST_MANIFEST_LOCATOR

__all__ = [
    "RestoreError",
    "decrypt_snapshot",
    "fetch_snapshot",
    "manifest_from_backend",
    "private_key_from_pem",
    "restore_snapshot",
]

log = logging.getLogger(__name__)


class RestoreError(Exception):
    """The snapshot could not be fetched, verified, decrypted or loaded; nothing was loaded
    unless the message says so."""


def _fetch_part(
    part: dict[str, Any], backends: dict[str, dict[str, Any]], master_key_file: str
) -> bytes:
    errors = []
    for copy in part["copies"]:
        info = backends[copy["backend"]]
        sealed = info.get("sealed_credentials")
        spec = BackendSpec(
            name=copy["backend"],
            kind=info["kind"],
            endpoint=info.get("endpoint"),
            bucket=info.get("bucket"),
            path=info.get("path"),
            sealed_credentials=base64.b64decode(sealed) if sealed else None,
            # Catalogues written before issue 13 carry neither: the old fixed values.
            region=info.get("signing_region") or "us-east-1",
            addressing_style=info.get("addressing_style") or "path",
        )
        try:
            data = build_client(spec, master_key_file).get(copy["locator"])
        except Exception as exc:  # try the next copy
            errors.append(f"{copy['backend']}: {type(exc).__name__}: {exc}")
            continue
        if len(data) == part["size"] and hashlib.sha256(data).hexdigest() == part["sha256"]:
            return data
        errors.append(f"{copy['backend']}: checksum mismatch")
    raise RestoreError(f"no intact copy of part {part['part']}: {'; '.join(errors)}")


def fetch_from_manifest(manifest: dict[str, Any], out: Path, master_key_file: str) -> None:
    """Assemble the snapshot file from its parts, each verified, then the whole."""
    digest = hashlib.sha256()
    with out.open("wb") as sink:
        for part in manifest["parts"]:
            data = _fetch_part(part, manifest["backends"], master_key_file)
            sink.write(data)
            digest.update(data)
    if digest.hexdigest() != manifest["sha256"]:
        raise RestoreError("the assembled snapshot does not match its SHA-256")


BACKEND_SOURCE = "backend:"


def manifest_from_backend(
    where: str, private_key: PrivateKey, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The newest snapshot manifest one of its backends holds (``LATEST_MANIFEST_LOCATOR``),
    opened with the operator's private key (it is sealed to it there).
    ``where``: a local backend's directory (``/srv/bp/disk1``), or an S3 backend as
    ``ENDPOINT_URL/BUCKET`` with its credentials in ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` (given by the operator: the database that had them is gone)."""
    env = dict(os.environ if env is None else env)
    if where.startswith("/"):
        client: Any = LocalDirectoryClient(where)
    else:
        endpoint, _, bucket = where.rstrip("/").rpartition("/")
        if "://" not in endpoint or not bucket:
            raise RestoreError(f"backend source {where!r}: expected ENDPOINT_URL/BUCKET or /DIR")
        try:
            client = S3BackendClient(
                endpoint=endpoint,
                bucket=bucket,
                access_key=env["AWS_ACCESS_KEY_ID"],
                secret_key=env["AWS_SECRET_ACCESS_KEY"],
                region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            )
        except KeyError as exc:
            raise RestoreError(f"backend source {where!r} needs {exc.args[0]}") from None
    try:
        stored = client.get(LATEST_MANIFEST_LOCATOR)
    except (BackendNotFound, BackendUnavailable) as exc:
        raise RestoreError(f"no snapshot manifest on backend {where!r}: {exc}") from None
    try:
        return open_manifest(stored, private_key)
    except Exception as exc:  # altered, or sealed to another key
        raise RestoreError(f"the manifest on {where!r} does not open: {exc}") from None


async def fetch_snapshot(
    source: str, settings: Settings, workdir: Path, private_key: PrivateKey | None = None
) -> Path:
    """A local BPSNAP1 file for ``source`` (see the module docstring); ``private_key`` opens
    a manifest read from a backend."""
    key_file = str(settings.master_key_path.resolve())
    if source.startswith(BACKEND_SOURCE):
        if private_key is None:
            raise RestoreError("a backend's manifest opens only with the operator private key")
        where = source[len(BACKEND_SOURCE) :]
        manifest = await asyncio.to_thread(manifest_from_backend, where, private_key)
        out = workdir / f"{manifest['name']}.bpsnap"
        await asyncio.to_thread(fetch_from_manifest, manifest, out, key_file)
        return out
    path = Path(source)
    if path.is_file():
        with path.open("rb") as handle:
            head = handle.read(8)
        if head.startswith(b"BPSNAP1"):
            return path
        manifest = json.loads(path.read_text())
        out = workdir / f"{manifest['name']}.bpsnap"
        await asyncio.to_thread(fetch_from_manifest, manifest, out, key_file)
        return out
    ctx = await HealingContext.connect(settings, use_ray=False, db_pool_size=2)
    try:
        async with ctx.store.db.connection() as conn:
            record = await ctx.snapshots.get(conn, source)
            if record is None:
                raise RestoreError(f"no snapshot {source!r} (not a file, nor in the database)")
            backends = {b.id: b for b in await ctx.store.backends.list(conn, include_removed=True)}
    finally:
        await ctx.close()
    manifest = manifest_of(record, backends)
    out = workdir / f"{record.name}.bpsnap"
    await asyncio.to_thread(fetch_from_manifest, manifest, out, key_file)
    return out


def private_key_from_pem(pem: bytes, passphrase: bytes | None) -> PrivateKey:
    """An operator private key from PEM (PKCS#8, optionally encrypted)."""
    try:
        key = load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise RestoreError(f"cannot load the private key: {exc}") from exc
    if not isinstance(
        key, rsa.RSAPrivateKey | x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey
    ):
        raise RestoreError("the private key is not an RSA, X25519 or P-256 key")
    return key


def decrypt_snapshot(snapshot: Path, key: PrivateKey, out: Path) -> dict[str, Any]:
    """Decrypt a BPSNAP1 file to ``out`` (the pg_dump archive); returns its descriptor."""
    with snapshot.open("rb") as handle:
        try:
            descriptor = read_descriptor(handle)
        except SnapshotFormatError as exc:
            raise RestoreError(str(exc)) from exc
        binding = descriptor["binding"]
        chunks: Iterator[bytes] = unseal_stream(
            iter_file(handle),
            descriptor["envelope"],
            key,
            tenant=binding["tenant"],
            bucket=binding["bucket"],
            key=descriptor["name"],
        )
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as sink:
                for chunk in chunks:
                    sink.write(chunk)
        except Exception as exc:  # DecryptionFailed and friends: nothing usable was produced
            out.unlink(missing_ok=True)
            raise RestoreError(f"snapshot does not decrypt: {type(exc).__name__}: {exc}") from exc
    return descriptor


async def _ensure_empty(target_url: str) -> None:
    await ensure_database(target_url)
    tables = await count_tables(target_url)
    if tables:
        raise RestoreError(
            f"target database is not empty ({tables} tables); restore into a fresh database"
        )


async def restore_snapshot(
    source: str,
    *,
    settings: Settings,
    private_key: PrivateKey,
    target_url: str,
) -> dict[str, Any]:
    """Fetch, verify, decrypt and ``pg_restore`` a snapshot into an empty database."""
    await _ensure_empty(target_url)
    with tempfile.TemporaryDirectory(prefix="bp-restore-") as tmp:
        os.chmod(tmp, 0o700)
        workdir = Path(tmp)
        snapshot = await fetch_snapshot(source, settings, workdir, private_key)
        dump = workdir / "metadata.dump"
        descriptor = await asyncio.to_thread(decrypt_snapshot, snapshot, private_key, dump)
        await run_tool(
            "pg_restore",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={target_url}",
            str(dump),
        )
    log.info("snapshot %s restored into %s", descriptor["name"], target_url.rsplit("/", 1)[-1])
    return {
        "name": descriptor["name"],
        "pg_dump_version": descriptor["pg_dump_version"],
        "bytes": descriptor["plaintext_length"],
    }
