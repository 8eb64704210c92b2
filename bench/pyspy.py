"""Optional sampling profiles of the gateway's processes (``--profile``), with py-spy.

py-spy attaches from outside (ptrace, ``--nonblocking`` so the target is never paused) and
samples only threads that are running Python, so sample counts approximate CPU time spent in
Python frames (time inside a C extension is charged to the Python frame that called it). It
still costs the machine some CPU, so profiled runs are for *where* time goes, never for the
headline figures: ``bench.run`` profiles in an extra, separate pass.

The summary keeps it short: per process, the share of samples by *package* of the innermost
frame (``ray``, ``botocore``, ``starlette``, our ``gateway``/``actors``, stdlib ``asyncio``, ...)
and the top frames of our own code by inclusive share.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from types import TracebackType

__all__ = ["PySpyRecorder", "pyspy_binary", "summarize_collapsed"]

_REPO = str(Path(__file__).resolve().parent.parent) + "/"
_OUR_PACKAGES = ("gateway", "actors", "schema", "cluster", "jobs", "client")


def pyspy_binary() -> str | None:
    """py-spy next to this interpreter (Ray's ``default`` extra installs it), else on PATH."""
    import sys

    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _frame_file(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'path/to/file.py'."""
    if not frame.endswith(")") or " (" not in frame:
        return ""
    return frame.rsplit(" (", 1)[1][:-1].rsplit(":", 1)[0]


def _package(path: str) -> str:
    """Top-level package or module of a frame's file. py-spy already prints paths relative to
    ``sys.path`` ('ray/actor.py', 'threading.py'); absolute ones are cut the same way."""
    for marker in ("site-packages/", _REPO):
        if marker in path:
            path = path.split(marker, 1)[1]
    if "/python3." in path:
        path = path.split("/python3.", 1)[1].split("/", 1)[-1]
    return path.split("/", 1)[0].removesuffix(".py") or "?"


def _short(frame: str) -> str:
    """Drop the line number and the long prefix so equal functions aggregate."""
    name, _, rest = frame.partition(" (")
    path = rest[:-1].rsplit(":", 1)[0] if rest else ""
    for prefix in ("site-packages/", _REPO):
        if prefix in path:
            path = path.split(prefix, 1)[1]
    return f"{name} ({path})"


def summarize_collapsed(text: str, top: int = 8) -> dict[str, object]:
    """Summarize py-spy's raw (collapsed-stack) output: 'f1;f2;f3 COUNT' per line."""
    by_package: Counter[str] = Counter()
    ours_inclusive: Counter[str] = Counter()
    self_frames: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        by_package[_package(_frame_file(leaf))] += count
        self_frames[_short(leaf)] += count
        seen = set()
        for frame in frames:
            if _package(_frame_file(frame)) in _OUR_PACKAGES:
                short = _short(frame)
                if short not in seen:
                    seen.add(short)
                    ours_inclusive[short] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(v / total, 3)) for k, v in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "self_by_package": shares(by_package),
        "self_top_frames": shares(self_frames),
        "our_code_inclusive": shares(ours_inclusive),
    }


class PySpyRecorder:
    """Records ``py-spy record`` for each ``role -> pid`` while the ``with`` block runs."""

    def __init__(self, targets: dict[str, int], out_dir: Path, tag: str, rate: int = 100) -> None:
        self._targets = targets
        self._out_dir = out_dir
        self._tag = tag
        self._rate = rate
        self._procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.summaries: dict[str, dict[str, object]] = {}

    def __enter__(self) -> PySpyRecorder:
        binary = pyspy_binary()
        if binary is None:
            return self
        self._out_dir.mkdir(parents=True, exist_ok=True)
        for role, pid in self._targets.items():
            path = self._out_dir / f"{self._tag}-{role}.collapsed"
            argv = [
                binary,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(self._rate),
                "--format",
                "raw",
                "--output",
                str(path),
                "--nonblocking",
            ]
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._procs[role] = (proc, path)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for proc, _ in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        for role, (proc, path) in self._procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if path.exists():
                self.summaries[role] = summarize_collapsed(path.read_text())
                self.summaries[role]["file"] = path.name
