"""Background loops, the stop signal, metrics serving, settings helpers and
started clients."""

import asyncio
import os
import signal
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from comfyserve.runtime.kafka import DLQ_REASON_HEADER, dead_letter_headers, started
from comfyserve.runtime.metrics import serve_metrics
from comfyserve.runtime.settings import ServiceSettings, comma_separated
from comfyserve.runtime.tasks import stop_requested, supervised


async def test_a_crashed_loop_is_restarted_and_all_stop_on_exit() -> None:
    runs = 0
    third = asyncio.Event()
    stopped = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("a bug")
        third.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    async with supervised({"flaky": flaky}, restart_s=0):
        async with asyncio.timeout(5):
            await third.wait()
    assert stopped.is_set()


async def test_sigterm_asks_the_service_to_stop() -> None:
    loop = asyncio.get_running_loop()
    stop = stop_requested()
    try:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(5):
            await stop.wait()
    finally:
        # The test process's own handling of both signals comes back.
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)


async def test_metrics_are_served_until_exit() -> None:
    registry = CollectorRegistry()
    Counter("served_things", "Things.", registry=registry).inc()
    async with serve_metrics(registry, 0) as port:
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
        )
    assert b"served_things_total 1.0" in body


async def test_a_client_is_started_and_stopped() -> None:
    calls: list[str] = []

    class Client:
        async def start(self) -> None:
            calls.append("start")

        async def stop(self) -> None:
            calls.append("stop")

    async with started(Client()):
        assert calls == ["start"]
    assert calls == ["start", "stop"]


def test_dead_letters_keep_their_headers_and_say_why_once() -> None:
    headers = [("traceparent", b"00-x"), (DLQ_REASON_HEADER, b"old")]
    assert dead_letter_headers(headers, "unparseable") == [
        ("traceparent", b"00-x"),
        (DLQ_REASON_HEADER, b"unparseable"),
    ]


def test_settings_conventions(monkeypatch) -> None:
    class Settings(ServiceSettings, env_prefix="DEMO_"):
        names: str | None = None

    monkeypatch.setenv("DEMO_LOG_LEVEL", "debug")
    monkeypatch.setenv("DEMO_NAMES", " a, b ,,")
    monkeypatch.setenv("DEMO_UNKNOWN", "ignored")
    settings = Settings()
    assert settings.log_level == "debug"
    assert comma_separated(settings.names) == frozenset({"a", "b"})
    assert comma_separated("  ") is None
