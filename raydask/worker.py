"""Inside a task: ``get_client`` and ``worker_client`` (a client on the task's cluster).

The registry of default clients, ``get_worker``, ``secede`` and ``rejoin`` live
in :mod:`raydask.context`, below the client; making a client needs the client,
so it lives here, above it.
"""

from __future__ import annotations

import contextlib
import threading

from . import context
from .client import Client
from .context import _current, default_client, get_worker, in_task, rejoin, secede

__all__ = [
    "default_client", "get_client", "get_worker", "local_client", "rejoin", "secede", "worker_client",
]


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
        with _worker_client_lock:
            client = _current()
            if client is None:
                client = Client(dashboard_address=None, set_as_default=True, name="worker-client")
            return client
    raise ValueError("No global client found and no address provided")


_worker_client_lock = threading.Lock()


@contextlib.contextmanager
def worker_client(timeout=None, separate_thread=True):
    """Context manager yielding a client usable inside a task (``get_client()``)."""
    yield get_client(timeout=timeout)


def local_client(*args, **kwargs):
    """Dask's old name for :func:`worker_client`: warns, as Dask's does, and gives it."""
    import warnings

    warnings.warn("local_client has moved to worker_client")
    return worker_client(*args, **kwargs)


context.client_factory = get_client  # Future.client in a task process makes its client here
