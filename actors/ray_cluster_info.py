"""Where to watch the Ray cluster this process is connected to: the dashboard and the
Prometheus scrape address of every live node.

Read from the cluster itself (the GCS), so the answer is right on any node and after a node
joins or leaves; ``None`` / ``[]`` outside a Ray cluster or with the dashboard off. The one
place that asks Ray these questions (import submission uses ``dashboard_url`` too).
"""

from __future__ import annotations

import logging

__all__ = ["dashboard_url", "metrics_urls"]

log = logging.getLogger(__name__)


def dashboard_url() -> str | None:
    """The dashboard's HTTP address as the connected cluster publishes it (None: off)."""
    import ray
    from ray._private.services import get_webui_url_from_internal_kv

    if not ray.is_initialized():
        return None
    url = get_webui_url_from_internal_kv()
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


def metrics_urls() -> list[str]:
    """``http://<node>:<metrics export port>/metrics`` of every live node: what Prometheus
    scrapes (every ``bulletproof_*`` metric a node's processes record is exported there)."""
    import ray

    if not ray.is_initialized():
        return []
    urls = []
    try:
        nodes = ray.nodes()
    except Exception:  # a GCS hiccup must not fail a status report
        log.warning("could not list the Ray cluster's nodes", exc_info=True)
        return []
    for node in nodes:
        port = node.get("MetricsExportPort")
        if node.get("Alive") and port:
            urls.append(f"http://{node['NodeManagerAddress']}:{port}/metrics")
    return sorted(urls)
