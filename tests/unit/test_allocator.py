"""``ALLOCATOR_ENV`` keeps a threaded process's heap from holding on to a burst of large
buffers (why backend actors and gateway replicas are started with it): 16 threads each hold
8 MiB buffers at once, three times over, then free them; the process's RSS is compared with
its RSS before, with glibc's defaults and with ``ALLOCATOR_ENV``."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from actors.allocator import ALLOCATOR_ENV, allocator_runtime_env

_BURST = """
import threading
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
base = rss_mib()
first = bytearray(8 << 20)  # freeing a mapped 8 MiB block raises glibc's dynamic threshold
del first
barrier = threading.Barrier(16)
def work():
    for _ in range(3):
        block = bytes(bytearray(8 << 20))
        barrier.wait()
        del block
threads = [threading.Thread(target=work) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(rss_mib() - base)
"""


def _retained_mib(extra_env: dict[str, str]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(extra_env)
    out = subprocess.run(
        [sys.executable, "-c", _BURST], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc settings")
def test_allocator_env_gives_a_burst_back() -> None:
    default = _retained_mib({})
    tuned = _retained_mib(ALLOCATOR_ENV)
    assert tuned < 32, f"{tuned} MiB still held after the burst with ALLOCATOR_ENV"
    assert tuned < default


def test_runtime_env_is_a_copy() -> None:
    env = allocator_runtime_env()
    assert env == {"env_vars": ALLOCATOR_ENV}
    env["env_vars"]["MALLOC_ARENA_MAX"] = "8"
    assert ALLOCATOR_ENV["MALLOC_ARENA_MAX"] == "2"
