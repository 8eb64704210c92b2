"""bench/targets.py and bench/charts.py: rows computed from a recorded run document, the
Markdown and the charts rendered from them. Pure functions; nothing here measures time."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bench.charts import plot_ratios, plot_sweep, render_sweep, render_targets, sweep_series
from bench.frozen import mixed_load
from bench.targets import TARGETS, compute_rows
from bench.workloads import Blob, Got

KIB, MIB = 1024, 1024 * 1024


def _side(ok: int, mb: float, ops: float, p99: float, cpu_s: float, mismatches: int = 0) -> Any:
    return {
        "ok": ok,
        "planned": ok,
        "errors": 0,
        "mismatches": mismatches,
        "truncated": False,
        "mb_per_s": mb,
        "ops_per_s": ops,
        "latency_ms": {"p99": p99},
        "footprint": {"cpu_s": {"client": cpu_s / 2, "moto": cpu_s / 2}},
    }


Sides = tuple[float, float, float, float]


def _pair(op: str, size: int, conc: int, gw: Sides, direct: Sides) -> Any:
    """``gw``/``direct``: (mb_per_s, ops_per_s, p99_ms, cpu_s) over 100 operations."""
    g = _side(100, *gw)
    d = _side(100, *direct)
    return {
        "op": op,
        "size": size,
        "concurrency": conc,
        "gateway": g,
        "direct": d,
        "ratio": {"mb_per_s": round(g["mb_per_s"] / d["mb_per_s"], 3)},
    }


def _doc() -> dict[str, Any]:
    """A recorded-shape run document in which each target's outcome is known by design."""
    return {
        "workloads": [
            _pair("put", 4 * KIB, 8, (0.4, 90.0, 40.0, 2.0), (0.4, 100.0, 20.0, 1.0)),
            _pair("get", 4 * KIB, 8, (0.4, 80.0, 10.0, 3.0), (0.4, 100.0, 10.0, 1.0)),
            _pair("put", 64 * MIB, 1, (95.0, 1.4, 1.0, 10.0), (100.0, 1.5, 1.0, 10.0)),
            _pair("get", 64 * MIB, 1, (50.0, 0.7, 1.0, 12.0), (100.0, 1.5, 1.0, 10.0)),
            _pair("put", 64 * MIB, 4, (90.0, 1.4, 1.0, 10.0), (100.0, 1.5, 1.0, 10.0)),
        ],
        "multipart": {
            "gateway": {"ok": 2, "mismatches": 0, "mb_per_s": 50.0},
            "direct": {"ok": 2, "mismatches": 0, "mb_per_s": 100.0},
        },
        "import": {
            "small": {"objects": 1000, "size": 4096, "import_objects_per_s": 30.0,
                      "rclone_objects_per_s": 20.0, "import_loadavg": 3.0},
        },
        "idle_footprint": {
            "pss_available": True,
            "pss_start_mib": {"backend": 360.0, "proxy": 100.0},
            "processes": {"backend": 3, "proxy": 1},
        },
        "frozen": {
            "backend_timeout_s": 30.0,
            "healthy": {"ok": 400, "errors": 0, "mismatches": 0, "ops_per_s": 100.0,
                        "operations": 400,
                        "latency_ms": {"max": 200.0}, "slower_than_timeout": 0},
            "frozen": {"ok": 400, "errors": 0, "mismatches": 0, "ops_per_s": 90.0,
                       "operations": 400, "truncated": True,
                       "latency_ms": {"max": 30_100.0}, "slower_than_timeout": 2},
        },
        "modules": {
            "bench_crypto": {"encrypt_mb_per_s": 1200.0, "raw_encrypt_mb_per_s": 2400.0,
                             "decrypt_mb_per_s": 900.0, "raw_decrypt_mb_per_s": 3000.0},
            "bench_erasure": {"gateway_mb_per_s": 950.0, "raw_mb_per_s": 1000.0},
            "bench_memory": {"skipped": "bench/bench_memory.py not present yet"},
            "bench_rotate": {"rotated": 5},
            "bench_repair": {"error": "RuntimeError: boom"},
        },
    }


def _rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in compute_rows(doc)}


def test_one_row_per_target_in_table_order() -> None:
    rows = compute_rows(_doc())
    assert [r["id"] for r in rows] == [t.id for t in TARGETS]
    assert len({t.id for t in TARGETS}) == len(TARGETS)
    assert {t.id.rstrip("abcd") for t in TARGETS} == {f"P{i}" for i in range(1, 12)}


def test_throughput_ratio_against_the_same_run_baseline() -> None:
    rows = _rows(_doc())
    assert rows["P2a"]["ratio"] == pytest.approx(0.95)
    assert rows["P2a"]["met"] is True
    assert rows["P2b"]["met"] is True  # exactly 0.90: the target is inclusive
    assert rows["P1a"]["ratio"] == pytest.approx(0.5)
    assert rows["P1a"]["met"] is False
    assert (rows["P1a"]["measured"], rows["P1a"]["baseline"]) == (50.0, 100.0)
    assert rows["P3a"]["ratio"] == pytest.approx(0.9) and rows["P3a"]["met"] is True
    assert rows["P3c"]["ratio"] == pytest.approx(0.8) and rows["P3c"]["met"] is True
    assert rows["P2c"]["ratio"] == pytest.approx(0.5) and rows["P2c"]["met"] is False
    assert rows["P4a"]["ratio"] == pytest.approx(1.5) and rows["P4a"]["met"] is True


def test_p99_rows_are_speed_ratios() -> None:
    rows = _rows(_doc())
    assert rows["P3b"]["ratio"] == pytest.approx(0.5)  # gateway p99 twice the direct one
    assert rows["P3b"]["met"] is False
    assert rows["P3d"]["ratio"] == pytest.approx(1.0) and rows["P3d"]["met"] is True


def test_cpu_rows_are_a_ceiling() -> None:
    rows = _rows(_doc())
    assert rows["P11a"]["measured"] == pytest.approx(30.0)  # 3 CPU s over 100 GETs
    assert rows["P11a"]["ratio"] == pytest.approx(3.0) and rows["P11a"]["met"] is False
    assert rows["P11b"]["ratio"] == pytest.approx(1.2) and rows["P11b"]["met"] is True


def test_missing_figures_give_null_with_a_reason_never_a_number() -> None:
    rows = _rows(_doc())
    for rid in ("P1b", "P4b", "P7b", "P8", "P9"):
        assert rows[rid]["met"] is None, rid
        assert rows[rid]["measured"] is None and rows[rid]["ratio"] is None, rid
        assert rows[rid]["note"], rid
    assert "not present yet" in rows["P7b"]["note"]
    assert "boom" in rows["P8"]["note"]
    assert "objects_per_s" in rows["P9"]["note"] and "rotated" in rows["P9"]["note"]
    assert compute_rows({})[0]["met"] is None  # an empty document is all reasons


def test_a_wrong_body_voids_the_row() -> None:
    doc = _doc()
    doc["workloads"][2]["gateway"]["mismatches"] = 1
    row = _rows(doc)["P2a"]
    assert row["met"] is None and "wrong bodies" in row["note"]


def test_absolute_targets() -> None:
    rows = _rows(_doc())
    assert rows["P6a"]["met"] is True and rows["P6a"]["ratio"] == pytest.approx(0.5)
    assert rows["P6b"]["met"] is False
    assert rows["P7a"]["measured"] == pytest.approx(120.0) and rows["P7a"]["met"] is False
    assert rows["P5"]["ratio"] == pytest.approx(0.95) and rows["P5"]["met"] is True


def test_frozen_row_needs_no_request_waiting_for_the_timeout() -> None:
    doc = _doc()
    assert _rows(doc)["P10"]["ratio"] == pytest.approx(0.9)
    assert _rows(doc)["P10"]["met"] is False  # fast enough, but two waited the timeout
    assert "2 ops ≥ 30 s" in _rows(doc)["P10"]["note"]
    assert "deadline hit" in _rows(doc)["P10"]["note"]
    fixed = copy.deepcopy(doc)
    fixed["frozen"]["frozen"]["slower_than_timeout"] = 0
    assert _rows(fixed)["P10"]["met"] is True
    refused = copy.deepcopy(fixed)
    refused["frozen"]["frozen"]["errors"] = 3  # fast because it refused: not met
    assert _rows(refused)["P10"]["met"] is False


def test_markdown_has_every_row_and_the_counts() -> None:
    rows = compute_rows(_doc())
    text = render_targets(rows)
    for row in rows:
        assert f"| {row['id']} |" in text
    met = sum(r["met"] is True for r in rows)
    assert f"{met} met, " in text
    assert "| P8 | repair" in text and "boom" in text


def _sweep() -> list[dict[str, Any]]:
    out = []
    for size, gw, direct in ((4 * KIB, 0.1, 0.3), (MIB, 20.0, 30.0), (256 * MIB, 80.0, 100.0)):
        for op in ("put", "get"):
            out.append(_pair(op, size, 1, (gw, 1.0, 1.0, 1.0), (direct, 1.0, 1.0, 1.0)))
    out[1]["gateway"]["mismatches"] = 1  # a GET 4 KiB that returned a wrong body
    return out


def test_sweep_series_leave_out_wrong_sides_and_sort_by_size() -> None:
    series = sweep_series(list(reversed(_sweep())))
    assert series["gateway PUT"] == [(4 * KIB, 0.1), (MIB, 20.0), (256 * MIB, 80.0)]
    assert [s for s, _ in series["gateway GET"]] == [MIB, 256 * MIB]
    assert len(series["direct GET"]) == 3
    assert "| 256 MiB | GET | 1 |" in render_sweep(_sweep())


def test_charts_are_png_files(tmp_path: Path) -> None:
    ratios, sweep = tmp_path / "r.png", tmp_path / "s.png"
    plot_ratios(compute_rows(_doc()), ratios, "test")
    plot_sweep(_sweep(), sweep, "test")
    for path in (ratios, sweep):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _FakeTarget:
    """A store in a dict; ``corrupt`` names keys whose GET returns other bytes."""

    name = "fake"

    def __init__(self, corrupt: set[str]) -> None:
        self.data: dict[str, bytes] = {}
        self.corrupt = corrupt

    def put(self, blob: Blob) -> float:
        self.data[blob.key] = blob.data
        return 0.0

    def get(self, blob: Blob, index: int) -> Got:
        import hashlib

        body = b"x" * blob.size if blob.key in self.corrupt else self.data[blob.key]
        return Got(len(body), hashlib.sha256(body).digest(), 0.0)

    def delete(self, blob: Blob) -> None:
        del self.data[blob.key]


def test_mixed_load_checks_every_get_body() -> None:
    from bench.workloads import make_blobs

    pre = make_blobs("pre", 4, 64)
    target = _FakeTarget({pre[1].key})
    for blob in pre:
        target.put(blob)
    result = mixed_load(target, pre, prefix="m", threads=2, rounds=8, size=64, deadline_s=60,
                        slow_s=30)
    assert result["operations"] == 32  # 8 rounds x (PUT, GET, GET preloaded, DELETE)
    assert result["mismatches"] == 2  # rounds 1 and 5 read the corrupted preloaded object
    assert result["ok"] == 30 and result["errors"] == 0
    assert set(target.data) == {b.key for b in pre}  # every new object deleted again
