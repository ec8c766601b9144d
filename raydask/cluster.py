"""Where the workers come from: the only module that starts or stops Ray.

A Dask *worker* is a Ray *node* here.  :class:`LocalCluster` starts one raylet
per worker on this machine (``ray.cluster_utils.Cluster``), each with
``num_cpus=threads_per_worker``, so objects really move between workers as they
do between Dask workers.  :class:`RayCluster` describes a Ray cluster somebody
else started (``Client(address=...)``) and never shuts it down.

Scaling::

    scale(n) / Adaptive ──> target ──> raydask-scale thread ──> add_node / remove_node
                                           │  removal prefers nodes with no task running
                                           ▼  (usage from the GCS' cluster status)
                                     Ray re-runs tasks whose only copy of a result
                                     lived on a removed node (lineage reconstruction)
"""

from __future__ import annotations

import asyncio
import atexit
import enum
import logging
import math
import numbers
import os
import shutil
import tempfile
import threading
import time
import weakref

import ray

from . import raycompat
from .arguments import check_cluster_options
from .awaiting import StartOnce, in_loop, run_call
from .dask_config import worker_resources
from .keys import format_bytes, parse_timedelta
from .logs import Log, Logs, gcs_log, node_log
from .nodes import SchedulerState, cluster_uses_token, local_raylets, raylet_of
from .reaper import Reaper

__all__ = ["Adaptive", "LocalCluster", "RayCluster", "local_ray_addresses", "select_workers", "wanted_workers", "worker_table"]

logger = logging.getLogger("raydask")

#: Node label holding a worker's Dask name; set on every node LocalCluster starts.
NAME_LABEL = "raydask-name"
#: Label Ray itself puts on every node (2.60): the node id.
NODE_ID_LABEL = "ray.io/node-id"
#: The class ``get_client`` builds: :mod:`raydask.client` installs itself here when it is
#: imported, so the cluster need not import the client that is built on it.
client_class = None


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


def node_args(nthreads, memory_limit, resources, object_store_memory, name=None, host=None) -> dict:
    """Ray's node parameters for a Dask worker with these threads, memory and resources.

    ``GPU`` becomes Ray's ``num_gpus``; every other name, ``MEMORY`` included, is
    a custom resource, as in Dask (only the lower-case ``memory`` resource of a
    *task* means Ray's memory: a node's memory is its ``memory_limit``).
    """
    custom = dict(resources or {})
    args = dict(num_cpus=nthreads, num_gpus=custom.pop("GPU", 0), memory=memory_limit,
                object_store_memory=object_store_memory, resources=custom)
    if name is not None:
        args["labels"] = {NAME_LABEL: str(name)}
    if host:
        args["node_ip_address"] = host
    return args


def _check_count(label, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{label} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{label} must be a non-negative integer, got {value!r}")


def _runs_tasks(resources) -> bool:
    """Whether a node offers anything a task can ask for (CPU, GPU, custom resources)."""
    return any(not k.startswith("node:") and k not in ("memory", "object_store_memory") and v > 0
               for k, v in resources.items())


def wanted_workers(workers) -> set:
    """Dask's ``workers=``: an address, name or node id, or an iterable of them, as strings."""
    return {str(w) for w in ([workers] if isinstance(workers, (str, int)) else workers)}


def select_workers(table, workers) -> list:
    """The rows of ``table`` that ``workers`` names by address, name or node id (None: all)."""
    if workers is None:
        return table
    wanted = wanted_workers(workers)
    return [w for w in table if {w["address"], str(w["name"]), w["node_id"]} & wanted]


def worker_table(nodes=None) -> list[dict]:
    """One dict per alive Ray node, in Dask's ``scheduler_info()['workers']`` shape.

    ``nodes`` is Ray's node table (default: ``ray.nodes()`` of the connected
    cluster).  A head node that offers no CPU, GPU or custom resource runs no
    task: it is the cluster's scheduler (``raydask.Scheduler``, ``ray start
    --head --num-cpus=0``), not a worker, and is left out.
    """
    rows = []
    nodes = ray.nodes() if nodes is None else nodes
    for node in sorted(nodes, key=lambda n: (not n["Resources"].get("node:__internal_head__"), n["NodeManagerPort"])):
        if not node.get("Alive"):
            continue
        res = node.get("Resources", {})
        if res.get("node:__internal_head__") and not _runs_tasks(res):
            continue
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
            "name": node.get("Labels", {}).get(NAME_LABEL, address),
            "is_head": bool(res.get("node:__internal_head__")),
            "local_directory": _session_dir(node),
        })
    return rows


def _session_dir(node) -> str | None:
    """The node's Ray session directory (``.../session_<start time>_<pid>``): its scratch space."""
    socket = node.get("RayletSocketName") or ""
    session = os.path.dirname(os.path.dirname(socket))  # <session>/sockets/raylet
    return session or None


def session_started(table) -> float | None:
    """When the cluster's Ray session began (epoch seconds), from the head's session name.

    Ray names a session after the local time its head started
    (``session_2026-12-01_14-26-25_564212_7668``); None if no head is listed or
    the name has another shape.
    """
    import datetime

    for w in table:
        if w["is_head"] and w["local_directory"]:
            name = os.path.basename(w["local_directory"])
            try:
                stamp = "_".join(name.split("_")[1:4])
                return datetime.datetime.strptime(stamp, "%Y-%m-%d_%H-%M-%S_%f").timestamp()
            except ValueError:
                return None
    return None


def cluster_load(gcs_address) -> tuple[dict, float]:
    """``({node_id: CPUs in use}, CPUs wanted by queued tasks)`` from the GCS.

    This is what Ray's autoscaler reads; the GCS keeps it whether or not an
    autoscaler runs.  It lags the raylets by about a second.  A Ray without
    this (private) status gives ``({}, 0.0)``: adapt() then holds still.
    """
    usage = raycompat.cluster_usage(gcs_address)
    return usage.used_cpus, usage.demand_cpus


def local_ray_addresses() -> set[str]:
    """GCS addresses of the Ray clusters with a raylet on this machine.

    Ray finds them the same way (``ray._private.services.find_gcs_addresses``):
    each raylet's command line names its cluster's ``--gcs-address``.
    """
    return {r.gcs_address for r in local_raylets()}


def resolve_address(address):
    """The Ray address to join for ``address`` (``"auto"``/None look on this machine).

    Raises:
        ConnectionError: if ``"auto"`` finds no cluster, or more than one
            (Ray itself would silently pick one of them).
    """
    if address not in (None, "auto"):
        return address
    found = local_ray_addresses()
    if len(found) > 1:
        raise ConnectionError(
            f"address='auto' matches {len(found)} Ray clusters on this machine ({sorted(found)!r}); "
            "pass the one you mean as address= or RAY_ADDRESS"
        )
    if not found:
        raise ConnectionError("address='auto' found no running Ray cluster on this machine; start one with `ray start --head`")
    return found.pop()


def cluster_logs(cluster=True, scheduler=True, workers=True, processes=True) -> Logs:
    """:meth:`_ClusterBase.get_logs` for the cluster this process is connected to.

    ``processes=False`` leaves the worker processes' output out of a worker's log
    (its raylet's alone: the nearest thing to Dask's nanny log).
    """
    logs = Logs()
    raylets = local_raylets()
    if cluster:
        logs["Cluster"] = Log("")
    if scheduler:
        head = next((n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("node:__internal_head__")), None)
        found = raylet_of(head["NodeID"], raylets) if head else None
        logs["Scheduler"] = gcs_log(found.log_dir if found else None)
    if workers:
        wanted = None if workers is True else set(workers)
        for w in worker_table():
            if wanted is None or w["address"] in wanted:
                found = raylet_of(w["node_id"], raylets)
                logs[w["address"]] = node_log(found, processes=processes) if found else Log("")
    return logs


def _removable_rows(cluster, workers) -> list[dict]:
    """The :func:`worker_table` rows of ``workers`` (names, addresses, node ids; unknown ones
    ignored, as Dask's ``scale_down``), checked for removal from a running ``cluster``.

    Raises:
        TypeError: ``workers`` is not a list of names or addresses.
        ValueError: one of them is the head node.
    """
    try:
        wanted_workers(workers)
    except TypeError:
        raise TypeError(f"workers must be a list of worker names or addresses, got {workers!r}") from None
    if cluster.status is not ClusterStatus.RUNNING:
        raise RuntimeError(f"cannot scale a cluster that is {cluster.status.value}")
    table = select_workers(worker_table(), workers)
    head = [w["address"] for w in table if w["is_head"]]
    if head:
        raise ValueError(f"worker {head[0]!r} is Ray's head node, which holds the cluster's state: "
                         "it cannot be removed")
    return table


class _ClusterBase:
    """What Dask's cluster objects share: workers, scale, reprs."""

    status: ClusterStatus
    upload_dir: str | None = None
    _adaptive = None

    @property
    def scheduler_address(self) -> str:
        return f"ray://{self._gcs_address}"

    @property
    def workers(self) -> dict:
        return {w["name"]: w for w in worker_table()}

    @property
    def scheduler(self) -> SchedulerState:
        """A read-only view for what notebooks read off Dask's ``cluster.scheduler``.

        ``cluster.scheduler.workers[address]`` has ``pid`` (the node's raylet:
        killing it takes that worker down), ``name``, ``nthreads``,
        ``memory_limit``, ``address`` and ``resources``; a fresh snapshot of
        Ray's node table on every read.

        Differences from dask.distributed:
            Not Dask's ``Scheduler`` object: Ray's GCS and raylets schedule, and
            nothing set on this view reaches them.
        """
        return SchedulerState(self._gcs_address, worker_table)

    def get_logs(self, cluster=True, scheduler=True, workers=True) -> Logs:
        """``{"Cluster": ..., "Scheduler": ..., worker address: ...}``: Ray's session logs.

        Args:
            cluster: include ``"Cluster"`` (empty: raydask's cluster objects log to
                the ``raydask`` logger, not to a log of their own).
            scheduler: include ``"Scheduler"``: the GCS's log (``gcs_server.out``).
            workers: True for every worker, False for none, or worker addresses.
                A worker's log is its raylet's log, then the stdout/stderr of the
                worker processes it started (a task's prints land there).

        Differences from dask.distributed:
            Read from Ray's log files on this machine: a node on another machine
            gives an empty log.  Oldest lines first (Dask lists newest first),
            at most the last 10,000 lines of each file.
        """
        return cluster_logs(cluster, scheduler, workers)

    @property
    def dashboard_link(self):
        return self._dashboard_link

    _asynchronous = False

    @property
    def asynchronous(self) -> bool:
        """Whether calls return coroutines: an asynchronous cluster, called inside an event loop."""
        return self._asynchronous and in_loop()

    def get_client(self):
        """The default client if it is on this cluster, else a new ``Client(self)`` (as Dask's).

        Differences from dask.distributed:
            The new client of an asynchronous cluster is asynchronous too (``await
            cluster.get_client()``); Dask's is always synchronous.
        """
        Client = client_class
        try:
            current = Client.current()
        except ValueError:
            current = None
        if current is not None and current.cluster is self:
            return current
        return Client(self, asynchronous=self._asynchronous)

    def scale_up(self, n=0, memory=None, cores=None):
        """Grow to ``n`` workers: Dask's ``scale_up`` is :meth:`scale`."""
        return self.scale(n, memory=memory, cores=cores)

    def _totals(self):
        table = worker_table()
        return len(table), sum(w["nthreads"] for w in table), sum(w["memory_limit"] for w in table)

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

    def adapt(self, minimum=0, maximum=math.inf, interval="1s", wait_count=3, **kwargs):
        """Grow while tasks wait for a CPU, shrink when nodes sit idle.

        Args:
            minimum, maximum: bounds on the number of workers (Ray nodes).
            interval: how often to look at the cluster's load.
            wait_count: looks a node must be idle in a row before it is removed.
        Returns:
            The :class:`Adaptive` object (``.stop()`` ends adaptivity).

        Differences from dask.distributed:
            "Idle" is Ray's notion: no task running *and* no object stored, so a
            node holding results is kept until they are released.  On a joined
            cluster (``RayCluster``) growing goes through Ray's autoscaler.
        """
        if self._adaptive is not None:
            self._adaptive.stop()
        self._adaptive = Adaptive(self, minimum=minimum, maximum=maximum, interval=interval,
                                  wait_count=wait_count)
        return self._adaptive

    def _stop_adaptive(self):
        if self._adaptive is not None:
            self._adaptive.stop()
            self._adaptive = None

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


def _job_config(upload_dir):
    # Every worker process of this job gets upload_dir on sys.path, so modules
    # that Client.upload_file writes there import in any later task.
    return raycompat.sys_path_job_config(upload_dir)


class LocalCluster(_ClusterBase):
    """Ray nodes on this machine, one per Dask worker (``distributed.LocalCluster``'s signature).

    Args:
        n_workers: number of Ray nodes (Dask workers). Default: as Dask, from the CPU count.
        threads_per_worker: ``num_cpus`` of each node: how many tasks run at once on it.
        processes: accepted for compatibility; Ray always runs tasks in processes.
        memory_limit: the ``memory`` resource of each node (bytes, ``"4GiB"``, or ``"auto"``:
            the machine's memory divided by ``n_workers``).
        resources: resources declared on every node, e.g. ``{"FOO": 2, "GPU": 1}`` (``GPU`` is Ray's
            GPUs, any other name a custom resource). Default: Dask's ``distributed.worker.resources``
            config when dask is installed, as Dask's workers read it.
        object_store_memory: bytes of Ray object store per node (default 512 MiB).
        host: the IP address Ray's nodes use (default: Ray's own choice).
        dashboard_address: kept for Client; the dashboard is served by the client.

    Differences from dask.distributed:
        Workers are separate raylets; ``processes=False`` still runs tasks in worker
        processes, because Ray has no threads-only mode.  The first worker is Ray's
        head node: it is never removed by ``scale`` (it holds the cluster's state).
    """

    def __init__(self, n_workers=None, threads_per_worker=None, processes=True, memory_limit="auto",
                 resources=None, object_store_memory=512 * 2**20, host=None, name=None,
                 dashboard_address=":8787", silence_logs=None, asynchronous=False, **kwargs):
        # every number checked before a node starts (threads_per_worker=0 once divided by zero)
        if resources is None:
            resources = worker_resources()
        check_cluster_options(n_workers=n_workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                              resources=resources, object_store_memory=object_store_memory)
        cpus = os.cpu_count() or 1
        if n_workers is None and threads_per_worker is None:
            n_workers, threads_per_worker = (cpus, 1) if cpus <= 4 else (max(1, int(cpus**0.5)), None)
        if threads_per_worker is None:
            threads_per_worker = max(1, cpus // max(n_workers, 1))
        if n_workers is None:
            n_workers = max(1, cpus // threads_per_worker)
        self.threads_per_worker = threads_per_worker
        self.memory_limit = _parse_memory(memory_limit, max(n_workers, 1))
        self.resources = dict(resources)
        self.object_store_memory = int(object_store_memory)
        self.host = host  # None: Ray's own choice (it rewrites 127.0.0.1 to the node's IP)
        self.name = name or f"raydask-{os.getpid()}"
        self.processes = True
        self._dashboard_link = None
        self._lock = threading.Lock()
        self._nodes: list = []  # worker nodes after the head, in start order
        self._names: dict = {}  # worker node -> its name
        self._dead: list = []  # worker nodes whose raylet died, for the scaler to clean up
        self._retiring: list = []  # worker nodes scale_down took, for the scaler to remove
        self._removing: set = set()  # node ids handed to the scaler for removal, not yet removed
        self._changed = threading.Condition(self._lock)  # notified when the scaler records or removes a node
        self._free_names: list = []  # names of dead workers, for their replacements
        self._next_name = 1
        self._scaler: threading.Thread | None = None
        self._target = max(n_workers, 1)
        #: seconds each ``add_node`` took, for the README's figures
        self.node_start_times: list[float] = []
        self.status = ClusterStatus.CREATED
        self._asynchronous = bool(asynchronous)
        self._booting = StartOnce(self._boot)
        self._n_workers = n_workers
        if not asynchronous:  # asynchronous: ``await cluster`` (or ``async with``) starts it
            self._boot()

    def _boot(self):
        self._start()
        if self._n_workers > 1:
            self._set_target(self._n_workers)
            self.wait_for_workers(self._n_workers, timeout=120)

    def __await__(self):
        return self._started().__await__()

    async def _started(self):
        """Start off the event loop (Ray's nodes take seconds); once, however often awaited."""
        if self.status is ClusterStatus.CREATED:  # not yet booted by a Client handed this cluster
            await self._booting()
        return self

    async def __aenter__(self):
        return await self._started()

    async def __aexit__(self, *exc):
        await asyncio.to_thread(self.close)

    def _node_args(self, name):
        return node_args(self.threads_per_worker, self.memory_limit, self.resources, self.object_store_memory,
                         name=name, host=self.host)

    def _start(self):
        from ray.cluster_utils import Cluster

        # Errored results that nobody reads are normal for Dask users; Ray would log each.
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
        head_args = self._node_args(0)
        head_args.update(include_dashboard=False)
        main = threading.current_thread() is threading.main_thread()
        # Ray's node objects install SIGTERM handlers, which Python allows only on the
        # main thread; elsewhere we rely on our own atexit hook and close().
        started = time.monotonic()
        self._cluster = Cluster(initialize_head=True, connect=False, head_node_args=head_args,
                                shutdown_at_exit=main)
        self.node_start_times.append(time.monotonic() - started)
        # a raylet killed by hand (cluster.scheduler.workers[a].pid) must not linger as a zombie
        self._reaper = Reaper()
        self._reaper.watch(raycompat.raylet_process(self._cluster.head_node))
        atexit.register(self.close)
        self._gcs_address = self._cluster.address
        self.upload_dir = tempfile.mkdtemp(prefix="raydask-upload-")
        try:
            ray.init(address=self._gcs_address, log_to_driver=False, logging_level=logging.WARNING,
                     job_config=_job_config(self.upload_dir))
        except BaseException:
            # the head is running: stop it, or a failed Client() leaves a Ray behind
            self._cluster.shutdown()
            self._reaper.close()
            atexit.unregister(self.close)
            self.status = ClusterStatus.CLOSED
            raise
        self.status = ClusterStatus.RUNNING

    # -- scaling ------------------------------------------------------------------
    def scale(self, n=0, memory=None, cores=None):
        """Grow or shrink to ``n`` workers (Ray nodes); returns at once, as in Dask.

        Nodes start in the background (``wait_for_workers`` waits for them).
        Removing prefers nodes that run no task, most recently added first; the
        head node is never removed.  A result whose only copy was on a removed node
        is recomputed by Ray from its lineage when it is next needed.  Calling
        ``scale`` stops :meth:`adapt`.
        """
        _check_count("scale's number of workers", n)
        self._stop_adaptive()
        self._set_target(n)

    def _set_target(self, n):
        if self.status is not ClusterStatus.RUNNING:
            raise RuntimeError(f"cannot scale a cluster that is {self.status.value}")
        with self._lock:
            self._target = max(n, 1)
            self._wake_scaler()

    @property
    def target(self) -> int:
        """The number of workers asked for (``scale``/``adapt``)."""
        return self._target

    def _reconcile(self):
        while self.status is ClusterStatus.RUNNING:
            with self._lock:
                dead, self._dead = self._dead, []
                retiring, self._retiring = self._retiring, []
            for node in dead:  # the rest of a dead node's processes (its raylet is gone)
                try:
                    self._cluster.remove_node(node, allow_graceful=False)
                except Exception:  # noqa: BLE001 - already gone
                    logger.debug("raydask: cleaning up a dead worker", exc_info=True)
            for node in retiring:
                try:
                    self._cluster.remove_node(node)
                except Exception:  # noqa: BLE001 - died meanwhile
                    logger.debug("raydask: removing a retired worker", exc_info=True)
                with self._lock:
                    self._removing.discard(node.node_id)
                    self._changed.notify_all()
            with self._lock:
                if self._dead or self._retiring:
                    continue
                have = 1 + len(self._nodes)
                want = self._target
                if have == want:
                    self._scaler = None  # a death after this starts a new scaler
                    return
                if have < want:
                    name = self._free_name()
            if have < want:
                # Nodes added from this thread cannot register signal handlers
                # (Python allows that only on the main thread); the head's reaper and
                # close() stop them instead.
                raycompat.skip_exit_hooks(self._cluster)
                started = time.monotonic()
                try:
                    added = self._cluster.add_node(wait=True, **self._node_args(name))
                except Exception:  # noqa: BLE001
                    logger.exception("raydask: could not start worker %s", name)
                    with self._lock:  # the name is free again; waiters see the scaler stopped
                        self._free_names.insert(0, name)
                        self._scaler = None
                        self._changed.notify_all()
                    return
                self.node_start_times.append(time.monotonic() - started)
                with self._lock:
                    self._nodes.append(added)
                    self._names[added] = name
                    self._changed.notify_all()
                self._reaper.watch(raycompat.raylet_process(added), on_exit=lambda _, node=added: self._died(node))
            else:
                node = self._pick_removable()
                if node is not None:
                    self._cluster.remove_node(node)

    def scale_down(self, workers):
        """Remove these workers (names or addresses, as Dask's); returns at once.

        Unknown names are ignored, as in Dask.  The workers removed are not
        replaced: the target drops by as many.  A coroutine for an asynchronous
        cluster inside its event loop (``await cluster.scale_down([...])``).

        Raises:
            ValueError: if one of them is the first worker, Ray's head node (it holds
                the cluster's state and is never removed).

        Differences from dask.distributed:
            Dask's is a coroutine function even on a synchronous cluster (called
            without ``await`` or ``cluster.sync`` it does nothing); raydask's acts
            when called there.
        """
        self._take(workers)  # the scaler removes them in the background
        return run_call(lambda: None, self.asynchronous)

    def _take(self, workers) -> list[dict]:
        """Hand the chosen workers to the scaler for removal; their rows of :func:`worker_table`."""
        table = _removable_rows(self, workers)
        chosen = {w["node_id"] for w in table}
        with self._lock:
            # Ray lists a node a moment before add_node returns it to the scaler: wait for that
            self._changed.wait_for(lambda: chosen <= {n.node_id for n in self._nodes}
                                   or self._scaler_stopped(), timeout=30)
            nodes = [n for n in self._nodes if n.node_id in chosen]
            self._hand_over(nodes)
            self._target = max(1, self._target - len(nodes))
            if nodes:
                self._wake_scaler()
        return [w for w in table if w["node_id"] in {n.node_id for n in nodes}]

    def _hand_over(self, nodes) -> dict:
        """Give ``nodes`` to the scaler to stop; ``{node id: name}`` of those that had one.

        Called with the lock held.  They are no longer ours, so their raylets'
        exits are not deaths (see :meth:`_died`).
        """
        names = {}
        for node in nodes:
            self._nodes.remove(node)
            name = self._names.pop(node, None)
            if name is not None:
                names[node.node_id] = name
            self._retiring.append(node)
            self._removing.add(node.node_id)
        return names

    def _scaler_stopped(self) -> bool:
        """No ``raydask-scale`` thread runs (none started, done, or died): nothing waited
        for from it will happen.  Called with the lock held."""
        return self._scaler is None or not self._scaler.is_alive()

    def _wake_scaler(self) -> None:
        """Start the ``raydask-scale`` thread unless it runs (called with the lock held)."""
        if self._scaler_stopped():
            self._scaler = threading.Thread(target=self._reconcile, name="raydask-scale", daemon=True)
            self._scaler.start()

    def _retire(self, workers, timeout=60) -> list[dict]:
        """:meth:`_take` these workers, then wait until the scaler has stopped them."""
        rows = self._take(workers)
        ids = {w["node_id"] for w in rows}
        with self._lock:
            self._changed.wait_for(lambda: not ids & self._removing, timeout=timeout)
        return rows

    def _restart(self, workers, timeout) -> dict:
        """``Client.restart_workers``: stop these workers' nodes, start new ones under their names.

        What Dask's nanny does for a worker (its process restarts, the name
        stays), done the way a dead worker is replaced (:meth:`_died`): the
        scaler stops the node (gracefully, as ``scale_down`` does: its raylet
        tells the GCS it leaves, so Ray lists it dead at once; a killed one stays
        listed until the GCS' health checks fail, seconds later), and its name is
        freed for the node the scaler starts next (the target is unchanged).

        Returns:
            ``{worker as given: "OK" | "timed out"}``, ``"OK"`` once the new node is up.
        Raises:
            ValueError: for an unknown worker, or the head node (Ray's cluster state).
        """
        if self.status is not ClusterStatus.RUNNING:
            raise RuntimeError(f"cannot restart workers of a cluster that is {self.status.value}")
        table = worker_table()
        rows = {}
        for w in workers:
            row = next((r for r in table if str(w) in (r["address"], str(r["name"]), r["node_id"])), None)
            if row is None:
                raise ValueError(f"unknown worker {w!r}: not an address or name of this cluster's workers")
            if row["is_head"]:
                raise ValueError(f"worker {w!r} is Ray's head node, which holds the cluster's state: "
                                 "it cannot be restarted")
            rows[w] = row
        ids = {r["node_id"] for r in rows.values()}
        deadline = time.monotonic() + timeout
        with self._lock:
            # Ray lists a node a moment before add_node returns it to the scaler: wait for that
            self._changed.wait_for(lambda: ids <= {n.node_id for n in self._nodes}
                                   or self._scaler_stopped(), timeout=30)
            names = self._hand_over([n for n in self._nodes if n.node_id in ids])
            self._free_names[:0] = names.values()  # the next nodes started get them
            logger.info("raydask: restarting workers %s", sorted(map(str, names.values())))
            self._wake_scaler()
            back = lambda: (set(names.values()) <= set(self._names.values())  # noqa: E731
                            or self._scaler_stopped())
            self._changed.wait_for(back, timeout=max(0.0, deadline - time.monotonic()))
            now = set(self._names.values())
        return {w: "OK" if names.get(r["node_id"]) in now else "timed out" for w, r in rows.items()}

    def _free_name(self):
        """The name for the next worker: a dead worker's (as Dask's nanny restarts it under
        its name), else the next number.  Called with the lock held."""
        if self._free_names:
            return self._free_names.pop(0)
        name = self._next_name
        self._next_name += 1
        return name

    def _died(self, node):
        """A worker node's raylet exited while it was ours (killed by hand, or crashed).

        Called on the reaper's thread.  As Dask's nanny restarts a worker whose process
        died, the scaler starts a node in its place (a new address, the same name) and
        cleans up what is left of the dead one.  A node that ``scale`` or ``close``
        removed is no longer in ``_nodes`` and is not replaced.
        """
        with self._lock:
            if self.status is not ClusterStatus.RUNNING or node not in self._nodes:
                return
            self._nodes.remove(node)
            self._dead.append(node)
            name = self._names.pop(node, None)
            if name is not None:
                self._free_names.append(name)
            logger.warning("raydask: worker %s died; starting another in its place", name)
            self._wake_scaler()

    def _pick_removable(self):
        """The node to remove next: idle ones first (Ray calls a node idle when it runs
        nothing and holds no objects), then ones with no task running, newest first."""
        try:
            used, _ = cluster_load(self._gcs_address)
            idle = set(self.idle_workers())
        except Exception:  # noqa: BLE001 - no usage known: fall back to the newest
            used, idle = {}, set()
        with self._lock:
            if not self._nodes:
                return None
            ranked = sorted(range(len(self._nodes)), key=lambda i: (
                self._nodes[i].node_id not in idle, bool(used.get(self._nodes[i].node_id)), -i))
            node = self._nodes.pop(ranked[0])
            self._names.pop(node, None)
            return node

    def idle_workers(self, idle_ms=0) -> list[str]:
        """Node ids of removable workers that have run nothing for ``idle_ms``."""
        idle = raycompat.cluster_usage(self._gcs_address).idle_ms
        with self._lock:
            mine = {n.node_id for n in self._nodes}
        return [node_id for node_id, ms in idle.items() if node_id in mine and ms >= idle_ms]

    def close(self, timeout=None):
        """Stop every node this cluster started, and disconnect this process from Ray.

        A coroutine for an asynchronous cluster inside its event loop (``await cluster.close()``).
        """
        return run_call(self._close, self._asynchronous and in_loop(), blocking=True)

    def _close(self):
        if self.status is ClusterStatus.CREATED:  # an asynchronous cluster nobody awaited
            self.status = ClusterStatus.CLOSED
            return
        if self.status in (ClusterStatus.CLOSING, ClusterStatus.CLOSED):
            return
        self._stop_adaptive()
        self.status = ClusterStatus.CLOSING
        scaler = self._scaler
        if scaler is not None and scaler is not threading.current_thread():
            scaler.join(timeout=60)
        if ray.is_initialized():
            ray.shutdown()
        self._cluster.shutdown()
        self._reaper.close()
        if self.upload_dir:
            shutil.rmtree(self.upload_dir, ignore_errors=True)
        self.status = ClusterStatus.CLOSED
        atexit.unregister(self.close)


def use_cluster_auth(gcs_address):
    """Send Ray's auth token (``~/.ray/auth_token``) to a cluster on this machine that wants one.

    ``ray start`` turns token authentication on when that file exists, but
    ``ray.init(address="host:port")`` sends the token only for ``"auto"``; for a
    cluster found on this machine raydask does what ``"auto"`` would, but only
    if that cluster runs with tokens (:func:`raydask.nodes.cluster_uses_token`).
    A process that turns tokens on for a cluster without them is let in, yet
    its Ray worker then refuses the other processes' calls: Futures it owns read
    as ``OwnerDiedError`` elsewhere.  ``RAY_AUTH_MODE`` set by the user always wins.
    """
    if cluster_uses_token(gcs_address) is not False:  # tokens, or not known: as "auto" would
        raycompat.use_local_auth_token()


class RayCluster(_ClusterBase):
    """A running Ray cluster that this process joined (``Client(address=...)``).

    Args:
        address: ``"auto"`` (the one cluster running on this machine), ``"host:port"``
            of its GCS, or ``"ray://host:port"`` for Ray Client.
    Raises:
        ConnectionError: if ``"auto"`` matches no cluster or several.

    Closing only disconnects; the cluster keeps running.
    """

    def __init__(self, address=None, name=None, owns_connection=True):
        self.name = name or "ray"
        self._owns_connection = owns_connection
        self._dashboard_link = None
        if not ray.is_initialized():
            address = resolve_address(address)
            local = local_ray_addresses()  # one look at this machine's raylets
            if address.startswith("ray://") and address[len("ray://"):] in local:
                # raydask's own scheduler_address ("ray://<GCS>"), as Dask code passes it on:
                # the GCS of a cluster on this machine, joined directly, not through Ray Client
                address = address[len("ray://"):]
            kwargs = {}
            if address in local:
                use_cluster_auth(address)
            if not address.startswith("ray://"):
                self.upload_dir = tempfile.mkdtemp(prefix="raydask-upload-")
                kwargs["job_config"] = _job_config(self.upload_dir)
            # ray.init prefers RAY_ADDRESS over its argument; make both say the same.
            saved = os.environ.get("RAY_ADDRESS")
            os.environ["RAY_ADDRESS"] = address
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **kwargs)
            finally:
                if saved is None:
                    del os.environ["RAY_ADDRESS"]
                else:
                    os.environ["RAY_ADDRESS"] = saved
        self._gcs_address = ray.get_runtime_context().gcs_address
        self.status = ClusterStatus.RUNNING

    def scale(self, n=0, memory=None, cores=None):
        """Ask Ray's autoscaler for ``n`` workers' worth of CPUs.

        The request (``ray.autoscaler.sdk.request_resources``) replaces the previous
        one and stays in force until changed; ``scale(0)`` withdraws it.

        Differences from dask.distributed:
            Ray adds and removes nodes only through its autoscaler.  On a cluster
            started by hand (``ray start``) no autoscaler runs: the request is
            stored by the GCS and nothing else happens, and ``scale`` logs a warning.
            Nodes are never removed by ``scale``; the autoscaler removes idle ones.
        """
        _check_count("scale's number of workers", n)
        self._stop_adaptive()
        self._set_target(n)

    @property
    def target(self) -> int:
        """The number of workers last asked for (the current count before any ``scale``)."""
        return self._target if self._target is not None else len(worker_table())

    _target = None

    def _set_target(self, n):
        from ray.autoscaler.sdk import request_resources

        self._target = n
        table = worker_table()
        per = max((w["nthreads"] for w in table), default=1) or 1
        request_resources(bundles=[{"CPU": per}] * n)
        if n > len(table) and not self.has_autoscaler():
            logger.warning("raydask: no Ray autoscaler runs on %s; scale(%d) recorded a resource request "
                           "that nothing acts on", self._gcs_address, n)

    def scale_down(self, workers):
        """Drain these workers' Ray nodes (names, addresses or node ids); returns at once.

        Ray's drain (:func:`raydask.raycompat.drain_node`, what ``ray drain-node``
        and Ray's autoscaler use): the node takes no new tasks, finishes the ones
        it runs, then its raylet exits.  Unknown workers are ignored, as in Dask;
        the target drops by as many as were drained.

        Raises:
            ValueError: if one of them is the head node (the cluster's state lives there).
            RuntimeError: if Ray refuses to drain one (its reason is in the message).

        Differences from dask.distributed:
            The node's raylet exits once it runs no task and holds no object still
            in use (Dask moves such data elsewhere first; Ray waits for it to be
            released); whatever started the node (``ray start``, a container, an
            autoscaler, a ``LocalCluster`` of another process) decides whether it
            comes back.
        """
        rows = self._drain(workers)
        if rows and self._target is not None:
            self._target = max(0, self._target - len(rows))
        return run_call(lambda: None, self.asynchronous)

    def _drain(self, workers) -> list[dict]:
        """Ask Ray to drain the chosen workers' nodes; their rows of :func:`worker_table`."""
        table = _removable_rows(self, workers)
        for w in table:
            accepted, why = raycompat.drain_node(self._gcs_address, w["node_id"],
                                                 "raydask: scale_down / retire_workers")
            if not accepted:
                raise RuntimeError(f"Ray refused to drain worker {w['address']!r}: {why}")
        return table

    def _retire(self, workers, timeout=60) -> list[dict]:
        """:meth:`_drain` these workers, then wait until Ray lists their nodes dead.

        Raises:
            TimeoutError: if a node still runs after ``timeout`` seconds: a drained
                node stops only once it runs no task and holds no object still in use
                (measured on Ray 2.60: one holding a result a driver still referred to
                was listed alive 25 s after the drain; once released, it went at once).
        """
        rows = self._drain(workers)
        ids = {w["node_id"] for w in rows}
        deadline = time.monotonic() + timeout
        delay = 0.05
        # Ray has no "node died" callback for a driver; back off between looks at the node table
        while ids & {w["node_id"] for w in worker_table()}:
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers {sorted(w['address'] for w in rows)!r} were drained but still run "
                                   f"after {timeout} s: Ray stops a drained node once it runs no task and holds "
                                   "no object still in use (release the futures whose results live there)")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        if rows and self._target is not None:
            self._target = max(0, self._target - len(rows))
        return rows

    def has_autoscaler(self) -> bool:
        """Whether a Ray autoscaler reports to this cluster's GCS."""
        try:
            return raycompat.cluster_usage(self._gcs_address).autoscaler
        except Exception:  # noqa: BLE001 - the GCS did not answer
            return False

    def close(self, timeout=None):
        """Disconnect from the cluster (it keeps running)."""
        if self.status is ClusterStatus.CLOSED:
            return
        self._stop_adaptive()
        if self._owns_connection and ray.is_initialized():
            ray.shutdown()
        if self.upload_dir:
            shutil.rmtree(self.upload_dir, ignore_errors=True)
        self.status = ClusterStatus.CLOSED


class Adaptive:
    """Keeps a cluster between ``minimum`` and ``maximum`` workers, following the load.

    Every ``interval`` it reads the GCS' cluster status (what Ray's own
    autoscaler reads): CPUs wanted by tasks that wait for a slot add nodes at
    once; nodes idle for ``wait_count`` looks in a row are removed.  Ray offers
    no "task queued" callback to a driver, so this looks periodically, as
    Dask's ``Adaptive`` does.
    """

    def __init__(self, cluster, minimum=0, maximum=math.inf, interval="1s", wait_count=3):
        if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 0:
            raise ValueError(f"minimum must be a non-negative integer, got {minimum!r}")
        if maximum != math.inf and (not isinstance(maximum, int) or isinstance(maximum, bool) or maximum < minimum):
            raise ValueError(f"maximum must be an integer >= minimum ({minimum!r}), got {maximum!r}")
        self.minimum = max(minimum, 1)  # the head node stays
        self.maximum = maximum
        self.interval = parse_timedelta(interval, "interval")
        self.wait_count = wait_count
        self._cluster = weakref.ref(cluster)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raydask-adapt", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval):
            cluster = self._cluster()
            if cluster is None or cluster.status is not ClusterStatus.RUNNING:
                return
            try:
                self.step(cluster)
            except Exception:  # noqa: BLE001 - try again next time
                logger.exception("raydask: adaptive scaling step failed")
            del cluster

    def recommendation(self, cluster) -> int:
        """The number of workers the cluster should have now."""
        used, demand = cluster_load(cluster._gcs_address)
        current = cluster.target
        if demand > 0:
            per = getattr(cluster, "threads_per_worker", 1) or 1
            want = current + math.ceil(demand / per)
        else:
            idle_ms = int(self.interval * self.wait_count * 1000)
            idle = cluster.idle_workers(idle_ms) if hasattr(cluster, "idle_workers") else []
            want = current - len(idle)
        return int(min(max(want, self.minimum), self.maximum))

    def step(self, cluster) -> None:
        want = self.recommendation(cluster)
        if want != cluster.target:
            cluster._set_target(want)

    def stop(self):
        """End adaptivity (the workers stay as they are); joins the thread."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
