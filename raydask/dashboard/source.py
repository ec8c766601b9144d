"""What the dashboard shows, computed from one client's :class:`~raydask.events.EventLog`.

Nothing here runs on the submit path: the client only appends to its event log;
this module catches up with the log when a page asks (it collects finished
receipts in one batch, then reads ``snapshot(since=cursor)``), lays out new
keys, and builds plain JSON-ready dicts.  Ray is asked only
for its node table (placement, threads, memory), never for its task list,
which costs seconds with thousands of tasks (RAY-NOTES).

Transfers (every input a task used on another node than the one that made
it, whatever its size, and how and when Ray moved it) are derived in
:mod:`.transfers`; their timing is the one place this module asks Ray about
tasks: one filtered GCS call per cross-node consumer, once.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter, defaultdict

from .. import raycompat
from ..cluster import worker_table
from .collect import collect
from .layout import GraphLayout, prefix_layout
from .transfers import Transfers

__all__ = ["ClientSource", "STATES"]

logger = logging.getLogger("raydask.dashboard")

#: Graph states in Dask's order; colours live in the page (Dask's palette).
STATES = ("waiting", "queued", "processing", "memory", "released", "erred", "cancelled")


class ClientSource:
    """The dashboard's view of one client.

    Args:
        events: the client's :class:`~raydask.events.EventLog`.
        workers: returns Ray's node table (``raydask.cluster.worker_table``).
        max_graph_nodes: past this many tasks the graph page gets one node per
            key prefix instead of one per task.
        name: shown in the page header.
        transfers: derives and times the task stream's transfers (:class:`.transfers.Transfers`).
    """

    def __init__(self, events, workers=worker_table, max_graph_nodes=20_000, name="raydask", transfers=None):
        if not isinstance(max_graph_nodes, int) or isinstance(max_graph_nodes, bool) or max_graph_nodes < 1:
            raise ValueError(f"max_graph_nodes must be a positive integer, got {max_graph_nodes!r}")
        self.events = events
        self.name = name
        self.max_graph_nodes = max_graph_nodes
        self._workers_fn = workers
        self._lock = threading.Lock()
        self._cursor = 0
        self._tasks: dict = {}  # key -> TaskEvent (the log's objects, read-only here)
        self._layout = GraphLayout()
        self._workers_cache: tuple[float, list] = (0.0, [])
        self._busy: dict = defaultdict(list)  # (node_id, pid) -> sorted stop times of its tasks
        self._timed: set = set()
        self._moves = Transfers() if transfers is None else transfers

    # -- catching up with the log ---------------------------------------------------------
    def _sync(self) -> int:
        """Take the log's changes since the last look; returns the new cursor."""
        self._collect()
        with self._lock:
            cursor, changed = self.events.snapshot(self._cursor)
            forgotten = getattr(self.events, "forgotten_since", None)
            for key in forgotten(self._cursor) if forgotten is not None else ():
                ev = self._tasks.pop(key, None)  # the log's cap applies to our copies too
                if ev is not None and ev.record is not None:
                    self._timed.discard(key)
                self._layout.forget(key)
                self._moves.forget(key)
            new = [ev for ev in changed if ev.key not in self._layout]
            new.sort(key=lambda ev: ev.created)  # dependencies were submitted first
            for ev in changed:
                self._tasks[ev.key] = ev
                rec = ev.record
                if rec is not None and ev.key not in self._timed:
                    self._timed.add(ev.key)
                    bisect.insort(self._busy[rec.node_id, rec.pid], rec.stop)
            for ev in new:
                self._layout.add(ev.key, ev.deps)
            self._cursor = cursor
            return cursor

    def workers(self, max_age=2.0) -> list[dict]:
        """Ray's node table, cached for ``max_age`` seconds (``ray.nodes()`` is a GCS call)."""
        stamp, rows = self._workers_cache
        if time.monotonic() - stamp > max_age or not rows:
            try:
                rows = self._workers_fn()
            except Exception:  # noqa: BLE001 - Ray going down under a still-open page: show the last table
                logger.debug("cannot read Ray's node table", exc_info=True)
                return rows
            self._workers_cache = (time.monotonic(), rows)
        return rows

    def _node_names(self) -> dict[str, str]:
        return {w["node_id"]: w["address"] for w in self.workers()}

    # -- /api/graph -----------------------------------------------------------------------
    def graph(self, since: int = 0) -> dict:
        """Nodes changed after ``since`` and edges of keys first submitted after it."""
        cursor = self._sync()
        if len(self._tasks) > self.max_graph_nodes:
            return self.prefix_graph(cursor)
        names = self._node_names()
        with self._lock:
            tasks = list(self._tasks.values())
            if since > 0:
                tasks = [ev for ev in tasks if ev.seq > since]
            x, y = self._layout.x, self._layout.y
            nodes = [_node(ev, x[ev.key], y[ev.key], names) for ev in tasks if ev.key in x]
            known = self._tasks
            edges = [[d, ev.key] for ev in tasks if ev.created > since for d in ev.deps if d in known]
        return {"cursor": cursor, "view": "tasks", "total": len(known), "nodes": nodes, "edges": edges}

    def prefix_graph(self, cursor: int | None = None) -> dict:
        """One node per key prefix, with counts per state; always complete (small)."""
        if cursor is None:
            cursor = self._sync()
        with self._lock:
            counts: dict = defaultdict(Counter)
            deps: dict = defaultdict(set)
            prefix_of = {k: ev.prefix for k, ev in self._tasks.items()}
            for ev in self._tasks.values():
                counts[ev.prefix][ev.state] += 1
                deps[ev.prefix].update(prefix_of[d] for d in ev.deps if d in prefix_of)
            total = len(self._tasks)
        places = prefix_layout(dict(deps))
        nodes = []
        for prefix, c in counts.items():
            x, y = places[prefix]
            state = max(STATES, key=lambda s: (c.get(s, 0), -STATES.index(s)))
            nodes.append({"key": prefix, "prefix": prefix, "state": state, "x": x, "y": y,
                          "count": sum(c.values()), "states": dict(c)})
        edges = sorted([d, p] for p, ds in deps.items() for d in ds if d != p)
        return {"cursor": cursor, "view": "prefix", "total": total, "nodes": nodes, "edges": edges}

    def _collect(self) -> None:
        if hasattr(self.events, "pending"):  # a live client's log: learn what finished
            try:
                collect(self.events)
            except Exception:  # noqa: BLE001 - Ray going down under a still-open page
                logger.debug("cannot collect finished tasks", exc_info=True)

    def await_records(self) -> None:
        """Learn which tasks ended and wait for their records (what reads them all: the task stream)."""
        if hasattr(self.events, "await_records"):
            self._collect()
            self.events.await_records()

    def finished_keys(self) -> set:
        """Keys known to have run (they have a record), after catching up with the log.

        ``raydask.get_task_stream`` takes it on entering its block, to leave out
        on exit the tasks that had already run.
        """
        self.await_records()
        self._sync()
        with self._lock:
            return {k for k, ev in self._tasks.items() if ev.record is not None}

    # -- /api/tasks -----------------------------------------------------------------------
    def tasks(self, since: int = 0) -> dict:
        """Finished tasks (with where and when they ran) and derived transfers."""
        self._retime()
        cursor = self._sync()
        names = self._node_names()
        with self._lock:
            done = [ev for ev in self._tasks.values() if ev.record is not None and (since <= 0 or ev.seq > since)]
            done.sort(key=lambda ev: ev.record.start)
            out, transfers = [], []
            for ev in done:
                rec = ev.record
                worker = names.get(rec.node_id, rec.node_id)
                out.append({
                    "key": ev.key, "prefix": ev.prefix, "state": ev.state, "worker": worker,
                    "node_id": rec.node_id, "pid": rec.pid, "start": rec.start, "stop": rec.stop,
                    "nbytes": rec.nbytes, "type": rec.type, "error": ev.error,
                })
                transfers.extend(self._transfers(ev, names))
        return {"cursor": cursor, "started": self.events.started, "now": time.time(),
                "tasks": out, "transfers": transfers}

    def _transfers(self, ev, names) -> list[dict]:
        rec = ev.record
        inputs = [self._tasks.get(d) for d in ev.deps]
        inputs = [d for d in inputs if d is not None and d.record is not None]

        def estimate_start():
            stops = self._busy.get((rec.node_id, rec.pid), [])
            i = bisect.bisect_right(stops, rec.start)
            previous = stops[i - 1] if i else 0.0
            return max([ev.submitted, previous] + [d.record.stop for d in inputs])

        return self._moves.into(ev, inputs, names, estimate_start)

    def _retime(self) -> None:
        """Ask Ray's task events about consumers shown with estimated transfers.

        The ones Ray has timed are touched in the log, so every page's next
        ``since`` includes them again, with Ray's timing.
        """
        if not self._moves.waiting:
            return
        try:
            timed = self._moves.ask_ray()
        except Exception:  # noqa: BLE001 - Ray going down under a still-open page
            logger.debug("cannot read Ray's task events", exc_info=True)
            return
        touch = getattr(self.events, "touch", None)
        for key in timed if touch is not None else ():
            touch(key)

    # -- /api/progress --------------------------------------------------------------------
    def progress(self) -> dict:
        """Per key prefix: total, done, erred, processing, waiting, in memory, released."""
        cursor = self._sync()
        with self._lock:
            by_prefix: dict = {}
            for ev in self._tasks.values():
                p = by_prefix.setdefault(ev.prefix, Counter())
                p["total"] += 1
                p[ev.state] += 1
                if ev.record is not None and ev.state != "erred":
                    p["done"] += 1
        keys = ("total", "done", "erred", "processing", "waiting", "memory", "released", "cancelled")
        prefixes = [{"prefix": name, **{k: c.get(k, 0) for k in keys}} for name, c in by_prefix.items()]
        totals = {k: sum(p[k] for p in prefixes) for k in keys}
        return {"cursor": cursor, "prefixes": prefixes, "totals": totals}

    # -- /api/workers ---------------------------------------------------------------------
    def worker_rows(self) -> dict:
        """One row per Ray node: address, threads, memory, object store, tasks."""
        self._sync()
        finished, processes = Counter(), defaultdict(set)
        with self._lock:
            for ev in self._tasks.values():
                if ev.record is not None:
                    finished[ev.record.node_id] += 1
                    processes[ev.record.node_id].add(ev.record.pid)
        usage = _node_usage()
        rows = []
        for w in self.workers(max_age=1.0):
            used = usage.get(w["node_id"], {})
            rows.append({
                "address": w["address"], "name": str(w["name"]), "node_id": w["node_id"],
                "host": w["host"], "nthreads": w["nthreads"], "memory_limit": w["memory_limit"],
                "object_store_memory": w["object_store_memory"],
                "object_store_used": used.get("object_store_used"),
                "running": used.get("running"), "finished": finished.get(w["node_id"], 0),
                "processes": sorted(processes.get(w["node_id"], ())),
            })
        return {"workers": rows}


def _node(ev, x, y, names) -> dict:
    rec = ev.record
    node = {"key": ev.key, "prefix": ev.prefix, "state": ev.state, "x": x, "y": y}
    if rec is not None:
        node.update(worker=names.get(rec.node_id, rec.node_id), duration=rec.stop - rec.start)
    if ev.error:
        node["error"] = ev.error
    return node


def _node_usage() -> dict:
    """Per node id: CPUs in use (tasks running) and object store bytes in use.

    Ray has no public per-node view of *available* resources without its own
    dashboard process (which raydask's local clusters do not start), so this
    reads the GCS's resource table; when that private call is missing it returns
    ``{}`` and the page shows blanks.
    """
    try:
        total, avail = raycompat.resources_per_node()
    except Exception:  # noqa: BLE001 - private API, absent or changed in another Ray
        return {}
    out = {}
    for node_id, res in total.items():
        free = avail.get(node_id, {})
        out[node_id] = {
            "running": int(round(res.get("CPU", 0) - free.get("CPU", res.get("CPU", 0)))),
            "object_store_used": int(res.get("object_store_memory", 0) - free.get("object_store_memory", res.get("object_store_memory", 0))),
        }
    return out
