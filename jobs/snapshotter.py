"""The snapshotter: an encrypted ``pg_dump`` of the metadata, stored on backends by policy.

Invariant: the newest ``snapshot_keep`` snapshots are each complete on every backend of a
valid placement of ``snapshot_class`` (by default StandardClass: 3 backends, 2 regions), their
parts verified by SHA-256, and readable only with the operator's private key.

One run:

1. ``pg_dump --format=custom`` of the metadata database into a private temporary directory;
2. encrypts it with the client SDK (``seal_stream``, BP1) to the operator's public key
   (``snapshot_public_key_file``: X25519 or RSA PEM) into a BPSNAP1 file
   (``jobs/snapshot_format.py``); the gateway and this process never hold the private key;
3. cuts the file into parts of ``part_size`` and writes each part, under a fresh opaque
   locator, to every target of the placement (through the backend pool: the actors, or
   local clients);
4. commits the snapshot and part rows in one transaction (they are references: the vacuumer
   keeps them), drops snapshots beyond ``snapshot_keep`` (their locators go to garbage), and
   writes the manifest to ``<state_dir>/snapshots/<name>.json``.

A failure before the commit sends every written locator to garbage. Restore: ``jobs/restore.py``
and ``bulletproof restore``; the runbook is ``docs/self-healing.md``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from actors.backend_client import new_locator
from actors.healing import HealingContext
from client import PublicKeyRef, seal, seal_stream, unseal
from client.recipient import PrivateKey
from core.placement import PlacementConstraints, place
from jobs.snapshot_format import BINDING_BUCKET, BINDING_TENANT, encode_descriptor, iter_file
from jobs.worker import Worker
from schema.garbage import LATEST_MANIFEST_LOCATOR
from schema.snapshots import NewSnapshot, SnapshotPart

__all__ = ["Snapshotter", "pg_tool_version", "run_tool"]

log = logging.getLogger(__name__)


async def run_tool(*argv: str) -> str:
    """Run a PostgreSQL client tool; its stderr becomes the error (no password ever passed)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{Path(argv[0]).name} failed ({proc.returncode}): {err.decode()[-2000:]}"
        )
    return out.decode()


async def pg_tool_version(tool: str = "pg_dump") -> str:
    return (await run_tool(tool, "--version")).strip()


def load_public_key(path: str) -> PublicKeyRef:
    key = load_pem_public_key(Path(path).read_bytes())
    return PublicKeyRef(key)  # type: ignore[arg-type]  # PublicKeyRef refuses other key types


@dataclass(frozen=True)
class _Sealed:
    path: Path
    size: int
    sha256: bytes


class Snapshotter(Worker):
    name = "snapshotter"

    def __init__(
        self,
        ctx: HealingContext,
        *,
        public_key_file: str | None = None,
        keep: int | None = None,
        class_name: str | None = None,
        manifest_dir: str | None = None,
        part_size: int | None = None,
    ) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.public_key_file = public_key_file or s.snapshot_public_key_file
        self.keep = keep if keep is not None else s.snapshot_keep
        self.class_name = class_name or s.snapshot_class
        self.manifest_dir = Path(manifest_dir) if manifest_dir else s.state_path / "snapshots"
        self.part_size = part_size or s.part_size

    async def run_once(self) -> dict[str, Any]:
        if not self.public_key_file:
            log.warning("snapshotter: no snapshot_public_key_file configured; nothing done")
            return {"skipped_no_key": 1}
        recipient = load_public_key(self.public_key_file)
        name = f"snap-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
        with tempfile.TemporaryDirectory(prefix="bp-snapshot-") as tmp:
            os.chmod(tmp, 0o700)
            dump = Path(tmp) / "metadata.dump"
            version = await pg_tool_version("pg_dump")
            await run_tool(
                "pg_dump",
                "--format=custom",
                "--no-password",
                f"--dbname={self.ctx.settings.database_url}",
                f"--file={dump}",
            )
            sealed = await asyncio.to_thread(
                self._seal, dump, Path(tmp) / f"{name}.bpsnap", name, recipient, version
            )
            dump.unlink()
            return await self._store(name, sealed, recipient, version)

    def _seal(
        self, dump: Path, out: Path, name: str, recipient: PublicKeyRef, pg_version: str
    ) -> _Sealed:
        length = dump.stat().st_size
        with dump.open("rb") as source:
            sealed = seal_stream(
                iter_file(source),
                length,
                tenant=BINDING_TENANT,
                bucket=BINDING_BUCKET,
                key=name,
                recipients=[recipient],
            )
            descriptor = {
                "v": 1,
                "name": name,
                "created_at": time.time(),
                "pg_dump_version": pg_version,
                "format": "pg_dump-custom",
                "plaintext_length": length,
                "binding": {"tenant": BINDING_TENANT, "bucket": BINDING_BUCKET, "key": name},
                "envelope": sealed.headers,
            }
            digest = hashlib.sha256()
            size = 0
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as sink:
                assert not isinstance(sealed.body, bytes)
                for chunk in itertools.chain([encode_descriptor(descriptor)], sealed.body):
                    sink.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        return _Sealed(out, size, digest.digest())

    async def _store(
        self, name: str, sealed: _Sealed, recipient: PublicKeyRef, pg_version: str
    ) -> dict[str, Any]:
        ctx = self.ctx
        policy = await ctx.current_policy()
        rc = policy.get(self.class_name)
        handles = await ctx.registry.current()
        placement = place(rc, [h.view() for h in handles], PlacementConstraints())
        by_name = {h.name: h for h in handles}
        targets = [by_name[n] for n in placement.targets]
        parts: list[SnapshotPart] = []
        written: list[tuple[int, str]] = []
        committed = False
        try:
            with sealed.path.open("rb") as source:
                number = 0
                while True:
                    data = await asyncio.to_thread(source.read, self.part_size)
                    if not data and number > 0:
                        break
                    sha = hashlib.sha256(data).digest()
                    locators = {t.id: new_locator() for t in targets}
                    written += list(locators.items())
                    await asyncio.gather(
                        *(ctx.registry.store(t.id, locators[t.id], data) for t in targets)
                    )
                    sizes = await asyncio.gather(
                        *(ctx.registry.head(t.id, locators[t.id]) for t in targets)
                    )
                    if any(s != len(data) for s in sizes):
                        raise RuntimeError(f"snapshot part {number} did not verify on a backend")
                    parts += [
                        SnapshotPart(t.id, number, locators[t.id], len(data), sha) for t in targets
                    ]
                    number += 1
                    if len(data) < self.part_size:
                        break
            new = NewSnapshot(
                name=name,
                size=sealed.size,
                sha256=sealed.sha256,
                part_size=self.part_size,
                part_count=number,
                key_id=recipient.key_id,
                wrap_alg=recipient.wrap_alg,
                pg_dump_version=pg_version,
            )
            async with ctx.store.db.transaction() as conn:
                await ctx.snapshots.add(conn, new, parts)
                expired = await ctx.snapshots.drop_older(conn, keep=max(1, self.keep))
            committed = True
        finally:
            if not committed and written:
                try:
                    async with ctx.store.db.transaction() as conn:
                        await ctx.store.garbage.add(conn, written, "failed snapshot")
                except Exception:  # the vacuumer's listing finds them
                    log.exception("could not record the parts of a failed snapshot")
        manifest = await self.manifest(name)
        self.manifest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.manifest_dir / f"{name}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(manifest, handle, indent=2)
        for old in expired:
            (self.manifest_dir / f"{old}.json").unlink(missing_ok=True)
        copies = await self._manifest_on_backends(manifest, targets, recipient)
        log.info(
            "snapshot %s: %d bytes, %d parts on %s",
            name,
            sealed.size,
            number,
            ", ".join(t.name for t in targets),
        )
        return {
            "snapshots": 1,
            "bytes": sealed.size,
            "parts": number,
            "copies": len(targets),
            "expired": len(expired),
            "manifest_copies": copies,
        }

    async def _manifest_on_backends(
        self, manifest: dict[str, Any], targets: list[Any], recipient: PublicKeyRef
    ) -> int:
        """The newest manifest on every backend of this snapshot too, under the one fixed
        locator (``LATEST_MANIFEST_LOCATOR``): what a restore needs when the database and the
        node that ran the snapshotter are both gone. Sealed to the operator's snapshot key like
        the snapshot itself (``seal_manifest``): a backend learns nothing of the federation
        (no other backend's name, endpoint or locators). Returns how many backends hold it."""
        data = seal_manifest(manifest, recipient)
        stored = await asyncio.gather(
            *(self.ctx.registry.store(t.id, LATEST_MANIFEST_LOCATOR, data) for t in targets),
            return_exceptions=True,
        )
        failed = [t.name for t, r in zip(targets, stored, strict=True) if isinstance(r, Exception)]
        if failed:
            log.warning("snapshot manifest not stored on %s", ", ".join(failed))
        return len(targets) - len(failed)

    async def manifest(self, name: str) -> dict[str, Any]:
        """Where a stored snapshot is, and how to reach those backends without the database."""
        ctx = self.ctx
        async with ctx.store.db.connection() as conn:
            record = await ctx.snapshots.get(conn, name)
            backends = {b.id: b for b in await ctx.store.backends.list(conn, include_removed=True)}
        if record is None:
            raise KeyError(name)
        return manifest_of(record, backends)


def manifest_of(record: Any, backends: dict[int, Any]) -> dict[str, Any]:
    parts: dict[int, dict[str, Any]] = {}
    used: set[int] = set()
    for p in record.parts:
        entry = parts.setdefault(
            p.part_number,
            {"part": p.part_number, "size": p.size, "sha256": p.sha256.hex(), "copies": []},
        )
        entry["copies"].append({"backend": backends[p.backend_id].name, "locator": p.locator})
        used.add(p.backend_id)
    return {
        "v": 1,
        "name": record.name,
        "size": record.size,
        "sha256": record.sha256.hex(),
        "key_id": record.key_id,
        "pg_dump_version": record.pg_dump_version,
        "created_at": record.created_at.isoformat(),
        "parts": [parts[n] for n in sorted(parts)],
        "backends": {
            backends[b].name: {
                "kind": backends[b].kind,
                "endpoint": backends[b].endpoint,
                "bucket": backends[b].bucket,
                "path": backends[b].path,
                "signing_region": backends[b].signing_region,
                "addressing_style": backends[b].addressing_style,
                "sealed_credentials": base64.b64encode(backends[b].sealed_credentials).decode()
                if backends[b].sealed_credentials
                else None,
            }
            for b in sorted(used)
        },
    }


#: The object name a manifest sealed for the backends is bound to (BP1 authenticates it).
MANIFEST_KEY = "manifest/latest"


def seal_manifest(manifest: dict[str, Any], recipient: PublicKeyRef) -> bytes:
    """A manifest as stored on backends: JSON with the BP1 envelope headers and the sealed
    manifest (base64), openable only with the operator's private key (``open_manifest``)."""
    sealed = seal(
        json.dumps(manifest).encode(),
        tenant=BINDING_TENANT,
        bucket=BINDING_BUCKET,
        key=MANIFEST_KEY,
        recipients=[recipient],
    )
    assert isinstance(sealed.body, bytes)
    return json.dumps(
        {
            "format": "bulletproof-snapshot-manifest",
            "v": 1,
            "headers": sealed.headers,
            "body": base64.b64encode(sealed.body).decode(),
        }
    ).encode()


def open_manifest(stored: bytes, private_key: PrivateKey) -> dict[str, Any]:
    """The manifest ``seal_manifest`` stored; the BP1 errors if it was altered or the key is
    not the operator's."""
    document = json.loads(stored)
    if document.get("format") != "bulletproof-snapshot-manifest":
        raise ValueError("not a sealed snapshot manifest")
    plaintext = unseal(
        base64.b64decode(document["body"]),
        document["headers"],
        private_key,
        tenant=BINDING_TENANT,
        bucket=BINDING_BUCKET,
        key=MANIFEST_KEY,
    )
    return dict(json.loads(plaintext))
