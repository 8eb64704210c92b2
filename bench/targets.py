"""The performance targets of issue 16 (P1..P11) and the rows computed from one run's figures.

One home for the table: each target says what is measured, against which baseline of the same
run, in which unit, and what "met" means. ``compute_rows`` turns a run's JSON document (what
``bench.run`` writes) into one row per target. It is a pure function of the document, so a
stored result can be scored again and the tests can feed it recorded inputs.

A figure that was not measured (a module not present yet, a case skipped by a flag, a side that
failed) gives a row with ``met: None`` and the reason; never a made-up number.

Ratio conventions (each row says which): for throughput rows ``ratio`` is gateway / baseline
(higher is better, 1.00 = as fast as the client doing it itself); for latency rows (P3 p99) it
is baseline p99 / gateway p99, a *speed* ratio, so that the issue's ">= 0.8x" reads the same way;
for CPU rows (P11) it is gateway CPU / direct CPU and the target is a ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["TARGETS", "Figure", "Missing", "Target", "compute_rows", "workload"]

KIB, MIB = 1024, 1024 * 1024
Doc = dict[str, Any]


@dataclass(frozen=True)
class Figure:
    """A measured figure and its same-run baseline (``None`` when the target is absolute).

    ``ratio`` is set only when it is not ``measured / baseline`` (P3's speed ratio). ``also``
    is a second condition the row must meet (P10: no request waited for the backend timeout),
    with ``detail`` saying what it was."""

    measured: float
    baseline: float | None = None
    ratio: float | None = None
    also: bool | None = None
    detail: str = ""


@dataclass(frozen=True)
class Missing:
    reason: str


Extract = Callable[[Doc], Figure | Missing]


@dataclass(frozen=True)
class Target:
    id: str
    what: str
    baseline: str
    unit: str
    target: float
    # "ratio>=": ratio at least target; "ratio<=": at most; "abs>=" / "abs<=": the measured
    # figure itself against the target (P6, P7, P9).
    rule: Literal["ratio>=", "ratio<=", "abs>=", "abs<="]
    extract: Extract

    @property
    def target_text(self) -> str:
        op = "≥" if self.rule.endswith(">=") else "≤"
        if self.rule.startswith("ratio"):
            return f"{op} {self.target:.2f}×"
        return f"{op} {self.target:g} {self.unit}"


# -- extraction helpers (all pure) -------------------------------------------------------------


def workload(doc: Doc, op: str, size: int, concurrency: int) -> Doc | None:
    """The main-run workload record for ``op`` at ``size`` bytes on ``concurrency`` streams."""
    for w in doc.get("workloads") or []:
        if w["op"] == op and w["size"] == size and w["concurrency"] == concurrency:
            return dict(w)
    return None


def _size(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def _absent(op: str, size: int, concurrency: int) -> Missing:
    return Missing(f"workload {op.upper()} {_size(size)} ×{concurrency} not in this run")


def _side_problem(w: Doc) -> str | None:
    for side in ("gateway", "direct"):
        r = w[side]
        if not r["ok"]:
            return f"{side} side had no successful operation"
        if r["mismatches"]:
            return f"{side} side returned {r['mismatches']} wrong bodies"
    return None


def _throughput(op: str, size: int, concurrency: int, key: str) -> Extract:
    def extract(doc: Doc) -> Figure | Missing:
        w = workload(doc, op, size, concurrency)
        if w is None:
            return _absent(op, size, concurrency)
        problem = _side_problem(w)
        if problem:
            return Missing(problem)
        g, d = w["gateway"], w["direct"]
        errors = g["errors"] + d["errors"]
        return Figure(
            g[key],
            d[key],
            detail=f"{g['ok']}/{g['planned']} gw, {d['ok']}/{d['planned']} direct"
            + (f", {errors} errors" if errors else "")
            + (", truncated" if g["truncated"] or d["truncated"] else ""),
        )

    return extract


def _p99_speed(op: str, size: int, concurrency: int) -> Extract:
    def extract(doc: Doc) -> Figure | Missing:
        w = workload(doc, op, size, concurrency)
        if w is None:
            return _absent(op, size, concurrency)
        problem = _side_problem(w)
        if problem:
            return Missing(problem)
        g, d = w["gateway"]["latency_ms"]["p99"], w["direct"]["latency_ms"]["p99"]
        if not g or not d:
            return Missing("no p99 latency on one side")
        return Figure(g, d, ratio=d / g, detail="ratio = direct p99 / gateway p99")

    return extract


def _multipart(doc: Doc) -> Figure | Missing:
    m = doc.get("multipart")
    if not m:
        return Missing("multipart case not run")
    g, d = m["gateway"], m["direct"]
    if g["mismatches"] or not g["mb_per_s"] or not d["mb_per_s"]:
        return Missing(f"multipart: gateway {g}, direct {d}")
    return Figure(g["mb_per_s"], d["mb_per_s"], detail=f"{g['ok']} objects per side")


def _cpu_per_op(op: str, size: int, concurrency: int) -> Extract:
    """Every CPU ms the run's own processes spent per operation (client, moto, Ray, and on
    the gateway side the proxy, replica and backend actors): what the operation costs."""

    def extract(doc: Doc) -> Figure | Missing:
        w = workload(doc, op, size, concurrency)
        if w is None:
            return _absent(op, size, concurrency)
        problem = _side_problem(w)
        if problem:
            return Missing(problem)
        per_op = [
            sum(w[s]["footprint"]["cpu_s"].values()) * 1000 / w[s]["ok"]
            for s in ("gateway", "direct")
        ]
        return Figure(per_op[0], per_op[1], detail="CPU ms/op, all roles, incl. settle")

    return extract


def _import(case: str, key: str) -> Extract:
    def extract(doc: Doc) -> Figure | Missing:
        imp = doc.get("import")
        if not imp or case not in imp:
            return Missing("import case not run (--no-import or --multipart-only)")
        r = imp[case]
        return Figure(
            r[f"import_{key}"],
            r[f"rclone_{key}"],
            detail=f"{r['objects']} × {_size(r['size'])}; load {r['import_loadavg']}",
        )

    return extract


def _module_result(doc: Doc, name: str) -> Doc | Missing:
    section = (doc.get("modules") or {}).get(name)
    if section is None:
        return Missing(f"bench.{name} not run")
    if "skipped" in section:
        return Missing(str(section["skipped"]))
    if "error" in section:
        return Missing(f"bench.{name} failed: {section['error']}")
    return dict(section)


def _first(section: Doc, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = section.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _keyed(name: str, measured: tuple[str, ...], baseline: tuple[str, ...] = ()) -> Extract:
    """A figure from a helper module's ``measure(quick)`` result. The key names are the
    contract with those modules (bench/README.md); an unknown shape is reported, not guessed."""

    def extract(doc: Doc) -> Figure | Missing:
        section = _module_result(doc, name)
        if isinstance(section, Missing):
            return section
        value = _first(section, measured)
        base = _first(section, baseline) if baseline else None
        if value is None or (baseline and base is None):
            wanted = "/".join(measured + baseline)
            return Missing(f"bench.{name}: none of {wanted} in {sorted(section)}")
        return Figure(value, base, detail=str(section.get("source", "")))

    return extract


def _rest_per_actor(doc: Doc) -> Figure | Missing:
    """PSS of the backend actors at rest after start-up, per actor (bench_memory's figure
    when it ran, else the idle footprint of the main run)."""
    section = _module_result(doc, "bench_memory")
    if not isinstance(section, Missing):
        value = _first(section, ("rest_per_actor_mib",))
        if value is not None:
            return Figure(value, detail="bench_memory")
    idle = doc.get("idle_footprint")
    if not idle:
        return Missing("no idle footprint in this run")
    kind = "pss" if idle["pss_available"] else "rss"
    total = idle[f"{kind}_start_mib"].get("backend")
    count = idle["processes"].get("backend")
    if total is None or not count:
        return Missing("no backend actor found in the idle footprint")
    return Figure(total / count, detail=f"{kind.upper()}, {count} actors, idle after start-up")


def _frozen(doc: Doc) -> Figure | Missing:
    f = doc.get("frozen")
    if not f:
        return Missing("frozen-backend workload not run")
    if "skipped" in f:
        return Missing(str(f["skipped"]))
    h, z = f["healthy"], f["frozen"]
    if h["mismatches"] or z["mismatches"]:
        return Missing(f"wrong bodies: healthy {h['mismatches']}, frozen {z['mismatches']}")
    if not h["ops_per_s"] or not z["ok"]:
        return Missing("no successful operation on one side")
    slow = z["slower_than_timeout"]
    return Figure(
        z["ops_per_s"],
        h["ops_per_s"],
        # Met only when nothing waited for the timeout AND nothing failed: a refused request
        # is not "moving on" (a 503 would make the frozen side look fast).
        also=slow == 0 and not z["errors"] and not h["errors"],
        detail=f"frozen: max {z['latency_ms']['max']:.0f} ms, {slow} ops ≥ "
        f"{f['backend_timeout_s']:g} s, {z['errors']} errors, {z['operations']} ops"
        + (" (deadline hit)" if z.get("truncated") else "")
        + f"; healthy max {h['latency_ms']['max']:.0f} ms",
    )


TARGETS: tuple[Target, ...] = (
    Target(
        "P1a", "GET 64 MiB ×1", "direct GET, one replica", "MB/s", 0.9, "ratio>=",
        _throughput("get", 64 * MIB, 1, "mb_per_s"),
    ),
    Target(
        "P1b", "GET 64 MiB ×4", "direct GET, one replica", "MB/s", 0.9, "ratio>=",
        _throughput("get", 64 * MIB, 4, "mb_per_s"),
    ),
    Target(
        "P2a", "PUT 64 MiB ×1 (3 copies, quorum 2)", "client writes 3 copies", "MB/s", 0.9,
        "ratio>=", _throughput("put", 64 * MIB, 1, "mb_per_s"),
    ),
    Target(
        "P2b", "PUT 64 MiB ×4 (3 copies, quorum 2)", "client writes 3 copies", "MB/s", 0.9,
        "ratio>=", _throughput("put", 64 * MIB, 4, "mb_per_s"),
    ),
    Target(
        "P2c", "PUT 64 MiB multipart 8 MiB ×10", "same upload to one server", "MB/s", 0.9,
        "ratio>=", _multipart,
    ),
    Target(
        "P3a", "PUT 4 KiB ×8 ops/s", "client writes 3 copies", "ops/s", 0.8, "ratio>=",
        _throughput("put", 4 * KIB, 8, "ops_per_s"),
    ),
    Target(
        "P3b", "PUT 4 KiB ×8 p99", "client writes 3 copies", "ms", 0.8, "ratio>=",
        _p99_speed("put", 4 * KIB, 8),
    ),
    Target(
        "P3c", "GET 4 KiB ×8 ops/s", "direct GET, one replica", "ops/s", 0.7, "ratio>=",
        _throughput("get", 4 * KIB, 8, "ops_per_s"),
    ),
    Target(
        "P3d", "GET 4 KiB ×8 p99", "direct GET, one replica", "ms", 0.7, "ratio>=",
        _p99_speed("get", 4 * KIB, 8),
    ),
    Target(
        "P4a", "import 4 KiB objects", "rclone copy", "objects/s", 1.0, "ratio>=",
        _import("small", "objects_per_s"),
    ),
    Target(
        "P4b", "import large objects", "rclone copy", "MB/s", 1.0, "ratio>=",
        _import("large", "MB_per_s"),
    ),
    Target(
        "P5", "erasure encode, gateway path, per core", "raw zfec, 256 KiB stripes", "MB/s",
        0.9, "ratio>=",
        _keyed("bench_erasure", ("gateway_mb_per_s", "gateway_mb_per_s_per_core"),
               ("raw_mb_per_s", "raw_256k_mb_per_s")),
    ),
    Target(
        "P6a", "bp encrypt per core", "raw AES-256-GCM", "MB/s", 1000, "abs>=",
        _keyed("bench_crypto", ("encrypt_mb_per_s",), ("raw_encrypt_mb_per_s",)),
    ),
    Target(
        "P6b", "bp decrypt per core", "raw AES-256-GCM", "MB/s", 1000, "abs>=",
        _keyed("bench_crypto", ("decrypt_mb_per_s",), ("raw_decrypt_mb_per_s",)),
    ),
    Target(
        "P7a", "memory at rest per backend actor", "–", "MiB", 100, "abs<=", _rest_per_actor,
    ),
    Target(
        "P7b", "growth during 8 concurrent 256 MiB PUTs", "–", "MiB", 1024, "abs<=",
        _keyed("bench_memory", ("growth_mib", "put_growth_mib")),
    ),
    Target(
        "P8", "repair 1,000 × 1 MiB, a backend returned empty", "boto3 copy, 16 threads",
        "objects/s", 0.8, "ratio>=",
        _keyed("bench_repair", ("repair_objects_per_s",), ("baseline_objects_per_s",)),
    ),
    Target(
        "P9", "bp rotate end to end", "–", "objects/s", 1000, "abs>=",
        _keyed("bench_rotate", ("objects_per_s",)),
    ),
    Target(
        "P10", "mixed 4 KiB PUT/GET/DELETE, 1 of 3 frozen", "same load, all healthy",
        "ops/s", 0.8, "ratio>=", _frozen,
    ),
    Target(
        "P11a", "CPU per 4 KiB GET", "direct GET", "ms/op", 1.5, "ratio<=",
        _cpu_per_op("get", 4 * KIB, 8),
    ),
    Target(
        "P11b", "CPU per 64 MiB GET", "direct GET", "ms/op", 1.5, "ratio<=",
        _cpu_per_op("get", 64 * MIB, 1),
    ),
)


def _met(target: Target, figure: Figure, ratio: float | None) -> bool | None:
    value = figure.measured if target.rule.startswith("abs") else ratio
    if value is None:
        return None
    ok = value >= target.target if target.rule.endswith(">=") else value <= target.target
    return ok and figure.also is not False


def compute_rows(doc: Doc) -> list[Doc]:
    """One row per target: id, what, unit, measured, baseline, ratio, target, met, note."""
    rows = []
    for target in TARGETS:
        row: Doc = {
            "id": target.id,
            "what": target.what,
            "baseline_what": target.baseline,
            "unit": target.unit,
            "target": target.target,
            "rule": target.rule,
            "target_text": target.target_text,
        }
        try:
            figure = target.extract(doc)
        except (KeyError, TypeError, ZeroDivisionError) as exc:  # a malformed section
            figure = Missing(f"cannot read the figures: {type(exc).__name__}: {exc}")
        if isinstance(figure, Missing):
            row.update(measured=None, baseline=None, ratio=None, met=None, note=figure.reason)
        else:
            ratio = figure.ratio
            if ratio is None and figure.baseline:
                ratio = figure.measured / figure.baseline
            row.update(
                measured=round(figure.measured, 3),
                baseline=None if figure.baseline is None else round(figure.baseline, 3),
                ratio=None if ratio is None else round(ratio, 3),
                met=_met(target, figure, ratio),
                note=figure.detail,
            )
        rows.append(row)
    return rows
