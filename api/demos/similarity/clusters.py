"""Clusters: the items linked by reported pairs, as connected components (union-find). A woodcut used
in five books gives one cluster of five, even where only some of its ten pairs were verified."""
from __future__ import annotations

from collections.abc import Iterable


def connected_components(n: int, edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Components of two or more of the items 0..n-1, largest first, each sorted; ties by first item."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
