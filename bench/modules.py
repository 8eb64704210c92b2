"""The measurements that live in their own bench modules (targets P5, P6, P7b, P8, P9), run
after the main federation is gone so each can start what it needs (its own Ray, its own
federation) without meeting ours.

Contract: a module offers ``measure(quick: bool) -> dict``; ``bench.targets`` reads named keys
from that dict (bench/README.md lists them). A module that is not there yet, or a case a flag
skips, is recorded as ``{"skipped": reason}``; a module that raises as ``{"error": text}``.
Either gives a target row with ``met: null`` and that reason, never a number.

Two modules predate the contract and are adapted here: ``bench_erasure`` (its raw 256 KiB
stripe encode and its gateway task path, when it has no ``measure`` yet) and ``bench_repair``
(run as a subprocess with 2 agents x 8 jobs = 16 copy threads on both sides; it starts its
own federation and kills one moto, so the quick run skips it).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run_modules"]

MIB = 1024 * 1024
_REPO = Path(__file__).resolve().parent.parent


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _module_measure(name: str) -> Callable[[bool], dict[str, Any]] | None:
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bench.{name}":
            return None
        raise
    measure = getattr(module, "measure", None)
    return measure if callable(measure) else None


def _erasure_fallback(quick: bool) -> dict[str, Any]:
    """bench_erasure without ``measure``: its own raw encode (256 KiB stripes, one core) and
    gateway task path (one 8 MiB part at a time, the task on one core), on a private Ray."""
    import ray

    from bench import bench_erasure

    data = os.urandom((16 if quick else 64) * MIB)
    repeat = 2 if quick else 3
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        raw = bench_erasure.raw_encode(data, repeat)
        task = bench_erasure.task_encode(data, repeat)
    finally:
        ray.shutdown()
    return {
        "source": "bench_erasure.raw_encode / task_encode (no measure() yet)",
        "size_bytes": len(data),
        "raw_mb_per_s": round(raw["256 KiB stripes"], 1),
        "gateway_mb_per_s": round(task["task path, one 8 MiB part at a time"], 1),
        "raw_encode": raw,
        "task_encode": task,
    }


def _repair_subprocess(quick: bool) -> dict[str, Any]:
    if quick:
        return {"skipped": "skipped by --quick (run: python -m bench.bench_repair)"}
    with tempfile.TemporaryDirectory(prefix="bp-bench-repair-json-") as tmp:
        out = Path(tmp) / "repair.json"
        argv = [sys.executable, "-m", "bench.bench_repair", "--objects", "1000",
                "--size-mib", "1", "--agents", "2", "--concurrency", "8", "--json", str(out)]
        done = subprocess.run(argv, cwd=_REPO, capture_output=True, text=True, timeout=1800)
        if not out.exists():
            return {"error": f"exit {done.returncode}: {done.stderr[-400:]}"}
        result: dict[str, Any] = json.loads(out.read_text())
    if result["repair"]["wrong_bytes"]:
        return {"error": f"{result['repair']['wrong_bytes']} repaired objects with wrong bytes"}
    return {
        "repair_objects_per_s": result["repair"]["objects_per_s"],
        "baseline_objects_per_s": result["baseline"]["objects_per_s"],
        "source": f"copy phase after detection; back to full redundancy in "
        f"{result['repair']['full_redundancy_s']:.1f} s",
        "raw": result,
    }


def _run_one(name: str, quick: bool, skip: set[str]) -> dict[str, Any]:
    if name in skip:
        return {"skipped": f"skipped by --skip {name}"}
    measure = _module_measure(name)
    if measure is None:
        if name == "bench_erasure":
            measure = _erasure_fallback
        elif name == "bench_repair":
            measure = _repair_subprocess
        else:
            return {"skipped": f"bench/{name}.py with measure(quick) not present yet"}
    start = time.monotonic()
    try:
        result = dict(measure(quick))
    except Exception as exc:  # recorded as the row's reason; the other rows still count
        _log(f"{name}: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"[:400]}
    if "skipped" not in result:
        result.setdefault("seconds", round(time.monotonic() - start, 1))
    _log(f"{name}: {json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)})}")
    return result


MODULES = ("bench_crypto", "bench_erasure", "bench_memory", "bench_rotate", "bench_repair")


def run_modules(quick: bool, skip: set[str]) -> dict[str, dict[str, Any]]:
    """Each module's ``measure(quick)`` (or its adapter), in order; one failing is recorded."""
    return {name: _run_one(name, quick, skip) for name in MODULES}
