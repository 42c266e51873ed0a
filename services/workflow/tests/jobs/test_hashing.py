from comfyserve.contracts.events import Priority
from comfyserve.workflow.jobs.hashing import request_hash


def fingerprint(**overrides) -> str:
    fields = {
        "workflow": {"1": {"class_type": "A", "inputs": {"x": 1, "y": "z"}}},
        "priority": Priority.NORMAL,
        "timeout_seconds": 600,
        "webhook_url": None,
        "metadata": {"a": "1", "b": "2"},
    }
    fields.update(overrides)
    return request_hash(**fields)


def test_key_order_does_not_change_the_hash():
    reordered = {"1": {"inputs": {"y": "z", "x": 1}, "class_type": "A"}}
    assert fingerprint(workflow=reordered) == fingerprint()
    assert fingerprint(metadata={"b": "2", "a": "1"}) == fingerprint()


def test_every_field_changes_the_hash():
    base = fingerprint()
    assert (
        fingerprint(workflow={"1": {"class_type": "A", "inputs": {"x": 2, "y": "z"}}})
        != base
    )
    assert fingerprint(priority=Priority.HIGH) != base
    assert fingerprint(timeout_seconds=601) != base
    assert fingerprint(webhook_url="https://example.test/hook") != base
    assert fingerprint(metadata={"a": "1"}) != base


def test_hash_is_hex_sha256():
    value = fingerprint()
    assert len(value) == 64
    int(value, 16)
