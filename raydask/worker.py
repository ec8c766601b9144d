"""Inside a task: ``get_worker``, ``get_client``, ``worker_client``, ``secede``, ``rejoin``.

Also the process-wide notion of the *default* client that Dask users rely on
(``default_client()``, ``as_completed`` without a client argument).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref

import ray

from . import raycompat

__all__ = [
    "default_client", "get_client", "get_worker", "rejoin", "secede", "worker_client",
]

_lock = threading.Lock()
_clients: "weakref.WeakValueDictionary[str, object]" = weakref.WeakValueDictionary()
_default: list = []  # [weakref to the default client]


def register(client, set_as_default: bool) -> None:
    with _lock:
        _clients[client.id] = client
        if set_as_default:
            _default[:] = [weakref.ref(client)]


def unregister(client) -> None:
    with _lock:
        _clients.pop(client.id, None)
        if _default and _default[0]() is client:
            _default.clear()
            for other in list(_clients.values()):  # fall back to another open client, as Dask
                if other.status == "running":
                    _default[:] = [weakref.ref(other)]
                    break


def _current():
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


def get_client(address=None, timeout=None, resolve_address=True):
    """The client of this process; inside a task, a client on the task's Ray cluster.

    Tasks may submit tasks and gather their results: a task blocked on a result
    gives its CPU back to Ray, so the cluster does not deadlock even when every
    slot is held by such tasks.

    Differences from dask.distributed:
        Inside a task the client belongs to that Ray worker process: its keys are
        deduplicated among its own futures, not with the submitting client's.
    """
    client = _current()
    if client is not None:
        return client
    if in_task():
        from .client import Client

        with _worker_client_lock:
            client = _current()
            if client is None:
                client = Client(dashboard_address=None, set_as_default=True, name="worker-client")
            return client
    raise ValueError("No global client found and no address provided")


_worker_client_lock = threading.Lock()


class WorkerInfo:
    """What ``get_worker()`` returns inside a task: the Ray node and process running it.

    Differences from dask.distributed:
        Not a ``distributed.Worker``: it has ``address``, ``name``, ``id``,
        ``node_id``, ``pid``, ``nthreads`` and ``get_current_task()``, which
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
        from .cluster import worker_table

        row = next((w for w in worker_table() if w["node_id"] == self.node_id), None)
        self.address = row["address"] if row else f"ray://{self.node_id}"
        self.name = row["name"] if row else self.address
        self.nthreads = row["nthreads"] if row else None

    def get_current_task(self):
        return ray.get_runtime_context().get_task_name()

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


def secede():
    """Accepted for compatibility; does nothing.

    Differences from dask.distributed:
        Ray already releases a task's CPU while it blocks on results, which is what
        ``secede`` is for in Dask.
    """


def rejoin():
    """Accepted for compatibility; does nothing (see :func:`secede`)."""


@contextlib.contextmanager
def worker_client(timeout=None, separate_thread=True):
    """Context manager yielding a client usable inside a task (``get_client()``)."""
    yield get_client(timeout=timeout)
