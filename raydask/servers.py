"""Dask's ``Scheduler`` and ``Worker`` servers, built by hand, as Ray nodes.

Dask's tutorials assemble a cluster from its parts::

    async with Scheduler() as s:
        async with Worker(s.address) as w1, Worker(s.address) as w2:
            async with Client(s.address, asynchronous=True) as client:
                ...

Here the scheduler is a Ray *head node* that runs no tasks (``num_cpus=0``:
Dask's scheduler runs none either), holding the cluster's GCS; each worker is
a Ray node joined to it with the worker's threads as CPUs and its resources as
Ray resources.  Both run as child processes of the process that made them
(Ray's raylet, GCS and agents).  Closing a worker stops its node; closing the
scheduler stops the head, and with it the workers this process started::

    Scheduler ──► ray.cluster_utils.Cluster(head: num_cpus=0) ──► address "host:port"
    Worker(address) ──► raycompat.start_worker_node(GCS address, CPUs, resources)
    Client(address) ──► ray.init(address) as for any running Ray cluster

``raydask scheduler`` / ``raydask worker ADDRESS`` (:mod:`raydask.__main__`)
run the same objects in the foreground.
"""

from __future__ import annotations

import asyncio
import atexit
import enum
import logging
import os
import threading

from . import raycompat
from .arguments import check_cluster_options
from .awaiting import StartOnce, in_loop, run_call
from .cluster import _parse_memory, node_args, use_cluster_auth, worker_table
from .dask_config import worker_resources
from .nodes import SchedulerState, process_alive, raylet_of
from .reaper import Reaper

__all__ = ["Scheduler", "Worker"]

logger = logging.getLogger("raydask")

#: Ray object store per node unless told otherwise (as LocalCluster's nodes).
OBJECT_STORE_BYTES = 512 * 2**20


class Status(enum.Enum):
    """A server's lifecycle (Dask's ``distributed.core.Status`` values)."""

    init = "init"
    running = "running"
    closing = "closing"
    closed = "closed"


class _Server:
    """Start once (blocking, or awaited in a worker thread), close once; sync and async alike."""

    status = Status.init
    _reaper = None

    def __init__(self):
        self._lock = threading.Lock()
        self._starting = StartOnce(self._start_blocking)

    # -- what subclasses provide ---------------------------------------------------
    def _start_node(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _stop_node(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _raylet_node(self):  # pragma: no cover - abstract
        """Ray's node object of the node started."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------
    def _start_blocking(self):
        with self._lock:
            if self.status is not Status.init:
                if self.status is not Status.running:
                    raise RuntimeError(f"cannot start a {type(self).__name__} that is {self.status.value}")
                return self
            self._start_node()
            # its raylet, killed by hand, must not linger as a zombie (raydask.reaper)
            self._reaper = Reaper()
            self._reaper.watch(raycompat.raylet_process(self._raylet_node()))
            self.status = Status.running
            atexit.register(self._close_blocking)
        return self

    async def _started(self):
        if self.status is Status.init:
            await self._starting()
        return self

    def start(self):
        """Start the node: blocking, or a coroutine inside an event loop (``await s.start()``)."""
        if in_loop():
            return self._started()
        return self._start_blocking()

    def __await__(self):
        return self._started().__await__()

    async def __aenter__(self):
        return await self._started()

    async def __aexit__(self, *exc):
        await asyncio.to_thread(self._close_blocking)

    def __enter__(self):
        return self._start_blocking()

    def __exit__(self, *exc):
        self._close_blocking()

    @property
    def pid(self) -> int | None:
        """The node's raylet: the process whose death takes this node down (None before start)."""
        if self.status is not Status.running:
            return None
        found = raylet_of(self.id)
        return found.pid if found else None

    def alive(self) -> bool:
        """Whether the node's raylet still runs."""
        return process_alive(self.pid)

    def close(self):
        """Stop the node and wait for its processes; a coroutine inside an event loop."""
        return run_call(self._close_blocking, in_loop(), blocking=True)

    def _close_blocking(self):
        with self._lock:
            if self.status in (Status.closing, Status.closed):
                return
            was_running = self.status is Status.running
            self.status = Status.closing
            try:
                if was_running:
                    self._stop_node()
            finally:
                if self._reaper is not None:
                    self._reaper.close()
                self.status = Status.closed
                atexit.unregister(self._close_blocking)


#: Workers started in this process, by their scheduler's address: closing a
#: Scheduler stops those still running (their raylets would otherwise wait a
#: minute for the lost GCS before exiting).
_local_workers: dict[str, set] = {}
_local_lock = threading.Lock()


class Scheduler(_Server):
    """Dask's ``Scheduler`` as a Ray head node that runs no tasks.

    Args:
        host: the IP address of the head (default: Ray's choice, this machine's address).
        port: the GCS port; 0 or None for any free one.
        object_store_memory: bytes of object store on the head, where a client on
            this machine keeps the data it scatters (default 512 MiB).
        dashboard_address, dashboard: accepted for compatibility and ignored: a
            raydask ``Client`` serves the dashboard.

    ``address`` (``"host:port"`` of the GCS) is what ``Worker(...)`` and
    ``Client(...)`` take.  Start with ``await Scheduler()``, ``async with``,
    ``with`` or :meth:`start`.

    Differences from dask.distributed:
        The head runs Ray's GCS and a raylet without CPUs (Ray needs a raylet on
        every node); it serves no Dask protocol, so only raydask clients and
        Ray nodes connect to it.  Like ``ray.cluster_utils`` clusters it runs
        without Ray's token authentication unless ``RAY_AUTH_MODE=token`` is set.
    """

    def __init__(self, host=None, port=0, object_store_memory=OBJECT_STORE_BYTES, dashboard_address=None,
                 dashboard=None):
        check_cluster_options(object_store_memory=object_store_memory)
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise TypeError(f"port must be an integer from 0 to 65535, got {port!r}")
        if port is not None and not 0 <= port < 65536:
            raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
        if host is not None and not isinstance(host, str):
            raise TypeError(f"host must be an IP address string, got {host!r}")
        super().__init__()
        self.host, self.port = host, port or None
        self.object_store_memory = int(object_store_memory)
        self._cluster = None
        self.address = None
        self.id = None

    def _start_node(self):
        from ray.cluster_utils import Cluster

        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
        head = dict(num_cpus=0, num_gpus=0, include_dashboard=False, object_store_memory=self.object_store_memory)
        if self.host:
            head["node_ip_address"] = self.host
        if self.port:
            head["gcs_server_port"] = self.port
        # On the main thread Ray's exit hooks (and the kernel, when this process dies) stop
        # the head; elsewhere signal handlers cannot be set: close() and atexit stop it.
        main = threading.current_thread() is threading.main_thread()
        self._cluster = Cluster(initialize_head=True, connect=False, head_node_args=head, shutdown_at_exit=main)
        self.address = self._cluster.address
        self.id = self._cluster.head_node.node_id

    def _raylet_node(self):
        return self._cluster.head_node

    def _stop_node(self):
        with _local_lock:
            workers = list(_local_workers.pop(self.address, ()))
        for w in workers:
            w._close_blocking()
        import ray

        # Ray refuses to remove the node this process's driver is connected to; the
        # driver cannot outlive its cluster anyway.
        if ray.is_initialized() and ray.get_runtime_context().gcs_address == self.address:
            ray.shutdown()
        self._cluster.shutdown()

    @property
    def workers(self) -> dict:
        """``{address: WorkerState}`` of the nodes joined to this head (a read-only snapshot)."""
        if self.status is not Status.running:
            return {}
        return SchedulerState(self.address, lambda: worker_table(self._cluster.global_state.node_table())).workers

    def __repr__(self):
        if self.status is not Status.running:
            return f"<Scheduler {self.address!r}, status: {self.status.value}>"
        workers = self.workers
        return (f"<Scheduler {self.address!r}, workers: {len(workers)}, "
                f"cores: {sum(w.nthreads for w in workers.values())}>")


def gcs_address(address, port=None) -> str:
    """``"host:port"`` of a GCS from what Dask users pass a Worker (also ``tcp://``/``ray://`` forms)."""
    if not isinstance(address, str) or not address.strip():
        raise TypeError(f"the scheduler address must be a string like 'host:6379', got {address!r}")
    text = address.strip()
    for scheme in ("tcp://", "ray://"):  # raydask's scheduler_address is "ray://<GCS address>"
        if text.startswith(scheme):
            text = text[len(scheme):]
    if port is not None:
        text = f"{text}:{port}"
    host, sep, number = text.rpartition(":")
    if not sep or not host or not number.isdigit() or not 0 < int(number) < 65536:
        raise ValueError(f"the scheduler address must be 'host:port' of a Ray GCS, got {address!r}")
    return text


class Worker(_Server):
    """Dask's ``Worker``: a Ray node with ``nthreads`` CPUs joined to the cluster at ``scheduler_ip``.

    Args:
        scheduler_ip: the scheduler's address (``Scheduler.address``, a Ray GCS
            ``"host:port"``; ``tcp://`` and ``ray://`` prefixes are dropped).
        scheduler_port: the port, when ``scheduler_ip`` is only a host.
        nthreads: tasks run at once (the node's ``num_cpus``); default: this machine's CPUs.
        resources: e.g. ``{"GPU": 1, "FOO": 2}``; default: Dask's
            ``distributed.worker.resources`` config when dask is installed.
        memory_limit: the node's ``memory`` resource (bytes, ``"4GiB"``, or
            ``"auto"``: this machine's memory times ``nthreads / CPUs``).
        name: the worker's name (a node label); default: its address.
        object_store_memory: bytes of Ray object store (default 512 MiB).
        host: the IP address the node uses (default: Ray's choice).

    Differences from dask.distributed:
        A Ray node (a raylet and the worker processes it starts), not a thread
        pool in this process; ``pid`` is that raylet.  It joins with token
        authentication only when the cluster uses it.
    """

    def __init__(self, scheduler_ip=None, scheduler_port=None, *, nthreads=None, resources=None,
                 memory_limit="auto", name=None, object_store_memory=OBJECT_STORE_BYTES, host=None):
        if scheduler_ip is None:
            raise TypeError("Worker needs the scheduler's address, e.g. Worker(scheduler.address)")
        self.scheduler_address = gcs_address(scheduler_ip, scheduler_port)
        if nthreads is None:
            nthreads = os.cpu_count() or 1
        if resources is None:
            resources = worker_resources()
        if isinstance(nthreads, bool) or not isinstance(nthreads, int):
            raise TypeError(f"nthreads must be a positive integer, got {nthreads!r}")
        if nthreads < 1:
            raise ValueError(f"nthreads must be a positive integer, got {nthreads!r}")
        check_cluster_options(memory_limit=memory_limit, resources=resources, object_store_memory=object_store_memory)
        super().__init__()
        self.nthreads = int(nthreads)
        self.resources = dict(resources)
        share = max(1, (os.cpu_count() or 1) // self.nthreads)  # "auto": Dask's share of memory per thread
        self.memory_limit = _parse_memory(memory_limit, share)
        self.object_store_memory = int(object_store_memory)
        self.host = host
        self._name = name
        self._node = None
        self.address = None
        self.id = None

    @property
    def name(self):
        return self.address if self._name is None else self._name

    def _start_node(self):
        use_cluster_auth(self.scheduler_address)
        args = node_args(self.nthreads, self.memory_limit, self.resources, self.object_store_memory,
                         name=self._name, host=self.host)
        main = threading.current_thread() is threading.main_thread()
        self._node = raycompat.start_worker_node(self.scheduler_address, fate_share=main, **args)
        self.address = f"tcp://{self._node.node_ip_address}:{self._node.node_manager_port}"
        self.id = self._node.node_id
        with _local_lock:
            _local_workers.setdefault(self.scheduler_address, set()).add(self)

    def _raylet_node(self):
        return self._node

    def _stop_node(self):
        with _local_lock:
            _local_workers.get(self.scheduler_address, set()).discard(self)
        raycompat.stop_node(self._node)

    def __repr__(self):
        return (f"<Worker {self.address!r}, name: {self.name}, status: {self.status.value}, "
                f"threads: {self.nthreads}>")

