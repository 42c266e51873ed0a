"""Node definitions parsed from ComfyUI's `/object_info`, across its generations."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "COMBO",
    "ANY_TYPE",
    "InputCategory",
    "InputSpec",
    "InvalidCatalogError",
    "IoType",
    "NodeCatalog",
    "NodeSpec",
]

COMBO = "COMBO"
ANY_TYPE = "*"

IoType = str | tuple[Any, ...]
"""A socket type: a name such as `IMAGE`, or the choices of a combo output."""


class InputCategory(StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    HIDDEN = "hidden"


class InvalidCatalogError(ValueError):
    """An `/object_info` document is not an object of node definitions."""


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One declared input of a node class."""

    name: str
    category: InputCategory
    io_type: IoType
    """The declared type; a tuple holds the choices of an old-style combo."""
    options: tuple[Any, ...] | None
    """Combo choices, or None for a non-combo (or a combo whose choices are unknown)."""
    config: Mapping[str, Any]
    raw: Any
    """The spec as the catalog gave it; errors echo it as `input_config`."""

    @property
    def type_name(self) -> str:
        """The type as ComfyUI's messages name it; every kind of combo is COMBO."""
        if isinstance(self.io_type, tuple) or self.io_type == COMBO:
            return COMBO
        return self.io_type

    @property
    def is_combo(self) -> bool:
        return self.type_name == COMBO

    @property
    def is_upload(self) -> bool:
        """A file picker (`image_upload`, `video_upload`, ...): its choices are
        the engine's input folder, which the product fills at run time."""
        return self.is_combo and any(
            key.endswith("_upload") and value is True
            for key, value in self.config.items()
        )

    def with_more_options(self, other: InputSpec) -> InputSpec:
        """This spec with `other`'s extra combo choices appended."""
        if self.options is None or other.options is None:
            return self
        extra = tuple(choice for choice in other.options if choice not in self.options)
        if not extra:
            return self
        options = self.options + extra
        if isinstance(self.io_type, tuple):
            raw = [list(options), *_spec_tail(self.raw)]
            return replace(self, io_type=options, options=options, raw=raw)
        config = {**self.config, "options": list(options)}
        return replace(self, options=options, config=config, raw=[COMBO, config])


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node class: its inputs in declaration order and its outputs."""

    class_type: str
    display_name: str
    inputs: Mapping[str, InputSpec]
    outputs: tuple[IoType, ...]
    output_is_list: tuple[bool, ...]
    output_names: tuple[str, ...]
    output_node: bool

    def validated_inputs(self) -> Iterator[InputSpec]:
        """Required, then optional inputs; hidden ones are filled by the engine."""
        for category in (InputCategory.REQUIRED, InputCategory.OPTIONAL):
            for spec in self.inputs.values():
                if spec.category is category:
                    yield spec

    def merged_with(self, other: NodeSpec) -> NodeSpec:
        inputs = {
            name: spec.with_more_options(other.inputs[name])
            if name in other.inputs
            else spec
            for name, spec in self.inputs.items()
        }
        return replace(self, inputs=MappingProxyType(inputs))


class NodeCatalog:
    """The node classes some engine offers; several workers' catalogs merge."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: Mapping[str, NodeSpec]) -> None:
        self._nodes: Mapping[str, NodeSpec] = MappingProxyType(dict(nodes))

    @classmethod
    def from_object_info(cls, *object_infos: Mapping[str, Any]) -> NodeCatalog:
        """Merge `/object_info` documents: a class any of them has is available,
        and a combo accepts a choice any of them offers."""
        nodes: dict[str, NodeSpec] = {}
        for object_info in object_infos:
            if not isinstance(object_info, Mapping):
                raise InvalidCatalogError(
                    f"object_info must be an object, got {type(object_info).__name__}"
                )
            for class_type, definition in object_info.items():
                # One unparseable class must not take the whole catalog down:
                # it is left out and so reported as missing if used.
                if not isinstance(class_type, str) or not isinstance(
                    definition, Mapping
                ):
                    continue
                spec = parse_node_spec(class_type, definition)
                known = nodes.get(class_type)
                nodes[class_type] = spec if known is None else known.merged_with(spec)
        return cls(nodes)

    def get(self, class_type: str) -> NodeSpec | None:
        return self._nodes.get(class_type)

    def __contains__(self, class_type: object) -> bool:
        return class_type in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def class_types(self) -> frozenset[str]:
        return frozenset(self._nodes)


def parse_node_spec(class_type: str, definition: Mapping[str, Any]) -> NodeSpec:
    """One `/object_info` entry; malformed parts degrade rather than fail."""
    sections = definition.get("input")
    inputs: dict[str, InputSpec] = {}
    if isinstance(sections, Mapping):
        for category in InputCategory:
            section = sections.get(category.value)
            if not isinstance(section, Mapping):
                continue
            for name, raw in section.items():
                if isinstance(name, str) and name not in inputs:
                    inputs[name] = parse_input_spec(name, category, raw)
    outputs = _list(definition.get("output"))
    return NodeSpec(
        class_type=class_type,
        display_name=str(definition.get("display_name") or class_type),
        inputs=MappingProxyType(inputs),
        outputs=tuple(_io_type(output) for output in outputs),
        output_is_list=_output_is_list(definition.get("output_is_list"), len(outputs)),
        output_names=tuple(str(name) for name in _list(definition.get("output_name"))),
        output_node=definition.get("output_node") is True,
    )


def parse_input_spec(name: str, category: InputCategory, raw: Any) -> InputSpec:
    """`[TYPE, {opts}]`, `[TYPE]`, `[[choice, ...], {opts}]`,
    `["COMBO", {"options": [...]}]`, or a bare type string (hidden inputs)."""
    head: Any = raw
    config: Mapping[str, Any] = {}
    if isinstance(raw, list | tuple):
        head = raw[0] if raw else ANY_TYPE
        if len(raw) > 1 and isinstance(raw[1], Mapping):
            config = raw[1]
    config = MappingProxyType(dict(config))
    if isinstance(head, list | tuple):
        choices = tuple(head)
        return InputSpec(name, category, choices, choices, config, raw)
    io_type = head if isinstance(head, str) and head else ANY_TYPE
    options: tuple[Any, ...] | None = None
    if io_type == COMBO and isinstance(config.get("options"), list | tuple):
        options = tuple(config["options"])
    return InputSpec(name, category, io_type, options, config, raw)


def _spec_tail(raw: Any) -> list[Any]:
    return list(raw[1:]) if isinstance(raw, list | tuple) else []


def _io_type(output: Any) -> IoType:
    if isinstance(output, list | tuple):
        return tuple(output)
    return output if isinstance(output, str) else ANY_TYPE


def _output_is_list(raw: Any, count: int) -> tuple[bool, ...]:
    flags = [value is True for value in _list(raw)][:count]
    return tuple(flags + [False] * (count - len(flags)))


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []
