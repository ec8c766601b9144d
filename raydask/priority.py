"""Task priorities on Ray, which has none (ray-project/ray#52865): a client-side gate.

Dask starts runnable tasks in order of higher ``priority=`` first, then
submission order (with ``fifo_timeout``: later batches of submissions come
after earlier ones).  Ray starts tasks in the order it can schedule them, so
raydask decides *when* Ray may start each task.  Once the client has seen a
priority, every task it submits goes through the :class:`Gate`::

    submit(priority=p) ─> Ray task submitted at once; its first argument is a *ticket*
          │               (a call on the gate's actor that returns only when released),
          │               so the Future has its refs and everything else works unchanged
          ▼
    waiting ── every dependency held by the gate is done ──> ready heap
                                                             (-priority, generation, order)
          ┌──────────────────────────────────────────────────────┘
          ▼  while CPUs in flight < 1.1 x the cluster's CPUs (re-read ≤ 1/s), rounded up
    released: the ticket resolves and Ray schedules the task
          │  completion callback (raydask-settler thread)
          ▼
    done: CPUs in flight go down, dependents may become ready, release more

A task that waits in the gate holds no Ray slot, so a high-priority task that
arrives later is released before low-priority ones still waiting.  Priority
inheritance: a held dependency of a task takes that task's priority when it is
higher, so high-priority work never waits behind unrelated low-priority work.
Priority is a tie-breaker for *starting*, never pre-emption.

Until the first ``priority=`` (any value, 0 too) nothing here runs: the default
path pays nothing.

Differences from dask.distributed:
    Tasks submitted before the first priority are neither held nor counted
    (Ray's view of free CPUs lags by about a second, too late to be useful
    here), so right after the gate starts they compete with released tasks.
    The gate counts CPUs only: a task asking for a custom resource counts as
    its ``num_cpus``, and one that cannot start for another reason still
    holds its slot in the count.
"""

from __future__ import annotations

import enum
import heapq
import math
import itertools
import threading
import time

import ray

__all__ = ["Gate"]

#: In-flight CPUs per cluster CPU (``distributed.scheduler.worker-saturation``).
SATURATION = 1.1


class _Held(enum.Enum):
    WAITING = "waiting"  # a dependency held by the gate has not finished
    READY = "ready"  # in the heap
    RELEASED = "released"  # Ray may run it; counted in flight
    DONE = "done"


class _Entry:
    __slots__ = ("state", "ticket", "priority", "generation", "seq", "cpus", "deps_left",
                 "parents", "dependents", "held", "heap_key")

    def __init__(self, state, ticket, priority, generation, seq, cpus):
        self.state = state
        self.ticket = ticket
        self.priority = priority
        self.generation = generation
        self.seq = seq
        self.cpus = cpus
        self.deps_left = 0
        self.parents: list[_Entry] = []  # held dependencies, for priority inheritance
        self.dependents: list[_Entry] = []
        self.held = _Held.WAITING
        self.heap_key = None

    def key(self):
        return (-self.priority, self.generation, self.seq)


# One event loop for all methods: asyncio.Event is not thread-safe, so no concurrency
# groups (Ray gives each group its own loop).  The limit only has to exceed the number
# of held tasks, so that ``release`` always finds a free slot.
@ray.remote(num_cpus=0, max_concurrency=1_000_000)
class _Tickets:
    """Holds one pending call per held task; ``release`` lets them return."""

    def __init__(self):
        import asyncio

        self._asyncio = asyncio
        self._events: dict = {}
        self._values: dict = {}

    async def wait(self, ticket):
        if ticket not in self._values:
            event = self._events.setdefault(ticket, self._asyncio.Event())
            await event.wait()
        self._events.pop(ticket, None)
        return self._values.pop(ticket)

    async def release(self, tickets, go=True):
        for t in tickets:
            self._values[t] = go
            event = self._events.get(t)
            if event is not None:
                event.set()


class Gate:
    """Releases held tasks to Ray by priority while the cluster's CPUs are busy.

    Args:
        settler: the client's :class:`~raydask.future.Settler`, which runs the
            completion callbacks that free capacity.
    """

    def __init__(self, settler):
        self._settler = settler
        self._lock = threading.Lock()
        self._tickets = _Tickets.options(name=None, lifetime=None).remote()
        self._seq = itertools.count()
        self._entries: dict[int, _Entry] = {}  # id(state) -> entry, until done
        self._ready: list = []
        self._inflight = 0.0
        self._capacity = 1.0
        self._checked = 0.0
        self._generation = 0
        self._last_submit = 0.0
        self._refresh(time.monotonic())

    # -- submission -------------------------------------------------------------------
    def ticket(self):
        """``(ticket id, ref)``: the ref becomes the gated task's first argument."""
        t = next(self._seq)
        return t, self._tickets.wait.remote(t)

    def add(self, state, ticket, priority, deps, cpus=1.0, fifo_timeout=0.1) -> None:
        """Hold ``state``'s task until its held dependencies are done and a slot frees."""
        now = time.monotonic()
        with self._lock:
            if fifo_timeout is not None and now - self._last_submit > fifo_timeout:
                self._generation += 1
            self._last_submit = now
            entry = _Entry(state, ticket, priority or 0, self._generation, ticket, float(cpus))
            self._entries[id(state)] = entry
            for dep in deps:
                parent = self._entries.get(id(dep))
                if parent is None or parent.held is _Held.DONE:
                    continue  # finished, or not the gate's: Ray resolves it
                entry.deps_left += 1
                entry.parents.append(parent)
                parent.dependents.append(entry)
                self._inherit(parent, entry.key())
            if entry.deps_left == 0:
                self._push(entry)
        if state.add_waiter(self._on_done):
            state.watch(self._settler)
        else:  # settled already (cancelled between submit and here)
            self._on_done(state)
        self._pump()

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
        heapq.heappush(self._ready, (entry.heap_key, id(entry), entry))

    def admit(self, deps, cpus=1.0) -> bool:
        """Reserve a slot for a task that may start at once, skipping the ticket.

        True when nothing waits in the gate ahead of it, none of its dependencies is
        held, and a slot is free: then Dask would start it now too, and a ticket
        would only cost two actor calls.  The caller submits it directly and calls
        :meth:`track`.
        """
        with self._lock:
            now = time.monotonic()
            if now - self._checked > 1.0:
                self._refresh(now)
            while self._ready:
                key, _, entry = self._ready[0]
                if entry.held is _Held.READY and key == entry.heap_key:
                    return False  # somebody is waiting: keep the order
                heapq.heappop(self._ready)
            for dep in deps:
                parent = self._entries.get(id(dep))
                if parent is not None and parent.held is not _Held.DONE:
                    return False
            if self._inflight > 0 and self._inflight + cpus > self._capacity:
                return False
            self._inflight += cpus
            return True

    def track(self, state, priority, cpus=1.0) -> None:
        """Count an admitted task in flight until it settles."""
        with self._lock:
            entry = _Entry(state, None, priority or 0, self._generation, next(self._seq), float(cpus))
            entry.held = _Held.RELEASED
            self._entries[id(state)] = entry
        if state.add_waiter(self._on_done):
            state.watch(self._settler)
        else:
            self._on_done(state)

    # -- release ----------------------------------------------------------------------
    def _refresh(self, now) -> None:
        """Re-read the cluster's CPUs (it grows and shrinks) at most once a second."""
        self._checked = now
        try:
            total = ray.cluster_resources().get("CPU", 1.0)
        except Exception:  # noqa: BLE001 - Ray is going away; keep the last value
            return
        # Dask's worker-saturation (1.1): a few more tasks than CPUs, so a slot that
        # frees finds the next task already in Ray instead of waiting a round trip
        # (completion callback, ticket release, Ray scheduling) for it.
        self._capacity = math.ceil(max(total, 1.0) * SATURATION)

    def _pump(self) -> None:
        go = []
        with self._lock:
            now = time.monotonic()
            if now - self._checked > 1.0:
                self._refresh(now)
            busy = self._inflight
            while self._ready:
                key, _, entry = self._ready[0]
                if entry.held is not _Held.READY or key != entry.heap_key:
                    heapq.heappop(self._ready)  # stale: released, cancelled or re-prioritised
                    continue
                if self._inflight > 0 and busy + entry.cpus > self._capacity:
                    break
                heapq.heappop(self._ready)
                entry.held = _Held.RELEASED
                self._inflight += entry.cpus
                busy += entry.cpus
                go.append(entry.ticket)
        if go:
            self._tickets.release.remote(go, True)

    def _on_done(self, state) -> None:
        """A gated task settled (finished, failed or cancelled): free its slot."""
        with self._lock:
            entry = self._entries.pop(id(state), None)
            if entry is None:
                return
            if entry.held is _Held.RELEASED:
                self._inflight = max(0.0, self._inflight - entry.cpus)
            entry.held = _Held.DONE
            self._unblock(entry)
        self._pump()

    def _unblock(self, entry) -> None:
        for child in entry.dependents:
            child.deps_left -= 1
            if child.deps_left == 0 and child.held is _Held.WAITING:
                self._push(child)
        entry.dependents, entry.parents = [], []

    # -- control ----------------------------------------------------------------------
    def discard(self, state) -> bool:
        """Let a held task end at once without running (it was cancelled).

        Returns:
            True if the gate knows the task: then the caller must not ``ray.cancel``
            it, because its ticket may still be pending in Ray (RAY-NOTES: cancelling
            a task with a pending small argument can crash the driver).  A task
            already released runs to its end; its result is dropped.
        """
        with self._lock:
            entry = self._entries.get(id(state))
            if entry is None:
                return False
            if entry.held not in (_Held.WAITING, _Held.READY):
                return True
            entry.held = _Held.DONE
            self._entries.pop(id(state), None)
            self._unblock(entry)
        self._tickets.release.remote([entry.ticket], False)
        self._pump()
        return True

    def stats(self) -> dict:
        """How many tasks wait, are ready, or run; the CPUs counted."""
        with self._lock:
            held = [e.held for e in self._entries.values()]
            return {
                "waiting": held.count(_Held.WAITING),
                "ready": held.count(_Held.READY),
                "released": held.count(_Held.RELEASED),
                "inflight_cpus": self._inflight,
                "capacity": self._capacity,
            }

    def close(self) -> None:
        """Stop the gate's actor (held tasks end without running)."""
        with self._lock:
            self._entries.clear()
            self._ready.clear()
        try:
            ray.kill(self._tickets)
        except Exception:  # noqa: BLE001 - Ray already shut down
            pass

