"""The arithmetic of request admission (core/request_limits.py): how long a signature is
remembered, and how long a slow body may make the gateway wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.request_limits import BodyPace, RateLimits, replay_id, replay_ttl_s
from core.settings import Settings

SKEW = timedelta(minutes=15)
NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def test_header_signature_is_remembered_until_its_skew_window_closes() -> None:
    assert replay_ttl_s(_stamp(NOW), presigned=False, now=NOW, skew=SKEW) == 901
    late = NOW - timedelta(minutes=14, seconds=50)
    assert replay_ttl_s(_stamp(late), presigned=False, now=NOW, skew=SKEW) == 11
    # Dated 15 minutes ahead (the client's clock is fast): valid for 30 more minutes.
    ahead = NOW + SKEW
    assert replay_ttl_s(_stamp(ahead), presigned=False, now=NOW, skew=SKEW) == 1800
    # Never below one second, never above twice the skew.
    stale = NOW - timedelta(hours=1)
    assert replay_ttl_s(_stamp(stale), presigned=False, now=NOW, skew=SKEW) == 1
    far = NOW + timedelta(hours=1)
    assert replay_ttl_s(_stamp(far), presigned=False, now=NOW, skew=SKEW) == 1800


def test_presigned_signature_is_remembered_for_twice_the_skew() -> None:
    assert replay_ttl_s(_stamp(NOW), presigned=True, now=NOW, skew=SKEW) == 1800


def test_replay_id_hashes_the_signature() -> None:
    sig = "a" * 64
    assert replay_id(sig) != sig and len(replay_id(sig)) == 64
    assert replay_id(sig) == replay_id(sig) and replay_id(sig) != replay_id("b" * 64)


def test_body_pace_idle_timeout_and_minimum_rate() -> None:
    pace = BodyPace(idle_timeout_s=20.0, min_rate=1000.0, grace_s=10.0)
    assert pace.wait_allowed(0.0, 0) == 10.0  # the grace first
    assert pace.wait_allowed(0.0, 1_000_000) == 20.0  # a fast client: the idle timeout
    assert pace.wait_allowed(9.0, 500) == 1.5  # 10 + 0.5 - 9
    assert pace.wait_allowed(12.0, 1000) <= 0  # averaged below 1000 B/s after the grace
    off = BodyPace(idle_timeout_s=0.0, min_rate=0.0, grace_s=0.0)
    assert off.wait_allowed(1e6, 0) == float("inf")


def test_rate_limits_from_settings() -> None:
    limits = RateLimits.from_settings(Settings())
    assert limits.enabled and limits.requests_per_s >= 1000 and limits.bytes_per_s >= 1024**3
    assert limits.request_burst == 2 * limits.requests_per_s
    off = RateLimits.from_settings(Settings(tenant_requests_per_s=0, tenant_bytes_per_s=0))
    assert not off.enabled
    own = RateLimits.from_settings(Settings(), requests_per_s=3, bytes_per_s=0)
    assert own.requests_per_s == 3 and own.request_burst == 6 and own.bytes_per_s == 0
    assert RateLimits.from_settings(Settings(), requests_per_s=0.1).request_burst == 1


def test_which_requests_the_replay_cache_checks() -> None:
    from core.request_limits import replay_checked

    assert replay_checked("PUT", frozenset()) and replay_checked("DELETE", frozenset())
    assert replay_checked("POST", frozenset({"delete"}))
    assert not replay_checked("POST", frozenset({"uploadId"}))  # CompleteMultipartUpload
    assert replay_checked("PUT", frozenset({"uploadId", "partNumber"}))  # UploadPart
    assert not replay_checked("DELETE", frozenset({"uploadId"}))  # AbortMultipartUpload
    assert not replay_checked("POST", frozenset({"uploads"}))  # CreateMultipartUpload
    assert not replay_checked("GET", frozenset()) and not replay_checked("HEAD", frozenset())
