"""Clients publish their task graph to the cluster, for ``raydask dashboard --address``.

Ray's state has no task-dependency edges, so a dashboard in another process
cannot rebuild the graph from Ray.  Each client with a dashboard therefore has
a thread that, while such a dashboard is open, sends the event log's changes
every half second to a named actor, ``raydask-events-<client id>`` in namespace
``raydask``, off the submit path.  The actor is owned by the client and dies
with it.

A separate process (the CLI) finds every such actor with
``ray.util.list_named_actors`` and mirrors their logs into a :class:`ClusterLog`,
which has the :class:`~raydask.events.EventLog` reading interface
(``snapshot(since)``, ``cursor``, ``started``) that the dashboard's source needs.

Publishing costs the client CPU for every task (collecting receipts, sending
rows), so it happens only while somebody looks: each :class:`ClusterLog` read
leaves a timestamp in Ray's internal key-value store (``VIEWER_KEY``), and a
publisher that finds none younger than ``VIEWER_TTL`` seconds only checks the
timestamp again.  The first batch after a pause is the whole log.
"""

from __future__ import annotations

import logging
import threading
import time

import ray

from .. import raycompat
from ..events import TaskEvent, TaskRecord
from .collect import collect

__all__ = ["ACTOR_PREFIX", "NAMESPACE", "ClusterLog", "Publisher"]

logger = logging.getLogger("raydask.dashboard")

NAMESPACE = "raydask"
ACTOR_PREFIX = "raydask-events-"
VIEWER_KEY = b"dashboard-viewer"  # in NAMESPACE of Ray's internal KV: when a ClusterLog last read
VIEWER_TTL = 30.0  # seconds after the last read that clients keep publishing


def mark_viewer() -> None:
    """Tell every client's publisher that a dashboard in another process is reading."""
    raycompat.kv_put(VIEWER_KEY, repr(time.time()).encode(), namespace=NAMESPACE)


def viewer_seen() -> float | None:
    """When a :class:`ClusterLog` last read (``time.time()``), or None if never."""
    value = raycompat.kv_get(VIEWER_KEY, namespace=NAMESPACE)
    return float(value) if value else None
_FIELDS = ("key", "prefix", "deps", "submitted", "state", "priority", "error")


def _row(ev: TaskEvent) -> tuple:
    rec = ev.record
    return (ev.key, ev.prefix, tuple(ev.deps), ev.submitted, ev.state, ev.priority, ev.error,
            None if rec is None else (rec.type, rec.nbytes, rec.start, rec.stop, rec.node_id, rec.pid),
            ev.task_id, ev.scattered)


@ray.remote(num_cpus=0, max_concurrency=4)
class EventStore:
    """Holds one client's published task events (rows), with a change cursor."""

    def __init__(self, client_id: str, started: float):
        self.client_id = client_id
        self.started = started
        self.rows: dict = {}
        self.seq: dict = {}
        self.cursor = 0

    def update(self, rows: list) -> int:
        for row in rows:
            self.cursor += 1
            self.rows[row[0]] = row
            self.seq[row[0]] = self.cursor
        return self.cursor

    def changes(self, since: int = 0) -> tuple:
        rows = [r for k, r in self.rows.items() if self.seq[k] > since]
        return self.cursor, self.client_id, self.started, rows


class Publisher:
    """Sends an event log's changes to the client's :class:`EventStore` in batches.

    Args:
        events: the client's :class:`~raydask.events.EventLog`.
        client_id: names the actor.
        interval: seconds between batches.
    """

    def __init__(self, events, client_id: str, interval: float = 0.5):
        self.events = events
        self.name = ACTOR_PREFIX + client_id
        self.interval = interval
        self._cursor = 0
        self._actor = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"raydask-publisher-{client_id[-8:]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._actor is not None:
            try:
                ray.kill(self._actor)
            except Exception:  # noqa: BLE001 - Ray already shut down
                pass
            self._actor = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.watched():
                    self.flush()
            except Exception:  # noqa: BLE001 - the dashboard must never break the client
                logger.debug("publishing task events failed", exc_info=True)

    def watched(self) -> bool:
        """Whether a dashboard in another process read recently (one GCS call)."""
        seen = viewer_seen()
        return seen is not None and time.time() - seen < VIEWER_TTL

    def flush(self) -> int:
        """Send what changed since the last batch; returns the number of events sent."""
        collect(self.events)
        cursor, changed = self.events.snapshot(self._cursor)
        if not changed:
            return 0
        if self._actor is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = ray.get_runtime_context().get_node_id()  # the driver's node: never scaled away
            self._actor = EventStore.options(
                name=self.name, namespace=NAMESPACE, get_if_exists=True,
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True),
            ).remote(self.name[len(ACTOR_PREFIX):], self.events.started)
        if self._cursor == 0:
            changed = sorted(changed, key=lambda ev: ev.created)
        ray.get(self._actor.update.remote([_row(ev) for ev in changed]))
        self._cursor = cursor
        return len(changed)


class ClusterLog:
    """Every published client's events, mirrored for a dashboard in another process.

    Reads like an :class:`~raydask.events.EventLog`; each ``snapshot`` first
    pulls new rows from the actors (at most every ``refresh`` seconds).
    """

    def __init__(self, refresh: float = 0.4):
        self.refresh = refresh
        self.started = time.time()
        self._lock = threading.Lock()
        self._tasks: dict = {}
        self._seq = 0
        self._remote_cursor: dict = {}
        self._actors: dict = {}
        self._last = 0.0
        self.clients: list[str] = []

    @property
    def cursor(self) -> int:
        return self._seq

    def _pull(self) -> None:
        if time.monotonic() - self._last < self.refresh:
            return
        self._last = time.monotonic()
        mark_viewer()  # clients publish while somebody reads
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a.get("namespace") == NAMESPACE and a["name"].startswith(ACTOR_PREFIX)]
        for name in names:
            if name not in self._actors:
                try:
                    self._actors[name] = ray.get_actor(name, namespace=NAMESPACE)
                except ValueError:  # gone between listing and lookup
                    continue
        replies = {}
        for name, actor in list(self._actors.items()):
            try:
                replies[name] = ray.get(actor.changes.remote(self._remote_cursor.get(name, 0)), timeout=5)
            except Exception:  # noqa: BLE001 - its client closed: keep what we have
                del self._actors[name]
        with self._lock:
            for name, (cursor, client_id, started, rows) in replies.items():
                self._remote_cursor[name] = cursor
                self.started = min(self.started, started)
                if client_id not in self.clients:
                    self.clients.append(client_id)
                for row in rows:
                    self._apply(row)

    def _apply(self, row) -> None:
        key, prefix, deps, submitted, state, priority, error, rec, task_id, scattered = row
        ev = self._tasks.get(key)
        self._seq += 1
        if ev is None:
            ev = self._tasks[key] = TaskEvent(key, prefix, deps, submitted, priority=priority)
            ev.created = self._seq
        ev.state, ev.error = state, error
        ev.record = None if rec is None else TaskRecord(*rec)
        ev.task_id, ev.scattered = task_id, scattered
        ev.seq = self._seq

    def touch(self, key) -> None:
        """Show ``key`` to readers again (as :meth:`raydask.events.EventLog.touch`)."""
        with self._lock:
            ev = self._tasks.get(key)
            if ev is not None:
                self._seq += 1
                ev.seq = self._seq

    def snapshot(self, since: int = 0):
        self._pull()
        with self._lock:
            if since <= 0:
                return self._seq, list(self._tasks.values())
            return self._seq, sorted((e for e in self._tasks.values() if e.seq > since), key=lambda e: e.seq)
