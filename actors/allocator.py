"""glibc malloc settings for the gateway's long-lived, threaded Ray processes.

Why: a backend actor (up to 32 threads) and a gateway replica (request bodies in ~256 KB
chunks, 8 MiB part buffers, threads for hashing and coding) allocate many short-lived
buffers from many threads. By default glibc gives threads their own arenas (up to 8 per CPU)
and, once a large block has been freed, raises its mmap threshold up to 32 MiB, so later large
buffers are carved from the arenas and stay there after the burst. Measured on one backend
actor after 3 rounds of 16 concurrent 8 MiB puts and gets, private memory: default 86 -> 297
MiB, ``MALLOC_ARENA_MAX=2`` 85 -> 167 MiB, a fixed 1 MiB mmap threshold 84 -> 90 MiB
(docs/architecture.md, "Memory of a backend actor").

``ALLOCATOR_ENV`` goes into the process's ``runtime_env`` env vars, so it holds from the first
allocation (``mallopt`` from inside the process would be too late for the arenas already
made). A fixed threshold also turns glibc's dynamic raise off: every buffer of at least
``MMAP_THRESHOLD`` is its own mapping, returned to the kernel when freed, at the price of one
mmap/munmap and its page faults per such buffer (~1-2 ms per 8 MiB part, against the tens of
ms the part's upload takes). Other allocators ignore these variables.
"""

from __future__ import annotations

__all__ = ["ALLOCATOR_ENV", "MMAP_THRESHOLD", "allocator_runtime_env"]

#: Buffers at least this big are mmapped, so freeing one gives it back at once. Below Serve's
#: ~256 KB body chunks, so a replica's queued chunks are returned too once consumed.
MMAP_THRESHOLD = 128 * 1024
ALLOCATOR_ENV: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
    "MALLOC_ARENA_MAX": "2",
}


def allocator_runtime_env() -> dict[str, dict[str, str]]:
    """A fresh ``runtime_env`` carrying ``ALLOCATOR_ENV`` (a copy: Ray may keep the dict)."""
    return {"env_vars": dict(ALLOCATOR_ENV)}
