"""An import's Ray job, through Ray's Job Submission API: submit, stop, ask, list.

What it keeps true:

- **One deterministic submission id per run and attempt**: ``bp-import-<run_id>-<attempt>``
  (attempt 1 for ``start``, +1 for every ``resume``/``verify``). Submitting an id Ray already
  has is a success, not an error: a gateway that crashed between recording the id and hearing
  Ray's answer, or a client that retries, starts nothing twice.
- **Nothing secret in what Ray keeps and shows**: the entrypoint names the run only
  (``python -m jobs.importer --run-id N``); ``runtime_env`` sets ``PATH`` (the interpreter
  that runs the cluster) and ``PYTHONPATH`` (this checkout) and nothing else; the metadata is
  the run and tenant ids. The passphrase and the settings travel through
  ``actors/import_keyholder.py``, in memory.
- **The job is an ordinary Ray job**: it shows on the dashboard's Jobs page with its logs, and
  ``ray job submit --submission-id bp-import-N-1 -- python -m jobs.importer --run-id N`` does
  the same thing by hand.

The dashboard's address is read from the cluster itself (the GCS key-value store), so this
works in any process of the cluster (a gateway replica, the CLI's driver) without
configuration. Ray 2.59+ turns on token authentication for local clusters;
``JobSubmissionClient`` adds the ``Authorization: Bearer`` header from the cluster's token
(``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) by itself whenever
``RAY_AUTH_MODE=token`` is in force, which ``ray.init`` sets for the processes of the cluster
it starts. The client is blocking (``requests``): async callers run it in a thread.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.ray_cluster_info import dashboard_url
from core.errors import BulletproofError, NotFound

__all__ = [
    "FINISHED_JOB_STATUSES",
    "ImportJob",
    "ImportJobs",
    "JobsUnavailable",
    "entrypoint",
    "parse_submission_id",
    "submission_id",
]

_PREFIX = "bp-import-"
_ID = re.compile(r"^bp-import-(\d+)-(\d+)$")
#: Ray job statuses after which no driver of the attempt runs any more.
FINISHED_JOB_STATUSES = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})
_NO_AGENT = "No available agent"
#: The directory holding the ``jobs`` package (the job's driver imports ``jobs.importer``).
_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])


class JobsUnavailable(BulletproofError):
    """Ray's Job Submission API cannot be reached (no dashboard, or it refused us)."""


def submission_id(run_id: int, attempt: int) -> str:
    """The submission id of ``attempt`` (1, 2, ...) of import ``run_id``."""
    if run_id < 1 or attempt < 1:
        raise ValueError("run id and attempt start at 1")
    return f"{_PREFIX}{run_id}-{attempt}"


def parse_submission_id(value: str) -> tuple[int, int]:
    """(run id, attempt) of a submission id this module made."""
    match = _ID.match(value)
    if match is None:
        raise ValueError(f"not an import submission id: {value!r}")
    return int(match.group(1)), int(match.group(2))


def entrypoint(run_id: int) -> str:
    """The job's command line: the run id and nothing else."""
    return f"python -m jobs.importer --run-id {int(run_id)}"


def _runtime_env() -> dict[str, Any]:
    """Where ``python`` and ``jobs`` are found: this interpreter's directory first on the
    PATH (the cluster may have been started without the virtualenv activated) and this
    checkout first on the PYTHONPATH. ``${VAR}`` is expanded by Ray on the node."""
    bin_dir = os.path.dirname(sys.executable)
    return {
        "env_vars": {
            "PATH": f"{bin_dir}:${{PATH}}",
            "PYTHONPATH": f"{_PROJECT_ROOT}:${{PYTHONPATH}}",
        }
    }


@dataclass(frozen=True)
class ImportJob:
    """What Ray says of one submission."""

    submission_id: str
    status: str
    message: str | None
    entrypoint: str
    metadata: dict[str, str]
    runtime_env: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES


def _job(details: Any) -> ImportJob:
    return ImportJob(
        submission_id=str(details.submission_id),
        status=str(getattr(details.status, "value", details.status)),
        message=details.message,
        entrypoint=str(details.entrypoint),
        metadata=dict(details.metadata or {}),
        runtime_env=dict(details.runtime_env or {}),
    )


class ImportJobs:
    """The cluster's Job Submission API, for import jobs. ``address``: the dashboard's HTTP
    address; by default the one the cluster this process is connected to publishes."""

    def __init__(self, address: str | None = None, *, agent_wait_s: float = 30.0) -> None:
        self._address = address
        self._agent_wait_s = agent_wait_s
        self._client: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient

                address = self._address or _dashboard_address()
                try:
                    self._client = JobSubmissionClient(address)
                except (ConnectionError, RuntimeError) as exc:
                    raise JobsUnavailable(
                        f"Ray's Job Submission API at {address} is unavailable"
                        f" ({type(exc).__name__}); is the dashboard on (BP_DASHBOARD)?"
                    ) from None
            return self._client

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        client = self._connect()
        try:
            return getattr(client, name)(*args, **kwargs)
        except ConnectionError as exc:
            with self._lock:
                self._client = None  # the dashboard may have moved: look it up again
            raise JobsUnavailable(
                f"Ray's Job Submission API did not answer ({type(exc).__name__})"
            ) from None

    def submit(self, run_id: int, attempt: int, *, tenant_id: int) -> str:
        """Submit attempt ``attempt`` of run ``run_id``; an id Ray already has is a success
        (whatever became of that job: a finished attempt is resumed with the next one)."""
        sid = submission_id(run_id, attempt)
        deadline = time.monotonic() + self._agent_wait_s
        while True:
            try:
                self._call(
                    "submit_job",
                    entrypoint=entrypoint(run_id),
                    submission_id=sid,
                    runtime_env=_runtime_env(),
                    metadata={
                        "bulletproof": "import",
                        "run_id": str(run_id),
                        "tenant_id": str(tenant_id),
                        "attempt": str(attempt),
                    },
                )
                return sid
            except RuntimeError as exc:
                if "already exists" in str(exc):
                    return sid
                # A freshly started cluster's dashboard agent takes a few seconds to register.
                if _NO_AGENT in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise JobsUnavailable(f"Ray refused job {sid}: {_first_line(exc)}") from None

    def get(self, sid: str) -> ImportJob:
        """Ray's record of a submission; ``NotFound`` if Ray has none."""
        try:
            return _job(self._call("get_job_info", sid))
        except RuntimeError as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                raise NotFound(f"Ray has no job {sid}") from None
            raise JobsUnavailable(f"Ray's job {sid}: {_first_line(exc)}") from None

    def find(self, sid: str) -> ImportJob | None:
        try:
            return self.get(sid)
        except NotFound:
            return None

    def stop(self, sid: str) -> bool:
        """Ask Ray to stop a submission; True if it was running. A submission Ray does not
        know, or one already finished, is left alone (False)."""
        try:
            return bool(self._call("stop_job", sid))
        except RuntimeError as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                return False
            raise JobsUnavailable(f"Ray could not stop job {sid}: {_first_line(exc)}") from None

    def logs(self, sid: str) -> str:
        try:
            return str(self._call("get_job_logs", sid))
        except RuntimeError as exc:
            raise NotFound(f"Ray has no logs of job {sid}: {_first_line(exc)}") from None

    def list(self) -> list[ImportJob]:
        """Every import job Ray knows of (other jobs are not ours to show)."""
        return [
            _job(d)
            for d in self._call("list_jobs")
            if str(d.submission_id or "").startswith(_PREFIX)
        ]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def _dashboard_address() -> str:
    """The dashboard's HTTP address as the connected cluster publishes it."""
    import ray

    if not ray.is_initialized():
        raise JobsUnavailable("not connected to a Ray cluster")
    url = dashboard_url()
    if not url:
        raise JobsUnavailable(
            "the Ray dashboard is off, and imports are submitted through its Job Submission"
            " API: start the gateway with the dashboard on (BP_DASHBOARD=true)"
        )
    return url
