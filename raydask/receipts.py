"""Receipts: where and when each task ran and what it returned, sent home on their own.

A raydask task returns one object, its value, as a plain Ray task does.  What
the client's views need besides (the dashboard's task stream, ``Future.type``,
``nbytes``, ``who_has``, ``story``): the result's type and size, the node, the
process and the start and stop times, travel in batches::

    task ends (worker process) ──> post(): (task id, type, nbytes, start, stop)
    raydask-receipts thread (worker) ── at most every FLUSH s ──> the driver's ReceiptSink actor:
                                        add(pickled (node, pid, receipts)): bytes it never opens
    raydask-receipts thread (driver) ── long poll: take(), answered at most every GATHER s
                                        ──> STORE ──> the finished task's FutureState.record
                                        (it claimed it), its listener told

Every actor message costs far more than a receipt (on 2 CPUs the sink spent
35-47 µs of CPU per no-op task with a flush every 100 ms and an answer 50 ms
after the first batch: about 4 % of the whole task's CPU).  So both ends
throttle on the leading edge: a receipt after a quiet spell goes at once (a
record follows its task by one round trip), and under load one message per
window carries them all.  The sink keeps each batch as the bytes the worker
pickled: it never unpickles nor re-pickles a receipt.

Why not a second return of the task, as before: each return costs the owner
1.1-1.6 KB in Ray's core worker while the task is pending (measured: driver
memory per 10,000 pending futures 1.29x raw Ray's with it).  The client learns
*that* a task ended, and whether it failed, from the value's ref without
fetching it (:func:`raycompat.on_ready`, :func:`raycompat.outcomes`); only the
record arrives here, a tenth of a second or so later.  A failed task's record
travels with its exception (``_raydask_receipt``), as before.

One store, one sink actor and one collecting thread per driver process and Ray
job, shared by its clients (:func:`join`, :func:`leave`): a client made next to
another finds the sink running (an actor takes a second or two to start here,
and the tasks a client runs meanwhile would have no records).  The store is
keyed by Ray task id (unique in the cluster) and bounded: past :data:`KEEP`
records the oldest go.  Nothing here knows about futures.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import threading
import time
import weakref

import ray

from .records import TaskRecord

__all__ = ["KEEP", "FLUSH", "WAIT", "Collector", "ReceiptSink", "STORE", "Store", "join", "leave", "post",
           "task_id_of"]

logger = logging.getLogger("raydask")

FLUSH = 0.2  # seconds a worker process waits at least between two sends of receipts
GATHER = 0.2  # seconds the sink waits at least between two answers to the client's long poll
POLL = 30.0  # seconds one long poll of the sink lasts at most
KEEP = 10_000  # records nobody claimed (and claims not met) the store keeps; the oldest go first
WAIT = 3.0  # seconds a reader waits for a finished task's record before it does without
RETRY = 0.2  # seconds between a worker's tries to find a sink that is not registered yet
GIVE_UP = 30.0  # seconds after which a worker stops trying (the client is gone)


# -- in the worker process ----------------------------------------------------------------
class _Outbox:
    """Receipts of this worker process not yet sent, per sink; one named thread sends them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._boxes: dict = {}  # (sink name, namespace) -> [receipts]
        self._wake = threading.Event()
        self._sinks: dict = {}  # (name, namespace) -> actor handle
        self._thread = None

    def post(self, sink, receipt) -> None:
        with self._lock:
            box = self._boxes.get(sink)
            if box is None:
                box = self._boxes[sink] = []
            box.append(receipt)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="raydask-receipts", daemon=True)
                self._thread.start()
        if not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        # a daemon thread of a Ray worker process: it lives as long as the process does
        unsent: dict = {}  # sink -> (first failure, [batch bytes]) for a sink not found yet
        sent = 0.0  # time.monotonic() of the last send
        while True:
            self._wake.wait(None if not unsent else RETRY)  # a receipt was posted
            early = sent + FLUSH - time.monotonic()
            if early > 0:
                time.sleep(early)  # sent a moment ago: the receipts of this window go together
            self._wake.clear()
            with self._lock:
                boxes, self._boxes = self._boxes, {}
            waiting = {sink: batches for sink, (_, batches) in unsent.items()}  # the oldest first
            for sink, box in boxes.items():
                if box:
                    batch = pickle.dumps((_node, os.getpid(), box), protocol=5)
                    waiting[sink] = waiting.get(sink, []) + [batch]
            if not waiting:
                continue
            sent = time.monotonic()
            for sink, batches in waiting.items():
                try:
                    add = self._sink(sink).add
                    for batch in batches:
                        add.remote(batch)
                    unsent.pop(sink, None)
                except Exception:  # noqa: BLE001 - not registered yet, or its client is gone
                    self._sinks.pop(sink, None)
                    since = unsent.get(sink, (time.monotonic(), None))[0]
                    if time.monotonic() - since < GIVE_UP:
                        unsent[sink] = (since, batches)
                    else:
                        unsent.pop(sink, None)  # the client closed: its records go with it

    def _sink(self, sink):
        handle = self._sinks.get(sink)
        if handle is None:
            handle = self._sinks[sink] = ray.get_actor(sink[0], namespace=sink[1])
        return handle


_outbox = None
_node = None


def post(sink, result_type, nbytes, start, stop) -> None:
    """Send home the receipt of the task this worker process just ran (called by the task)."""
    global _outbox, _node
    if _outbox is None:
        _node = ray.get_runtime_context().get_node_id()
        _outbox = _Outbox()
    task_id = ray._private.worker.global_worker.current_task_id.binary()
    _outbox.post(sink, (task_id, result_type, nbytes, start, stop))


# -- the actor between them ---------------------------------------------------------------
class ReceiptSink:
    """A driver process's mailbox of receipt batches (an async actor, no CPU reserved).

    A batch is the bytes a worker pickled; the sink hands them on unopened.
    """

    def __init__(self):
        self._batches: list = []
        self._event = None
        self._answered = 0.0  # loop time of the last answer with batches

    def _ready(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    @ray.method(num_returns=0)  # nothing to fail or report: a closed client's sink drops quietly
    async def add(self, batch: bytes) -> None:
        self._batches.append(batch)
        self._ready().set()

    async def take(self, timeout) -> list:
        """Every batch that arrived, as soon as there is one (or ``[]`` after ``timeout`` s).

        At most one answer with batches per ``GATHER`` s: under load, the batches
        of a window go in one message.
        """
        event = self._ready()
        if not self._batches:
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        loop = asyncio.get_running_loop()
        early = self._answered + GATHER - loop.time()
        if self._batches and early > 0:
            await asyncio.sleep(early)
        event.clear()
        batches, self._batches = self._batches, []
        if batches:
            self._answered = loop.time()
        return batches

    async def wake(self) -> None:
        self._ready().set()

    async def node_id(self) -> str:
        """The Ray node it runs on (hex)."""
        return ray.get_runtime_context().get_node_id()


# -- in the client ------------------------------------------------------------------------
class Store:
    """Records of ended tasks by Ray task id, as their receipts arrive; bounded; thread-safe.

    A finished task's state *claims* its record (:meth:`claim`): the record is
    set as the state's ``record`` when it arrives (at once if it is here) and
    the state's ``listener`` (the dashboard's log) is told.  A claim does not
    keep the state alive.  Records nobody claimed yet wait here, the last
    ``keep`` of them; so do claims whose record has not come (a worker that
    died at once takes it along).
    """

    def __init__(self, keep: int = KEEP):
        self._cond = threading.Condition()
        self._records: dict = {}  # unclaimed: task id -> TaskRecord, oldest first
        self._claims: dict = {}  # task id -> (weakref to the holder, time.monotonic() of the claim)
        self.keep = keep
        self.collectors = 0  # running Collectors in this process: records are on their way

    def add(self, node, pid, receipts) -> None:
        """Receipts of worker process ``pid`` on ``node`` arrived: ``(task id, type, nbytes, start, stop)`` each."""
        told = []
        with self._cond:
            for task_id, result_type, nbytes, start, stop in receipts:
                record = TaskRecord(result_type, nbytes, start, stop, node, pid)
                claim = self._claims.pop(task_id, None)
                if claim is None:
                    self._records[task_id] = record
                    continue
                holder = claim[0]()
                if holder is not None:  # else its futures were dropped: nobody wants the record
                    holder.record = record
                    told.append(holder)
            _trim(self._records, self.keep)
            self._cond.notify_all()
        for holder in told:
            listener = holder.listener
            if listener is not None:
                listener(holder)

    def claim(self, task_id, holder) -> None:
        """``holder`` (a finished task's state) takes its record: now if it is here, else on arrival.

        Set at once, the caller tells the holder's listener itself (it is settling).
        """
        with self._cond:
            record = self._records.pop(task_id, None)
            if record is None:
                self._claims[task_id] = (weakref.ref(holder), time.monotonic())
                _trim(self._claims, self.keep)
                return
        holder.record = record

    def get(self, task_id):
        """The unclaimed record of ``task_id``, None if it is not here (yet)."""
        return self._records.get(task_id)

    def wait(self, task_id, holder, timeout: float = WAIT) -> None:
        """Wait up to ``timeout`` s for ``holder``'s claimed record, while it may still come."""
        if holder.record is not None or not self.collectors:
            return
        deadline = time.monotonic() + timeout
        with self._cond:
            while holder.record is None and task_id in self._claims and self.collectors:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def settled(self, timeout: float = WAIT) -> bool:
        """Wait until every record claimed so far arrived (True), or ``timeout`` s passed.

        Claims older than ``WAIT`` s by now are taken as lost, not waited for.
        """
        start = time.monotonic()
        with self._cond:
            while self.collectors and any(start - WAIT < t <= start and ref() is not None
                                          for ref, t in self._claims.values()):
                left = start + timeout - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def started(self) -> None:
        with self._cond:
            self.collectors += 1

    def stopped(self) -> None:
        with self._cond:
            self.collectors -= 1
            self._cond.notify_all()  # readers waiting for records stop waiting


def _trim(table: dict, keep: int) -> None:
    """Drop the oldest entries of ``table`` past ``keep``: a tenth more at once (no scan per add)."""
    if len(table) > keep:
        for key in list(table)[: len(table) - keep + keep // 10]:
            del table[key]


STORE = Store()
_sink_class = None  # ray.remote(ReceiptSink), made once per process


def task_id_of(ref) -> bytes | None:
    """The Ray task id that made ``ref`` (the key of its record), None for a ref of no task."""
    try:
        return ref.task_id().binary()
    except Exception:  # noqa: BLE001 - a ref of another kind
        return None


class Collector:
    """A sink actor and the named thread that long-polls it into :data:`STORE`.

    ``sink`` is what task functions post to: ``(actor name, namespace)``.
    """

    def __init__(self, store: Store = STORE):
        import uuid

        namespace = ray.get_runtime_context().namespace
        name = f"raydask-receipts-{uuid.uuid4().hex}"
        self.sink = (name, namespace)
        self._store = store
        self._closing = False
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        global _sink_class
        if _sink_class is None:
            _sink_class = ray.remote(ReceiptSink)
        # On the driver's node: the long poll stays on this node, and the sink never
        # keeps a worker node busy (a node with an actor is not idle to Ray: it could
        # not be retired as idle).  Hard affinity: measured on Ray 2.60 right after a
        # cluster came up, soft affinity put about half of such actors on another node.
        try:
            placement = {"scheduling_strategy": NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False)}
        except Exception:  # noqa: BLE001 - Ray Client: the driver is on no node of the cluster
            placement = {}
        # restarted by Ray if its process or node dies (a test's restart, scale-down, a fault),
        # under the same name and id: workers' handles and the long poll carry on
        self._actor = _sink_class.options(
            name=name, namespace=namespace, num_cpus=0, max_concurrency=64, max_restarts=-1,
            **placement).remote()
        store.started()
        self._thread = threading.Thread(target=self._run, name="raydask-receipts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        actor, store = self._actor, self._store
        while not self._closing:
            try:
                batches = ray.get(actor.take.remote(POLL))
            except ray.exceptions.ActorDiedError as exc:  # killed for good (close), or Ray is gone
                if not self._closing:
                    logger.warning("raydask: the receipts actor stopped (%s); task records stop", exc)
                break
            except Exception:  # noqa: BLE001 - restarting, or Ray going down: look again
                if self._closing or not ray.is_initialized():
                    break
                time.sleep(RETRY)  # Ray tells a driver nothing when an actor is back up
                continue
            for batch in batches:
                store.add(*pickle.loads(batch))
        store.stopped()

    def alive(self) -> bool:
        return not self._closing and self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            self._actor.wake.remote()
        except Exception:  # noqa: BLE001 - Ray is gone already
            pass
        self._thread.join(timeout)
        try:
            ray.kill(self._actor)
        except Exception:  # noqa: BLE001
            pass


_joined: dict = {}  # (Ray's GCS address, job id) -> [Collector, clients using it]
_joining = threading.Lock()


def join():
    """The sink this process's tasks post to, started by the first client of the Ray job.

    Keyed by the GCS address too: a process that shut Ray down and started
    another cluster gets job id 01000000 again.  A collector whose thread
    stopped (its actor died with its cluster) is replaced.
    """
    context = ray.get_runtime_context()
    job = (context.gcs_address, context.get_job_id())
    with _joining:
        entry = _joined.get(job)
        if entry is None or not entry[0].alive():
            entry = _joined[job] = [Collector(), 0]
        entry[1] += 1
        return entry[0].sink


def leave(sink) -> None:
    """A client that :func:`join` ed closed; the last one of its job stops the collector."""
    with _joining:
        for job, entry in list(_joined.items()):
            if entry[0].sink == sink:
                entry[1] -= 1
                if entry[1] > 0:
                    return
                del _joined[job]
                break
        else:
            return
    entry[0].close()
