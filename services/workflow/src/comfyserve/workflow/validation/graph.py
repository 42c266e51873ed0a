"""The graph walk: which nodes a node links to, what an output depends on, and
the cycles no topological order can run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["Graph", "closure", "cycles", "is_link", "link_targets"]

Graph = Mapping[str, Mapping[str, Any]]


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def link_targets(graph: Graph, node: Mapping[str, Any]) -> list[str]:
    """Nodes this node links to, through any input, declared or not."""
    return [
        value[0]
        for value in node["inputs"].values()
        if is_link(value) and value[0] in graph
    ]


def closure(root: str, upstream: Callable[[str], Iterable[str]]) -> list[str]:
    """`root` and every node it depends on."""
    seen = {root}
    order = [root]
    stack = [root]
    while stack:
        for target in upstream(stack.pop()):
            if target not in seen:
                seen.add(target)
                order.append(target)
                stack.append(target)
    return order


def cycles(nodes: list[str], upstream: Mapping[str, list[str]]) -> list[list[str]]:
    """Node sets that form a cycle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    position = {node_id: i for i, node_id in enumerate(nodes)}

    def enter(node_id: str) -> None:
        index[node_id] = low[node_id] = len(index)
        stack.append(node_id)
        on_stack.add(node_id)

    for root in nodes:
        if root in index:
            continue
        enter(root)
        work = [(root, iter(upstream[root]))]
        while work:
            node_id, targets = work[-1]
            descended = False
            for target in targets:
                if target not in index:
                    enter(target)
                    work.append((target, iter(upstream[target])))
                    descended = True
                    break
                if target in on_stack:
                    low[node_id] = min(low[node_id], index[target])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node_id])
            if low[node_id] != index[node_id]:
                continue
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node_id:
                    break
            if len(component) > 1 or node_id in upstream[node_id]:
                found.append(sorted(component, key=position.__getitem__))
    return sorted(found, key=lambda component: position[component[0]])
