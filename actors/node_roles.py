"""Which Ray nodes do what: node roles as custom resources, and node labels for pinning.

A cluster declares roles when its nodes start (``ray-cluster.yaml``, ``deploy/aws.yaml``):

- ``gateway``: nodes that run gateway replicas (Serve's proxy runs on every node);
- ``backend_io``: nodes that run backend actors, replication agents and import workers.

Every such actor *requests* a tiny share of its role's resource (``ROLE_SHARE``: many actors
fit on one node; the resource marks the node, it does not count slots), but only when the
cluster declares that resource at all: on a one-machine deployment nothing is requested and
everything runs where Ray puts it.

A node may also carry the label ``bp-node=<name>`` (``ray start --labels bp-node=io-1``): a
``local`` backend's directory is on one machine, so its actor is pinned to the node of that
label and never recreated elsewhere; while that node is gone the actor waits unscheduled and
the backend is reported down; when the node returns the actor starts there again.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BACKEND_IO",
    "GATEWAY",
    "NODE_LABEL",
    "ROLE_SHARE",
    "current_node_label",
    "nodes_for_role",
    "pinned_to",
    "role_resources",
]

GATEWAY = "gateway"
BACKEND_IO = "backend_io"
NODE_LABEL = "bp-node"
#: What one actor asks of its role's resource: a mark, not a slot count.
ROLE_SHARE = 0.001


def role_resources(role: str) -> dict[str, float]:
    """``{role: ROLE_SHARE}`` when some node of the connected cluster declares ``role``,
    else ``{}`` (no role declared: place anywhere)."""
    import ray

    if not ray.is_initialized():
        return {}
    return {role: ROLE_SHARE} if ray.cluster_resources().get(role, 0) > 0 else {}


def nodes_for_role(role: str) -> list[dict[str, Any]]:
    """The live nodes that declare ``role``; every live node when none does."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    with_role = [n for n in alive if n.get("Resources", {}).get(role, 0) > 0]
    return with_role or alive


def current_node_label() -> str | None:
    """This process's node's ``bp-node`` label (None: unlabelled, or outside Ray)."""
    import ray

    if not ray.is_initialized():
        return None
    labels: dict[str, Any] = dict(ray.get_runtime_context().get_node_labels())
    value = labels.get(NODE_LABEL)
    if isinstance(value, list):  # some Ray versions give label values as lists
        value = value[0] if value else None
    return str(value) if value else None


def pinned_to(node: str) -> dict[str, Any]:
    """Actor or task options that run it only on the node labelled ``node``."""
    return {"label_selector": {NODE_LABEL: node}}
