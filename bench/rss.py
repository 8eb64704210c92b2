"""Memory and CPU footprint of the processes behind one benchmark run, read from ``/proc``.

Why ``/proc`` and not psutil: the three files read here are all the bench needs, each read is
cheap and its cost is visible here, and the bench then runs wherever the gateway runs (psutil
is only in the ``test`` extra). Only descendants of the bench process are considered, so
another Ray cluster on the same machine (another engineer's tests) is never counted.

Two memory figures, because each is wrong in a different way:

* **RSS** (``VmRSS`` from ``/proc/PID/status``, ~0.05 ms per read) is sampled every
  ``interval_s`` (50 ms), fast enough to catch a body that sits in a queue for a fraction of a
  second. It counts shared pages (libraries, Ray's shared-memory object store) once per process
  that maps them, so a sum over processes over-states the total.
* **PSS** (``Pss`` from ``/proc/PID/smaps_rollup``) divides each shared page among the processes
  that map it, so sums are honest. It costs 1-5 ms per process (the kernel walks the page
  tables), so it is read only every ``pss_every`` ticks, and a short spike can fall between
  two reads. It needs root or the same user; when it cannot be read the report says so.

CPU seconds per role come from ``utime + stime`` in ``/proc/PID/stat`` at the start and the end
(and once a second in between, so a process that exits mid-run still counts).
This module deliberately knows nothing about S3 or the gateway beyond process titles.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

__all__ = [
    "GATEWAY_ROLES",
    "Footprint",
    "FootprintSampler",
    "cpu_seconds",
    "descendants",
    "pids_by_role",
    "role_of",
    "smaps_rollup",
]

# The roles whose memory is "the gateway" (the definition): Serve's HTTP proxy actor,
# the gateway replica(s) and the per-backend actors. Everything else is reported beside them.
GATEWAY_ROLES = ("proxy", "replica", "backend")
_PSS_ROLES = frozenset((*GATEWAY_ROLES, "controller", "raylet", "moto"))
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_KIB = 1024
_MIB = 1024 * 1024


def role_of(cmdline: str) -> str:
    """The role of a process, from the title Ray gives its workers or from its argv."""
    title_roles = (
        ("ray::ProxyActor", "proxy"),
        ("ray::ServeReplica:", "replica"),
        ("ray::BackendActor", "backend"),
        ("ray::ServeController", "controller"),
    )
    for prefix, role in title_roles:
        if cmdline.startswith(prefix):
            return role
    if "moto_server" in cmdline:
        return "moto"
    if "/raylet/raylet" in cmdline:
        return "raylet"  # also hosts the plasma object store (shared memory)
    if "gcs_server" in cmdline:
        return "gcs"
    if "redis-server" in cmdline:
        return "redis"
    return "ray_other"  # dashboard agent, log monitor, idle workers, ...


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (Ray workers are children of our raylet, a child of us)."""
    kids = _children_map()
    found: list[int] = []
    stack = [root]
    while stack:
        for child in kids.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def pids_by_role(root: int | None = None) -> dict[str, list[int]]:
    """The processes below ``root`` (default: this process), grouped by ``role_of``."""
    found: dict[str, list[int]] = {}
    for pid in descendants(os.getpid() if root is None else root):
        cmd = _cmdline(pid)
        if cmd:
            found.setdefault(role_of(cmd), []).append(pid)
    return found


def _cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * _KIB
    except OSError:
        return None
    return None


def _pss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * _KIB
    except OSError:
        return None
    return None


def smaps_rollup(pid: int) -> dict[str, int] | None:
    """Every byte figure of ``/proc/PID/smaps_rollup`` (``Pss``, ``Pss_Anon``, ``Pss_Shmem``,
    ...), in bytes; None when it cannot be read. ``Pss_Shmem`` of a Ray worker is its share of
    the object store's pages it has touched, ``Pss_Anon`` its private heap and stacks."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) == 3 and fields[2] == b"kB":
                    out[fields[0].rstrip(b":").decode()] = int(fields[1]) * _KIB
    except OSError:
        return None
    return out


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the ")" the fields start at field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _machine_busy_seconds() -> float:
    """CPU time the whole machine spent not idle (all processes, ours and everyone else's)."""
    with open("/proc/stat") as handle:
        fields = handle.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


@dataclass
class Footprint:
    """What one sampled interval cost, per role; memory in MiB, CPU in seconds."""

    interval_s: float
    wall_s: float = 0.0
    samples: int = 0
    pss_samples: int = 0
    pss_available: bool = True
    processes: dict[str, int] = field(default_factory=dict)
    rss_start_mib: dict[str, float] = field(default_factory=dict)
    rss_peak_mib: dict[str, float] = field(default_factory=dict)
    pss_start_mib: dict[str, float] = field(default_factory=dict)
    pss_peak_mib: dict[str, float] = field(default_factory=dict)
    gateway_rss_start_mib: float = 0.0
    gateway_rss_peak_mib: float = 0.0
    gateway_pss_start_mib: float | None = None
    gateway_pss_peak_mib: float | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)
    # CPU seconds the machine spent on processes that are not ours (other people's tests):
    # divided by wall_s it is how many of the CPUs were taken from this measurement.
    foreign_cpu_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        def rounded(values: dict[str, float]) -> dict[str, float]:
            return {k: round(v, 1) for k, v in sorted(values.items())}

        return {
            "interval_s": self.interval_s,
            "wall_s": round(self.wall_s, 3),
            "samples": self.samples,
            "pss_samples": self.pss_samples,
            "pss_available": self.pss_available,
            "processes": dict(sorted(self.processes.items())),
            "gateway_roles": list(GATEWAY_ROLES),
            "gateway_rss_start_mib": round(self.gateway_rss_start_mib, 1),
            "gateway_rss_peak_mib": round(self.gateway_rss_peak_mib, 1),
            "gateway_pss_start_mib": _round_opt(self.gateway_pss_start_mib),
            "gateway_pss_peak_mib": _round_opt(self.gateway_pss_peak_mib),
            "rss_start_mib": rounded(self.rss_start_mib),
            "rss_peak_mib": rounded(self.rss_peak_mib),
            "pss_start_mib": rounded(self.pss_start_mib),
            "pss_peak_mib": rounded(self.pss_peak_mib),
            "cpu_s": {k: round(v, 3) for k, v in sorted(self.cpu_s.items())},
            "foreign_cpu_s": round(self.foreign_cpu_s, 3),
            "foreign_cpus": round(self.foreign_cpu_s / self.wall_s, 2) if self.wall_s else None,
        }


def _round_opt(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class FootprintSampler:
    """Samples the footprint of ``root``'s process tree while the ``with`` block runs.

    The root process itself (the bench: client threads plus the Ray driver) is reported as role
    ``client``. Per role the peak is the maximum over samples of that role's *sum*, and the
    gateway peak is the maximum of the per-sample sum over ``GATEWAY_ROLES`` (not the sum of
    per-role peaks, which could come from different moments).
    """

    def __init__(
        self, root: int | None = None, *, interval_s: float = 0.05, pss_every: int = 10
    ) -> None:
        self._root = os.getpid() if root is None else root
        self._interval = interval_s
        self._pss_every = pss_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._roles: dict[int, str] = {}
        self._last_role: dict[int, str] = {}  # also for processes that have exited since
        self._cpu_first: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._started = 0.0
        self._busy_start = 0.0
        self.result = Footprint(interval_s=interval_s)

    # -- discovery ---------------------------------------------------------------------------
    def _discover(self, *, baseline: bool) -> None:
        """Refresh pid -> role (Ray renames an idle worker when it becomes an actor) and CPU."""
        roles = {self._root: "client"}
        for pid in descendants(self._root):
            cmd = _cmdline(pid)
            if cmd:
                roles[pid] = role_of(cmd)
        self._roles = roles
        self._last_role.update(roles)
        for pid in roles:
            cpu = cpu_seconds(pid)
            if cpu is None:
                continue
            # A process first seen after the start was born during the run: all its CPU counts.
            self._cpu_first.setdefault(pid, cpu if baseline else 0.0)
            self._cpu_last[pid] = cpu

    # -- sampling ----------------------------------------------------------------------------
    def _sample(self, with_pss: bool) -> None:
        out = self.result
        rss: dict[str, float] = {}
        pss: dict[str, float] = {}
        pss_ok = False
        for pid, role in list(self._roles.items()):
            value = _rss_bytes(pid)
            if value is not None:
                rss[role] = rss.get(role, 0.0) + value / _MIB
            if with_pss and role in _PSS_ROLES:
                share = _pss_bytes(pid)
                if share is not None:
                    pss[role] = pss.get(role, 0.0) + share / _MIB
                    pss_ok = True
        first = out.samples == 0
        out.samples += 1
        for role, mib in rss.items():
            if first:
                out.rss_start_mib[role] = mib
            out.rss_peak_mib[role] = max(out.rss_peak_mib.get(role, 0.0), mib)
        gateway_rss = sum(rss.get(role, 0.0) for role in GATEWAY_ROLES)
        if first:
            out.gateway_rss_start_mib = gateway_rss
        out.gateway_rss_peak_mib = max(out.gateway_rss_peak_mib, gateway_rss)
        if not with_pss:
            return
        if not pss_ok:
            out.pss_available = False
            return
        first_pss = out.pss_samples == 0
        out.pss_samples += 1
        for role, mib in pss.items():
            if first_pss:
                out.pss_start_mib[role] = mib
            out.pss_peak_mib[role] = max(out.pss_peak_mib.get(role, 0.0), mib)
        gateway_pss = sum(pss.get(role, 0.0) for role in GATEWAY_ROLES)
        if first_pss:
            out.gateway_pss_start_mib = gateway_pss
        out.gateway_pss_peak_mib = max(out.gateway_pss_peak_mib or 0.0, gateway_pss)

    def _loop(self) -> None:
        tick = 0
        rediscover = max(1, round(1.0 / self._interval))
        while not self._stop.wait(self._interval):
            tick += 1
            if tick % rediscover == 0:
                self._discover(baseline=False)
            self._sample(with_pss=tick % self._pss_every == 0)

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> FootprintSampler:
        self._discover(baseline=True)
        self._sample(with_pss=True)
        self._started = time.perf_counter()
        self._busy_start = _machine_busy_seconds()
        self._thread = threading.Thread(target=self._loop, name="footprint", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(with_pss=True)
        self._discover(baseline=False)
        out = self.result
        out.wall_s = time.perf_counter() - self._started
        counts: dict[str, int] = {}
        for role in self._roles.values():
            counts[role] = counts.get(role, 0) + 1
        out.processes = counts
        cpu: dict[str, float] = {}
        for pid, last in self._cpu_last.items():
            role = self._last_role[pid]
            cpu[role] = cpu.get(role, 0.0) + max(0.0, last - self._cpu_first.get(pid, last))
        out.cpu_s = cpu
        busy = _machine_busy_seconds() - self._busy_start
        out.foreign_cpu_s = max(0.0, busy - sum(cpu.values()))
        if out.pss_samples == 0:
            out.pss_available = False
            out.gateway_pss_start_mib = out.gateway_pss_peak_mib = None
