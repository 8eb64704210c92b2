"""A one-line transfer progress display on stderr.

Shown only when it helps and cannot corrupt anything: for transfers larger than
:data:`PROGRESS_THRESHOLD`, when stderr is a terminal, and unless ``--quiet``. It never writes
to stdout (``bp get ... -`` streams the object there). Redraws are throttled so a fast
transfer does not spend its time printing.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

__all__ = ["PROGRESS_THRESHOLD", "Progress", "format_bytes", "make_progress"]

PROGRESS_THRESHOLD = 8 * 1024 * 1024
_REDRAW_S = 0.1


def format_bytes(n: float) -> str:
    """Human-readable binary size, e.g. ``20.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Counts bytes of one transfer and redraws ``label  done / total  pct  rate``.

    :meth:`restart` starts the count again (a body that is read twice, e.g. hashed for the
    SigV4 payload signature and then sent, shows the pass in progress, not a sum over passes).
    Thread-safe: the parts of a multipart upload report from their own threads, and a part
    that is read again takes its bytes back with a negative :meth:`update`.
    """

    def __init__(self, label: str, total: int, stream: TextIO | None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._lock = threading.Lock()

    def update(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if self._stream is not None and now - self._last_draw >= _REDRAW_S:
                self._last_draw = now
                self._draw(now)

    def restart(self) -> None:
        with self._lock:
            self.done = 0
            self._start = time.monotonic()

    def _draw(self, now: float) -> None:
        assert self._stream is not None
        elapsed = max(now - self._start, 1e-6)
        pct = 100.0 * self.done / self.total if self.total else 100.0
        line = (
            f"{self.label}  {format_bytes(self.done)} / {format_bytes(self.total)}"
            f"  {pct:5.1f}%  {format_bytes(self.done / elapsed)}/s"
        )
        self._stream.write("\r" + line.ljust(72))
        self._stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line (only if anything was drawn)."""
        with self._lock:
            if self._stream is not None and self._last_draw:
                self._draw(time.monotonic())
                self._stream.write("\n")
                self._stream.flush()


def make_progress(label: str, total: int, stream: TextIO, *, quiet: bool) -> Progress:
    """A progress counter that draws on ``stream`` only when the rules above allow it."""
    show = not quiet and total > PROGRESS_THRESHOLD and stream.isatty()
    return Progress(label, total, stream if show else None)
