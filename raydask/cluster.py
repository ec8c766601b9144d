"""Where the workers come from: the only module that starts or stops Ray.

A Dask *worker* is a Ray *node* here.  :class:`LocalCluster` starts one raylet
per worker on this machine (``ray.cluster_utils.Cluster``), each with
``num_cpus=threads_per_worker``, so objects really move between workers as they
do between Dask workers.  :class:`RayCluster` describes a Ray cluster somebody
else started (``Client(address=...)``) and never shuts it down.
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import threading
import time

import ray

from .keys import format_bytes, parse_timedelta

__all__ = ["LocalCluster", "RayCluster", "worker_table"]

logger = logging.getLogger("raydask")


class ClusterStatus(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


def _total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _parse_memory(value, n_workers) -> int:
    if value in (None, 0, "auto"):
        return _total_memory() // max(n_workers, 1)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"memory_limit must be positive, got {value!r}")
        return int(value)
    if isinstance(value, str):
        import re

        m = re.fullmatch(r"\s*([0-9.]+)\s*([kKMGTP]i?B?|B)?\s*", value)
        if m:
            units = {None: 1, "B": 1}
            for i, p in enumerate("kMGTP", start=1):
                units[p] = units[p + "B"] = 1000**i
                units[p + "i"] = units[p + "iB"] = 1024**i
            units["K"], units["KB"], units["Ki"], units["KiB"] = 1000, 1000, 1024, 1024
            if m.group(2) in units:
                return int(float(m.group(1)) * units[m.group(2)])
    raise ValueError(f"could not parse memory_limit {value!r}; use bytes or a string like '4GiB'")


def worker_table() -> list[dict]:
    """One dict per alive Ray node, in Dask's ``scheduler_info()['workers']`` shape."""
    rows = []
    for node in sorted(ray.nodes(), key=lambda n: (not n["Resources"].get("node:__internal_head__"), n["NodeManagerPort"])):
        if not node.get("Alive"):
            continue
        res = node.get("Resources", {})
        address = f"tcp://{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
        rows.append({
            "type": "Worker",
            "id": node["NodeID"],
            "node_id": node["NodeID"],
            "address": address,
            "host": node["NodeManagerAddress"],
            "nthreads": int(res.get("CPU", 0)),
            "memory_limit": int(res.get("memory", 0)),
            "object_store_memory": int(res.get("object_store_memory", 0)),
            "resources": {k: v for k, v in res.items() if not k.startswith("node:") and k not in ("CPU", "memory", "object_store_memory")},
            "name": node.get("Labels", {}).get("raydask-name", address),
            "is_head": bool(res.get("node:__internal_head__")),
        })
    return rows


class _ClusterBase:
    """What Dask's cluster objects share: workers, scale, reprs."""

    status: ClusterStatus

    @property
    def scheduler_address(self) -> str:
        return f"ray://{self._gcs_address}"

    @property
    def workers(self) -> dict:
        return {w["name"]: w for w in worker_table()}

    @property
    def dashboard_link(self):
        return self._dashboard_link

    def _totals(self):
        table = worker_table()
        return len(table), sum(w["nthreads"] for w in table), sum(w["memory_limit"] for w in table)

    def __repr__(self):
        n, threads, memory = self._totals()
        return (
            f"{type(self).__name__}({self.name!r}, {self.scheduler_address!r}, workers={n}, "
            f"threads={threads}, memory={format_bytes(memory)})"
        )

    def _repr_html_(self):
        n, threads, memory = self._totals()
        link = self._dashboard_link
        dash = f'<a href="{link}" target="_blank">{link}</a>' if link else "not running"
        return (
            f"<div><h3>{type(self).__name__}</h3><p>{self.name}</p>"
            f"<table><tr><td><strong>Dashboard:</strong> {dash}</td><td><strong>Workers:</strong> {n}</td></tr>"
            f"<tr><td><strong>Total threads:</strong> {threads}</td><td><strong>Total memory:</strong> {format_bytes(memory)}</td></tr>"
            f"<tr><td><strong>Status:</strong> {self.status.value}</td><td><strong>Ray:</strong> {self.scheduler_address}</td></tr>"
            f"</table></div>"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalCluster(_ClusterBase):
    """Ray nodes on this machine, one per Dask worker (``distributed.LocalCluster``'s signature).

    Args:
        n_workers: number of Ray nodes (Dask workers). Default: as Dask, from the CPU count.
        threads_per_worker: ``num_cpus`` of each node: how many tasks run at once on it.
        processes: accepted for compatibility; Ray always runs tasks in processes.
        memory_limit: the ``memory`` resource of each node (bytes, ``"4GiB"``, or ``"auto"``:
            the machine's memory divided by ``n_workers``).
        resources: custom resources declared on every node, e.g. ``{"FOO": 2}``.
        object_store_memory: bytes of Ray object store per node (default 512 MiB).
        host: the IP address Ray's nodes use (default: Ray's own choice).
        dashboard_address: kept for Client; the dashboard is served by the client.

    Differences from dask.distributed:
        Workers are separate raylets; ``processes=False`` still runs tasks in worker
        processes, because Ray has no threads-only mode.
    """

    def __init__(self, n_workers=None, threads_per_worker=None, processes=True, memory_limit="auto",
                 resources=None, object_store_memory=512 * 2**20, host=None, name=None,
                 dashboard_address=":8787", silence_logs=None, **kwargs):
        for label, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{label} must be a non-negative integer, got {value!r}")
        if resources is not None and not isinstance(resources, dict):
            raise TypeError(f"resources must be a dict like {{'GPU': 1}}, got {resources!r}")
        cpus = os.cpu_count() or 1
        if n_workers is None and threads_per_worker is None:
            n_workers, threads_per_worker = (cpus, 1) if cpus <= 4 else (max(1, int(cpus**0.5)), None)
        if threads_per_worker is None:
            threads_per_worker = max(1, cpus // max(n_workers, 1))
        if n_workers is None:
            n_workers = max(1, cpus // threads_per_worker)
        self.threads_per_worker = threads_per_worker
        self.memory_limit = _parse_memory(memory_limit, max(n_workers, 1))
        self.resources = dict(resources or {})
        self.object_store_memory = int(object_store_memory)
        self.host = host  # None: Ray's own choice (it rewrites 127.0.0.1 to the node's IP)
        self.name = name or f"raydask-{os.getpid()}"
        self.processes = True
        self._dashboard_link = None
        self._lock = threading.Lock()
        self._nodes: list = []  # worker nodes after the head, in start order
        self._next_name = 1
        self._scaler: threading.Thread | None = None
        self._target = max(n_workers, 1)
        #: set by the client: ``() -> set of node ids running tasks``, to keep busy nodes
        self.busy_node_ids = None
        self.status = ClusterStatus.CREATED
        self._start()
        if n_workers > 1:
            self.scale(n_workers)
            self.wait_for_workers(n_workers, timeout=120)

    def _node_args(self, name):
        args = dict(
            num_cpus=self.threads_per_worker,
            num_gpus=0,
            memory=self.memory_limit,
            object_store_memory=self.object_store_memory,
            resources=dict(self.resources),
            labels={"raydask-name": str(name)},
        )
        if self.host:
            args["node_ip_address"] = self.host
        return args

    def _start(self):
        from ray.cluster_utils import Cluster

        # Errored results that nobody reads are normal for Dask users; Ray would log each.
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
        head_args = self._node_args(0)
        head_args.update(include_dashboard=False)
        main = threading.current_thread() is threading.main_thread()
        # Ray's node objects install SIGTERM handlers, which Python allows only on the
        # main thread; elsewhere we rely on our own atexit hook and close().
        self._cluster = Cluster(initialize_head=True, connect=False, head_node_args=head_args,
                                shutdown_at_exit=main)
        atexit.register(self.close)
        self._gcs_address = self._cluster.address
        ray.init(address=self._gcs_address, log_to_driver=False, logging_level=logging.WARNING)
        self.status = ClusterStatus.RUNNING

    # -- scaling ------------------------------------------------------------------
    def scale(self, n=0, memory=None, cores=None):
        """Grow or shrink to ``n`` workers (Ray nodes); returns at once, as in Dask.

        Nodes start in the background (``wait_for_workers`` waits for them).  Removing
        prefers the most recently added nodes that run nothing; the head node, which
        holds scattered data, is never removed.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"scale expects a non-negative number of workers, got {n!r}")
        if self.status is not ClusterStatus.RUNNING:
            raise RuntimeError(f"cannot scale a cluster that is {self.status.value}")
        with self._lock:
            self._target = max(n, 1)
            if self._scaler is None or not self._scaler.is_alive():
                self._scaler = threading.Thread(target=self._reconcile, name="raydask-scale", daemon=True)
                self._scaler.start()

    def _reconcile(self):
        while self.status is ClusterStatus.RUNNING:
            with self._lock:
                have = 1 + len(self._nodes)
                want = self._target
                if have == want:
                    return
                if have < want:
                    name = self._next_name
                    self._next_name += 1
                    node = None
                else:
                    node = self._pick_removable()
            if node is None:
                # Nodes added from this thread cannot register signal handlers
                # (Python allows that only on the main thread); the head's reaper and
                # close() stop them instead.
                self._cluster._shutdown_at_exit = False
                try:
                    added = self._cluster.add_node(wait=True, **self._node_args(name))
                except Exception:  # noqa: BLE001
                    logger.exception("raydask: could not start worker %s", name)
                    return
                with self._lock:
                    self._nodes.append(added)
            else:
                self._cluster.remove_node(node)

    def _pick_removable(self):
        busy = self.busy_node_ids() if self.busy_node_ids else set()
        for node in reversed(self._nodes):
            if node.node_id not in busy:
                self._nodes.remove(node)
                return node
        return self._nodes.pop()

    def wait_for_workers(self, n_workers, timeout=None):
        """Block until ``n_workers`` Ray nodes are alive.

        Raises:
            WorkerStartTimeoutError: if ``timeout`` passes first.
        """
        from .errors import WorkerStartTimeoutError

        limit = parse_timedelta(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        delay = 0.05
        while True:
            alive = len(worker_table())
            if alive >= n_workers:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise WorkerStartTimeoutError(alive, n_workers, timeout)
            # Ray has no "node joined" callback for drivers; back off between looks.
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def close(self, timeout=None):
        """Stop every node this cluster started, and disconnect this process from Ray."""
        if self.status in (ClusterStatus.CLOSING, ClusterStatus.CLOSED):
            return
        self.status = ClusterStatus.CLOSING
        scaler = self._scaler
        if scaler is not None and scaler is not threading.current_thread():
            scaler.join(timeout=60)
        if ray.is_initialized():
            ray.shutdown()
        self._cluster.shutdown()
        self.status = ClusterStatus.CLOSED
        atexit.unregister(self.close)


class RayCluster(_ClusterBase):
    """A running Ray cluster that this process joined (``Client(address=...)``).

    Closing only disconnects; the cluster keeps running.
    """

    def __init__(self, address=None, name=None, owns_connection=True):
        self.name = name or "ray"
        self._owns_connection = owns_connection
        self._dashboard_link = None
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        self._gcs_address = ray.get_runtime_context().gcs_address
        self.status = ClusterStatus.RUNNING

    def scale(self, n=0, memory=None, cores=None):
        """Ask Ray's autoscaler for ``n`` workers' worth of CPUs.

        Where no autoscaler runs (a fixed cluster), the request is recorded and has
        no effect: Ray adds nodes only through its autoscaler.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"scale expects a non-negative number of workers, got {n!r}")
        from ray.autoscaler.sdk import request_resources

        table = worker_table()
        per = max((w["nthreads"] for w in table), default=1) or 1
        request_resources(bundles=[{"CPU": per}] * n)

    def wait_for_workers(self, n_workers, timeout=None):
        return LocalCluster.wait_for_workers(self, n_workers, timeout)

    def close(self, timeout=None):
        if self.status is ClusterStatus.CLOSED:
            return
        if self._owns_connection and ray.is_initialized():
            ray.shutdown()
        self.status = ClusterStatus.CLOSED
