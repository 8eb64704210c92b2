"""Where every process of the deployment gets the master key: one place every node reaches.

A gateway replica, a backend actor or a restore may run on any node of a Ray cluster, so the
key must not come from whichever disk the process landed on by accident. Two sources, in order:

1. ``BP_MASTER_KEY`` in the process environment (an environment secret: exported before
   ``ray start`` on each node, Ray's processes inherit it; several keys newest first,
   separated by newlines or commas, as in the file). It is read from the environment only,
   never carried in ``Settings`` (which Serve shows in its application config).
2. the master key file (``BP_MASTER_KEY_FILE``, default ``<state dir>/master.key``) at the
   same absolute path on every node (the cluster file's ``file_mounts``).

Neither: ``MasterKeyMissing`` naming the node, so a replica or actor refuses to start there
instead of failing later on the first sealed secret.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

from core.errors import BulletproofError
from core.sealing import MasterKey

__all__ = ["MASTER_KEY_ENV", "MasterKeyMissing", "load_master_key", "master_key_in_env"]

MASTER_KEY_ENV = "BP_MASTER_KEY"


class MasterKeyMissing(BulletproofError):
    """This node has neither ``BP_MASTER_KEY`` nor the master key file."""


def master_key_in_env(env: Mapping[str, str] | None = None) -> bool:
    return bool((os.environ if env is None else env).get(MASTER_KEY_ENV, "").strip())


def load_master_key(key_file: str | Path, env: Mapping[str, str] | None = None) -> MasterKey:
    """The master key from the environment secret, else from ``key_file``."""
    env = os.environ if env is None else env
    text = env.get(MASTER_KEY_ENV, "").replace(",", "\n")
    if text.strip():
        return MasterKey.from_file_text(text)
    try:
        return MasterKey.from_file_text(Path(key_file).read_text())
    except FileNotFoundError:
        raise MasterKeyMissing(
            f"node {socket.gethostname()}: no master key: set {MASTER_KEY_ENV} in the"
            f" environment of `ray start`, or mount the key file at {key_file}"
            " (docs/operations.md)"
        ) from None
