"""Choosing the executor pool a job is queued for: the first, in order of
preference, whose node catalog validates the graph."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from comfyserve.workflow.validation import NodeCatalog, ValidationResult, validate

__all__ = ["PoolChoice", "choose_pool"]


@dataclass(frozen=True, slots=True)
class PoolChoice:
    pool: str
    result: ValidationResult


def choose_pool(
    graph: Mapping[str, Any],
    catalogs: Mapping[str, NodeCatalog],
    live: Collection[str],
    allowlist: frozenset[str] | None,
) -> PoolChoice:
    """The first pool whose catalog runs the graph; else the preferred pool's
    errors, so the caller learns what is missing where it would run.

    Pools with live workers are preferred, then those scaled to zero; by name.
    """
    first: PoolChoice | None = None
    for pool, catalog in sorted(
        catalogs.items(), key=lambda item: (item[0] not in live, item[0])
    ):
        result = validate(graph, catalog, allowlist)
        if result.ok:
            return PoolChoice(pool, result)
        first = first or PoolChoice(pool, result)
    assert first is not None, "called with at least one pool"
    return first
