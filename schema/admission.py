"""Request admission state shared by every gateway replica, in Redis: the replay cache and the
per-tenant token buckets (the rules are ``core/request_limits.py``).

One Lua script decides a request in one round trip and atomically: refill the tenant's request
and byte buckets from Redis's own clock (replicas' clocks never disagree), refuse if either is
empty, then look up the signature's replay marker (absent: set it to Redis's time; first seen
more than the grace ago: refuse), then take one request token and the declared upload bytes.
The byte bucket may go into debt (a 5 GiB upload is admitted when the bucket is not empty and
then waits out its cost), so no single object is too large to ever pass; while in debt every
request of the tenant waits.

Keys carry the tenant in a hash tag (``{t<id>}``), so a script's keys share one Redis Cluster
slot. A marker holds the time it was first seen; its name is a hash of the signature.

Redis down: ``admit`` and ``charge`` return None after one short timeout and a circuit breaker
skips Redis for ``breaker_s``; the gateway then admits the request (fail open) and counts it
(``gateway/admission.py``). A storage gateway keeps serving; what is lost while Redis is down
is replay detection and rate limiting, never authentication.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from core.request_limits import RateLimits
from schema.redis_connect import open_redis

__all__ = ["AdmissionStore", "Verdict"]

log = logging.getLogger(__name__)

# KEYS: 1 request bucket, 2 byte bucket, 3 replay marker.
# ARGV: 1 request rate, 2 request burst, 3 byte rate, 4 byte burst, 5 upload bytes,
#       6 replay marker TTL in ms (0: no replay check), 7 replay grace in seconds.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, rate, burst)
  local v = redis.call('HMGET', key, 'l', 't')
  local l, ts = tonumber(v[1]), tonumber(v[2])
  if l == nil or ts == nil then return burst end
  return math.min(burst, l + math.max(0, now - ts) * rate)
end
local rr, rb = tonumber(ARGV[1]), tonumber(ARGV[2])
local br, bb = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost, ttl, grace = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local req, byt = 0, 0
if rr > 0 then
  req = level(KEYS[1], rr, rb)
  if req < 1 then return {'throttled', tostring((1 - req) / rr)} end
end
if br > 0 then
  byt = level(KEYS[2], br, bb)
  if byt < 0 then return {'throttled', tostring(-byt / br)} end
end
if ttl > 0 then
  local seen = tonumber(redis.call('GET', KEYS[3]))
  if seen == nil then
    redis.call('SET', KEYS[3], tostring(now), 'PX', ttl)
  elseif now - seen > grace then
    return {'replayed', '0'}
  end
end
if rr > 0 then
  redis.call('HSET', KEYS[1], 'l', tostring(req - 1), 't', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((rb - req + 1) / rr * 1000) + 1000)
end
if br > 0 and cost > 0 then
  redis.call('HSET', KEYS[2], 'l', tostring(byt - cost), 't', tostring(now))
  redis.call('PEXPIRE', KEYS[2], math.ceil((bb - byt + cost) / br * 1000) + 1000)
end
return {'ok', '0'}
"""

# KEYS: 1 byte bucket. ARGV: 1 byte rate, 2 byte burst, 3 bytes sent.
_CHARGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local br, bb, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'l', 't')
local l, ts = tonumber(v[1]), tonumber(v[2])
if l == nil or ts == nil then l = bb else l = math.min(bb, l + math.max(0, now - ts) * br) end
redis.call('HSET', KEYS[1], 'l', tostring(l - cost), 't', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((bb - l + cost) / br * 1000) + 1000)
return 1
"""


@dataclass(frozen=True)
class Verdict:
    """``ok``, ``replayed`` or ``throttled`` (then ``retry_after_s`` says for how long)."""

    outcome: str
    retry_after_s: float = 0.0


class AdmissionStore:
    def __init__(self, redis_url: str, *, timeout_s: float = 0.25, breaker_s: float = 5.0) -> None:
        self._redis = open_redis(redis_url, timeout_s=timeout_s)
        self._admit = self._redis.register_script(_ADMIT)
        self._charge = self._redis.register_script(_CHARGE)
        self._breaker_s = breaker_s
        self._open_until = 0.0

    async def close(self) -> None:
        await self._redis.aclose()

    @staticmethod
    def _marker(tenant_id: int, replay_id: str) -> str:
        return f"bp:replay:{{t{tenant_id}}}:{replay_id}"

    async def release(self, tenant_id: int, replay_id: str) -> None:
        """Forget a signature whose request failed (nothing was changed), so the client's
        own retry of it within the same second is not taken for a replay."""
        if time.monotonic() < self._open_until:
            return
        try:
            await self._redis.delete(self._marker(tenant_id, replay_id))
        except (RedisError, OSError):
            self._open_until = time.monotonic() + self._breaker_s

    @staticmethod
    def _keys(tenant_id: int) -> tuple[str, str]:
        return f"bp:rl:{{t{tenant_id}}}:req", f"bp:rl:{{t{tenant_id}}}:bytes"

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """One script call; None when Redis is unavailable (breaker open or the call failed)."""
        if time.monotonic() < self._open_until:
            return None
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            if time.monotonic() >= self._open_until:
                log.warning(
                    "redis unavailable for request admission, admitting without replay"
                    " and rate checks for %.0fs: %r",
                    self._breaker_s,
                    exc,
                )
            self._open_until = time.monotonic() + self._breaker_s
            return None

    async def admit(
        self,
        tenant_id: int,
        limits: RateLimits,
        *,
        upload_bytes: int = 0,
        replay_id: str | None = None,
        replay_ttl_s: int = 0,
        replay_grace_s: float = 0.0,
    ) -> Verdict | None:
        """Decide one request (see the module docstring); None: Redis unavailable."""
        req_key, byte_key = self._keys(tenant_id)
        marker = self._marker(tenant_id, replay_id or "-")
        ttl_ms = replay_ttl_s * 1000 if replay_id else 0
        got = await self._run(
            self._admit,
            [req_key, byte_key, marker],
            [
                limits.requests_per_s,
                limits.request_burst,
                limits.bytes_per_s,
                limits.byte_burst,
                max(0, upload_bytes),
                ttl_ms,
                max(0.0, replay_grace_s),
            ],
        )
        if got is None:
            return None
        outcome, retry = (x.decode() if isinstance(x, bytes) else str(x) for x in got)
        return Verdict(outcome, float(retry))

    async def charge(self, tenant_id: int, limits: RateLimits, sent_bytes: int) -> None:
        """Take ``sent_bytes`` (a download) from the tenant's byte bucket, into debt if need
        be: the next requests wait until it refills."""
        if limits.bytes_per_s <= 0 or sent_bytes <= 0:
            return
        await self._run(
            self._charge,
            [self._keys(tenant_id)[1]],
            [limits.bytes_per_s, limits.byte_burst, sent_bytes],
        )
