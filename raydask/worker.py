"""Inside a task: ``get_client`` and ``worker_client`` (a client on the task's cluster).

The registry of default clients, ``get_worker`` and ``rejoin`` live in
:mod:`raydask.context`, below the client; making a client needs the client, so
it lives here, above it, and so does ``secede``, which reports through
:mod:`raydask.messages`.
"""

from __future__ import annotations

import contextlib
import threading
import time

from . import context
from .client import Client
from .context import _current, default_client, get_worker, in_task, rejoin
from .keys import parse_timedelta
from .messages import seceded

__all__ = [
    "default_client", "get_client", "get_worker", "local_client", "rejoin", "secede", "worker_client",
]


def get_client(address=None, timeout=None, resolve_address=True):
    """The client of this process; inside a task, a client on the task's Ray cluster.

    Tasks may submit tasks and gather their results: a task blocked on a result
    gives its CPU back to Ray, so the cluster does not deadlock even when every
    slot is held by such tasks.

    Args:
        timeout: inside a task, how long making this process's client may take
            (seconds or a duration string; None: no limit).  The client is made
            once per Ray worker process; later calls return it whatever the timeout.
    Raises:
        OSError: if making the client took longer than ``timeout``, as Dask's
            "Timed out trying to connect" (so ``timeout=0`` fails whenever a client
            has to be made).
        ValueError: outside a task, when there is no client.

    Differences from dask.distributed:
        Inside a task the client belongs to that Ray worker process: its keys are
        deduplicated among its own futures, not with the submitting client's.
        Inside a task it also secedes (:func:`secede`): a task that asks for a
        client is taken to wait on what it submits.
    """
    seceded()  # inside a task: it waits on what it submits (nothing outside one)
    client = _current()
    if client is not None:
        return client
    if in_task():
        limit = parse_timedelta(timeout)
        with _worker_client_lock:
            client = _current()
            if client is None:
                started = time.monotonic()
                client = Client(dashboard_address=None, set_as_default=True, name="worker-client")
                if limit is not None and time.monotonic() - started > limit:
                    # Dask's worker connects to its scheduler within ``timeout`` or raises;
                    # here "connecting" is making the client: it did not fit, so it goes
                    address = client.scheduler_address
                    client.close()
                    raise OSError(f"Timed out trying to connect to {address} after {limit:g} s")
                # the process keeps it, as a Dask worker keeps its ``_client``: the registry
                # holds clients weakly, and remaking one per task costs its threads each time
                _process_clients[:] = [client]
            return client
    raise ValueError("No global client found and no address provided")


_worker_client_lock = threading.Lock()
_process_clients: list = []  # the client made in this Ray worker process, held for its lifetime


@contextlib.contextmanager
def worker_client(timeout=None, separate_thread=True):
    """Context manager yielding a client usable inside a task (``get_client(timeout=timeout)``).

    Raises:
        OSError: if this process has no client yet and making one takes longer than ``timeout``.
    """
    yield get_client(timeout=timeout)


def secede():
    """Dask's ``secede``: this task waits on tasks it submitted, so it gives up its slot.

    Ray already gives a task's CPU back while it blocks on results, so this only
    tells a client that holds tasks by priority (:mod:`raydask.priority`) to
    start another task in this one's slot.  ``get_client`` and ``worker_client``
    in a task do the same.

    Raises:
        ValueError: outside a task, as Dask's (there is no worker).

    Differences from dask.distributed:
        Forgetting it does not deadlock the cluster.
    """
    get_worker()  # outside a task: Dask's ValueError("No worker found")
    seceded()


def local_client(*args, **kwargs):
    """Dask's old name for :func:`worker_client`: warns, as Dask's does, and gives it."""
    import warnings

    warnings.warn("local_client has moved to worker_client")
    return worker_client(*args, **kwargs)


context.client_factory = get_client  # Future.client in a task process makes its client here
