"""The periodic workers by name, and their default schedule: what the scheduler actor and
``bulletproof worker run NAME`` look up. The composition root passes ``build_worker`` to the
scheduler, so ``actors`` never imports ``jobs``."""

from __future__ import annotations

from typing import Any

from actors.healing import HealingContext
from core.settings import Settings
from jobs.audit_archiver import AuditArchiver
from jobs.audit_checkpointer import AuditCheckpointer
from jobs.federation_sampler import FederationSampler
from jobs.placement_checker import PlacementChecker
from jobs.repairer import Repairer
from jobs.scrubber import Scrubber
from jobs.snapshotter import Snapshotter
from jobs.upload_expirer import UploadExpirer
from jobs.vacuumer import Vacuumer
from jobs.worker import Worker

__all__ = ["WORKERS", "build_worker", "default_schedules"]

WORKERS: dict[str, type[Worker]] = {
    cls.name: cls
    for cls in (
        Repairer,
        Scrubber,
        PlacementChecker,
        Vacuumer,
        Snapshotter,
        UploadExpirer,
        FederationSampler,
        AuditCheckpointer,
        AuditArchiver,
    )
}


def build_worker(name: str, ctx: HealingContext, **options: Any) -> Worker:
    """The worker called ``name``; ``options`` are its constructor's keyword arguments."""
    try:
        cls = WORKERS[name]
    except KeyError:
        raise ValueError(f"unknown worker {name!r} (known: {', '.join(sorted(WORKERS))})") from None
    return cls(ctx, **options)


def default_schedules(settings: Settings) -> dict[str, float]:
    """Worker name -> seconds between runs (0 = not scheduled)."""
    return {
        Repairer.name: settings.repair_interval_s,
        Scrubber.name: settings.scrub_interval_s,
        PlacementChecker.name: settings.placement_interval_s,
        Vacuumer.name: settings.vacuum_interval_s,
        Snapshotter.name: settings.snapshot_interval_s if settings.snapshot_public_key_file else 0,
        UploadExpirer.name: settings.upload_expiry_interval_s,
        FederationSampler.name: settings.metrics_interval_s,
        AuditCheckpointer.name: settings.audit_checkpoint_interval_s,
        AuditArchiver.name: (
            settings.audit_archive_interval_s if settings.audit_archive_public_key_file else 0
        ),
    }
