"""How an import's passphrase reaches its Ray job: in memory, through one named actor.

The passphrase that opens a source's sealed credentials must never be written anywhere a
person or another tenant could read it later: not in the job's entrypoint, ``runtime_env``,
environment, logs, PostgreSQL, Redis, or anything the Ray dashboard shows. So the gateway,
having checked it against the sealed blob, hands it to ``ImportKeyholder`` (one named,
detached actor per cluster, ``num_cpus=0``) under the run id, and submits the job with an
entrypoint that names the run only (``python -m jobs.importer --run-id N``). The job's driver
asks the keyholder for the passphrase and for the cluster's ``Settings`` (which may hold a
database password, so they travel the same way rather than on the command line).

The keyholder keeps a passphrase until the run ends (``drop``) or ``ttl_s`` passes, so a driver
that was killed can be resubmitted (``import resume``) without asking the user again while the
cluster lives. It is deliberately not restartable with its state: if the actor dies, every
held passphrase is gone and ``resume`` asks for it again. It never logs a passphrase and has
no method that lists them.
"""

from __future__ import annotations

import time
from typing import Any

import ray

from core.settings import Settings

__all__ = [
    "DEFAULT_TTL_S",
    "KEYHOLDER_NAME",
    "ImportKeyholder",
    "keyholder",
]

#: The actor's name in the ``bulletproof`` namespace.
KEYHOLDER_NAME = "import-keyholder"
_NAMESPACE = "bulletproof"
#: Passphrases older than this are forgotten (a resume after it needs the passphrase again).
DEFAULT_TTL_S = 24 * 3600.0


class ImportKeyholder:
    """In-memory passphrases by run id, and the settings import drivers run with."""

    def __init__(self, settings: Settings, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._settings = settings
        self._ttl_s = ttl_s
        self._held: dict[int, tuple[float, str]] = {}

    def settings(self) -> Settings:
        return self._settings

    def put(self, run_id: int, passphrase: str) -> None:
        self._expire()
        self._held[run_id] = (time.monotonic(), passphrase)

    def get(self, run_id: int) -> str | None:
        """The run's passphrase, or None when none is held (never given, dropped, expired)."""
        self._expire()
        held = self._held.get(run_id)
        return None if held is None else held[1]

    def holds(self, run_id: int) -> bool:
        return self.get(run_id) is not None

    def drop(self, run_id: int) -> None:
        self._held.pop(run_id, None)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self._ttl_s
        for run_id in [r for r, (at, _) in self._held.items() if at < cutoff]:
            del self._held[run_id]


def keyholder(settings: Settings | None = None) -> Any:
    """The cluster's keyholder actor handle: found by name, or created (detached) when
    ``settings`` are given. Needs ``ray.init`` done in this process."""
    if settings is None:
        return ray.get_actor(KEYHOLDER_NAME, namespace=_NAMESPACE)
    return (
        ray.remote(ImportKeyholder)
        .options(  # type: ignore[attr-defined]
            name=KEYHOLDER_NAME,
            namespace=_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=0,  # a restarted keyholder would hold nothing: fail loudly instead
            num_cpus=0,
        )
        .remote(settings)
    )
