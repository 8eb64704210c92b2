"""Request admission, after authentication and before anything else: the replay cache and the
tenant's rate limits (rules: ``core/request_limits.py``; shared state: ``schema/admission.py``).

- A PUT, POST or DELETE whose signature is seen again more than ``replay_grace_s`` (2 s)
  after its first sighting, within its validity, is refused with ``403 AccessDenied``
  ("request replayed"). Why the grace: SigV4 dates requests to the second and botocore signs
  neither ``amz-sdk-invocation-id`` nor ``amz-sdk-request``, so byte-identical requests in
  one second are ordinary S3 (two PUTs of the same bytes to a versioned bucket are two
  versions; a CreateBucket repeated; a DELETE loop); such twins arrive together. A captured
  request replayed later is refused. SDK retries after a backoff re-sign with a new date,
  and a request that fails releases its signature (``release``). An aws-chunked upload is
  known by its seed signature; a presigned PUT or DELETE URL works once per 30 minutes.
  Create-, Complete- and AbortMultipartUpload are exempt
  (``core.request_limits.replay_checked``).
- A tenant over its request or byte rate gets ``503 SlowDown`` with ``Retry-After`` (what S3
  sends, and what the SDKs back off on).
- Redis unavailable: the request is admitted unchecked, logged once per breaker period and
  counted (``bulletproof_admission_total{outcome="fail_open"}``). A storage gateway keeps
  serving through a cache outage; authentication never depends on Redis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from fastapi import Response

from core.request_limits import RateLimits, replay_checked, replay_id, replay_ttl_s
from gateway.auth import Principal
from gateway.context import GatewayContext
from gateway.metrics import count_admission
from gateway.s3 import errors as s3e
from gateway.s3.sigv4 import MAX_CLOCK_SKEW, HttpRequestView

__all__ = ["Admitted", "admit", "charge_response", "release"]


@dataclass(frozen=True)
class Admitted:
    """An admitted request: the tenant and, when its signature was recorded, its replay id
    (released again if the request fails, see ``release``)."""

    tenant_id: int
    replay_id: str | None = None


def _declared_upload(method: str, headers: Mapping[str, str]) -> int:
    """The body bytes a PUT or POST announces (0 when it announces none: the body reader
    refuses those where a length is required)."""
    if method not in ("PUT", "POST"):
        return 0
    raw = headers.get("x-amz-decoded-content-length") or headers.get("content-length") or ""
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else 0


def _limits(ctx: GatewayContext, principal: Principal) -> RateLimits:
    return RateLimits.from_settings(
        ctx.settings, requests_per_s=principal.requests_per_s, bytes_per_s=principal.bytes_per_s
    )


async def admit(ctx: GatewayContext, principal: Principal, view: HttpRequestView) -> Admitted:
    """Refuse a replayed or over-limit request (raises the S3 error); admit it otherwise."""
    method = view.method.upper()
    limits = _limits(ctx, principal)
    names = frozenset(name for name, _ in parse_qsl(view.query_string, keep_blank_values=True))
    replay = ctx.settings.replay_cache and replay_checked(method, names)
    nothing = Admitted(principal.tenant_id)
    if ctx.admission is None or not (replay or limits.enabled):
        return nothing
    verified = principal.verified
    marker = replay_id(verified.signature) if replay else None
    verdict = await ctx.admission.admit(
        principal.tenant_id,
        limits,
        upload_bytes=_declared_upload(method, view.headers),
        replay_id=marker,
        replay_ttl_s=replay_ttl_s(
            verified.amz_date,
            presigned=verified.presigned,
            now=datetime.now(UTC),
            skew=MAX_CLOCK_SKEW,
        ),
        replay_grace_s=ctx.settings.replay_grace_s,
    )
    if verdict is None:
        count_admission("fail_open")
        return nothing
    if verdict.outcome == "replayed":
        count_admission("replayed")
        raise s3e.AccessDenied(
            "Request replayed: this signature was already used. Sign every request anew."
        )
    if verdict.outcome == "throttled":
        count_admission("throttled")
        raise s3e.SlowDown(
            "Please reduce your request rate: this tenant is over its request or byte rate.",
            retry_after_s=max(1, math.ceil(verdict.retry_after_s)),
        )
    return Admitted(principal.tenant_id, marker)


async def release(ctx: GatewayContext, admitted: Admitted | None) -> None:
    """A request that failed changed nothing: forget its signature (before the error is
    answered, so the client's immediate retry finds it gone).

    Why: botocore signs neither ``amz-sdk-invocation-id`` nor ``amz-sdk-request``, and dates
    requests to the second, so an SDK retry sent within the same second as a failed attempt
    carries the same signature. Releasing failed requests lets that retry through; a replay
    of a *successful* request stays refused. The cost: a captured request that failed may be
    replayed within the window, where it fails again or does what its signer asked."""
    if ctx.admission is not None and admitted is not None and admitted.replay_id is not None:
        await ctx.admission.release(admitted.tenant_id, admitted.replay_id)


def charge_response(
    ctx: GatewayContext, principal: Principal, method: str, response: Response
) -> None:
    """Charge a download's bytes to the tenant's byte bucket, in the background (the response
    is not delayed; the tenant's next requests wait if it went into debt)."""
    limits = _limits(ctx, principal)
    if ctx.admission is None or limits.bytes_per_s <= 0 or method.upper() != "GET":
        return
    raw = response.headers.get("content-length", "")
    if response.status_code in (200, 206) and raw.isdigit():
        ctx.spawn(ctx.admission.charge(principal.tenant_id, limits, int(raw)))
