"""The record of a task that ran, as its receipt reports it (a leaf: nothing imported)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TaskRecord"]


@dataclass(slots=True)
class TaskRecord:
    """Where and when a task ran and what it returned (:mod:`raydask.receipts`).

    The dashboard's task stream, ``Future.type``, ``nbytes`` and ``who_has`` read
    it, so a task's value never travels to the client unless the user asks for it.
    """

    type: str
    nbytes: int
    start: float
    stop: float
    node_id: str
    pid: int
