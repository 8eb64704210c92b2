"""The run's record: the environment it ran in, and the short Markdown tables printed at the end.

The Markdown is rendered from the JSON document only, so any stored result can be re-rendered
(``python -m bench.report bench/results/X.json``) and the two never disagree.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.rss import descendants

__all__ = ["environment", "render_markdown"]

_REPO = Path(__file__).resolve().parent.parent
_PACKAGES = ("ray", "boto3", "botocore", "moto", "fastapi", "starlette", "uvicorn", "asyncpg")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None
    return None


def _foreign_raylets() -> int:
    """Other Ray nodes on this machine (other people's test clusters) compete for the CPUs."""
    ours = set(descendants(os.getpid()))
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in ours:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if b"/raylet/raylet" in handle.read():
                    count += 1
        except OSError:
            continue
    return count


def environment(settings: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to compare two result files fairly (or to see that one cannot)."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu_count": os.cpu_count(),
        "mem_total_gib": _mem_total_gib(),
        "loadavg": list(os.getloadavg()),
        "foreign_ray_nodes": _foreign_raylets(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "gateway_settings": {
            key: settings[key]
            for key in (
                "part_size",
                "max_ongoing_requests",
                "gateway_replicas",
                "redundancy_class",
                "backend_timeout_s",
                "health_interval_s",
                "cache_ttl_s",
                "ray_num_cpus",
            )
        },
    }


# -- Markdown ------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _size_label(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size // (1024 * 1024)} MiB"
    return f"{size // 1024} KiB"


def workload_label(op: str, size: int, concurrency: int) -> str:
    return f"{op.upper()} {_size_label(size)} ×{concurrency}"


def _perf_table(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | side | ok/planned | ops/s | MB/s | p50 ms | p99 ms "
        "| gw/direct ops/s | gw/direct MB/s | CPUs used by others |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in doc["workloads"]:
        for side in ("gateway", "direct"):
            r = w[side]
            flags = ""
            if r["mismatches"]:
                flags += f" **{r['mismatches']} WRONG**"
            if r["errors"]:
                flags += f" ({r['errors']} errors)"
            if r["truncated"]:
                flags += " (truncated)"
            ratio = w["ratio"] if side == "gateway" else {}
            lines.append(
                f"| {w['label'] if side == 'gateway' else ''} | {side} "
                f"| {r['ok']}/{r['planned']}{flags} | {_num(r['ops_per_s'], 2)} "
                f"| {_num(r['mb_per_s'], 2)} | {_num(r['latency_ms']['p50'])} "
                f"| {_num(r['latency_ms']['p99'])} | {_ratio(ratio.get('ops_per_s'))} "
                f"| {_ratio(ratio.get('mb_per_s'))} "
                f"| {_num(r['footprint'].get('foreign_cpus'), 2)} |"
            )
    return lines


def _peak_delta(footprint: dict[str, Any], kind: str, role: str) -> str:
    peak = footprint[f"{kind}_peak_mib"].get(role)
    start = footprint[f"{kind}_start_mib"].get(role)
    if peak is None or start is None:
        return "–"
    return f"{_num(peak)} (+{_num(peak - start)})"


def _mem_table(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | gateway PSS peak (+Δ) | proxy RSS peak (+Δ) | replica RSS peak (+Δ) "
        "| 3 backend actors RSS peak (+Δ) | 3 moto PSS peak: gw run / direct run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for w in doc["workloads"]:
        g = w["gateway"]["footprint"]
        d = w["direct"]["footprint"]
        if g["gateway_pss_peak_mib"] is not None:
            gw = (
                f"{_num(g['gateway_pss_peak_mib'])} "
                f"(+{_num(g['gateway_pss_peak_mib'] - g['gateway_pss_start_mib'])})"
            )
        else:
            gw = "–"
        lines.append(
            f"| {w['label']} | {gw} | {_peak_delta(g, 'rss', 'proxy')} "
            f"| {_peak_delta(g, 'rss', 'replica')} | {_peak_delta(g, 'rss', 'backend')} "
            f"| {_num(g['pss_peak_mib'].get('moto'))} / {_num(d['pss_peak_mib'].get('moto'))} |"
        )
    return lines


def _baseline_line(doc: dict[str, Any]) -> str:
    """Where the per-workload starts come from: idle, and after each warm-up."""

    def roles(footprint: dict[str, Any], when: str) -> str:
        key = "pss" if footprint["pss_available"] else "rss"
        at = footprint[f"{key}_{when}_mib"]
        total = footprint[f"gateway_{key}_{when}_mib"]
        return (
            f"{_num(total)} MiB {key.upper()} (proxy {_num(at.get('proxy'))}, "
            f"replica {_num(at.get('replica'))}, backends {_num(at.get('backend'))})"
        )

    parts = [f"gateway at rest after start-up: {roles(doc['idle_footprint'], 'start')}"]
    for warm in doc.get("warmups", []):
        parts.append(
            f"peak while warming up with {warm['ops_per_side']} PUT+GET of "
            f"{_size_label(warm['size'])}: {roles(warm['footprint'], 'peak')}"
        )
    return "; ".join(parts) + "."


def _stage_table(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | client p50 | body sent (PUT) / headers in (GET) p50: gw; direct "
        "| proxy p50 | replica (handler) p50 | proxy hop p50 | backend actor mean put / get |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in doc["workloads"]:
        g = w["gateway"]
        stages = g.get("stages") or {}
        if not stages.get("available"):
            continue
        actors = g["backend_actors"].values()
        puts = [a["mean_put_ms"] for a in actors if a["mean_put_ms"] is not None]
        gets = [a["mean_get_ms"] for a in actors if a["mean_get_ms"] is not None]
        put = _num(sum(puts) / len(puts)) if puts else "–"
        get = _num(sum(gets) / len(gets)) if gets else "–"
        milestone = (
            f"{_num(g.get('milestone_ms', {}).get('p50'))}; "
            f"{_num(w['direct'].get('milestone_ms', {}).get('p50'))}"
        )
        lines.append(
            f"| {w['label']} | {_num(g['latency_ms']['p50'])} | {milestone} "
            f"| {_num(stages['proxy_ms']['p50'])} | {_num(stages['replica_ms']['p50'])} "
            f"| {_num(stages['proxy_hop_ms']['p50'])} | {put} / {get} |"
        )
    return lines


_CPU_COLUMNS = ("proxy", "replica", "backend", "moto", "client")


def _cpu_table(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | side | proxy | replica | backends | moto | client | rest of Ray | total |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in doc["workloads"]:
        for side in ("gateway", "direct"):
            r = w[side]
            ok = r["ok"] or 1
            cpu = r["footprint"]["cpu_s"]
            cells = [cpu.get(role, 0.0) * 1000 / ok for role in _CPU_COLUMNS]
            rest = sum(v for k, v in cpu.items() if k not in _CPU_COLUMNS) * 1000 / ok
            total = sum(cpu.values()) * 1000 / ok
            lines.append(
                f"| {w['label'] if side == 'gateway' else ''} | {side} | "
                + " | ".join(_num(c, 2) for c in cells)
                + f" | {_num(rest, 2)} | {_num(total, 2)} |"
            )
    return lines


def _profile_lines(doc: dict[str, Any]) -> list[str]:
    profile = doc.get("profile")
    if not profile:
        return []
    lines = ["", "### py-spy (separate pass): innermost frame by package, share of samples", ""]
    for tag, roles in profile.items():
        for role, summary in roles.items():
            if not isinstance(summary, dict) or not summary.get("samples"):
                continue
            parts = ", ".join(f"{k} {v:.0%}" for k, v in summary["self_by_package"][:6])
            lines.append(f"- {tag} / {role} ({summary['samples']} samples): {parts}")
    return lines


def render_markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    settings = env["gateway_settings"]
    head = (
        f"## Bulletproof gateway vs direct boto3 ({doc['started_at']}, "
        f"commit {str(env['git_commit'])[:10]}{' dirty' if env['git_dirty'] else ''})"
    )
    context = (
        f"{env['cpu_count']} CPUs, load {env['loadavg'][0]:.2f} at start, "
        f"{env['foreign_ray_nodes']} other Ray node(s) on the machine; "
        f"part size {settings['part_size'] // (1024 * 1024)} MiB, "
        f"max_ongoing_requests {settings['max_ongoing_requests']}, "
        f"class {settings['redundancy_class']} (3 copies, quorum 2); "
        f"ray {env['versions']['ray']}, boto3 {env['versions']['boto3']}, "
        f"moto {env['versions']['moto']}{'; QUICK run' if doc['parameters']['quick'] else ''}."
    )
    lines = [head, "", context, "", *_perf_table(doc), ""]
    lines += [
        "Memory, MiB: gateway = proxy + replica + 3 backend actors; PSS sampled every 0.5 s, "
        "RSS every 50 ms; +Δ = peak minus the value when the workload started. "
        + _baseline_line(doc),
        "",
        *_mem_table(doc),
        "",
        "Gateway latency by stage, ms (Serve access logs matched by request id; the proxy hop "
        "is proxy time minus replica time per request):",
        "",
        *_stage_table(doc),
        "",
        f"CPU ms per operation by process role, including the settle after each workload "
        f"({env['cpu_count']} CPUs = {env['cpu_count'] * 1000:,} CPU ms per wall second):",
        "",
        *_cpu_table(doc),
    ]
    lines += _profile_lines(doc)
    verdict = doc["verdict"]
    lines += ["", f"Correctness guard: {verdict}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # re-render a stored result
    print(render_markdown(json.loads(Path(sys.argv[1]).read_text())))
