"""Learn which submitted tasks ended, in batches, for the dashboard.

Registering a completion callback per task costs the client measurable CPU
(each callback crosses from Ray's C++ thread into Python); the dashboard does
not need to know the instant a task ends, only by its next refresh.  So when a
page polls or the publisher sends a batch, :func:`collect` asks Ray which of the
event log's pending tasks are done, with one ``ray.wait`` and a local look at
the ended ones' metadata (errors), and settles their states (the tasks' one state: the
futures see the same outcome).  Nobody watching costs nothing.
"""

from __future__ import annotations

import threading

from ..scheduling import harvest

__all__ = ["collect"]

_lock = threading.Lock()  # one collection at a time per process: they would do the same work


def collect(events, limit: int = 20_000) -> int:
    """Settle every ended task among the oldest ``limit`` pending ones; return how many."""
    with _lock:
        states = events.pending()[:limit]
        return harvest({st.ref: st for st in states}, num_returns=len(states) or None, timeout=0)
