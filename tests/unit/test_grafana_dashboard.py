"""docs/grafana/bulletproof.json is a Grafana dashboard whose every query names a metric the
code records (as Ray exports it: ``ray_`` + the name, counters ``_total``, histograms
``_bucket``), so a renamed metric breaks this test, not the operator's dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["gateway/metrics.py", "actors/metrics.py", "jobs/metrics.py"]


def _recorded() -> set[str]:
    names: set[str] = set()
    for source in SOURCES:
        text = (ROOT / source).read_text()
        names |= set(re.findall(r'"(bulletproof_[a-z_]+)"', text))
        # import metrics are named f"bulletproof_import_{name}", backend ones likewise
        names |= {
            f"bulletproof_import_{n}"
            for n in re.findall(r'"(?:counter|gauge|histogram)", "([a-z_]+)"', text)
        }
        names |= {
            f"bulletproof_backend_{n}" for n in re.findall(r'\("[a-z_]+", "([a-z_]+)", "', text)
        }
    return names


def test_every_panel_queries_a_recorded_metric() -> None:
    dashboard = json.loads((ROOT / "docs/grafana/bulletproof.json").read_text())
    recorded = _recorded()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = re.findall(r"ray_(bulletproof_[a-z_]+?)(?:_total|_bucket)?\b", target["expr"])
            assert used, target["expr"]
            for name in used:
                assert name in recorded, f"{panel['title']}: {name} is not recorded anywhere"
