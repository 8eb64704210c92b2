"""Per-stage latency of gateway requests, from Serve's own access logs.

Serve logs one line per request in the proxy's log and one in the replica's, both with the
request id and the time the request took there (``... <request-id> -- PUT /{path:path} 200
12.3ms``). Matching the two by request id splits what a client sees into

* **replica**: the gateway's handler (auth, metadata, placement, backend writes/reads, commit);
* **proxy - replica**: Serve's HTTP proxy hop (HTTP parsing, routing, shipping the body and
  the response between two processes), per request;
* **client - proxy**: the client side and the loopback TCP, from the client's own timing.

The logs are found by the session directory Ray names after the driver's PID, so other Ray
clusters on the machine are never read. Lines are selected by method and a wall-clock window;
the bench runs one workload at a time, so the window holds only that workload's requests. If
Serve's log format changes, this returns nothing and the bench says "–" rather than guessing.
"""

from __future__ import annotations

import glob
import os
import re
from datetime import datetime
from pathlib import Path

from bench.workloads import percentile

__all__ = ["serve_log_dir", "stage_latencies"]

_LINE = re.compile(
    r"^INFO (?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .* (?P<rid>\S+) -- "
    r"(?P<method>GET|PUT|POST|DELETE|HEAD) (?P<route>\S+) (?P<status>\d{3}) (?P<ms>[\d.]+)ms$"
)


def serve_log_dir(driver_pid: int | None = None) -> Path | None:
    """This driver's Serve log directory (Ray names the session ``session_<date>_<pid>``)."""
    pid = os.getpid() if driver_pid is None else driver_pid
    found = sorted(glob.glob(f"/tmp/ray/session_*_{pid}/logs/serve"))
    return Path(found[-1]) if found else None


def _read(path: Path, method: str, since: float, until: float) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None or match["method"] != method or match["route"] != "/{path:path}":
            continue
        when = datetime.strptime(match["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if since <= when <= until:
            out[match["rid"]] = float(match["ms"])
    return out


def _summary(values: list[float]) -> dict[str, float | None]:
    def q(p: float) -> float | None:
        value = percentile(values, p)
        return None if value is None else round(value, 2)

    return {"n": len(values), "p50": q(50), "p99": q(99)}


def stage_latencies(method: str, since: float, until: float) -> dict[str, object]:
    """p50/p99 (ms) per stage for ``method`` requests that ended in ``[since, until]``."""
    log_dir = serve_log_dir()
    if log_dir is None:
        return {"available": False}
    proxy: dict[str, float] = {}
    replica: dict[str, float] = {}
    for path in log_dir.glob("proxy_*.log"):
        proxy.update(_read(path, method, since, until))
    for path in log_dir.glob("replica_*.log"):
        replica.update(_read(path, method, since, until))
    both = sorted(set(proxy) & set(replica))
    return {
        "available": bool(both),
        "proxy_ms": _summary(list(proxy.values())),
        "replica_ms": _summary(list(replica.values())),
        "proxy_hop_ms": _summary([proxy[rid] - replica[rid] for rid in both]),
    }
