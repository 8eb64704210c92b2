"""Where the audit trail keeps what must survive the database: signed checkpoints and sealed
chain segments, on the backends designated for archives (``bulletproof backend add ...
--archive``) or, when there is none, in the configured directory (``audit_checkpoint_dir``).

Never on a data backend: a data backend's objects are named by replica rows, and the vacuumer
would collect anything else. Archive backends hold no data (placement refuses them) and are
skipped by the vacuumer's and the scrubber's listings.

Names on an archive backend stay opaque locators: a segment gets a random one (recorded in the
``audit_archives`` index); a checkpoint is ``cc/<its id in 32 hex digits>``, so the newest is
found by listing without trusting the database (random locators never start with ``cc/``).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from actors.backend_client import new_locator
from actors.registry import BackendHandle, BackendRegistry
from core.errors import BackendNotFound, BackendUnavailable

__all__ = ["OutsideStore"]

_CHECKPOINT_DIR = "cc"


def _segment_locator() -> str:
    while True:
        locator = new_locator()
        if not locator.startswith(f"{_CHECKPOINT_DIR}/"):
            return locator


@dataclass
class OutsideStore:
    directory: Path
    registry: BackendRegistry | None = None

    async def archive_backends(self) -> list[BackendHandle]:
        """Usable backends designated for archives, by name."""
        if self.registry is None:
            return []
        handles = await self.registry.current()
        return sorted(
            (h for h in handles if h.record.archive and h.record.state == "active" and h.healthy),
            key=lambda h: h.name,
        )

    # -- checkpoints -----------------------------------------------------------------------
    async def put_checkpoint(self, checkpoint_id: int, name: str, text: str) -> list[str]:
        """Write a checkpoint to every archive backend, or to the directory; where it went."""
        backends = await self.archive_backends()
        locator = f"{_CHECKPOINT_DIR}/{checkpoint_id:032x}"
        assert self.registry is not None or not backends
        for handle in backends:
            assert self.registry is not None
            await self.registry.store(handle.id, locator, text.encode())
        if backends:
            return [h.name for h in backends]
        await asyncio.to_thread(self._write_file, self.directory / name, text.encode())
        return [str(self.directory)]

    async def newest_checkpoints(self) -> list[tuple[str, str]]:
        """(where, signed JSON text) of the newest checkpoint in the directory and on each
        archive backend."""
        found: list[tuple[str, str]] = []
        local = await asyncio.to_thread(self._newest_file)
        if local is not None:
            found.append(local)
        for handle in await self.archive_backends():
            assert self.registry is not None
            try:
                names = [
                    n
                    for n in await self.registry.list(handle.id)
                    if n.startswith(f"{_CHECKPOINT_DIR}/")
                ]
                if names:
                    newest = max(names)
                    data = await self.registry.fetch(handle.id, newest)
                    found.append((f"backend {handle.name} {newest}", bytes(data.data).decode()))
            except (BackendUnavailable, BackendNotFound, UnicodeDecodeError):
                continue  # an unreachable copy proves nothing either way
        return found

    def _newest_file(self) -> tuple[str, str] | None:
        if not self.directory.is_dir():
            return None
        names = sorted(p.name for p in self.directory.glob("checkpoint-*.json"))
        if not names:
            return None
        return f"outside copy {names[-1]}", (self.directory / names[-1]).read_text("utf-8")

    # -- segments --------------------------------------------------------------------------
    async def put_segment(self, data: bytes) -> tuple[int | None, str]:
        """Store a sealed segment on the first archive backend, or in the directory; returns
        (backend id or None, locator)."""
        locator = _segment_locator()
        backends = await self.archive_backends()
        if backends:
            assert self.registry is not None
            await self.registry.store(backends[0].id, locator, data)
            return backends[0].id, locator
        await asyncio.to_thread(self._write_file, self._segment_path(locator), data)
        return None, locator

    async def fetch_segment(self, backend_id: int | None, locator: str) -> bytes | None:
        """The stored bytes of a segment; None when it is gone. ``BackendUnavailable`` when its
        backend cannot be asked (nothing is proven then)."""
        if backend_id is None:
            path = self._segment_path(locator)
            return await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else None)
        if self.registry is None or self.registry.get(backend_id) is None:
            raise BackendUnavailable(f"archive backend {backend_id} is not registered here")
        try:
            return bytes((await self.registry.fetch(backend_id, locator)).data)
        except BackendNotFound:
            return None

    def _segment_path(self, locator: str) -> Path:
        return self.directory / "segments" / locator

    @staticmethod
    def _write_file(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
