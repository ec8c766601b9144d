"""What happened to each task, for ``progress`` and the dashboard.

The client writes here on submit (key, prefix, dependencies) and when a task's
receipt arrives (where and when it ran, result type and size); readers take
consistent snapshots.  A monotonically increasing ``cursor`` lets the dashboard
ask only for what changed since its last look.  Nothing here talks to Ray.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .keys import key_split

__all__ = ["EventLog", "TaskEvent", "TaskRecord"]


@dataclass(slots=True)
class TaskRecord:
    """The receipt a task sends home next to its value (its second return)."""

    type: str
    nbytes: int
    start: float
    stop: float
    node_id: str
    pid: int


@dataclass(slots=True)
class TaskEvent:
    """Everything the dashboard knows about one key."""

    key: str
    prefix: str
    deps: tuple
    submitted: float
    state: str = "waiting"  # waiting / processing / memory / erred / released / cancelled
    priority: int = 0
    record: TaskRecord | None = None
    error: str | None = None
    seq: int = 0  # cursor value of the latest change
    waiting_on: int = 0  # dependencies not yet in memory
    created: int = 0  # cursor value when the key was first submitted (its edges are new then)
    dropped: bool = False  # the client let go of it before it finished (it still runs)


class EventLog:
    """Thread-safe record of every key the client submitted, with a change cursor."""

    def __init__(self, max_tasks: int = 100_000):
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskEvent] = {}
        self._dependents: dict[str, list[str]] = {}
        self._pending: dict[str, object] = {}  # key -> receipt handle, until finished
        self._seq = 0
        self.max_tasks = max_tasks
        self._evict_at = max_tasks
        self.started = time.time()

    @property
    def cursor(self) -> int:
        return self._seq

    def _touch(self, ev: TaskEvent) -> None:
        self._seq += 1
        ev.seq = self._seq

    def submitted(self, key: str, deps: tuple, priority: int = 0, receipt=None) -> None:
        """Record a new key.

        ``receipt`` is an opaque handle on the task's receipt (its Ray ref); the
        dashboard collects finished receipts in batches (:meth:`pending`), so
        submitting costs no per-task completion callback.
        """
        with self._lock:
            if key in self._tasks:
                return
            if receipt is not None:
                self._pending[key] = receipt
            ev = TaskEvent(key, key_split(key), deps, time.time(), priority=priority)
            for d in deps:
                dep = self._tasks.get(d)
                if dep is not None and dep.state in ("waiting", "processing"):
                    ev.waiting_on += 1
                    self._dependents.setdefault(d, []).append(key)
            ev.state = "waiting" if ev.waiting_on else "processing"
            self._tasks[key] = ev
            self._touch(ev)
            ev.created = ev.seq
            if len(self._tasks) > self._evict_at:
                self._evict()

    def finished(self, key: str, record: TaskRecord | None, error: BaseException | None = None,
                 state: str | None = None) -> None:
        if record is None and error is not None:
            # the task wrapper attaches where and when a task failed to its exception
            receipt = getattr(error, "_raydask_receipt", None)
            if isinstance(receipt, tuple) and len(receipt) == 6:
                record = TaskRecord(*receipt)
        with self._lock:
            self._pending.pop(key, None)
            ev = self._tasks.get(key)
            if ev is None or ev.record is not None or ev.state in ("erred", "cancelled"):
                return  # unknown, or already told (by the client and by a collector)
            ev.record = record
            if state is not None:
                ev.state = state
            elif error is not None:
                ev.state, ev.error = "erred", f"{type(error).__name__}: {error}"
            else:
                ev.state = "released" if ev.dropped else "memory"
            self._touch(ev)
            for other_key in self._dependents.pop(key, ()):
                # dependents whose inputs are now all done become runnable
                other = self._tasks.get(other_key)
                if other is not None and other.state == "waiting":
                    other.waiting_on -= 1
                    if other.waiting_on <= 0:
                        other.state = "processing"
                        self._touch(other)

    def released(self, key: str) -> None:
        """The client dropped its last future of ``key``.

        A task still waiting or running is not stopped by that (Ray runs it, and
        Dask computes it for its dependents): it stays waiting/processing and
        becomes "released" instead of "memory" when it finishes.
        """
        with self._lock:
            ev = self._tasks.get(key)
            if ev is None:
                return
            if ev.state == "memory":
                ev.state = "released"
                self._touch(ev)
            elif ev.state in ("waiting", "processing"):
                ev.dropped = True

    def _evict(self) -> None:
        """Forget the oldest released keys, down to 90 % of ``max_tasks``.

        Each eviction scans the whole log, so it frees a tenth at once and the
        next scan waits until the log grew by another tenth: scanning on every
        submit past the limit made a long-lived client's submits 100x slower.
        """
        excess = len(self._tasks) - self.max_tasks * 9 // 10
        for key in [k for k, e in self._tasks.items() if e.state == "released"][:excess]:
            del self._tasks[key]
            self._pending.pop(key, None)
        self._evict_at = max(self.max_tasks, len(self._tasks) + self.max_tasks // 10)

    def pending(self, limit: int | None = None) -> list[tuple[str, object]]:
        """``(key, receipt)`` of submitted tasks not known to have finished, oldest first."""
        with self._lock:
            items = iter(self._pending.items())
            if limit is None:
                return list(items)
            return [item for _, item in zip(range(limit), items)]

    def snapshot(self, since: int = 0) -> tuple[int, list[TaskEvent]]:
        """``(cursor, events changed after `since`)``, oldest change first."""
        with self._lock:
            if since <= 0:
                events = list(self._tasks.values())
            else:
                events = [e for e in self._tasks.values() if e.seq > since]
            return self._seq, sorted(events, key=lambda e: e.seq) if since > 0 else events
