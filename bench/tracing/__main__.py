"""What tracing adds to a job: the same model-free prompt through two copies of
the product in one run, one tracing every request and job (100 % sampling,
exporting to the stack's Jaeger), one with the OpenTelemetry SDK off.

Jobs alternate between the two, so drift hits both alike; every prompt differs
in its colour, so ComfyUI's cache never answers for either. Goal: under 2 ms
at p50.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
from contextlib import ExitStack
from typing import Any

import httpx

from bench.overhead.__main__ import through_api
from bench.product import UNLIMITED, Running, percentile, running_product
from tests.e2e.support import invert_graph

SERVICES = ("auth", "gateway", "workflow", "executor", "storage")
TRACED = {"OTEL_TRACES_SAMPLER": "always_on"}
UNTRACED = {"OTEL_SDK_DISABLED": "true"}


async def measure(on: Running, off: Running, jobs: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"tracing on": [], "tracing off": []}
    async with (
        httpx.AsyncClient(
            base_url=on.base_url, headers={"Authorization": f"Bearer {on.key}"}
        ) as traced,
        httpx.AsyncClient(
            base_url=off.base_url, headers={"Authorization": f"Bearer {off.key}"}
        ) as untraced,
    ):
        for warmup in range(5):
            await through_api(traced, invert_graph((warmup, 3, 250)))
            await through_api(untraced, invert_graph((warmup, 4, 250)))
        for index in range(jobs):
            colour = (index % 256, (index // 256) % 256, 79)
            timings["tracing on"].append(
                await through_api(traced, invert_graph(colour, prefix="bench"))
            )
            timings["tracing off"].append(
                await through_api(
                    untraced, invert_graph((colour[0], colour[1], 80), "bench")
                )
            )
    return timings


def report(timings: dict[str, list[float]], out: Any) -> None:
    ms = {name: [s * 1000 for s in values] for name, values in timings.items()}
    out.write(f"jobs per copy: {len(ms['tracing on'])}, sequential, alternating\n")
    for name, values in ms.items():
        out.write(
            f"{name:12}  p50 {statistics.median(values):8.1f} ms"
            f"  p99 {percentile(values, 0.99):8.1f} ms\n"
        )
    added_p50 = statistics.median(ms["tracing on"]) - statistics.median(
        ms["tracing off"]
    )
    out.write(f"tracing overhead p50_ms={added_p50:.1f} (goal < 2)\n")


def unlimited(tracing: dict[str, str]) -> dict[str, dict[str, str]]:
    """Every service with the tracing settings, rate limits out of the way as
    in the other benchmarks: the default submit burst refuses a long run."""
    return {service: {**tracing, **UNLIMITED.get(service, {})} for service in SERVICES}


def main() -> int:
    jobs = int(os.environ.get("BENCH_JOBS", "100"))
    with ExitStack() as stack:
        on = stack.enter_context(running_product(unlimited(TRACED)))
        off = stack.enter_context(running_product(unlimited(UNTRACED)))
        timings = asyncio.run(measure(on, off, jobs))
    report(timings, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
