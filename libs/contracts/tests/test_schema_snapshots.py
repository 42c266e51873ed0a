import json
from pathlib import Path

import pytest

from comfyserve.contracts.compat import breaking_changes, event_json_schema
from comfyserve.contracts.events import (
    EVENT_CLASSES,
    event_classes_by_type,
    event_type_of,
)

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
SNAPSHOTS = sorted(SCHEMAS.glob("*.json"))


def test_snapshots_exist() -> None:
    assert SNAPSHOTS, f"no schema snapshots in {SCHEMAS}"


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=event_type_of)
def test_every_event_type_has_a_snapshot(cls: type) -> None:
    path = SCHEMAS / f"{event_type_of(cls)}.json"

    assert path.exists(), (
        f"no schema snapshot for {event_type_of(cls)}: run `make gen` "
        "(python tools/gen_contracts.py) and commit libs/contracts/schemas"
    )


@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: p.stem)
def test_current_schema_extends_snapshot(path: Path) -> None:
    classes = event_classes_by_type()
    assert path.stem in classes, (
        f"event type {path.stem} was removed; that needs a new v2 topic, not an edit"
    )

    problems = breaking_changes(
        json.loads(path.read_text()), event_json_schema(classes[path.stem])
    )

    assert problems == [], "breaking change to a published event:\n" + "\n".join(
        problems
    )
