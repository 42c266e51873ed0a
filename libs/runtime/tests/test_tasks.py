"""`every`: a periodic step that rides out outages and leaves bugs to the
supervisor."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from comfyserve.runtime.tasks import every


async def test_an_outage_is_logged_and_the_next_round_runs() -> None:
    rounds: list[int] = []

    async def step() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise OSError("database away")
        if len(rounds) == 3:
            raise asyncio.CancelledError

    with structlog.testing.capture_logs() as logs:
        with pytest.raises(asyncio.CancelledError):
            await every(0, step, failed="test.step.failed", outages=(OSError,))()

    assert rounds == [0, 1, 2]
    assert [line["event"] for line in logs] == ["test.step.failed"]
    assert "database away" in logs[0]["error"]


async def test_anything_but_an_outage_ends_the_loop_for_the_supervisor() -> None:
    async def step() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await every(0, step, failed="test.step.failed", outages=(OSError,))()
