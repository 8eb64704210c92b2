"""A real three-node Redis Cluster on 127.0.0.1 for the cache tests: three ``redis-server
--cluster-enabled yes`` processes (no persistence, own directory and ports), joined with
``redis-cli --cluster create``; a node can be killed like a crash. And one Redis server that
requires a password and speaks only TLS. Every process is stopped by its PID."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.support.processes import free_port, wait_port

__all__ = ["RedisCluster3", "TlsRedis"]


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (make services installs redis)")
    return found


class RedisCluster3:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = [free_port() for _ in range(3)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def _start_node(self, port: int) -> None:
        node_dir = self.workdir / f"node-{port}"
        node_dir.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                _binary("redis-server"), "--bind", "127.0.0.1", "--port", str(port),
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-port", str(free_port()),  # not port + 10000 (may exceed 65535)
                "--cluster-node-timeout", "2000", "--dir", str(node_dir),
                "--save", "", "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(port)

    def start(self) -> None:
        for port in self.ports:
            self._start_node(port)
        created = subprocess.run(
            [_binary("redis-cli"), "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stdout + created.stderr
        self.wait_state("ok")

    def wait_state(self, wanted: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        alive = [p for p in self.ports if p in self.procs and self.procs[p].poll() is None]
        info = ""
        while time.monotonic() < deadline:
            info = subprocess.run(
                [_binary("redis-cli"), "-p", str(alive[0]), "cluster", "info"],
                capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            if f"cluster_state:{wanted}" in info:
                return
            time.sleep(0.2)
        raise AssertionError(f"cluster never reached state {wanted}: {info}")

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()


class TlsRedis:
    """One redis-server with ``--requirepass`` answering TLS only (certificate for 127.0.0.1)."""

    def __init__(self, workdir: Path, cert: Path, key: Path, password: str) -> None:
        self.workdir, self.cert, self.key, self.password = workdir, cert, key, password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rediss://:{self.password}@127.0.0.1:{self.port}/0?ssl_ca_certs={self.cert}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                _binary("redis-server"), "--bind", "127.0.0.1", "--port", "0",
                "--tls-port", str(self.port), "--tls-cert-file", str(self.cert),
                "--tls-key-file", str(self.key), "--tls-ca-cert-file", str(self.cert),
                "--tls-auth-clients", "no", "--requirepass", self.password,
                "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
