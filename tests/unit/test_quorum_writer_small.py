"""Small writes in ``QuorumWrite`` without Ray (fake backend handles): a part of at most
``INLINE_PART_MAX`` bytes reaches every target as the bytes themselves (no object-store put),
with its SHA-256;
``settle_all`` lets a copy that lands during the wait count as complete, and leaves one that
does not land ``incomplete`` (it is committed pending and finished in the background)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from actors.quorum_writer import INLINE_PART_MAX, QuorumWrite


@dataclass
class _Remote:
    owner: FakeActor

    def remote(
        self, locator: str, payload: Any, request_id: str | None = None, sha256: Any = None
    ) -> Any:
        self.owner.digests[locator] = sha256
        return self.owner.store(locator, payload)


@dataclass
class FakeActor:
    gate: asyncio.Event | None = None
    stored: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, Any] = field(default_factory=dict)

    @property
    def put(self) -> _Remote:
        return _Remote(self)

    async def store(self, locator: str, payload: Any) -> int:
        if self.gate is not None:
            await self.gate.wait()
        self.stored[locator] = payload
        return len(payload)


@dataclass
class FakeHandle:
    id: int
    name: str
    actor: FakeActor


class FakeRegistry:
    def mark_failed(self, backend_id: int, error: str) -> None:
        raise AssertionError(f"no target should fail here: {backend_id} {error}")


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def writer(actors: list[FakeActor]) -> QuorumWrite:
    handles: Any = [FakeHandle(i + 1, f"b{i}", a) for i, a in enumerate(actors)]
    registry: Any = FakeRegistry()
    return QuorumWrite(registry, handles, 2, part_size=8 * 1024 * 1024)


async def test_a_small_part_travels_as_bytes_to_every_target() -> None:
    actors = [FakeActor(), FakeActor(), FakeActor()]
    write = writer(actors)
    data = bytes(range(256)) * 16  # 4 KiB
    await write.run(body(data), len(data))
    await write.settle_all(60)
    assert sorted(write.complete_backends()) == [1, 2, 3]
    for actor in actors:
        (payload,) = actor.stored.values()
        assert isinstance(payload, bytes) and payload == data
        # The part's SHA-256 goes along, for the backend to check the body it receives.
        assert list(actor.digests.values()) == [hashlib.sha256(data).digest()]
    assert len(data) <= INLINE_PART_MAX


async def test_settle_all_counts_a_copy_that_lands_while_waiting() -> None:
    gate = asyncio.Event()
    write = writer([FakeActor(), FakeActor(), FakeActor(gate=gate)])
    await write.run(body(b"x" * 4096), 4096)
    assert sorted(write.complete_backends()) == [1, 2]  # answered at the quorum
    asyncio.get_running_loop().call_soon(gate.set)
    await write.settle_all(60)
    assert sorted(write.complete_backends()) == [1, 2, 3]


async def test_settle_all_leaves_a_copy_that_does_not_land_incomplete() -> None:
    gate = asyncio.Event()
    write = writer([FakeActor(), FakeActor(), FakeActor(gate=gate)])
    await write.run(body(b"y" * 4096), 4096)
    await write.settle_all(0.01)
    assert sorted(write.complete_backends()) == [1, 2]
    assert sorted(write.live_backends()) == [1, 2, 3]  # still in flight, not failed
    gate.set()
    assert await write.settle(3)
