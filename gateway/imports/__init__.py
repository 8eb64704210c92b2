"""Bucket imports seen from outside their Ray job: the tenant's JSON API (SigV4) and the
admin's, over one service that creates sources and imports, checks a passphrase and hands it
to the cluster's keyholder, submits, cancels, resumes and verifies the job through Ray's Job
Submission API, and reports status (``service.py``: the operations and what they keep true;
``routes.py``: the URLs, authentication and the JSON error document; docs/import.md).
"""

from __future__ import annotations

from gateway.imports.routes import ImportApi
from gateway.imports.service import ImportService

__all__ = ["ImportApi", "ImportService"]
