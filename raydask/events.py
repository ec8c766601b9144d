"""The dashboard's record of tasks: a listener on the tasks' one state, bounded.

The state of a task lives in its :class:`~raydask.future.FutureState`; the
:class:`EventLog` does not copy it.  It keeps, per key, either that live state
(while the client holds the key or the task still runs) or, once the client
released a task that ended, a small frozen :class:`TaskEvent` row.  Every
state change calls :meth:`EventLog.changed` (the state's ``listener``), which
only stamps the key with a new cursor value, so the dashboard can ask for what
changed since its last look.

Bounded: past ``max_tasks`` keys the oldest frozen rows are forgotten, a tenth
at once; live states are the client's own and stay.  A task whose futures were
dropped before it ended stays live until the client learns how it ended: it
asks Ray to tell it (``FutureState.watch``, from ``Client._release``), so the
state, its ref and the value in Ray's object store go soon after the task ran,
as they would in raw Ray; the client's sweep of such tasks when the log is
crowded remains as a backstop.

A finished task's record (where and when it ran) arrives a little after the
task ended (:mod:`raydask.receipts`) and is a change of its state too: the key
is stamped again, and a released task's row freezes only then.  Nothing here
talks to Ray.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from .future import FutureState, Status
from .keys import key_split
from .receipts import STORE, WAIT, task_id_of
from .records import TaskRecord

__all__ = ["EventLog", "TaskEvent", "TaskRecord"]


@dataclass(slots=True)
class TaskEvent:
    """What the dashboard reads about one key: a snapshot, never written back."""

    key: str
    prefix: str
    deps: tuple
    submitted: float
    state: str = "processing"  # queued / waiting / processing / memory / erred / released / cancelled
    priority: int = 0
    record: TaskRecord | None = None
    error: str | None = None
    seq: int = 0  # cursor value of the latest change
    created: int = 0  # cursor value when the key was first seen (its edges are new then)
    task_id: bytes | None = None  # the Ray task's id once it ended (for Ray's task events)
    scattered: bool = False  # data the client put into the object store, no task


class _Slot:
    __slots__ = ("obj", "seq", "created")

    def __init__(self, obj, seq):
        self.obj = obj  # a live FutureState, or a frozen TaskEvent
        self.seq = seq
        self.created = seq


class _Recorded:
    """Stands in for Ray refs in states made by :meth:`EventLog.submitted` (no Ray task)."""

    __slots__ = ()


_RECORDED = _Recorded()


def _error_text(exc) -> str | None:
    """The exception as Dask's worker reports it (``exception_text``): its ``repr``."""
    return None if exc is None else repr(exc)


def _task_id(state) -> bytes | None:
    """The Ray task id of an ended task (asked of its value's ref), else None."""
    ref = state.ref
    if state.record is None or state.scattered or ref is None or ref is _RECORDED:
        return None
    return task_id_of(ref)


def _awaits_record(state) -> bool:
    """A finished task whose record has not arrived yet (it will tell its listener)."""
    return (state.record is None and state.status is Status.FINISHED and not state.scattered
            and state.ref is not None and state.ref is not _RECORDED)


def view(state, slot) -> TaskEvent:
    """A :class:`TaskEvent` snapshot of a live state (what the dashboard reads)."""
    erred = state.status in (Status.ERROR, Status.LOST)
    return TaskEvent(
        state.key, key_split(state.key), state.deps, state.submitted, state.phase(), state.priority or 0,
        state.record, _error_text(state.exception) if erred else None,
        slot.seq, slot.created, _task_id(state),
        state.scattered,
    )


class EventLog:
    """Thread-safe index of the tasks a client submitted, with a change cursor.

    Args:
        max_tasks: how many keys to remember; past it the oldest released ones go.
    """

    def __init__(self, max_tasks: int = 10_000):
        if not isinstance(max_tasks, int) or isinstance(max_tasks, bool) or max_tasks < 1:
            raise ValueError(f"max_tasks must be a positive integer, got {max_tasks!r}")
        self._lock = threading.Lock()
        self._slots: dict = {}  # key -> _Slot, in the order keys were first seen
        self._dependents: dict = {}  # key -> keys waiting on it (while it is pending)
        self._forgotten: deque = deque(maxlen=100_000)  # (cursor, key) of evicted keys
        self._seq = 0
        self._released = 0  # frozen rows among the slots
        self.max_tasks = max_tasks
        self._evict_at = max_tasks
        self.crowded = False  # set when eviction found too few released keys to forget
        self.started = time.time()
        self._changed = self.changed

    @property
    def cursor(self) -> int:
        return self._seq

    def __len__(self) -> int:
        return len(self._slots)

    # -- listening ----------------------------------------------------------------------
    def add(self, state) -> None:
        """Start following ``state`` (a new key of the client): it tells us of its changes."""
        with self._lock:
            key = state.key
            if key in self._slots:
                return
            self._seq += 1
            self._slots[key] = _Slot(state, self._seq)
            for dep in state.dep_states:
                if dep.status is Status.PENDING and dep.key in self._slots:
                    self._dependents.setdefault(dep.key, []).append(key)
            state.listener = self._changed  # one bound method for every state (64 B each otherwise)
            self._maybe_evict()
        if state.status is not Status.PENDING and state.dropped:
            self.changed(state)

    def changed(self, state) -> None:
        """``state`` was dispatched, settled or dropped (called by the state, any thread)."""
        with self._lock:
            slot = self._slots.get(state.key)
            if slot is None or slot.obj is not state:
                return
            self._seq += 1
            slot.seq = self._seq
            if state.status is not Status.PENDING:
                for other in self._dependents.pop(state.key, ()):  # waiting -> processing, maybe
                    dep_slot = self._slots.get(other)
                    if dep_slot is not None:
                        self._seq += 1
                        dep_slot.seq = self._seq
                # nobody holds it and it ended: keep a small row only, once its record came
                # (the state tells us again then; until then the log keeps it)
                if state.dropped and not _awaits_record(state):
                    slot.obj = view(state, slot)
                    state.listener = None
                    self._released += 1
                    self._maybe_evict()

    def await_records(self, timeout: float = WAIT) -> bool:
        """Wait until the records of the tasks that ended so far arrived (True), or ``timeout`` s.

        What reads records as a whole (the task stream) calls it, so a task that
        ended a moment ago is in it with where and when it ran.
        """
        return STORE.settled(timeout)

    def _maybe_evict(self) -> None:
        """Evict when the log outgrew its next mark, or is over the cap with a tenth released.

        The second case matters when the log filled with live tasks (nothing to
        forget, so the mark moved up) and they are released later: without it the
        log would stay above the cap until the next submit crossed the mark.
        """
        n = len(self._slots)
        if n > self._evict_at or (n > self.max_tasks and self._released >= max(1, self.max_tasks // 10)):
            self._evict()

    def _evict(self) -> None:
        """Forget the oldest released keys, down to 90 % of ``max_tasks`` (hold the lock).

        It frees a tenth at once, and the next eviction waits until the log grew
        by another tenth: a scan on every submit past the limit made a long-lived
        client's submits 100x slower.
        """
        excess = len(self._slots) - self.max_tasks * 9 // 10
        if excess > 0 and self._released:
            gone = [k for k, s in self._slots.items() if type(s.obj) is TaskEvent][:excess]
            for key in gone:
                del self._slots[key]
                self._forgotten.append((self._seq, key))
            self._released -= len(gone)
        self._evict_at = max(self.max_tasks, len(self._slots) + self.max_tasks // 10)
        # mostly live states of dropped tasks nobody saw end: the client should look (sweep)
        self.crowded = len(self._slots) - self._released > self.max_tasks * 9 // 10

    # -- reading ------------------------------------------------------------------------
    def pending(self) -> list:
        """Live states handed to Ray and not known to have ended, oldest first."""
        with self._lock:
            return [s.obj for s in self._slots.values()
                    if type(s.obj) is not TaskEvent and s.obj.status is Status.PENDING
                    and s.obj.ref is not None and s.obj.ref is not _RECORDED]

    def dropped_pending(self) -> list:
        """Pending states the client already let go of (only the log still follows them)."""
        with self._lock:
            return [s.obj for s in self._slots.values()
                    if type(s.obj) is not TaskEvent and s.obj.dropped and s.obj.status is Status.PENDING
                    and s.obj.ref is not None and s.obj.ref is not _RECORDED]

    def snapshot(self, since: int = 0) -> tuple[int, list[TaskEvent]]:
        """``(cursor, events changed after `since`)``; oldest change first when ``since`` > 0."""
        with self._lock:
            slots = list(self._slots.values()) if since <= 0 else [s for s in self._slots.values() if s.seq > since]
            cursor = self._seq
            events = [s.obj if type(s.obj) is TaskEvent else view(s.obj, s) for s in slots]
        for ev, s in zip(events, slots):
            ev.seq = s.seq  # a frozen row carries the cursor of its latest change
        if since > 0:
            events.sort(key=lambda e: e.seq)
        return cursor, events

    def touch(self, key) -> None:
        """Show ``key`` to readers again (its state did not change; a reader learned more).

        The dashboard calls it when Ray's task events arrive for a task it already
        showed, so that every page, whatever its cursor, is sent the task again.
        """
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None:
                self._seq += 1
                slot.seq = self._seq

    def forgotten_since(self, since: int) -> list:
        """Keys evicted after cursor ``since`` (a reader drops its copies of them)."""
        with self._lock:
            return [key for seq, key in self._forgotten if seq >= since]

    # -- recording without a client (tests, replays) -------------------------------------
    def submitted(self, key, deps=(), priority=0) -> None:
        """Record a key as if a client had submitted it to Ray (no Ray involved)."""
        with self._lock:
            dep_states = tuple(s.obj for d in deps if (s := self._slots.get(d)) is not None
                               and type(s.obj) is not TaskEvent)
        self.add(FutureState(key, _RECORDED, True, tuple(deps), dep_states, priority))

    def _live(self, key):
        with self._lock:
            slot = self._slots.get(key)
        return None if slot is None or type(slot.obj) is TaskEvent else slot.obj

    def finished(self, key, record=None, error=None, state=None) -> None:
        """Record how a recorded key ended (``state="cancelled"`` for a cancellation)."""
        st = self._live(key)
        if st is None:
            return
        if state == "cancelled":
            st.cancel()
        elif error is not None:
            st.settle(Status.ERROR, record, error)
        else:
            st.settle(Status.FINISHED, record)

    def released(self, key) -> None:
        """Record that the client let go of a recorded key."""
        st = self._live(key)
        if st is not None:
            st.drop()
