"""The throughput and backlog benchmarks in a tiny dry run, so they cannot
rot: each starts the product, does its measurement on a scale of seconds and
ends with its one summary line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# `bench` is no installed package: the benchmarks run from the repository root.
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def last_line(module: str, settings: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_submit_benchmark_reports_rate_ceiling_and_p99() -> None:
    line = last_line("bench.submit", {"BENCH_SECONDS": "1", "BENCH_CLIENTS": "4"})
    found = re.fullmatch(
        r"submit accepted_per_s=([\d.]+) ceiling_per_s=([\d.]+) p99_ms=([\d.]+)", line
    )
    assert found is not None, line
    assert float(found[1]) > 0
    assert float(found[2]) > 0


def test_backlog_benchmark_fills_the_queue_and_compares_p99s() -> None:
    line = last_line(
        "bench.backlog",
        {"BENCH_BACKLOG": "100", "BENCH_ROUNDS": "3", "BENCH_DRAIN": "1"},
    )
    found = re.fullmatch(r"backlog jobs=100 worst_p99_ratio=([\d.]+)", line)
    assert found is not None, line
    assert float(found[1]) > 0
