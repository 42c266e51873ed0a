"""A fleet of executors in one pool, each driving a ComfyUI of its own, and
what its runs are checked by: how often each job was started (the executors'
own logs) and run (every ComfyUI's history), and whether the queue's
priorities held.

Shared by `bench.fleet` and the fleet's end-to-end test."""

from __future__ import annotations

import json
import random
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from infra.runner import ServiceProcess, free_port

PRIORITIES = ("high", "normal", "low")
RANK = {name: rank for rank, name in enumerate(PRIORITIES)}
# A worker holds its running job and, with EXECUTOR_PREFETCH, one staged
# ahead; no more.
HELD_PER_EXECUTOR = 2


@dataclass
class Fleet:
    """`executors` of one pool, each in managed mode (it starts, watches and
    restarts its own ComfyUI child on a free port)."""

    executors: list[ServiceProcess]

    @classmethod
    def of(
        cls, template: ServiceProcess, stack: dict[str, str], size: int, name: str
    ) -> Fleet:
        """`size` executors set up as `template` (its pool, targets and
        credentials), each with its own port, scratch folder and log."""
        executors = []
        for number in range(1, size + 1):
            env = {
                key: value
                for key, value in template.env.items()
                if key != "EXECUTOR_COMFYUI_URL"
            }
            env.update(
                EXECUTOR_COMFYUI_PATH=stack["COMFYUI_PATH"],
                EXECUTOR_COMFYUI_PYTHON=stack["COMFYUI_PYTHON"],
                EXECUTOR_HTTP_PORT=str(free_port()),
                EXECUTOR_SCRATCH_DIR=str(
                    template.log_dir / f"{name}-{number}" / "scratch"
                ),
            )
            log_dir = template.log_dir / f"{name}-{number}"
            executors.append(ServiceProcess("executor", env, log_dir))
        return cls(executors)

    def start(self) -> None:
        for executor in self.executors:
            executor.start()

    def stop(self) -> None:
        # All told at once, so their shutdowns overlap.
        for executor in self.executors:
            executor.signal(signal.SIGTERM)
        for executor in self.executors:
            executor.stop()

    @property
    def ready_urls(self) -> list[str]:
        return [
            f"http://127.0.0.1:{e.env['EXECUTOR_HTTP_PORT']}/health/ready"
            for e in self.executors
        ]

    def log_entries(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Each executor's structured log lines, with the executor's index;
        other output (ComfyUI's own) is skipped."""
        for index, executor in enumerate(self.executors):
            path = executor.log_dir / f"{executor.name}.log"
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    yield index, entry

    def starts(self) -> list[Start]:
        """Every `executor.job.started` the fleet logged, in log-time order."""
        found = [
            Start(
                job_id=str(entry["job_id"]),
                executor=index,
                at=datetime.fromisoformat(str(entry["timestamp"])),
            )
            for index, entry in self.log_entries()
            if entry.get("event") == "executor.job.started"
        ]
        return sorted(found, key=lambda start: start.at)

    def longest_idle_s(self, job_ids: set[str]) -> float:
        """The longest an executor waited between finishing one of `job_ids`
        and starting the next: with the queue full, a claim's own time, unless
        a claim came back empty while jobs were pending."""
        last_end: dict[int, datetime] = {}
        longest = 0.0
        for index, entry in self.log_entries():
            if entry.get("job_id") not in job_ids:
                continue
            at = datetime.fromisoformat(str(entry["timestamp"]))
            if entry.get("event") == "executor.job.finished":
                last_end[index] = at
            elif entry.get("event") == "executor.job.started" and index in last_end:
                longest = max(longest, (at - last_end.pop(index)).total_seconds())
        return longest

    def comfyui_urls(self) -> list[str]:
        """Where each executor's ComfyUI listens now: the port its latest
        start reported ready."""
        ports: dict[int, int] = {}
        for index, entry in self.log_entries():
            if entry.get("event") == "executor.comfyui.ready":
                ports[index] = int(entry["port"])
        return [f"http://127.0.0.1:{port}" for port in ports.values()]

    def prompts_per_job(self) -> Counter[str]:
        """How many prompts each job had ComfyUI run, over every ComfyUI of
        the fleet, from their histories: the executor writes a job's outputs
        under `<job id>-<attempt>/`, so a saving node's prefix names it."""
        runs: Counter[str] = Counter()
        for url in self.comfyui_urls():
            with urllib.request.urlopen(
                f"{url}/history?max_items=100000", timeout=30
            ) as answer:
                history: dict[str, Any] = json.load(answer)
            for item in history.values():
                runs.update(jobs_named_by(item["prompt"][2]))
        return runs


@dataclass(frozen=True)
class Start:
    job_id: str
    executor: int
    at: datetime


def jobs_named_by(prompt: dict[str, Any]) -> set[str]:
    """The job (ids, at most one) whose output folder a prompt saves into."""
    found = set()
    for node in prompt.values():
        prefix = node.get("inputs", {}).get("filename_prefix")
        if isinstance(prefix, str) and "/" in prefix:
            folder = prefix.split("/", 1)[0]
            found.add(folder.rsplit("-", 1)[0])
    return found


def overtaken(order: Iterable[str], priority: dict[str, str]) -> int:
    """The most jobs of a higher priority that any one job went ahead of, in
    `order` (of starts or completions).

    With the queue filled before any executor started, each claim takes the
    head of the queue, so a job can log its start before a higher one only
    while that one was claimed but not yet logged: held by another
    executor. So starts stay under `start_slack(executors)`."""
    worst = 0
    seen = list(order)
    for position, job_id in enumerate(seen):
        rank = RANK[priority[job_id]]
        later_higher = sum(
            1 for other in seen[position + 1 :] if RANK[priority[other]] < rank
        )
        worst = max(worst, later_higher)
    return worst


def start_slack(executors: int) -> int:
    """How many higher-priority starts a job may be logged ahead of: those
    the other executors held when it was logged."""
    return (executors - 1) * HELD_PER_EXECUTOR


def mixed_priorities(count: int, seed: int = 12) -> list[str]:
    """`count` priorities, a third of each, in a shuffled order, so that every
    priority is submitted early and late (no order to drain by accident)."""
    mixed = [PRIORITIES[index % 3] for index in range(count)]
    random.Random(seed).shuffle(mixed)
    return mixed


def run_once_failures(
    job_ids: Iterable[str], starts: list[Start], prompts: Counter[str]
) -> list[str]:
    """A line per job that was not started exactly once by the fleet or did
    not run exactly once in its ComfyUIs."""
    started = Counter(start.job_id for start in starts)
    return [
        f"job {job_id}: started {started[job_id]} times, "
        f"run {prompts[job_id]} times in ComfyUI"
        for job_id in job_ids
        if started[job_id] != 1 or prompts[job_id] != 1
    ]
