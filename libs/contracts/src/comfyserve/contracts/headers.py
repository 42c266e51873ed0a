"""Kafka header names and the pure mapping between trace carriers and headers.

Trace context travels in headers (W3C `traceparent`/`tracestate`), never in the
event body, so any OpenTelemetry propagator can inject into and extract from
the carrier dicts these helpers produce.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "CONTENT_TYPE",
    "EVENT_CONTENT_TYPE",
    "TRACEPARENT",
    "TRACESTATE",
    "KafkaHeaders",
    "carrier_to_headers",
    "event_headers",
    "headers_to_carrier",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
CONTENT_TYPE = "content-type"
# The value is a whole CloudEvents envelope (structured content mode).
EVENT_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"

KafkaHeaders = list[tuple[str, bytes]]


def carrier_to_headers(carrier: Mapping[str, str]) -> KafkaHeaders:
    """Turn a propagator's carrier dict into Kafka headers."""
    return [(key, value.encode()) for key, value in carrier.items()]


def headers_to_carrier(
    headers: Iterable[tuple[str, bytes | str | None]] | None,
) -> dict[str, str]:
    """Turn Kafka headers into a carrier dict for a propagator.

    Keys are lower-cased (propagators look up lower-case names); empty and
    undecodable values are dropped; a repeated header keeps its last value.
    """
    carrier: dict[str, str] = {}
    for key, value in headers or ():
        if value is None:
            continue
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                continue
        carrier[key.lower()] = value
    return carrier


def event_headers(carrier: Mapping[str, str] | None = None) -> KafkaHeaders:
    """Headers for an event message: its content type plus the trace carrier."""
    headers: KafkaHeaders = [(CONTENT_TYPE, EVENT_CONTENT_TYPE.encode())]
    if carrier:
        headers.extend(
            (k, v) for k, v in carrier_to_headers(carrier) if k != CONTENT_TYPE
        )
    return headers
