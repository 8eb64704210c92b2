"""The gateway's Ray metrics, recorded through ``actors/metric_registry.py``.

Once per S3 request (``handle_s3``):

- ``bulletproof_requests`` (counter; ``operation``, ``code``): ``code`` is ``OK`` or the S3
  error code sent (``NoSuchKey``, ``SlowDown``, ``InternalError``...);
- ``bulletproof_request_seconds`` (histogram; ``operation``): time to the response head (a
  streamed GET body is still flowing);
- ``bulletproof_bytes_in`` / ``bulletproof_bytes_out`` (counters; ``operation``): declared
  request and response body lengths.

``operation`` is the parsed S3 operation (``PutObject``...) or ``Unparsed`` when the request
failed before it was known. Tag values come from fixed sets: never a bucket or key name.

Request admission (``gateway/admission.py``): ``bulletproof_admission`` (counter; ``outcome``:
``replayed``, ``throttled``, ``too_slow`` (a body cut by RequestTimeout), ``uploads_limit``,
and ``fail_open`` (admitted unchecked because Redis was unavailable)).
"""

from __future__ import annotations

from actors.metric_registry import metric, record

__all__ = ["OUTCOMES", "count_admission", "record_request"]

OUTCOMES = ("replayed", "throttled", "too_slow", "uploads_limit", "fail_open")


def record_request(
    operation: str, code: str, seconds: float, bytes_in: int, bytes_out: int
) -> None:
    op = {"operation": operation}
    record(
        metric("counter", "bulletproof_requests", "S3 requests by operation and S3 code.",
               ("operation", "code")),
        "inc", 1, {"operation": operation, "code": code},
    )  # fmt: skip
    record(
        metric("histogram", "bulletproof_request_seconds", "Seconds to the response head.",
               ("operation",)),
        "observe", seconds, op,
    )  # fmt: skip
    if bytes_in:
        record(
            metric("counter", "bulletproof_bytes_in", "Request body bytes received.",
                   ("operation",)),
            "inc", bytes_in, op,
        )  # fmt: skip
    if bytes_out:
        record(
            metric("counter", "bulletproof_bytes_out", "Response body bytes sent (declared).",
                   ("operation",)),
            "inc", bytes_out, op,
        )  # fmt: skip


def count_admission(outcome: str) -> None:
    """Count one admission ``outcome`` (one of ``OUTCOMES``)."""
    record(
        metric("counter", "bulletproof_admission",
               "Requests refused or admitted unchecked by admission.", ("outcome",)),
        "inc", 1, {"outcome": outcome},
    )  # fmt: skip
