"""The cluster files pass Ray's own cluster-launcher preparation and schema validation (what
``ray up`` runs before it touches a machine), name the custom resources the code asks for, and
carry no secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
FILES = ("ray-cluster.yaml", "deploy/aws.yaml")


def _load(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("name", FILES)
def test_ray_accepts_the_cluster_file(name: str) -> None:
    prepared = prepare_config(_load(name))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_cloud_example_has_the_three_node_types_with_their_resources() -> None:
    types = prepare_config(_load("deploy/aws.yaml"))["available_node_types"]
    assert types["head"]["resources"] == {"gateway": 1}
    assert types["gateway"]["resources"] == {"gateway": 1}
    assert types["backend_io"]["resources"]["backend_io"] > 0


def test_on_premise_file_gives_nodes_their_resources_at_start() -> None:
    config = _load("ray-cluster.yaml")
    assert "available_node_types" not in config  # Ray's local provider refuses it
    head = " ".join(config["head_start_ray_commands"])
    workers = " ".join(config["worker_start_ray_commands"])
    assert '"gateway"' in head and '"backend_io"' in workers
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in workers


@pytest.mark.parametrize("name", FILES)
def test_no_secrets_in_cluster_files(name: str) -> None:
    text = (ROOT / name).read_text()
    assert not re.search(r"(?i)(secret|password|aws_access_key_id)\s*[:=]\s*\S", text)
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"postgres(ql)?://\S+:\S+@", text)
