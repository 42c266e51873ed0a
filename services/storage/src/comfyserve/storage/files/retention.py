"""The retention sweep, run in the background for the life of the service."""

from __future__ import annotations

import asyncio

import structlog

from comfyserve.storage.fences.service import FenceService
from comfyserve.storage.files.service import FileService, utcnow
from comfyserve.storage.telemetry import Metrics

log = structlog.get_logger(__name__)


async def sweep_forever(
    files: FileService, fences: FenceService, interval: float, metrics: Metrics
) -> None:
    """Each round: expired files and abandoned uploads, then late uploads of
    ended jobs."""
    while True:
        try:
            report = await files.run_retention_once(utcnow())
            metrics.retention_deleted.inc(report.deleted)
            metrics.retention_failed.inc(report.failed)
            swept = await fences.sweep_once(utcnow())
            metrics.orphans_deleted.inc(swept.orphans_deleted)
        except Exception:
            # A database or store outage must not end the sweeps; the next round
            # picks up whatever this one left.
            log.exception("storage.retention.round_failed")
        await asyncio.sleep(interval)
