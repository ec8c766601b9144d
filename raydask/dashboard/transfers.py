"""The task stream's transfers: inputs a task used on another node than the one that made them.

Ray does not report object transfers (RAY-NOTES), so they are derived from the
receipts raydask already has: a dependency whose receipt names another node than
its consumer's receipt moved between nodes, whatever its size.  How it moved
depends on its size, as in Ray:

- under Ray's inline limit (``max_direct_call_object_size``, 100 KiB) a task's
  result goes back to its owner (the client) inside the task's reply, and the
  owner copies it into the consumer's task spec: it travels *via the owner*;
- a larger result stays in the producer node's object store and the consumer's
  node pulls it from there (*direct*); so does data the client scattered
  (``ray.put`` always uses the object store).

The size shown is the one the producer's receipt records.  The bar is timed by
Ray's task events of the consumer, asked of the GCS once per consumer, on a page
refresh after the task ended (workers report their events about once a second):

- direct: the worker's ``task:deserialize_arguments`` span, in which it gets its
  arguments and so pulls them from the other node (from ``PENDING_ARGS_FETCH``
  when the consumer's raylet pulled them before granting a worker);
- via the owner: from ``SUBMITTED_TO_WORKER`` (the owner sends the task, the
  value inside it, to the worker) to the end of that span.

Until Ray's events arrive, or if they never do, the bar is an estimate: from the
latest of "all inputs existed", "the task was submitted" and "the process
finished its previous task", to the task's start, an upper bound.  When Ray's
timing arrives the consumer is shown to every page again (``EventLog.touch``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .. import raycompat

__all__ = ["INLINE_LIMIT", "Transfers"]

#: Ray passes smaller task results inline, through the owner (``max_direct_call_object_size``).
INLINE_LIMIT = 100 * 1024

DIRECT, OWNER = "direct", "owner"

_ESTIMATED = ("estimated (Ray has not reported this task's events): from its inputs being ready "
              "to its start, an upper bound")
_DESERIALIZE = "task:deserialize_arguments"


@dataclass(frozen=True, slots=True)
class RayWindow:
    """When Ray moved a consumer's inputs, by route: ``(start, stop, what it measures)``."""

    direct: tuple | None
    owner: tuple | None


def ray_window(timing, node_id, stopped, now=None, grace=5.0) -> RayWindow | None:
    """The consumer's argument windows from its :class:`~raydask.raycompat.TaskTiming`.

    None while the events are incomplete: the owner (``SUBMITTED_TO_WORKER``,
    ``FINISHED``) and the executing worker (``RUNNING``, its profile spans)
    report in separate batches, about once a second each.  Without the
    ``task:deserialize_arguments`` span (Ray's timeline can be turned off) it
    waits ``grace`` seconds after the task ``stopped``, then uses ``RUNNING``.
    None too for an attempt on another node than the receipt's.
    """
    if timing.node_id is not None and timing.node_id != node_id:
        return None
    states, span = timing.states, timing.spans.get(_DESERIALIZE)
    sent, running = states.get("SUBMITTED_TO_WORKER"), states.get("RUNNING")
    if sent is None:
        return None  # the owner's events are not in yet
    fetched = states.get("PENDING_ARGS_FETCH")
    if span is None:
        now = time.time() if now is None else now
        if running is None or now - stopped < grace:
            return None
        if fetched is not None and sent >= fetched:
            direct = (fetched, sent, "timed by Ray: PENDING_ARGS_FETCH to SUBMITTED_TO_WORKER "
                                     "(its node pulling the arguments)")
        else:
            direct = (running, None, "timed by Ray: from RUNNING to the task's start "
                                     "(the worker getting its arguments)")
        return RayWindow(direct, (sent, None, "timed by Ray: from SUBMITTED_TO_WORKER (the owner sending "
                                              "the task, the value inside) to the task's start"))
    start, stop = span
    if fetched is not None and fetched < start:
        direct = (fetched, stop, "timed by Ray: from PENDING_ARGS_FETCH (its node pulling the arguments) "
                                 "to the end of task:deserialize_arguments")
    else:
        direct = (start, stop, "timed by Ray: task:deserialize_arguments (the worker getting its arguments, "
                               "pulled from the other node)")
    owner = (min(sent, stop), stop, "timed by Ray: from SUBMITTED_TO_WORKER (the owner sending the task, "
                                    "the value inside) to the end of task:deserialize_arguments")
    return RayWindow(direct, owner)


class Transfers:
    """Derives the transfers into finished tasks and times them by Ray's task events.

    Args:
        timings: ``task ids -> {task id: TaskTiming}`` (``raycompat.task_timings``);
            returns None when Ray's task events cannot be read at all.
        patience: seconds to keep asking Ray about a consumer before settling
            for the estimate.
        batch: consumers asked about per refresh (one GCS call each, sent at once).
    """

    def __init__(self, timings=raycompat.task_timings, patience: float = 20.0, batch: int = 256):
        self._timings = timings
        self.patience = patience
        self.batch = batch
        self._windows: dict = {}  # consumer key -> RayWindow
        self._waiting: dict = {}  # consumer key -> (task id, node id, stop time, first asked (monotonic))
        self._untimed: set = set()  # consumers Ray never timed: estimates for good
        self._readable = True
        self._lock = threading.Lock()  # pages refresh from several threads; Ray is asked outside it

    def forget(self, key) -> None:
        """Drop what is known about ``key`` (the event log forgot it)."""
        with self._lock:
            self._windows.pop(key, None)
            self._waiting.pop(key, None)
            self._untimed.discard(key)

    @property
    def waiting(self) -> int:
        """Consumers whose Ray timing is still asked for."""
        return len(self._waiting)

    def ask_ray(self) -> list:
        """Ask Ray about waiting consumers; returns the keys that Ray has now timed."""
        with self._lock:
            batch = list(self._waiting.items())[: self.batch]  # the longest waiting first
            for key, _ in batch:
                del self._waiting[key]
        if not batch:
            return []
        found = self._timings([entry[0] for _, entry in batch])
        now, timed = time.monotonic(), []
        with self._lock:
            if found is None:  # no way to read Ray's task events: estimates only, stop asking
                self._readable = False
                self._untimed.update(key for key, _ in batch)
                self._untimed.update(self._waiting)
                self._waiting.clear()
                return []
            for key, entry in batch:
                task_id, node_id, stopped, since = entry
                timing = found.get(task_id)
                window = None if timing is None else ray_window(timing, node_id, stopped)
                if window is not None:
                    self._windows[key] = window
                    timed.append(key)
                elif now - since > self.patience:
                    self._untimed.add(key)
                else:
                    self._waiting[key] = entry  # to the back of the line
        return timed

    def into(self, ev, inputs, names, estimate_start) -> list[dict]:
        """The transfers into finished task ``ev`` from ``inputs`` (TaskEvents with receipts).

        ``names`` maps node ids to worker addresses; ``estimate_start()`` gives
        the start of the estimated window (computed only when needed).
        """
        rec = ev.record
        moved = [d for d in inputs if d.record.node_id != rec.node_id]
        if not moved:
            return []
        with self._lock:
            window = self._windows.get(ev.key)
            if window is None and ev.task_id is not None and ev.key not in self._untimed and self._readable:
                self._waiting.setdefault(ev.key, (ev.task_id, rec.node_id, rec.stop, time.monotonic()))
        estimate = None
        rows = []
        for d in moved:
            nbytes = d.record.nbytes
            route = DIRECT if d.scattered or nbytes >= INLINE_LIMIT else OWNER
            timed = None if window is None else (window.direct if route == DIRECT else window.owner)
            if timed is not None:
                start, stop, how = timed
                stop = rec.start if stop is None else min(stop, rec.start)
                start = min(start, stop)
            else:
                if estimate is None:
                    estimate = min(estimate_start(), rec.start)
                start, stop, how = estimate, rec.start, _ESTIMATED
            if route == OWNER:
                via = (f"via the owner (inlined, {nbytes} B): returned to the client with its "
                       "producer's reply, then sent inside this task's spec")
            elif d.scattered:
                via = f"direct object transfer ({nbytes} B), scattered data pulled from the client's node"
            else:
                via = f"direct object transfer ({nbytes} B), pulled from the producer's node"
            rows.append({
                "key": d.key, "to_key": ev.key, "nbytes": nbytes,
                "from_worker": names.get(d.record.node_id, d.record.node_id),
                "to_worker": names.get(rec.node_id, rec.node_id),
                "from_node_id": d.record.node_id, "to_node_id": rec.node_id, "pid": rec.pid,
                "start": start, "stop": stop, "route": route, "via": via,
                "timing": "estimate" if timed is None else "ray", "timed": how,
            })
        return rows
