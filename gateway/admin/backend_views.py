"""How a backend is shown by ``/admin/backends`` and ``bulletproof backend list|show``: the
declared fields, the shared health with its moving averages, and whether this gateway uses
it now. Never the credentials (not even sealed)."""

from __future__ import annotations

from typing import Any

from actors.registry import BackendHandle
from core.health import BackendHealth
from schema.records import BackendRecord

__all__ = ["describe"]


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def describe(record: BackendRecord, handle: BackendHandle | None) -> dict[str, Any]:
    """``record`` as the admin API shows it; ``handle``: this replica's live view, if any."""
    health = BackendHealth.from_json(record.health, state=record.health_state)
    return {
        "name": record.name,
        "id": record.id,
        "type": record.backend_type,
        "kind": record.kind,
        "provider": record.provider,
        "endpoint": record.endpoint,
        "bucket": record.bucket,
        "path": record.path,
        "signing_region": record.signing_region,
        "addressing_style": record.addressing_style,
        "manage_bucket": record.manage_bucket,
        "region": record.region,
        "country": record.country,
        "jurisdiction": record.jurisdiction,
        "sla": {"availability": record.sla_availability, "latency_ms": record.sla_latency_ms},
        "flags": {"residency": record.residency, "supports_sse": record.supports_sse},
        "archive": record.archive,
        "capacity_bytes": record.capacity_bytes,
        "used_bytes": record.used_bytes,
        "tenants": None if record.tenants is None else list(record.tenants),
        "node": record.node_label,
        "state": record.state,
        "drain_started_at": (
            None if record.drain_started_at is None else record.drain_started_at.isoformat()
        ),
        "health": {
            "state": record.health_state,
            "rtt_ms": _rounded(health.rtt_ms),
            "availability": _rounded(health.availability, 4),
            "error_rate": _rounded(health.error_rate, 4),
            "throughput_mbps": _rounded(health.throughput_mbps),
            "samples": health.samples,
            "last_error": record.last_error,
        },
        # This gateway replica's view: usable for writes now (shared state not down and no
        # local failure mark), and the RTT it last measured.
        "healthy": handle.healthy if handle is not None else record.health_state != "down",
        "rtt_ms": round(handle.rtt_ms if handle is not None else record.rtt_ms, 2),
        "last_error": record.last_error,
    }
