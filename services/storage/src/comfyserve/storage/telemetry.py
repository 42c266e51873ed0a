"""Prometheus metrics of one service instance, on a registry of its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

from comfyserve.runtime.grpc import count_client_calls


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        count_client_calls(self.registry, "storage")
        self.retention_deleted = Counter(
            "storage_retention_deleted_files",
            "Files whose object and row retention deleted.",
            registry=self.registry,
        )
        self.retention_failed = Counter(
            "storage_retention_failed_deletes",
            "Object deletions retention will retry next round.",
            registry=self.registry,
        )
        self.fenced_jobs = Counter(
            "storage_fenced_jobs",
            "Job ends recorded from the finished topic (redeliveries included).",
            registry=self.registry,
        )
        self.superseded_deleted = Counter(
            "storage_superseded_outputs_deleted",
            "Outputs of attempts that did not end their job, deleted at its end.",
            registry=self.registry,
        )
        self.orphans_deleted = Counter(
            "storage_orphan_objects_deleted",
            "Objects uploaded after their job ended, removed by the sweep.",
            registry=self.registry,
        )
        self.consumer_errors = Counter(
            "storage_consumer_errors",
            "Finished-topic records retried or dead-lettered, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
