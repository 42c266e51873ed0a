"""Fakes the notifier tests share with the notifier process they start."""

from __future__ import annotations

from comfyserve.contracts.webhooks import WebhookJob


def job_view(job_id: str, tenant_id: str = "t1") -> WebhookJob:
    """A completed job as the REST API shows it."""
    link = f"http://gateway.test/workflows/{job_id}"
    return WebhookJob.model_validate(
        {
            "execution_id": job_id,
            "status": "completed",
            "priority": "normal",
            "created_at": "2026-01-01T00:00:00Z",
            "started_at": "2026-01-01T00:00:01Z",
            "completed_at": "2026-01-01T00:00:03Z",
            "duration_seconds": 2.0,
            "queue_position": None,
            "attempt": 1,
            "cancel_requested": False,
            "error": None,
            "metadata": {"tenant": tenant_id},
            "links": {
                "self": link,
                "events": f"{link}/events",
                "cancel": f"{link}/cancel",
            },
            "progress": None,
            "outputs": [
                {
                    "file_id": "f1",
                    "node_id": "9",
                    "filename": "out.png",
                    "content_type": "image/png",
                    "size": 10,
                    "width": 8,
                    "height": 8,
                    "kind": "image",
                    "url": "http://s3.test/out.png?signature=x",
                    "url_expires_at": "2026-01-01T00:05:00Z",
                }
            ],
            "webhook_url": None,
            "timeout_minutes": 10,
        }
    )


class FakeJobs:
    """The workflow and storage services as the payload needs them: every job
    exists, completed, with one output."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    async def job(self, tenant_id: str, job_id: str) -> WebhookJob:
        self.reads.append(job_id)
        return job_view(job_id, tenant_id)
