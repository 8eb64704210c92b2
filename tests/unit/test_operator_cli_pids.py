"""`bulletproof down`/`demo` wait for the gateway's PID: an exited, unreaped child (a zombie)
is gone, a running process is not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from cluster.cli import _running, _wait_gone


def test_exited_unreaped_child_counts_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited, not reaped: /proc shows it as a zombie
        with open(f"/proc/{child.pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.05)
    assert _running(child.pid) is False
    assert _wait_gone(child.pid, 1.0)


def test_running_process_is_running() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert _running(child.pid) is True
        assert _running(os.getpid()) is True
        assert not _wait_gone(child.pid, 0.5)
    finally:
        child.kill()
        child.wait()
