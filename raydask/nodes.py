"""Ray nodes seen from this machine: the raylet behind each, and Dask's view of them as workers.

A Ray node *is* its raylet process: the raylet starts the node's worker
processes and agents, and when it dies they exit and the GCS marks the node
dead.  Every raylet's command line names its node id, its cluster's GCS and
its log files, so this machine's process table says which process to kill to
take a worker down, and where its logs are (Ray finds local clusters the same
way: ``ray._private.services.find_gcs_addresses``)::

    psutil process table ──► Raylet(pid, node_id, gcs_address, log files, environment)
                                   │
    worker rows (Ray's node table) ┴──► WorkerState: Dask's ``scheduler.workers[address]``

Nothing here starts or stops anything; the views are snapshots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["Raylet", "SchedulerState", "WorkerState", "cluster_uses_token", "local_raylets", "process_alive",
           "raylet_of"]


@dataclass(frozen=True)
class Raylet:
    """One raylet process running on this machine (one Ray node)."""

    pid: int
    node_id: str
    gcs_address: str
    #: the session's log directory and this raylet's own stdout/stderr files
    log_dir: str | None = None
    stdout: str | None = None
    stderr: str | None = None


def _flags(cmdline) -> dict:
    """``--name=value`` arguments of a command line (a nested command's flags stay inside it)."""
    out = {}
    for arg in cmdline[1:]:
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            out.setdefault(name.replace("-", "_"), value)
    return out


def local_raylets() -> list[Raylet]:
    """Every raylet running on this machine that this user may inspect."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if not cmd or os.path.basename(cmd[0]) != "raylet":
                continue
            flags = _flags(cmd)
            if flags.get("gcs_address") in (None, "", "None") or not flags.get("node_id"):
                continue
            found.append(Raylet(pid=proc.info["pid"], node_id=flags["node_id"], gcs_address=flags["gcs_address"],
                                log_dir=flags.get("log_dir"), stdout=flags.get("stdout_filepath"),
                                stderr=flags.get("stderr_filepath")))
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            pass
    return found


def raylet_of(node_id: str, raylets=None) -> Raylet | None:
    """The raylet of node ``node_id`` (hex) if it runs on this machine."""
    for r in local_raylets() if raylets is None else raylets:
        if r.node_id == node_id:
            return r
    return None


def process_alive(pid) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    import psutil

    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def cluster_uses_token(gcs_address: str) -> bool | None:
    """Whether the Ray cluster at ``gcs_address`` runs with token authentication.

    Ray decides that per process from ``RAY_AUTH_MODE`` (``ray start --head``
    and ``ray.init()`` set it in their own environment when they turn tokens on;
    it cannot be set any other way), and a cluster's processes inherit it, so
    the environment of one of its raylets on this machine says.  None when no
    raylet of that cluster can be read here.
    """
    import psutil

    for r in local_raylets():
        if r.gcs_address != gcs_address:
            continue
        try:
            env = psutil.Process(r.pid).environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        return env.get("RAY_AUTH_MODE", "").lower() == "token"
    return None


@dataclass(frozen=True)
class WorkerState:
    """What notebooks read off Dask's ``scheduler.workers[address]``, for one Ray node.

    A snapshot, read-only: changing it changes nothing in Ray.  ``pid`` is the
    node's raylet (None when the node runs on another machine): killing it
    takes that worker down, as killing a Dask worker process does.
    """

    address: str
    name: object
    nthreads: int
    memory_limit: int
    resources: dict = field(default_factory=dict)
    host: str = ""
    node_id: str = ""
    pid: int | None = None

    @property
    def status(self) -> str:
        return "running"  # only alive nodes are listed

    def __repr__(self):
        return f"<WorkerState {self.address!r}, name: {self.name}, status: running>"


class SchedulerState:
    """A read-only stand-in for Dask's ``cluster.scheduler``: its address and its workers.

    Ray's GCS and raylets do the scheduling; what Dask users read off the
    scheduler object (``workers``, ``address``) is computed from Ray's node
    table each time it is read.
    """

    def __init__(self, address: str, rows):
        self.address = address
        self._rows = rows  # () -> worker rows (raydask.cluster.worker_table's shape)

    @property
    def workers(self) -> dict:
        """``{address: WorkerState}`` of the alive workers (a fresh snapshot per read)."""
        raylets = local_raylets()
        return {w["address"]: WorkerState(
            address=w["address"], name=w["name"], nthreads=w["nthreads"], memory_limit=w["memory_limit"],
            resources=dict(w["resources"]), host=w["host"], node_id=w["node_id"],
            pid=getattr(raylet_of(w["node_id"], raylets), "pid", None)) for w in self._rows()}

    @property
    def total_nthreads(self) -> int:
        return sum(w.nthreads for w in self.workers.values())

    def __repr__(self):
        workers = self.workers
        return (f"<Scheduler {self.address!r}, workers: {len(workers)}, "
                f"cores: {sum(w.nthreads for w in workers.values())}>")
