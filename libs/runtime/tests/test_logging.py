import json
import logging

import pytest
import structlog

from comfyserve.runtime.logging import (
    configure_logging,
    describe_error,
    parse_level,
    redact,
)


@pytest.fixture(autouse=True)
def _restore_logging():
    """configure_logging caches loggers on this test's captured stdout; later
    tests must not write to it once it is closed."""
    handlers = logging.getLogger().handlers[:]
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = handlers


PRESIGNED = (
    "http://127.0.0.1:17070/comfyserve/outputs/t/j/1/3/0-a.png"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=comfyserve%2F20261201"
    "&X-Amz-Date=20261201T000000Z&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=0123456789abcdef"
)


def test_presigned_url_keeps_its_path_and_loses_its_signature() -> None:
    text = redact(f"HTTP Request: PUT {PRESIGNED} 200")

    assert "0123456789abcdef" not in text
    assert "comfyserve%2F20261201" not in text
    assert "X-Amz-Signature=***" in text
    assert "/comfyserve/outputs/t/j/1/3/0-a.png" in text


@pytest.mark.parametrize(
    ("secret", "kept"),
    [
        ("Authorization: Bearer abc.def.ghi", "Bearer ***"),
        ("key csk_dev_2f9Qx-aa", "csk_***"),
    ],
)
def test_tokens_and_keys_are_masked(secret: str, kept: str) -> None:
    assert redact(secret).endswith(kept)


def test_level_names_parse_whatever_their_case() -> None:
    assert parse_level("debug") == logging.DEBUG
    assert parse_level("WARNING") == logging.WARNING
    assert parse_level("nonsense") == logging.INFO
    assert parse_level(logging.ERROR) == logging.ERROR


def test_structlog_and_library_lines_are_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info")
    structlog.get_logger("t").info("t.upload", url=PRESIGNED, nested={"u": PRESIGNED})
    logging.getLogger("aiokafka").warning("sending %s", PRESIGNED)
    logging.getLogger("httpx").info("HTTP Request: PUT %s", PRESIGNED)

    lines = capsys.readouterr().out.splitlines()

    assert all("0123456789abcdef" not in line for line in lines), lines
    records = [json.loads(line) for line in lines]
    assert records[0]["event"] == "t.upload"
    assert records[0]["nested"]["u"].endswith("X-Amz-Signature=***")
    # Library lines are JSON too, with their logger's name.
    [library] = [r for r in records if r.get("logger") == "aiokafka"]
    assert library["level"] == "warning"
    assert library["event"].startswith("sending http://127.0.0.1:17070/")
    # httpx's request log names every presigned URL: it is silenced.
    assert not any("HTTP Request" in line for line in lines)


class FakeDriverError(Exception):
    """Stands for a driver error: it quotes the value it could not take."""

    sqlstate = "22P02"


FakeDriverError.__module__ = "asyncpg.exceptions"


class FakeStatementError(Exception):
    def __init__(self, orig: Exception) -> None:
        super().__init__(f"(asyncpg) {orig} [SQL: SELECT $1]")
        self.orig = orig


FakeStatementError.__module__ = "sqlalchemy.exc"


SECRET = "a secret prompt"


def failing_query(value: str = SECRET) -> None:
    try:
        raise FakeDriverError(f"invalid input for query argument $1: {value!r}")
    except FakeDriverError as driver:
        raise FakeStatementError(driver) from driver


def test_database_errors_are_named_without_their_values() -> None:
    with pytest.raises(FakeStatementError) as raised:
        failing_query()

    assert describe_error(raised.value) == (
        "FakeStatementError(FakeDriverError, sqlstate=22P02)"
    )
    assert describe_error(KeyError("k")) == "KeyError('k')"


def test_a_logged_database_traceback_keeps_frames_and_drops_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info")
    try:
        failing_query()
    except FakeStatementError:
        structlog.get_logger("t").exception("t.failed")
        logging.getLogger("lib").exception("lib.failed")

    lines = capsys.readouterr().out.splitlines()

    assert len(lines) == 2
    assert all(SECRET not in line for line in lines)
    records = [json.loads(line) for line in lines]
    assert all("in failing_query" in r["exception"] for r in records)
    assert all("sqlstate=22P02" in r["exception"] for r in records)
