from comfyserve.contracts.headers import (
    CONTENT_TYPE,
    EVENT_CONTENT_TYPE,
    TRACEPARENT,
    TRACESTATE,
    carrier_to_headers,
    event_headers,
    headers_to_carrier,
)

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_carrier_round_trip() -> None:
    carrier = {TRACEPARENT: TP, TRACESTATE: "rojo=00f067aa0ba902b7"}

    headers = carrier_to_headers(carrier)

    assert headers == [
        (TRACEPARENT, TP.encode()),
        (TRACESTATE, b"rojo=00f067aa0ba902b7"),
    ]
    assert headers_to_carrier(headers) == carrier


def test_headers_to_carrier_tolerates_odd_headers() -> None:
    headers: list[tuple[str, bytes | str | None]] = [
        ("Traceparent", TP.encode()),
        ("empty", None),
        ("binary", b"\xff\xfe"),
        ("already-str", "x"),
    ]

    assert headers_to_carrier(headers) == {TRACEPARENT: TP, "already-str": "x"}
    assert headers_to_carrier(None) == {}


def test_event_headers_carry_content_type_and_trace() -> None:
    headers = event_headers({TRACEPARENT: TP, CONTENT_TYPE: "text/plain"})

    assert headers == [
        (CONTENT_TYPE, EVENT_CONTENT_TYPE.encode()),
        (TRACEPARENT, TP.encode()),
    ]
    assert event_headers() == [(CONTENT_TYPE, EVENT_CONTENT_TYPE.encode())]
