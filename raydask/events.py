"""What happened to each task, for ``progress`` and the dashboard.

The client writes here on submit (key, prefix, dependencies) and when a task's
receipt arrives (where and when it ran, result type and size); readers take
consistent snapshots.  A monotonically increasing ``cursor`` lets the dashboard
ask only for what changed since its last look.  Nothing here talks to Ray.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

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


class EventLog:
    """Thread-safe record of every key the client submitted, with a change cursor."""

    def __init__(self, max_tasks: int = 100_000):
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskEvent] = {}
        self._dependents: dict[str, list[str]] = {}
        self._seq = 0
        self.max_tasks = max_tasks
        self.started = time.time()

    @property
    def cursor(self) -> int:
        return self._seq

    def _touch(self, ev: TaskEvent) -> None:
        self._seq += 1
        ev.seq = self._seq

    def submitted(self, key: str, deps: tuple, priority: int = 0) -> None:
        with self._lock:
            if key in self._tasks:
                return
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
            if len(self._tasks) > self.max_tasks:
                self._evict()

    def finished(self, key: str, record: TaskRecord | None, error: BaseException | None = None,
                 state: str | None = None) -> None:
        with self._lock:
            ev = self._tasks.get(key)
            if ev is None:
                return
            ev.record = record
            if state is not None:
                ev.state = state
            elif error is not None:
                ev.state, ev.error = "erred", f"{type(error).__name__}: {error}"
            else:
                ev.state = "memory"
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
        with self._lock:
            ev = self._tasks.get(key)
            if ev is not None and ev.state in ("memory", "waiting", "processing"):
                ev.state = "released"
                self._touch(ev)

    def _evict(self) -> None:
        # forget the oldest released/finished keys first
        for key in [k for k, e in self._tasks.items() if e.state == "released"][: len(self._tasks) - self.max_tasks]:
            del self._tasks[key]

    def snapshot(self, since: int = 0) -> tuple[int, list[TaskEvent]]:
        """``(cursor, events changed after `since`)``, oldest change first."""
        with self._lock:
            if since <= 0:
                events = list(self._tasks.values())
            else:
                events = [e for e in self._tasks.values() if e.seq > since]
            return self._seq, sorted(events, key=lambda e: e.seq) if since > 0 else events
