"""Where the machine's CPU went during a run: the whole machine's busy time
from /proc/stat and each group of processes' own (a process and every
descendant, so an executor counts with its ComfyUI), sampled over time so a
window can be cut out afterwards."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU-seconds the machine spent not idle since boot, over all cores."""
    fields = [
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICK


def _descendants(pid: int) -> set[int]:
    found = {pid}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found |= _descendants(int(child))
    return found


def tree_cpu_s(pid: int) -> float:
    """CPU-seconds of `pid` and its live descendants."""
    total = 0
    for member in _descendants(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which may itself hold spaces.
        after = stat.rsplit(")", 1)[1].split()
        total += int(after[11]) + int(after[12])
    return total / TICK


@dataclass
class Sample:
    at: float
    machine_s: float
    groups_s: dict[str, float]


@dataclass
class CpuTimeline:
    """Samples every `every_s` while a run goes on; `groups` answers the
    root pids of each group at the time of each sample."""

    groups: Callable[[], dict[str, list[int]]]
    every_s: float = 0.5
    samples: list[Sample] = field(default_factory=list)

    def sample(self) -> None:
        self.samples.append(
            Sample(
                time.time(),
                machine_busy_s(),
                {
                    name: sum(tree_cpu_s(pid) for pid in pids)
                    for name, pids in self.groups().items()
                },
            )
        )

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every_s)

    def share(self, start: float, end: float) -> dict[str, float]:
        """Cores busy on average between `start` and `end` (epoch seconds),
        per group and for the machine (`machine`), and the rest of it
        (`other`: Kafka, Postgres, Redis, S3, other work on the machine)."""
        inside = [s for s in self.samples if start <= s.at <= end]
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        seconds = last.at - first.at
        found = {
            name: (last.groups_s.get(name, 0.0) - first.groups_s.get(name, 0.0))
            / seconds
            for name in last.groups_s
        }
        found["machine"] = (last.machine_s - first.machine_s) / seconds
        found["other"] = found["machine"] - sum(
            value for name, value in found.items() if name != "machine"
        )
        return found
