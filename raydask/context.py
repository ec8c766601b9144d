"""Who is the default client, and where the code runs: the process-wide context.

Dask users rely on a *default* client (``default_client()``, ``as_completed``
and ``Future.client`` without a client argument) and, inside a task, on
``get_worker()``.  This module keeps that registry and answers those
questions; it imports nothing above :mod:`raydask.cluster`, so every layer can
ask.  Making a client inside a task (``get_client``) lives above the client,
in :mod:`raydask.worker`, which installs itself here as the factory.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import weakref

import ray

from . import raycompat, topics
from .cluster import worker_table

__all__ = ["as_current", "current_client", "default_client", "get_worker", "in_task", "rejoin"]

_lock = threading.Lock()
_clients: "weakref.WeakValueDictionary[str, object]" = weakref.WeakValueDictionary()
_default: list = []  # [weakref to the default client]
#: The client of an ``as_current()`` block in this thread or asyncio task (Dask's
#: ``_current_client``); it wins over the process-wide default while the block runs.
_as_current: contextvars.ContextVar = contextvars.ContextVar("raydask_current_client", default=None)


def register(client, set_as_default: bool) -> None:
    with _lock:
        _clients[client.id] = client
        if set_as_default:
            _default[:] = [weakref.ref(client)]


def set_default(client) -> None:
    """Make ``client`` the default client (``None``: no default), as Dask's ``_set_global_client``."""
    with _lock:
        _default[:] = [] if client is None else [weakref.ref(client)]


def unregister(client) -> None:
    with _lock:
        _clients.pop(client.id, None)
        if _default and _default[0]() is client:
            _default.clear()
            for other in list(_clients.values()):  # fall back to another open client, as Dask
                if other.status == "running":
                    _default[:] = [weakref.ref(other)]
                    break


@contextlib.contextmanager
def as_current(client):
    """Make ``client`` the one ``default_client()``/``get_client()`` return inside the block.

    Thread- and asyncio-task-local (a context variable, as Dask's): other threads
    keep seeing the process-wide default; the previous current client comes back
    when the block ends, also after an exception.
    """
    token = _as_current.set(client)
    try:
        yield
    finally:
        _as_current.reset(token)


def set_current(client):
    """Make ``client`` current in this thread or task until :func:`reset_current` (``with Client()``)."""
    return _as_current.set(client)


def reset_current(token) -> None:
    try:
        _as_current.reset(token)
    except ValueError:  # left in another context (an ``async with`` exited elsewhere): nothing to undo here
        pass


def in_as_current():
    """The client of the enclosing ``as_current()`` block, if it still runs; else None."""
    client = _as_current.get()
    return client if client is not None and client.status == "running" else None


def _current():
    client = in_as_current()
    if client is not None:
        return client
    with _lock:
        client = _default[0]() if _default else None
    if client is not None and client.status == "running":
        return client
    return None


def in_task() -> bool:
    """True when running inside a Ray task (a raydask worker)."""
    return raycompat.in_worker_process()


def default_client(c=None):
    """Return ``c`` if given, else the default client.

    Raises:
        ValueError: if no client is running.
    """
    if c is not None:
        return c
    client = _current()
    if client is None:
        raise ValueError(
            "No clients found\n"
            "Start a client and point it to the scheduler address\n"
            "  from raydask import Client\n"
            "  client = Client()\n"
        )
    return client


#: Makes a client inside a task (``raydask.worker.get_client``); installed by
#: :mod:`raydask.worker` when it is imported, so the lower layers need not import it.
client_factory = None


def current_client():
    """The default client; inside a task, a client on the task's cluster (made once)."""
    client = _current()
    if client is not None:
        return client
    if client_factory is None:
        raise ValueError("No global client found and no address provided")
    return client_factory()


class WorkerInfo:
    """What ``get_worker()`` returns inside a task: the Ray node and process running it.

    Differences from dask.distributed:
        Not a ``distributed.Worker``: it has ``address``, ``name``, ``id``,
        ``node_id``, ``pid``, ``nthreads``, ``log_event()`` and ``get_current_task()``, which
        reads the Ray task's name: the key where the caller chose it
        (``key=``; as text if it is not a string), else the function's name.
        Ray counts tasks per name in its metrics, so raydask does not give
        every task a name of its own.
    """

    def __init__(self):
        ctx = ray.get_runtime_context()
        self.node_id = ctx.get_node_id()
        self.pid = os.getpid()
        self.id = ctx.get_worker_id()
        row = next((w for w in worker_table() if w["node_id"] == self.node_id), None)
        self.address = row["address"] if row else f"ray://{self.node_id}"
        self.name = row["name"] if row else self.address
        self.nthreads = row["nthreads"] if row else None

    def get_current_task(self):
        return ray.get_runtime_context().get_task_name()

    def log_event(self, topic, msg) -> None:
        """Log ``msg`` under ``topic`` where every client reads it (``Client.get_events``).

        A dict message gains ``"worker"``: this worker's address, as Dask's
        scheduler adds it to events its workers log.
        """
        if isinstance(msg, dict):
            msg = {**msg, "worker": self.address}
        topics.log_event(None, topic, msg)

    def __repr__(self):
        return f"<WorkerInfo: {self.address!r}, name: {self.name}, pid: {self.pid}>"


def get_worker():
    """Information about the worker running the current task.

    Raises:
        ValueError: outside a task.
    """
    if not in_task():
        raise ValueError("No worker found")
    return WorkerInfo()


def rejoin():
    """Accepted for compatibility; does nothing.

    Differences from dask.distributed:
        Ray gives a task that waited on results a CPU again as soon as one is free,
        which is what ``rejoin`` waits for in Dask (see :func:`raydask.worker.secede`).
    """


