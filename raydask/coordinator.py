"""The coordination actor: one named Ray actor per cluster holding the state of
every Variable, Queue, Event, Lock, Semaphore and MultiLock.

Dask keeps that state in scheduler extensions; raydask keeps it in one actor::

    Variable("x").get()  ──> call(VariableStore, "get", "x")        fast group: one thread,
    Lock("l").acquire()  ──> call(SemaphoreStore, "acquire", ...)    in arrival order, never waits
          │ not there yet / not free, and a timeout other than 0
          └───────────────> wait(VariableStore, "wait_get", "x", t)  "wait" group: a thread per
                                                                     blocked call (up to 1,000)
          actor "coordination", namespace "raydask": detached, num_cpus=0, threaded;
          stores = {VariableStore: <one instance>, QueueStore: ..., ...}

Each kind's store class lives beside its public class (``variable.py``,
``queues.py``...); this module knows none of them: a process registers a store
class with the actor once, then names it by a short key.  One actor, not one per
kind or per name, because every actor is a worker process.

Why threads and not an async actor: a call on Ray's async actor took 2.1-3.2 ms
here and on a threaded one 1.4-1.7 ms (2 loaded CPUs, measured); the common
call (a put, a free lock, a set variable) never waits, so it takes the fast
group, and only a call that must wait pays a second round trip.

Values are stored as pickled bytes plus the ObjectRefs they contain
(:func:`pack`): the actor never unpickles user objects (it need not import
their modules), yet it holds the refs, so Ray keeps a stored Future's data alive.

The actor is *detached*: it outlives the client or task that created it, as
Dask's scheduler state outlives its clients, and ends with the cluster.  It
runs on the head node, so scaling workers down never takes it away.  Its
handle is looked up once per process and cluster and cached.
"""

from __future__ import annotations

import asyncio
import io
import pickle
import threading
import time

import cloudpickle
import ray
import ray.exceptions

__all__ = [
    "ACTOR_NAME", "NAMESPACE", "WAITERS", "WaitTimeout", "call", "call_async", "call_on", "check_name",
    "connect", "ensure_connected", "existing", "pack", "send_on", "unpack", "wait", "wait_once",
]

if asyncio.TimeoutError is TimeoutError:  # Python 3.11+
    WaitTimeout = TimeoutError
else:  # 3.10: Dask raises asyncio.TimeoutError, raydask users catch the builtin: be both
    class WaitTimeout(asyncio.TimeoutError, TimeoutError):
        """Raised when a ``Variable.get`` or ``Queue.get``/``put`` runs out of time."""

NAMESPACE = "raydask"
ACTOR_NAME = "coordination"
WAITERS = 1000  # threads for blocked calls; more blocked calls than this queue behind them
WAIT_SLICE = 30.0  # seconds: the longest one waiting call lasts (see wait())
HEAD = "node:__internal_head__"  # the resource Ray gives the head node


class Coordinator:
    """The actor's body: routes ``(store key, method, args)`` to one store's method."""

    def __init__(self):
        self._stores = {}
        self._lock = threading.Lock()

    def register(self, key, store_cls):
        with self._lock:
            if key not in self._stores:
                self._stores[key] = store_cls()

    def call(self, key, method, *args):
        return getattr(self._stores[key], method)(*args)

    @ray.method(concurrency_group="wait")
    def wait(self, key, method, *args):
        return getattr(self._stores[key], method)(*args)


class _Connection:
    """This process's handle on the actor of one cluster, and the stores it registered."""

    def __init__(self, cluster_id, handle):
        self.cluster_id = cluster_id
        self.handle = handle
        self.registered: set = set()
        self.lock = threading.Lock()


_connection = None
_connection_lock = threading.Lock()
_remote_cls = None


def _cluster_id():
    """Which cluster this process is connected to (a handle is valid only there)."""
    ctx = ray.get_runtime_context()
    return ctx.gcs_address, ctx.get_node_id()


def _connect(refresh=False) -> _Connection:
    global _connection, _remote_cls
    conn = _connection
    cid = _cluster_id()
    if conn is not None and conn.cluster_id == cid and not refresh:
        return conn
    with _connection_lock:
        if _connection is not None and _connection.cluster_id == cid and not refresh:
            return _connection
        if _remote_cls is None:
            _remote_cls = ray.remote(num_cpus=0, concurrency_groups={"wait": WAITERS})(Coordinator)
        # On the head node, which scale-down never removes (Ray gives it this resource);
        # a cluster without it gets the actor wherever Ray puts it.
        head = {HEAD: 0.001} if HEAD in ray.cluster_resources() else None
        handle = _remote_cls.options(
            name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, resources=head,
        ).remote()
        _connection = _Connection(cid, handle)
        return _connection


def _key(conn, store_cls) -> str:
    key = store_cls.__qualname__
    if key not in conn.registered:
        with conn.lock:
            if key not in conn.registered:
                ray.get(conn.handle.register.remote(key, store_cls))
                conn.registered.add(key)
    return key


def _send(group, store_cls, method, args, refresh=False):
    conn = _connect(refresh)
    key = _key(conn, store_cls)
    return getattr(conn.handle, group).remote(key, method, *args)


def _run(group, store_cls, method, args):
    try:
        try:
            return ray.get(_send(group, store_cls, method, args))
        except ray.exceptions.RayActorError:
            # the actor died with its node: a new one, with empty state, takes the call
            return ray.get(_send(group, store_cls, method, args, refresh=True))
    except ray.exceptions.RayTaskError as err:
        # A store raises Dask's exception (ValueError...): raise it as itself,
        # without Ray's banner and wrapper class.
        cause = err.cause
        if isinstance(cause, Exception):
            raise cause from None
        raise


def call(store_cls, method, *args):
    """One call that never waits in the actor (the fast group), waiting for its answer.

    Blocking here inside a task is a blocking ``ray.get``, so the task's CPU is
    given back to Ray while it waits.  An exception a store raised is raised
    here as itself.  If the actor died (its node went away), a new one is made,
    with empty state, and the call is sent once more.
    """
    return _run("call", store_cls, method, args)


def wait_once(store_cls, method, *args):
    """As :func:`call`, for a method that may wait (a thread of the "wait" group)."""
    return _run("wait", store_cls, method, args)


def wait(store_cls, method, *args, timeout, miss=None):
    """Call ``method(*args, timeout)`` in the "wait" group until it returns other than ``miss``.

    A long wait is sent as calls of at most ``WAIT_SLICE`` seconds each, so a
    caller that dies while waiting holds an actor thread for at most that long
    (Ray does not cancel a running actor call whose caller is gone).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        out = _run("wait", store_cls, method, (*args, WAIT_SLICE if left is None else min(left, WAIT_SLICE)))
        if out != miss or (left is not None and left <= WAIT_SLICE):
            return out


def existing():
    """A connection to the actor if it exists already, never making it; None if there is none.

    For a reader that must not bring the actor into being (a client waiting for
    its tasks' messages, :mod:`raydask.messages`): it talks to the actor through
    :func:`call_on`, which does not replace a dead actor either.
    """
    try:
        handle = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return None
    return _Connection(_cluster_id(), handle)


def connect(store_cls) -> _Connection:
    """A connection to the actor, making it if there is none, with ``store_cls`` registered.

    For a client that needs the actor to exist before its tasks look for it
    (one that holds tasks by priority hears through it which tasks wait on their
    children, :mod:`raydask.messages`).
    """
    conn = _connect()
    _key(conn, store_cls)
    return conn


def call_on(conn, group, store_cls, method, *args):
    """One call on the actor of ``conn`` (from :func:`existing`), waiting for its answer.

    Raises:
        ray.exceptions.RayActorError: if the actor died (no new one is made).
    """
    try:
        return ray.get(getattr(conn.handle, group).remote(_key(conn, store_cls), method, *args))
    except ray.exceptions.RayTaskError as err:
        cause = err.cause
        if isinstance(cause, Exception):
            raise cause from None
        raise


def send_on(conn, group, store_cls, method, *args):
    """As :func:`call_on` without waiting: the call's ObjectRef."""
    return getattr(conn.handle, group).remote(_key(conn, store_cls), method, *args)


def call_async(store_cls, method, *args):
    """Send one fast-group call; return its ObjectRef."""
    return _send("call", store_cls, method, args)


def ensure_connected(client=None, what="coordination primitive"):
    """Make sure this process is on a Ray cluster before a primitive talks to it.

    Inside a task Ray is already connected; in a driver a client must be running,
    as Dask's primitives need a client.

    Raises:
        RuntimeError: if ``client`` is closed, or no client runs and Ray is not connected.
    """
    if client is not None:
        if getattr(client, "status", "running") != "running":
            raise RuntimeError(f"{what} cannot be used: its client is {client.status}")
        return
    if not ray.is_initialized():
        raise RuntimeError(
            f"{what} object not properly initialized: no raydask Client is running in this process "
            "and it is not a raydask task; start a Client first"
        )


# -- values: pickled bytes plus the refs inside them ----------------------------------
class _Pickler(cloudpickle.Pickler):
    def __init__(self, file, refs):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.refs = refs

    def persistent_id(self, obj):
        if isinstance(obj, ray.ObjectRef):
            self.refs.append(obj)
            return len(self.refs) - 1
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, refs):
        super().__init__(file)
        self.refs = refs

    def persistent_load(self, pid):
        return self.refs[pid]


def pack(value):
    """``value`` as ``(bytes, refs)``: refs (a Future's among them) travel as Ray refs.

    The refs are an argument of the actor call, nested in a tuple, so Ray records
    the actor as their borrower (and does not resolve them to values).
    """
    refs: list = []
    buf = io.BytesIO()
    _Pickler(buf, refs).dump(value)
    return buf.getvalue(), refs


def unpack(blob):
    data, refs = blob
    return _Unpickler(io.BytesIO(data), refs).load()


def check_name(name, prefix):
    """``name`` if it is a string; a fresh ``"<prefix>-<hex>"`` for None.

    Raises:
        TypeError: for anything else.
    """
    if name is None:
        import uuid

        return f"{prefix}-{uuid.uuid4().hex}"
    if not isinstance(name, str):
        raise TypeError(f"name must be a string or None, got {name!r}")
    return name
