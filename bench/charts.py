"""The targets table (Markdown) and the two PNG charts of a run: ratios per target, and
throughput against object size (gateway vs direct, GET and PUT).

Pure functions of the rows (``bench.targets.compute_rows``) and of the size-sweep records that
``bench.run`` stores, so ``python -m bench.charts RESULT.json`` redraws them from a stored run.
Charts use matplotlib's object API on the Agg canvas: no display, no pyplot global state.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_ratios", "plot_sweep", "render_targets", "sweep_series"]

KIB, MIB = 1024, 1024 * 1024


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "–"}[met]


def render_targets(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table of the target rows, one line per id, reasons for missing figures."""
    lines = [
        "| id | figure | measured | baseline (same run) | ratio | target | met | note |",
        "|---|---|---:|---:|---:|---:|:---:|---|",
    ]
    for r in rows:
        unit = f" {r['unit']}" if r["measured"] is not None else ""
        base = "–" if r["baseline"] is None else f"{_fmt(r['baseline'])} ({r['baseline_what']})"
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        lines.append(
            f"| {r['id']} | {r['what']} | {_fmt(r['measured'])}{unit} | {base} | {ratio} "
            f"| {r['target_text']} | {_met(r['met'])} | {r['note']} |"
        )
    met = sum(r["met"] is True for r in rows)
    missed = sum(r["met"] is False for r in rows)
    unknown = sum(r["met"] is None for r in rows)
    lines += ["", f"{met} met, {missed} not met, {unknown} not measured in this run."]
    return "\n".join(lines) + "\n"


def sweep_series(sweep: Sequence[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """MB/s by object size for each of ``gateway PUT``, ``direct PUT``, ``gateway GET``,
    ``direct GET``; a side with no successful operation or a wrong body is left out."""
    series: dict[str, list[tuple[int, float]]] = {}
    for w in sweep:
        for side in ("gateway", "direct"):
            r = w[side]
            if not r["ok"] or r["mismatches"]:
                continue
            name = f"{side} {w['op'].upper()}"
            series.setdefault(name, []).append((w["size"], r["mb_per_s"]))
    return {k: sorted(v) for k, v in series.items()}


def _size_label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def _ratio_ok(row: dict[str, Any]) -> bool:
    if row["ratio"] is None or not row["rule"].startswith("ratio"):
        return False
    if row["rule"] == "ratio>=":
        return bool(row["ratio"] >= row["target"])
    return bool(row["ratio"] <= row["target"])


def plot_ratios(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Horizontal bars: each row's ratio (log scale), its target as a tick, coloured by met;
    rows without a ratio are listed with their reason instead of a bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 0.42 * len(rows) + 1.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = {True: "#2e7d32", False: "#c62828", None: "#9e9e9e"}
    labels = []
    values = [r["ratio"] for r in rows if r["ratio"]]
    low = min([*values, 0.1]) / 1.5
    high = max([*values, 2.0]) * 4  # room for the text beside the longest bar
    for y, r in enumerate(rows):
        labels.append(f"{r['id']} {r['what'][:46]}")
        absolute = r["rule"].startswith("abs")
        if r["measured"] is not None and absolute:  # the target is on the figure itself
            extra = f"{_fmt(r['measured'])} {r['unit']}, target {r['target_text']}"
        elif r["met"] is False and _ratio_ok(r):  # the ratio passes, another condition not
            extra = str(r["note"])[:60]
        else:
            extra = ""
        if r["ratio"]:
            ax.barh(y, r["ratio"], left=0, color=colours[r["met"]], height=0.6)
            text = f"{r['ratio']:.2f}×" + (f"  ({extra})" if extra else "")
            ax.text(r["ratio"] * 1.04, y, text, va="center", fontsize=8)
        else:
            text = extra or f"not measured: {str(r['note'])[:70]}"
            colour = "#616161" if r["met"] is None else colours[r["met"]]
            ax.text(low * 1.1, y, text, va="center", fontsize=7, color=colour)
        if r["rule"].startswith("ratio"):
            ax.plot([r["target"]] * 2, [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.axvline(1.0, color="#616161", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the same-run baseline; black tick: the target on the ratio\n"
                  "(rows without a tick have an absolute target, given beside the bar); "
                  "green met, red not, grey not measured", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_sweep(sweep: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """MB/s against object size, log-log, gateway solid and direct dashed, PUT and GET."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = {
        "gateway PUT": ("#1565c0", "-", "o"),
        "direct PUT": ("#1565c0", "--", "s"),
        "gateway GET": ("#ef6c00", "-", "o"),
        "direct GET": ("#ef6c00", "--", "s"),
    }
    sizes: set[int] = set()
    series = sweep_series(sweep)
    for name in [n for n in styles if n in series]:
        points = series[name]
        colour, line, marker = styles[name]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        sizes.update(xs)
        ax.plot(xs, ys, color=colour, linestyle=line, marker=marker, label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ordered = sorted(sizes)
    ax.set_xticks(ordered, [_size_label(s) for s in ordered])
    ax.minorticks_off()
    ax.set_xlabel("object size")
    ax.set_ylabel("MB/s (10^6 bytes of object per second)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def render_sweep(sweep: Sequence[dict[str, Any]]) -> str:
    """The sweep as a Markdown table: per size and op, MB/s of each side and the ratio."""
    lines = [
        "| size | op | streams | ops per side | gateway MB/s | direct MB/s | gw/direct |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for w in sweep:
        g, d = w["gateway"], w["direct"]
        ratio = w["ratio"]["mb_per_s"]
        lines.append(
            f"| {_size_label(w['size'])} | {w['op'].upper()} | {w['concurrency']} "
            f"| {g['ok']}/{g['planned']} | {_fmt(g['mb_per_s'])} | {_fmt(d['mb_per_s'])} "
            f"| {'–' if ratio is None else f'{ratio:.2f}×'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # score a stored result again and redraw its charts beside it
    from bench.targets import compute_rows

    source = Path(sys.argv[1])
    doc = json.loads(source.read_text())
    rows = compute_rows(doc)
    plot_ratios(rows, source.with_name(source.stem + "-targets.png"), source.stem)
    if doc.get("sweep"):
        plot_sweep(doc["sweep"], source.with_name(source.stem + "-sweep.png"), source.stem)
    print(render_targets(rows))
