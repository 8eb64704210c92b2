"""Real Ray nodes for the cluster tests: ``ray start`` heads and workers on their own ports
(127.0.0.1), and stopping them by PID (never ``ray stop``: it stops every Ray on the machine,
including other test sessions').

A head is found by its private temp dir (on every command line of its processes), a worker
node by its raylet's ``--node_manager_port``; stopping one kills its processes and all their
descendants."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port

__all__ = ["RAY", "Head", "WorkerNode", "kill_tree", "processes_under"]

RAY = Path(sys.executable).parent / "ray"


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def processes_under(marker: str) -> list[int]:
    """PIDs (not this one) whose command line contains ``marker``."""
    return [pid for pid in _pids() if pid != os.getpid() and marker in _cmdline(pid)]


def _descendants(roots: list[int]) -> list[int]:
    parents: dict[int, int] = {}
    for pid in _pids():
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = list(roots)
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return found


def kill_tree(roots: list[int]) -> None:
    """SIGTERM, then SIGKILL, ``roots`` and all their descendants; waits until gone."""
    pids = [*_descendants(roots), *roots]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)


class Head:
    """``ray start --head`` with a private temp dir and its own ports."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        resources: dict[str, float] | None = None,
        label: str | None = None,
        num_cpus: int = 1,
    ) -> None:
        self.env = env
        self.resources, self.label, self.num_cpus = resources, label, num_cpus
        self.temp_dir = tempfile.mkdtemp(prefix="bphead-", dir="/tmp")  # short socket paths
        self.port, self.dashboard_port, self.agent_port = free_port(), free_port(), free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, *extra: str) -> str:
        args = [
            str(RAY), "start", "--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}",
            "--node-ip-address=127.0.0.1", f"--num-cpus={self.num_cpus}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--dashboard-agent-listen-port={self.agent_port}", *extra,
        ]  # fmt: skip
        if self.resources:
            args += ["--resources", json.dumps(self.resources)]
        if self.label:
            args += ["--labels", f"bp-node={self.label}"]
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def stop(self) -> None:
        kill_tree(processes_under(self.temp_dir))


class WorkerNode:
    """``ray start --address`` on its own ports; ``stop`` kills its raylet and all under it."""

    def __init__(self, label: str, resources: dict[str, float], env: dict[str, str]) -> None:
        self.label, self.resources, self.env = label, resources, env
        self.node_manager_port = free_port()
        self.ports = [free_port() for _ in range(5)]

    def start(self, head_address: str) -> None:
        obj, metrics, agent, agent_grpc, runtime_env = self.ports
        done = subprocess.run(
            [
                str(RAY), "start", f"--address={head_address}", "--node-ip-address=127.0.0.1",
                "--num-cpus=1", f"--resources={json.dumps(self.resources)}",
                "--labels", f"bp-node={self.label}",
                f"--node-manager-port={self.node_manager_port}",
                f"--object-manager-port={obj}", f"--metrics-export-port={metrics}",
                f"--dashboard-agent-listen-port={agent}",
                f"--dashboard-agent-grpc-port={agent_grpc}",
                f"--runtime-env-agent-port={runtime_env}",
            ],
            env=self.env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

    def raylet(self) -> int | None:
        marker = f"--node_manager_port={self.node_manager_port} "
        found = [p for p in processes_under(marker) if "raylet" in _cmdline(p)]
        return found[0] if found else None

    def stop(self) -> None:
        raylet = self.raylet()
        if raylet is not None:
            kill_tree([raylet])
