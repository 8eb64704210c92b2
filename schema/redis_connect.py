"""The one way a process opens Redis: a single server, or a Redis Cluster, with a password and
TLS when the URL says so.

``BP_REDIS_URL`` forms (redis-py parses the rest of the URL):

- ``redis://host:6379/0`` - one server; ``rediss://`` for TLS;
- ``redis+cluster://host:7000`` / ``rediss+cluster://host:7000`` - a Redis Cluster, reached
  through any of its nodes (the client learns the others and follows slot moves);
- a password as ``redis://:PASSWORD@host...`` (or ``user:PASSWORD@`` with ACLs), and TLS
  options as query parameters, e.g. ``?ssl_ca_certs=/etc/bp/redis-ca.pem``.

Key design for a cluster (``schema/cache.py``, ``schema/admission.py``): every multi-key
command or script names keys of one hash slot (``{...}`` hash tags); the global cache epoch is
the only key read beside another slot's, in the same pipeline.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

__all__ = ["is_cluster_url", "open_redis"]

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in _CLUSTER_SCHEMES


def open_redis(url: str, *, timeout_s: float) -> Any:
    """A client for ``url``: ``redis.asyncio.Redis`` or ``RedisCluster`` (same commands,
    ``pipeline``, ``register_script``); connecting is lazy, as redis-py does."""
    scheme, rest = url.split("://", 1)
    if scheme in _CLUSTER_SCHEMES:
        return RedisCluster.from_url(
            f"{_CLUSTER_SCHEMES[scheme]}://{rest}",
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
    return aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
