"""Size limits every service must agree on: Kafka records, gRPC messages, jobs.

One number per limit, here, so producers, topics, consumers and validators
cannot drift apart (a record a producer may send is one its topic accepts and
its consumers can fetch; a graph the API accepts fits every message it rides in).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CATALOG_MAX_BYTES",
    "DOWNLOAD_URLS_PER_CALL",
    "EVENT_MAX_BYTES",
    "GRPC_MAX_MESSAGE_BYTES",
    "MAX_METADATA_KEYS",
    "MAX_METADATA_KEY_CHARS",
    "MAX_METADATA_VALUE_CHARS",
    "MAX_OUTPUTS_PER_JOB",
    "MAX_WORKFLOW_BYTES",
    "OUTPUTS_PER_EVENT",
    "REQUEST_ID_MAX_CHARS",
    "SUBMIT_MAX_BYTES",
    "TEXT_FIELD_MAX_CHARS",
    "TRACEBACK_MAX_CHARS",
]

MIB: Final = 1024 * 1024

EVENT_MAX_BYTES: Final = 1 * MIB
"""`max.message.bytes` of every topic but the node catalog, and the largest
record a producer sends to them."""

CATALOG_MAX_BYTES: Final = 16 * MIB
"""`max.message.bytes` of the node catalog topic: ComfyUI's `/object_info` runs
to megabytes on images with many custom nodes."""

MAX_WORKFLOW_BYTES: Final = 2 * MIB
"""The largest API-format graph (as compact JSON) a job may carry."""

SUBMIT_MAX_BYTES: Final = MAX_WORKFLOW_BYTES + EVENT_MAX_BYTES
"""`max.message.bytes` of the submit-requested topic: the largest graph, and
room for the rest of the command around it."""

GRPC_MAX_MESSAGE_BYTES: Final = 4 * MAX_WORKFLOW_BYTES
"""Every gRPC channel and server sends and receives up to this: a job with the
largest graph and its outputs always fits, so only the documented limits ever
refuse a request, never the transport."""

MAX_OUTPUTS_PER_JOB: Final = 1000
"""Stored outputs of one job; the `completed` event lists them all and still
fits `EVENT_MAX_BYTES`."""

OUTPUTS_PER_EVENT: Final = 100
"""Outputs carried by one `progress` event; more are split across events."""

DOWNLOAD_URLS_PER_CALL: Final = 200
"""Files per `StorageService.GetDownloadUrls` call; callers send larger sets in
chunks."""

TEXT_FIELD_MAX_CHARS: Final = 4000
"""Free text in an event (an error message) is clipped to this."""

TRACEBACK_MAX_CHARS: Final = 16000
"""A traceback in an event is clipped to its last this many characters."""

MAX_METADATA_KEYS: Final = 16
"""Entries of a job's metadata; keys of 1 to `MAX_METADATA_KEY_CHARS`
characters, values of at most `MAX_METADATA_VALUE_CHARS`."""

MAX_METADATA_KEY_CHARS: Final = 40

MAX_METADATA_VALUE_CHARS: Final = 256

REQUEST_ID_MAX_CHARS: Final = 128
"""The longest request id of a `submit-requested` command."""
