"""The receipt every task sends home next to its value (a leaf: nothing imported)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TaskRecord", "as_record"]


@dataclass(slots=True)
class TaskRecord:
    """Where and when a task ran and what it returned: its second return, a small tuple.

    Status questions and the dashboard's task stream are answered from it, so a
    task's value never travels to the client unless the user asks for it.
    """

    type: str
    nbytes: int
    start: float
    stop: float
    node_id: str
    pid: int


def as_record(value):
    """The :class:`TaskRecord` a receipt resolved to (receipts travel as plain tuples); None otherwise."""
    if isinstance(value, tuple):
        return TaskRecord(*value)
    return value if isinstance(value, TaskRecord) else None
