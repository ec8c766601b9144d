"""Where each task sits on the graph page: an incremental layered layout.

The same rule as Dask's ``distributed.diagnostics.graph_layout.GraphLayout``: a
task's column is one past its deepest dependency's column (0 without
dependencies); its row is the mean of its dependencies' rows, each weighted by
how many dependents that dependency has; a task without dependencies opens a new
row below every row used so far.  Positions are computed once, when a key is
first seen, and never move, so the picture grows instead of jumping around.

Two tasks that land on the same spot (``inc(x)`` and ``double(x)`` both one
column past ``x``) are nudged apart vertically, which Dask does not do.
"""

from __future__ import annotations

__all__ = ["GraphLayout", "prefix_layout"]


class GraphLayout:
    """Positions of keys, added one at a time, dependencies first."""

    def __init__(self):
        self.x: dict[str, int] = {}
        self.y: dict[str, float] = {}
        self._dependents: dict[str, int] = {}
        self._taken: set[tuple[int, float]] = set()
        self._next_row = 0.0

    def __len__(self):
        return len(self.x)

    def __contains__(self, key):
        return key in self.x

    def add(self, key: str, deps=()) -> tuple[int, float]:
        """Place ``key`` (once); dependencies not placed yet are ignored."""
        if key in self.x:
            return self.x[key], self.y[key]
        placed = [d for d in deps if d in self.x]
        if placed:
            weights = [self._dependents.get(d, 0) + 1 for d in placed]
            x = max(self.x[d] for d in placed) + 1
            y = sum(self.y[d] * w for d, w in zip(placed, weights)) / sum(weights)
            for d in placed:
                self._dependents[d] = self._dependents.get(d, 0) + 1
        else:
            x, y = 0, self._next_row
        y = self._free_spot(x, y)
        self.x[key], self.y[key] = x, y
        self._taken.add((x, round(y, 6)))
        self._next_row = max(self._next_row, y + 1)
        return x, y

    def forget(self, key) -> None:
        """Drop ``key``'s position (the event log forgot it); its spot stays taken."""
        self.x.pop(key, None)
        self.y.pop(key, None)
        self._dependents.pop(key, None)

    def _free_spot(self, x, y):
        step = 0.5
        for _ in range(8):
            if (x, round(y, 6)) not in self._taken:
                return y
            y += step
            step /= 2
        return y


def prefix_layout(prefix_deps: dict[str, set]) -> dict[str, tuple[int, float]]:
    """Columns and rows for a graph of key prefixes (the view of very large graphs).

    ``prefix_deps`` maps each prefix to the prefixes it depends on; cycles
    (``add`` depending on ``add`` in a tree reduction) are ignored.
    """
    layout = GraphLayout()
    pending = list(prefix_deps)
    for _ in range(len(pending) + 1):
        if not pending:
            break
        later = []
        for p in pending:
            deps = [d for d in prefix_deps[p] if d != p]
            if all(d in layout or d not in prefix_deps for d in deps):
                layout.add(p, deps)
            else:
                later.append(p)
        if len(later) == len(pending):  # a cycle between prefixes: place the rest as they come
            for p in later:
                layout.add(p, [d for d in prefix_deps[p] if d != p])
            later = []
        pending = later
    return {p: (layout.x[p], layout.y[p]) for p in prefix_deps}
