"""Task priorities on Ray, which has none (ray-project/ray#52865): deferred submission.

Dask starts runnable tasks in order of higher ``priority=`` first, then
submission order (with ``fifo_timeout``: later batches of submissions come
after earlier ones).  Ray starts tasks in the order it can schedule them, so
once a client has seen a priority it *holds* its tasks and hands each to Ray
only when the :class:`Gate` releases it::

    submit(priority=p) ─> FutureState(held): a Future at once, no Ray task yet ("queued")
          │
          ▼
    waiting ── every dependency the gate holds or released is done ──> ready heap
                                                                       (-priority, generation, order)
          ┌────────────────────────────────────────────────────────────────┘
          ▼  while the tasks in flight fit in the window (see below)
    released: packed and submitted to Ray (the same direct path as any task);
          │   state.dispatched(ref) wakes result(), wait(), pickling...
          │   the raydask-gate thread waits on the oldest released tasks, a batch
          │   of endings at a time, and settles the states somebody waits on
          ▼
    ended: the slot frees, dependents may become ready, release more

A held task is only a Python object: cancelling it never touches Ray, and a
high-priority task that arrives later is released before low-priority ones
still held.  Priority inheritance: a held dependency of a task takes that
task's priority when it is higher.  Priority decides *starting*; nothing is
pre-empted.

**The window.**  Dask keeps ``worker-saturation`` (1.1) tasks per thread in
flight; raydask keeps one per CPU (per unit of each resource, from
``ray.cluster_resources()``, re-read at most once a second, so nodes that come
and go count).  A task released beyond the CPUs would wait in Ray's queue, and
Ray hands a finished task's worker lease straight to the next queued task of
the same function and owner: while a client keeps one queued, its leases never
come free, and another client's task of any priority waits for its whole
backlog (measured on 2 loaded CPUs: 37-58 of the other's sixty 0.2 s tasks
first with window 3, 1-2 with window 2).

The window widens for short tasks.  A released task needs a round trip ``r``
(the gate thread's wait, dispatch, Ray's lease; :data:`ROUND_TRIP`) before the
next one starts in its slot, so with tasks of duration ``d`` (a moving average
of the records' run times, :mod:`raydask.receipts`) the window is
``floor(CPUs x (1 + r/d))``, at most 64 x CPUs.  Long tasks (``d >> r``) get
one per CPU and start strictly by priority; no-op tasks are not throttled to
two in flight on two CPUs.  ``r`` is a constant on purpose: measured from
dispatch to start it would include the wait in Ray's queue, which grows with
the window, and widen it without end.

Until the first ``priority=`` (any value, 0 too) nothing here runs: the default
path pays nothing.

Differences from dask.distributed:
    Tasks submitted before the first priority are neither held nor counted.
    The window is per client: two clients on one cluster each keep their own
    window in flight, so a high-priority task of one waits for a task of the
    other to end, not for its backlog (README "Priorities").  A seceded task
    does not take its slot back when its children are done (Dask's ``rejoin``
    waits for a thread): Ray gives it a CPU as soon as one is free.

**Tasks that wait on their children.**  A task that submits tasks and blocks
on their results gives its CPU back to Ray, as Dask's ``secede`` gives its
thread back.  It tells the clients through the coordination actor when it
calls ``get_client``, ``worker_client`` or ``secede``
(:func:`raydask.messages.seceded`); the client that holds it then frees its
slot (:meth:`Gate.seceded`), so a window full of parents does not stall the
tasks held behind them.  When the gate starts, its client makes the actor, so
those reports have somewhere to go.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import math
import threading
import time

import ray

from .errors import CancelledError
from .future import Status, notify
from .raycompat import outcomes
from .receipts import STORE, task_id_of

__all__ = ["Gate"]

logger = logging.getLogger("raydask")

#: The window never exceeds this many tasks per CPU, however short the tasks.
MAX_WIDENING = 64
#: Seconds from a task's end to the next task starting in its slot through the gate
#: (the gate thread's wait, submit, Ray's lease): a few ms on 2 CPUs here.
ROUND_TRIP = 0.003
#: Longest single ``ray.wait`` of the gate's thread: how soon it sees tasks released meanwhile.
TICK = 0.05
#: How many of the oldest released tasks the gate's thread waits on (see ``Gate._watch``).
WATCHED = 16
#: Seconds between two records the gate's thread reads to learn how long tasks take.
SAMPLE = 0.01
#: Weight of the newest sample in the moving average of task durations.
ALPHA = 0.2


class _Held(enum.Enum):
    WAITING = "waiting"  # a dependency the gate tracks has not ended
    READY = "ready"  # in the heap
    RELEASED = "released"  # a Ray task now; counted in flight until it ends
    SECEDED = "seceded"  # released, and waits on its children: no longer counted in flight
    DONE = "done"


class _Entry:
    __slots__ = ("state", "dispatch", "priority", "generation", "seq", "demand", "deps_left",
                 "parents", "dependents", "held", "heap_key")

    def __init__(self, state, dispatch, priority, generation, seq, demand):
        self.state = state
        self.dispatch = dispatch  # () -> ref: packs and submits the task
        self.priority = priority
        self.generation = generation
        self.seq = seq
        self.demand = demand  # {"CPU": 1.0, ...}: what it holds while in flight
        self.deps_left = 0
        self.parents: list[_Entry] = []  # tracked dependencies, for priority inheritance
        self.dependents: list[_Entry] = []
        self.held = _Held.WAITING
        self.heap_key = None

    def key(self):
        return (-self.priority, self.generation, self.seq)


class Gate:
    """Holds a client's tasks and hands them to Ray by priority, a window at a time.

    Args:
        settler: the client's :class:`~raydask.future.Settler`, which runs the
            completion callbacks of futures somebody watches.

    A named thread, ``raydask-gate``, learns which released tasks ended and
    releases more; :meth:`close` joins it.
    """

    def __init__(self, settler):
        self._settler = settler
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._pushes = itertools.count()  # heap tie-breaker: entries themselves do not compare
        self._entries: dict[int, _Entry] = {}  # id(state) -> entry, until it ended
        self._ready: list = []
        self._inflight: dict[str, float] = {}
        self._total: dict[str, float] = {"CPU": 1.0}
        self._checked = 0.0
        self._generation = 0
        self._last_submit = 0.0
        self._duration = None  # moving average of task durations (s)
        self._closed = False
        self._running: dict = {}  # value ref -> released entry, until Ray's task ended
        self._wake = threading.Condition(self._lock)
        self._refresh(time.monotonic())
        self._thread = threading.Thread(target=self._watch, name="raydask-gate", daemon=True)
        self._thread.start()

    # -- holding ------------------------------------------------------------------------
    def hold(self, state, dispatch, priority, deps, demand, fifo_timeout=0.1) -> None:
        """Hold ``state``'s task until its tracked dependencies ended and it fits the window.

        Args:
            state: the task's held :class:`~raydask.future.FutureState`.
            dispatch: called (outside any lock) to make it a Ray task; returns its refs.
            deps: the dependencies' states.
            demand: the resources it holds while running (``{"CPU": 1.0}``).
        """
        now = time.monotonic()
        with self._lock:
            if fifo_timeout is not None and now - self._last_submit > fifo_timeout:
                self._generation += 1
            self._last_submit = now
            entry = _Entry(state, dispatch, priority or 0, self._generation, next(self._seq), demand)
            self._entries[id(state)] = entry
            for dep in deps:
                parent = self._entries.get(id(dep))
                if parent is None or parent.held is _Held.DONE:
                    continue  # ended, or not the gate's: Ray resolves it
                entry.deps_left += 1
                entry.parents.append(parent)
                parent.dependents.append(entry)
                self._inherit(parent, entry.key())
            if entry.deps_left == 0:
                self._push(entry)
        self.pump()

    def _inherit(self, entry, key) -> None:
        """Give a held dependency (and its own held dependencies) a better priority."""
        stack = [entry]
        while stack:
            e = stack.pop()
            if e.held not in (_Held.WAITING, _Held.READY) or e.key() <= key:
                continue
            e.priority, e.generation, e.seq = -key[0], key[1], key[2]
            if e.held is _Held.READY:
                self._push(e)  # the old heap item becomes stale
            stack.extend(e.parents)

    def _push(self, entry) -> None:
        entry.held = _Held.READY
        entry.heap_key = entry.key()
        heapq.heappush(self._ready, (entry.heap_key, next(self._pushes), entry))

    # -- the window ---------------------------------------------------------------------
    def _refresh(self, now) -> None:
        """Re-read the cluster's resources (nodes come and go) at most once a second."""
        self._checked = now
        try:
            total = ray.cluster_resources()
        except Exception:  # noqa: BLE001 - Ray is going away; keep the last values
            return
        self._total = {k: v for k, v in total.items() if not k.startswith("node:")}

    def _widening(self) -> float:
        """``1 + round trip / duration``: how many more tasks short ones need in flight."""
        d = self._duration
        if d is None:
            return 1.0  # nothing measured yet: one task per CPU
        return min(MAX_WIDENING, 1.0 + ROUND_TRIP / max(d, 1e-6))

    def _limit(self, resource, widening) -> float:
        """How much of ``resource`` may be in flight: the cluster's, widened for short tasks."""
        return self._total.get(resource, 0.0) * widening + 1e-9  # 0.1 + 0.2 fits in 0.3

    def capacity(self, resource="CPU") -> int:
        """How many tasks asking for one unit of ``resource`` may be in flight now."""
        return math.floor(self._limit(resource, self._widening()))

    def _fits(self, demand) -> bool:
        widening = self._widening()
        for name, amount in demand.items():
            used = self._inflight.get(name, 0.0)
            if used <= 0:
                continue  # one at a time always goes (Ray may still make it wait)
            if used + amount > self._limit(name, widening):
                return False
        return True

    def pump(self) -> None:
        """Release ready tasks while they fit the window (any thread; dispatches outside the lock)."""
        while True:
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                if now - self._checked > 1.0:
                    self._refresh(now)
                entry = None
                while self._ready:
                    key, _, top = self._ready[0]
                    if top.held is not _Held.READY or key != top.heap_key:
                        heapq.heappop(self._ready)  # stale: released, cancelled or re-prioritised
                        continue
                    if self._fits(top.demand):
                        heapq.heappop(self._ready)
                        entry = top
                    break
                if entry is None:
                    return
                entry.held = _Held.RELEASED
                for name, amount in entry.demand.items():
                    self._inflight[name] = self._inflight.get(name, 0.0) + amount
            self._release(entry)

    def _release(self, entry) -> None:
        state = entry.state
        try:
            ref = entry.dispatch()
        except CancelledError as exc:  # an input was cancelled while this one was held
            notify(state.settle(Status.CANCELLED, exception=exc), state)
            self._ended(entry)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. an argument Ray cannot serialize
            notify(state.settle(Status.ERROR, exception=exc), state)
            self._ended(entry)
            return
        entry.dispatch = None  # let the arguments go
        state.dispatched(ref, self._settler)
        # the slot frees when Ray's task ends, not when its future settles (a cancelled
        # task holds its CPU until Ray stopped it): the watcher thread waits on the refs
        with self._wake:
            self._running[ref] = entry
            if len(self._running) == 1:
                self._wake.notify()

    def _watch(self) -> None:
        """The ``raydask-gate`` thread: learn which released tasks ended, and free their slots.

        It spends the driver's CPU per task, so it does as little as it can.
        Its CPU per no-op task on 2 CPUs (2026-12-01): 532 us with one wait over
        every released task and a read of every task's record, 255-286 us this way,
        about 195 us of it Ray's submit:

        - A ``ray.wait`` costs CPU per ref it is given, most for refs still
          pending (measured: 180 us for 140 pending refs, 11 us for 16), and the
          window holds up to 64 tasks per CPU.  So the thread waits on the
          ``WATCHED`` oldest released tasks only (Ray starts a client's tasks
          in about the order they came) and every ``TICK`` s sweeps everything
          released, so a task that ended out of order frees its slot within ``TICK``.
        - It waits for a batch of endings when enough tasks are queued in Ray to
          keep its CPUs busy meanwhile (:meth:`_batch`), and releases as many.
        - It settles only the tasks somebody waits on (``wait`` and
          ``as_completed`` of held futures): a slot frees when Ray's task ended,
          whatever its outcome, and any other task's state settles as on the
          default path (when read, gathered, watched or collected for the
          dashboard).  One task's record every ``SAMPLE`` s (it arrives a tenth
          of a second or so after the task ended) feeds the moving average of
          task durations.
        """
        swept = sampled = time.monotonic()
        sample = None  # the state of an ended task whose record is awaited
        while True:
            with self._wake:
                while not self._running and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                oldest = list(itertools.islice(self._running, WATCHED))
                whole = len(self._running) <= WATCHED
                batch = self._batch(len(oldest))
            ready, _ = ray.wait(oldest, num_returns=batch, timeout=TICK, fetch_local=False)
            now = time.monotonic()
            if not whole and (not ready or now - swept >= TICK):
                swept = now
                with self._wake:
                    everything = list(self._running)
                ready, _ = ray.wait(everything, num_returns=len(everything), timeout=0, fetch_local=False)
            if not ready:
                continue
            with self._wake:
                entries = [e for e in map(self._running.pop, ready, itertools.repeat(None)) if e is not None]
            self._settle_waited(entries)
            if sample is None and entries and (now - sampled >= SAMPLE or self._duration is None):
                sample, sampled = entries[0].state, now
            record = None if sample is None else _record_of(sample)
            if record is not None or now - sampled > 1.0:
                sample = None  # learnt, or its record is not coming
            for entry in entries:
                self._ended(entry, record, pump=False)
                record = None
            self.pump()

    @staticmethod
    def _settle_waited(entries) -> None:
        """Settle the ended tasks somebody waits on (``wait``, ``as_completed`` of held futures)."""
        waited = [e.state for e in entries if e.state.waited()]
        for state, error in zip(waited, outcomes([st.ref for st in waited])):
            notify(state.settle_from_outcome(error), state)

    def _batch(self, watched) -> int:
        """How many endings the gate's thread may wait for before it releases more.

        Half the tasks in flight beyond what the CPUs need (at most half of the
        ``watched``): those keep Ray's workers busy meanwhile.  For long tasks
        that is 1, so each ending releases the next task by priority at once.
        """
        needed = math.ceil(self._total.get("CPU", 1.0))
        spare = int(self._inflight.get("CPU", 0.0)) - needed
        return max(1, min(spare // 2, watched // 2))

    def _ended(self, entry, record=None, pump=True) -> None:
        """A released task's Ray task ended (or its dispatch failed): free its slot.

        ``record``: a task's record, if one arrived (a sample of how long tasks take).
        """
        with self._lock:
            if self._entries.pop(id(entry.state), None) is None and entry.held is _Held.DONE:
                return
            if entry.held is _Held.RELEASED:
                for name, amount in entry.demand.items():
                    self._inflight[name] = max(0.0, self._inflight.get(name, 0.0) - amount)
                if record is not None:
                    self._learn(record)
            entry.held = _Held.DONE
            self._unblock(entry)
        if pump:
            self.pump()

    def _learn(self, record) -> None:
        duration = max(record.stop - record.start, 0.0)
        if self._duration is None:
            self._duration = duration
        else:
            self._duration += ALPHA * (duration - self._duration)

    def _unblock(self, entry) -> None:
        for child in entry.dependents:
            child.deps_left -= 1
            if child.deps_left == 0 and child.held is _Held.WAITING:
                self._push(child)
        entry.dependents, entry.parents = [], []

    def seceded(self, task_id) -> None:
        """A released task waits on tasks it submitted: Ray gave its CPU back, so its slot frees.

        Args:
            task_id: the Ray task id (hex) a task reported (:func:`raydask.messages.seceded`);
                one of another client's tasks, or of a task no longer running, is ignored.
        """
        try:
            wanted = bytes.fromhex(task_id)
        except (TypeError, ValueError):
            logger.debug("a secede report with no task id: %r", task_id)
            return
        with self._lock:
            entry = next((e for ref, e in self._running.items()
                          if e.held is _Held.RELEASED and task_id_of(ref) == wanted), None)
            if entry is None:
                return
            entry.held = _Held.SECEDED
            for name, amount in entry.demand.items():
                self._inflight[name] = max(0.0, self._inflight.get(name, 0.0) - amount)
        self.pump()

    # -- control ------------------------------------------------------------------------
    def discard(self, state) -> bool:
        """Forget a held task that was cancelled; True if it was held (never a Ray task).

        A released task is Ray's: the caller cancels it there, and its slot frees
        when Ray's task ends.
        """
        with self._lock:
            entry = self._entries.get(id(state))
            if entry is None or entry.held not in (_Held.WAITING, _Held.READY):
                return False
            entry.held = _Held.DONE
            entry.dispatch = None
            del self._entries[id(state)]
            # its dependents stay waiting: the client cancels them too (Dask's rule),
            # and they must never be released with an input that has no ref
        return True

    def stats(self) -> dict:
        """How many tasks wait, are ready, run, or wait on their children; the CPUs in flight and the window."""
        with self._lock:
            held = [e.held for e in self._entries.values()]
            return {
                "waiting": held.count(_Held.WAITING),
                "ready": held.count(_Held.READY),
                "released": held.count(_Held.RELEASED),
                "seceded": held.count(_Held.SECEDED),
                "inflight_cpus": self._inflight.get("CPU", 0.0),
                "capacity": self.capacity("CPU"),
                "duration": self._duration,
            }

    def close(self) -> list:
        """Stop releasing; return the states still held (the caller cancels them)."""
        with self._lock:
            self._closed = True
            held = [e.state for e in self._entries.values() if e.held in (_Held.WAITING, _Held.READY)]
            self._entries.clear()
            self._ready.clear()
            self._wake.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=TICK + 5)
        return held


def _record_of(state):
    """The record of an ended task: on its state if the state claimed it (it settled), else in the store."""
    if state.record is not None:
        return state.record
    task_id = task_id_of(state.ref)
    return None if task_id is None else STORE.get(task_id)
