"""Joining a Ray cluster someone else started, with Ray's token authentication left on.

Ray 2.59+ starts clusters with token authentication on: ``ray start --head`` finds (or is
given) a token and every client must present it. ``ray.init()`` with no address picks the
token up by itself, but ``ray.init(address=...)`` - and ``RAY_ADDRESS``, which is how an
operator points ``bulletproof up`` at a running cluster - deliberately does not: an explicit
address never turns token mode on, so the GCS answers ``InvalidAuthToken: Authentication
token is missing or incorrect`` and the gateway never starts.

The operator's intent is plain when they name the cluster and the machine holds its token, so
``join_args`` turns token mode on for this process (and so for the workers it spawns) when
``RAY_AUTH_MODE`` is unset and a token is available where Ray itself looks for one:
``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names, or ``~/.ray/auth_token``.
Ray reads the mode when it is first imported, so this runs before anything imports Ray
(``bulletproof serve`` and the workers' ``--ray-address`` path call it first).
``RAY_AUTH_MODE`` set by the operator (``disabled`` or ``token``) is always respected. How the
token reaches each node is in ``docs/operations.md``.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["enable_token_auth_for_join", "token_available"]

_MODE = "RAY_AUTH_MODE"


def token_available(env: MutableMapping[str, str] | None = None) -> bool:
    """True when Ray would find an authentication token in this process's environment."""
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = env.get("RAY_AUTH_TOKEN_PATH")
    candidate = (
        Path(path) if path else Path(env.get("HOME", str(Path.home()))) / ".ray" / "auth_token"
    )
    try:
        return bool(candidate.read_text().strip())
    except OSError:
        return False


def enable_token_auth_for_join(env: MutableMapping[str, str] | None = None) -> bool:
    """Before ``ray.init(address=...)``: turn Ray's token mode on when the operator left
    ``RAY_AUTH_MODE`` unset and a token is available. Returns whether token mode is in force."""
    env = os.environ if env is None else env
    mode = env.get(_MODE)
    if mode is not None:
        return mode.strip().lower() == "token"
    if not token_available(env):
        return False
    env[_MODE] = "token"
    return True
