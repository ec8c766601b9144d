"""Learn which submitted tasks finished, in batches, for the dashboard.

Registering a completion callback per task costs the client measurable CPU
(each callback crosses from Ray's C++ thread into Python); the dashboard does
not need to know the instant a task ends, only by its next refresh.  So the
event log keeps each task's receipt ref, and :func:`collect` asks Ray which are
ready, with one ``ray.wait`` and one ``ray.get`` of the small receipts, when a
page polls or the publisher sends a batch.  Nobody watching costs nothing.
"""

from __future__ import annotations

import threading

import ray
import ray.exceptions

from ..errors import unwrap
from ..events import TaskRecord
from ..scheduling import outcomes

__all__ = ["collect"]

_lock = threading.Lock()  # one collection at a time per process: they would do the same work


def collect(events, limit: int = 20_000) -> int:
    """Record every finished task among the oldest ``limit`` pending ones; return how many."""
    with _lock:
        items = events.pending(limit)
        if not items:
            return 0
        refs = [ref for _, ref in items]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        if not ready:
            return 0
        key_of = {ref: key for key, ref in items}
        for ref, value in zip(ready, outcomes(ready)):
            _record(events, key_of[ref], value)
        return len(ready)


def _record(events, key, value) -> None:
    if isinstance(value, TaskRecord):
        events.finished(key, value)
    elif isinstance(value, tuple):  # receipts travel as plain tuples
        events.finished(key, TaskRecord(*value))
    elif isinstance(value, ray.exceptions.TaskCancelledError):
        events.finished(key, None, state="cancelled")
    elif isinstance(value, BaseException):
        events.finished(key, None, error=unwrap(value, key))
    else:
        events.finished(key, None)
