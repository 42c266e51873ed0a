"""The retention sweep, run in the background for the life of the service."""

from __future__ import annotations

import asyncio

import structlog

from comfyserve.storage.files.service import FileService, utcnow
from comfyserve.storage.telemetry import Metrics

log = structlog.get_logger(__name__)


async def sweep_forever(files: FileService, interval: float, metrics: Metrics) -> None:
    while True:
        try:
            report = await files.run_retention_once(utcnow())
        except Exception:
            # A database or store outage must not end the sweeps; the next round
            # picks up whatever this one left.
            log.exception("storage.retention.round_failed")
        else:
            metrics.retention_deleted.inc(report.deleted)
            metrics.retention_failed.inc(report.failed)
        await asyncio.sleep(interval)
