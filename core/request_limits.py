"""The arithmetic of request admission: per-tenant rate limits, how long a signature stays
replayable, and how slow a request body may arrive. Pure; the shared state lives in Redis
(``schema/admission.py``) and the gateway applies it (``gateway/admission.py``,
``gateway/s3/body.py``).

What it deliberately does not do: count anything. Token buckets are kept by one Lua script in
Redis so that every gateway replica draws from the same bucket.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.settings import Settings

__all__ = [
    "MUTATING_METHODS",
    "BodyPace",
    "RateLimits",
    "replay_checked",
    "replay_id",
    "replay_ttl_s",
]

#: Methods whose replay changes state: the replay cache refuses a second sighting of their
#: signature. GET and HEAD are left alone (a replayed read reveals nothing new to whoever
#: captured the request, and browsers and CDNs legitimately repeat them).
MUTATING_METHODS = frozenset({"PUT", "POST", "DELETE"})


def replay_checked(method: str, query_names: frozenset[str]) -> bool:
    """Whether a request's signature goes through the replay cache: every PUT, POST and
    DELETE except three multipart calls whose replay changes nothing:

    - CreateMultipartUpload (``POST ?uploads``): S3 opens a new upload on each call, so
      identical ones within a second are ordinary (two uploads of one key); a replay only
      opens an empty upload, counted against the tenant's open-upload limit and aborted by
      the upload expirer;
    - CompleteMultipartUpload (``POST ?uploadId=``): a retried Complete naming the same parts
      gets the first answer again by design (an SDK retry after a lost answer, possibly in
      the same second, so with the same signature); any other replay is NoSuchUpload;
    - AbortMultipartUpload (``DELETE ?uploadId=``): aborting twice is the same as once (S3
      clients repeat it when cleaning up); a replay finds NoSuchUpload.

    UploadPart stays checked: replaying an old part over a re-uploaded one would change what
    the upload holds (Complete would then refuse the ETag, but the client's part is gone)."""
    verb = method.upper()
    if verb not in MUTATING_METHODS:
        return False
    if verb == "POST" and query_names & {"uploads", "uploadId"}:
        return False
    return not (verb == "DELETE" and "uploadId" in query_names)


@dataclass(frozen=True)
class RateLimits:
    """One tenant's token buckets: requests, and body bytes (uploads charged before their body
    is read, downloads after their response started). A rate of 0 turns that bucket off."""

    requests_per_s: float
    request_burst: float
    bytes_per_s: float
    byte_burst: float

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        requests_per_s: float | None = None,
        bytes_per_s: float | None = None,
    ) -> RateLimits:
        """The deployment's limits, or the tenant's own rates where it has them (None: the
        setting). A bucket holds ``tenant_burst_s`` seconds of its rate (at least one
        request). No upload is too large for the byte bucket: it may go into debt."""
        rps = settings.tenant_requests_per_s if requests_per_s is None else requests_per_s
        bps = float(settings.tenant_bytes_per_s if bytes_per_s is None else bytes_per_s)
        burst_s = max(0.0, settings.tenant_burst_s)
        return cls(
            requests_per_s=max(0.0, rps),
            request_burst=max(1.0, rps * burst_s),
            bytes_per_s=max(0.0, bps),
            byte_burst=max(1.0, bps * burst_s),
        )

    @property
    def enabled(self) -> bool:
        return self.requests_per_s > 0 or self.bytes_per_s > 0


def replay_id(signature: str) -> str:
    """The replay cache's name for a signature: its SHA-256 (the signature is not secret, but
    Redis then holds nothing a request could be rebuilt from)."""
    return hashlib.sha256(b"bp-replay\x00" + signature.encode("latin-1")).hexdigest()


def replay_ttl_s(amz_date: str, *, presigned: bool, now: datetime, skew: timedelta) -> int:
    """How long a mutating request's signature must be remembered.

    A header-signed request is accepted while ``now`` is within ``skew`` of its date, so it is
    remembered until that window closes (at most twice the skew, for a request dated in the
    future). A presigned URL can be valid for a week; it is remembered for the same
    2 x ``skew`` from its first use, so a presigned PUT used twice within that time is refused
    the second time, and the cache stays bounded by the request rate times 30 minutes."""
    longest = int(2 * skew.total_seconds())
    if presigned:
        return longest
    when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=now.tzinfo)
    remaining = (when + skew - now).total_seconds()
    return max(1, min(longest, math.ceil(remaining) + 1))


@dataclass(frozen=True)
class BodyPace:
    """How slowly a request body may arrive before the request is cut (slowloris).

    Only the time the gateway spends *waiting for the client* counts (a gateway slowed by its
    backends does not make a client slow): no byte for ``idle_timeout_s``, or, once it has
    waited ``grace_s`` in all, an average below ``min_rate`` bytes per second of waiting."""

    idle_timeout_s: float
    min_rate: float
    grace_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyPace:
        return cls(
            idle_timeout_s=settings.body_idle_timeout_s,
            min_rate=float(settings.body_min_rate),
            grace_s=settings.body_rate_grace_s,
        )

    def wait_allowed(self, waited_s: float, received: int) -> float:
        """Seconds the next read may wait, given the total waited so far and the bytes received;
        0 or less: the client is too slow already."""
        budget = self.idle_timeout_s if self.idle_timeout_s > 0 else math.inf
        if self.min_rate > 0:
            budget = min(budget, self.grace_s + received / self.min_rate - waited_s)
        return budget
