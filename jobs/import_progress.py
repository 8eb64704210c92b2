"""How an import's progress reads: one line with a bar, counts, rate and ETA, the same in the
job's log and in ``bulletproof import status --watch``.

The numbers come from ``core.import_state`` (``measure_progress``); this module only renders
them, with the SDK's byte formatting (``client.progress.format_bytes``) so sizes read the same
as ``bp put``/``bp get`` show them. It holds no state and writes nothing.
"""

from __future__ import annotations

from client.progress import format_bytes
from core.import_state import Progress

__all__ = ["format_duration", "progress_line"]


def format_duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``1h02m``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(
    *,
    objects_done: int,
    objects_total: int,
    bytes_done: int,
    bytes_total: int,
    progress: Progress,
    width: int = 20,
) -> str:
    """Bar (by bytes, or by objects when the import holds no bytes), counts, rate and ETA."""
    if bytes_total > 0:
        fraction = bytes_done / bytes_total
    else:
        fraction = objects_done / objects_total if objects_total else 1.0
    fraction = min(1.0, max(0.0, fraction))
    filled = int(fraction * width)
    eta = "ETA ?" if progress.eta_s is None else f"ETA {format_duration(progress.eta_s)}"
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%"
        f" {objects_done}/{objects_total} objects"
        f" {format_bytes(bytes_done)}/{format_bytes(bytes_total)}"
        f" {progress.objects_per_s:.1f} obj/s {format_bytes(progress.bytes_per_s)}/s {eta}"
    )
