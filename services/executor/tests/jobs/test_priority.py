"""Priority selection over buffered partitions, without Kafka."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from comfyserve.executor.jobs.priority import Partition, PriorityPicker, by_priority

HIGH, NORMAL, LOW = "high", "normal", "low"
ORDER = (HIGH, NORMAL, LOW)


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int


class Buffered:
    """Per-partition buffers; `arrivals` land when a waiting take is made."""

    def __init__(self, assigned: Sequence[Partition]) -> None:
        self.assigned = set(assigned)
        self.buffers: dict[Partition, list[Rec]] = {tp: [] for tp in assigned}
        self.arrivals: list[Rec] = []
        self.waits = 0

    def add(self, topic: str, partition: int, count: int = 1) -> None:
        buffer = self.buffers[(topic, partition)]
        for _ in range(count):
            buffer.append(Rec(topic, partition, len(buffer)))

    def assignment(self) -> set[Partition]:
        return self.assigned

    async def take(
        self, partitions: Sequence[Partition], timeout_ms: int
    ) -> Rec | None:
        if timeout_ms:
            self.waits += 1
            # A fetch may bring several records; the wait hands over the first.
            for record in self.arrivals:
                self.buffers[(record.topic, record.partition)].append(record)
            first, self.arrivals = self.arrivals[:1], []
            if first:
                return self.buffers[(first[0].topic, first[0].partition)].pop(0)
        for tp in partitions:
            if self.buffers[tp]:
                return self.buffers[tp].pop(0)
        return None


async def drain(picker: PriorityPicker[Rec]) -> list[tuple[str, int, int]]:
    taken = []
    while (record := await picker.next(500)) is not None:
        taken.append((record.topic, record.partition, record.offset))
    return taken


def test_partitions_group_by_topic_in_drain_order():
    assigned = [(LOW, 1), (HIGH, 2), ("other", 0), (HIGH, 0), (NORMAL, 0)]

    assert by_priority(assigned, ORDER) == [
        (HIGH, [(HIGH, 0), (HIGH, 2)]),
        (NORMAL, [(NORMAL, 0)]),
        (LOW, [(LOW, 1)]),
    ]


async def test_higher_priority_drains_first():
    source = Buffered([(HIGH, 0), (NORMAL, 0), (NORMAL, 1), (LOW, 0)])
    source.add(LOW, 0)
    source.add(NORMAL, 0, 2)
    source.add(HIGH, 0)

    assert await drain(PriorityPicker(source, ORDER)) == [
        (HIGH, 0, 0),
        (NORMAL, 0, 0),
        (NORMAL, 0, 1),
        (LOW, 0, 0),
    ]


async def test_a_lower_record_taken_while_waiting_yields_to_a_higher_one():
    source = Buffered([(HIGH, 0), (LOW, 0)])
    source.arrivals = [Rec(LOW, 0, 0), Rec(HIGH, 0, 0), Rec(LOW, 0, 1)]
    picker = PriorityPicker(source, ORDER)

    # The wait hands over the low record; the high one fetched with it wins,
    # and the held low record still comes before its partition's next one.
    assert await drain(picker) == [(HIGH, 0, 0), (LOW, 0, 0), (LOW, 0, 1)]
    assert source.waits == 2


async def test_revoked_partitions_forget_held_records():
    source = Buffered([(HIGH, 0), (LOW, 0)])
    source.arrivals = [Rec(LOW, 0, 0), Rec(HIGH, 0, 0)]
    picker = PriorityPicker(source, ORDER)
    assert await picker.next(500) == Rec(HIGH, 0, 0)

    picker.forget({(LOW, 0)})

    assert await picker.next(500) is None


async def test_nothing_assigned_takes_nothing():
    source = Buffered([])

    assert await PriorityPicker(source, ORDER).next(500) is None
    assert source.waits == 0
