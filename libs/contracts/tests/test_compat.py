from typing import Any

import pytest

from comfyserve.contracts.compat import breaking_changes


def model(
    props: dict[str, Any], required: list[str], defs: dict[str, Any] | None = None
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "title": "Thing",
        "type": "object",
        "properties": props,
        "required": required,
    }
    if defs:
        schema["$defs"] = defs
    return schema


STR = {"type": "string"}
INT = {"type": "integer"}
OPT_STR = {"anyOf": [STR, {"type": "null"}], "default": None}
COLOUR = {"title": "Colour", "type": "string", "enum": ["red", "green"]}
INNER = {
    "title": "Inner",
    "type": "object",
    "properties": {"a": STR},
    "required": ["a"],
}
OLD = model(
    {
        "id": STR,
        "note": OPT_STR,
        "colour": {"$ref": "#/$defs/Colour"},
        "inner": {"$ref": "#/$defs/Inner"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/Inner"}},
        "meta": {"type": "object", "additionalProperties": STR},
    },
    ["id", "colour", "inner"],
    {"Colour": COLOUR, "Inner": INNER},
)


def with_defs(**changes: Any) -> dict[str, Any]:
    return {**OLD, "$defs": {**OLD["$defs"], **changes}}


def with_props(
    props: dict[str, Any], required: list[str] | None = None
) -> dict[str, Any]:
    return {
        **OLD,
        "properties": {**OLD["properties"], **props},
        "required": OLD["required"] if required is None else required,
    }


def test_identical_is_compatible() -> None:
    assert breaking_changes(OLD, OLD) == []


@pytest.mark.parametrize(
    "new",
    [
        pytest.param(with_props({"extra": OPT_STR}), id="new optional field"),
        pytest.param(
            with_defs(Colour={**COLOUR, "enum": ["red", "green", "blue"]}),
            id="new enum value",
        ),
        pytest.param(
            with_defs(
                Inner={
                    **INNER,
                    "properties": {"a": STR, "b": {**INT, "default": 0}},
                }
            ),
            id="new optional nested field",
        ),
        pytest.param(
            with_props({"id": {**STR, "description": "now documented"}}),
            id="documentation only",
        ),
        pytest.param(with_props({}, ["id"]), id="field no longer required"),
    ],
)
def test_additive_changes_are_compatible(new: dict[str, Any]) -> None:
    assert breaking_changes(OLD, new) == []


@pytest.mark.parametrize(
    ("new", "problem"),
    [
        pytest.param(
            {
                **OLD,
                "properties": {
                    k: v for k, v in OLD["properties"].items() if k != "note"
                },
            },
            "$.note: property removed",
            id="removed property",
        ),
        pytest.param(with_props({"id": INT}), "$.id: type changed", id="changed type"),
        pytest.param(
            with_props({"note": STR}), "$.note: type changed", id="no longer nullable"
        ),
        pytest.param(
            with_props({"id": {"anyOf": [STR, {"type": "null"}]}}),
            "$.id: type changed",
            id="became nullable",
        ),
        pytest.param(
            with_props({"extra": STR}, [*OLD["required"], "extra"]),
            "$.extra: new required field",
            id="new required field",
        ),
        pytest.param(
            with_props({}, [*OLD["required"], "note"]),
            "$.note: became required",
            id="became required",
        ),
        pytest.param(
            with_defs(Colour={**COLOUR, "enum": ["red"]}),
            "$.colour: enum value 'green' removed",
            id="removed enum value",
        ),
        pytest.param(
            with_defs(Inner={**INNER, "properties": {"a": INT}}),
            "$.inner.a: type changed",
            id="nested type changed",
        ),
        pytest.param(
            with_defs(Inner={**INNER, "properties": {}}),
            "$.inner.a: property removed",
            id="nested property removed",
        ),
        pytest.param(
            with_props({"items": {"type": "array", "items": STR}}),
            "$.items[]: type changed",
            id="list item type changed",
        ),
        pytest.param(
            with_props({"meta": {"type": "object", "additionalProperties": INT}}),
            "$.meta{}: type changed",
            id="dict value type changed",
        ),
        pytest.param(
            with_props({"id": {**STR, "maxLength": 10}}),
            "$.id: type changed",
            id="constraint tightened",
        ),
    ],
)
def test_breaking_changes_are_reported(new: dict[str, Any], problem: str) -> None:
    problems = breaking_changes(OLD, new)

    assert any(p.startswith(problem) for p in problems), problems
