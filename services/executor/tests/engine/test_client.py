"""ComfyClient's plain calls against a hand-written fake ComfyUI."""

from comfyserve.executor.engine.events import CancelOutcome

from .conftest import FakeComfy, g1_script


async def test_interrupt_targets_only_our_running_or_pending_prompt(make_client):
    fake = FakeComfy("g2", g1_script)
    client = await make_client(fake)
    fake.running.append("run-1")
    fake.pending.append("wait-1")
    assert await client.interrupt("run-1") == CancelOutcome.INTERRUPTED
    assert fake.interrupts == [{"prompt_id": "run-1"}]
    assert await client.interrupt("wait-1") == CancelOutcome.DEQUEUED
    assert fake.deleted == ["wait-1"]
    assert await client.interrupt("gone") == CancelOutcome.NOT_FOUND
    assert len(fake.interrupts) == 1
