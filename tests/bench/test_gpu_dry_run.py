"""The GPU benchmark in its CPU dry run, so it cannot rot where no GPU is lent:
it makes its checkpoint, starts its own ComfyUI and the product, runs the
same txt2img prompt both ways and reports the images/s ratio."""

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


# Checkpoint, ComfyUI and the product start in about a minute on an idle
# 2-core machine; under a loaded one's they took minutes.
@pytest.mark.timeout(660)
def test_gpu_benchmark_dry_run_makes_images_both_ways_and_a_ratio() -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "bench.gpu"],
        cwd=ROOT,
        env={**os.environ, "BENCH_GPU_DRY_RUN": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        # SIGTERM, which the benchmark answers by stopping what it started.
        run.terminate()
        stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stdout[-2000:] + stderr[-2000:]
    lines = stdout.strip().splitlines()
    # The product's services log to the same stdout before the report.
    assert any(
        line.startswith("CPU dry run: sd15-random-tiny.safetensors, 64x64")
        for line in lines
    ), lines[-6:]
    # Warm-up excepted: one round of one job at a time and two queued per path.
    assert "images raw=3 ours=3" in lines, lines
    found = re.fullmatch(
        r"gpu images_per_s_ratio=([\d.]+) one_at_a_time=([\d.]+) queued=([\d.]+)",
        lines[-1],
    )
    assert found is not None, lines[-1]
    assert float(found[1]) == min(float(found[2]), float(found[3])) > 0
