"""The Core metadata every repository queries, and the notification
channels (sent and listened to with `comfyserve.runtime.notifications`).

Tables are declared without a schema: the engine
(`comfyserve.runtime.database`) sets every connection's `search_path` to the
service's schema, so the same statements serve any `WORKFLOW_SCHEMA`.
"""

from __future__ import annotations

from sqlalchemy import MetaData

metadata = MetaData()

OUTBOX_CHANNEL = "workflow_outbox"
JOBS_CHANNEL = "workflow_jobs"
# Payload: a pool with a newly pending job. Wakes the executors waiting there.
QUEUE_CHANNEL = "workflow_queue"
