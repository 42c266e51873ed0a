"""Which submitted record runs next: always the highest priority one buffered."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

Partition = tuple[str, int]


class Record(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=Record)
R_co = TypeVar("R_co", bound=Record, covariant=True)


class BufferedSource(Protocol[R_co]):
    """A consumer's fetched-but-unread records (aiokafka's `getmany`)."""

    def assignment(self) -> Collection[Partition]: ...

    async def take(
        self, partitions: Sequence[Partition], timeout_ms: int
    ) -> R_co | None:
        """At most one record of `partitions`, waiting up to `timeout_ms`."""


def by_priority(
    assignment: Iterable[Partition], drain_order: Sequence[str]
) -> list[tuple[str, list[Partition]]]:
    """Assigned partitions grouped per topic, highest priority first; topics
    without an assigned partition are left out."""
    assigned = sorted(assignment)
    groups = [
        (topic, [tp for tp in assigned if tp[0] == topic]) for topic in drain_order
    ]
    return [(topic, partitions) for topic, partitions in groups if partitions]


class PriorityPicker(Generic[R]):
    """Takes one record at a time, highest priority topic first.

    Waiting for new records has to take one from whichever topic has it; when a
    higher one turns up in the same fetch, the lower record is held back here,
    ahead of its own partition's later records, until its turn comes.
    """

    def __init__(self, source: BufferedSource[R], drain_order: Sequence[str]) -> None:
        self._source = source
        self._drain_order = tuple(drain_order)
        self._held: dict[str, deque[R]] = {topic: deque() for topic in drain_order}

    async def next(self, wait_ms: int) -> R | None:
        record = await self._first_buffered()
        if record is not None:
            return record
        assigned = sorted(self._source.assignment())
        if not assigned:
            return None
        waited = await self._source.take(assigned, wait_ms)
        if waited is None:
            return None
        self._held[waited.topic].append(waited)
        return await self._first_buffered()

    async def _first_buffered(self) -> R | None:
        for topic, partitions in by_priority(
            self._source.assignment(), self._drain_order
        ):
            held = self._held[topic]
            if held:
                return held.popleft()
            record = await self._source.take(partitions, 0)
            if record is not None:
                return record
        return None

    def forget(self, partitions: Collection[Partition]) -> None:
        """Drops held records of revoked partitions; their offsets were never
        committed, so the partitions' next owner reads them again."""
        for topic, held in self._held.items():
            kept = [r for r in held if (topic, r.partition) not in partitions]
            held.clear()
            held.extend(kept)
