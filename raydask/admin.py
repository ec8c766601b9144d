"""The cluster as a client sees it: Dask's information calls, and the calls that change its workers.

A Dask worker is a Ray node (:func:`raydask.cluster.worker_table`).  What
Dask's scheduler knows per key (who has it, its size, where it runs) comes
from the client's own states and the records its tasks send home
(:mod:`raydask.receipts`), and from the GCS's task events; nothing here keeps
state of its own.  :class:`~raydask.client.Client` wraps each function in its
method of Dask's name, with Dask's docstring.
"""

from __future__ import annotations

import functools
import time
import warnings

import ray
import ray.exceptions

from . import raycompat, versions
from .awaiting import get_one
from .cluster import LocalCluster, cluster_logs, session_started, wanted_workers, worker_table
from .errors import unwrap
from .future import Status
from .keys import key_split
from .logs import records
from .scheduling import refresh, run_on_nodes

__all__ = [
    "has_what", "nbytes", "nthreads", "processing", "restart_workers", "retire_workers", "run", "scheduler_info",
    "scheduler_logs", "versions_everywhere", "who_has", "worker_logs",
]


def scheduler_info(cluster, dashboard_port, log_started) -> dict:
    """Dask's ``scheduler_info()`` shape: the cluster and its workers by address (see the client's method)."""
    table = worker_table()
    now = time.time()
    started = session_started(table)
    if started is None:
        started = log_started if log_started is not None else now
    live = {"status": "running", "nanny": None, "services": {}, "last_seen": now}
    return {
        "type": "Scheduler",
        "id": cluster.scheduler_address,
        "address": cluster.scheduler_address,
        "services": {"dashboard": dashboard_port} if dashboard_port is not None else {},
        "started": started,
        "n_workers": len(table),
        "total_threads": sum(w["nthreads"] for w in table),
        "total_memory": sum(w["memory_limit"] for w in table),
        "workers": {w["address"]: {k: v for k, v in w.items() if k != "address"}
                    | live | {"id": w["address"], "metrics": {"time": now}} for w in table},
    }


@functools.cache
def _on_head(function):
    """``function`` as a zero-CPU Ray task pinned to the head node, made once per function."""
    return ray.remote(num_cpus=0, max_retries=0, resources={"node:__internal_head__": 0.001})(function)


def versions_everywhere(check, packages) -> dict:
    """``get_versions``: the versions on the head node ("scheduler"), each node and here."""
    # the head always has its node resource, even when it offers no CPU (raydask.Scheduler)
    head = _on_head(versions.versions).remote(packages)
    workers = run_on_nodes(versions.versions, (packages,), {}, None, worker_table())
    result = {"scheduler": ray.get(head), "workers": dict(zip(workers, ray.get(list(workers.values())))),
              "client": versions.versions(packages)}
    if check:
        rows = versions.mismatches(result["client"], result["scheduler"], result["workers"])
        if rows:
            warnings.warn(versions.mismatch_message(rows), stacklevel=3)
    return result


def nthreads(workers) -> dict:
    """``{worker address: threads}``; ``workers`` matched exactly by address or name, as Dask's scheduler."""
    wanted = None if workers is None else wanted_workers(workers)
    return {w["address"]: w["nthreads"] for w in worker_table()
            if wanted is None or w["address"] in wanted or str(w["name"]) in wanted}


def who_has(states) -> dict:
    """``{key: [address]}``: the node that produced each finished state's value, by its record."""
    refresh(states)
    addresses = {w["node_id"]: w["address"] for w in worker_table()}
    return {
        st.key: [addresses[st.load_record().node_id]] if st.status is Status.FINISHED
        and st.load_record() is not None and st.record.node_id in addresses else []
        for st in states
    }


def has_what(states, table) -> dict:
    """``{address: [keys]}`` for every worker of ``table``: :func:`who_has` inverted."""
    out = {w["address"]: [] for w in table}
    for key, where in who_has(states).items():
        for address in where:
            if address in out:
                out[address].append(key)
    return out


def processing(states, table) -> dict:
    """``{address: [keys]}``: the ``states`` whose tasks the GCS reports running on each worker of ``table``."""
    out = {w["address"]: [] for w in table}
    states = [st for st in states if st.phase() == "processing"]
    refresh(states)
    by_task = {st.ref.task_id().binary(): st for st in states if st.status is Status.PENDING}
    addresses = {w["node_id"]: w["address"] for w in table}
    for task_id, timing in (raycompat.task_timings(list(by_task)) or {}).items():
        ended = {"FINISHED", "FAILED"} & set(timing.states)
        if timing.node_id in addresses and not ended:
            out[addresses[timing.node_id]].append(by_task[task_id].key)
    return out


def nbytes(states, summary) -> dict:
    """``{key: bytes}`` of the finished ``states`` by their records; ``summary``: summed by key prefix."""
    refresh(states)
    sizes = {st.key: st.load_record().nbytes for st in states
             if st.status is Status.FINISHED and st.load_record() is not None}
    if not summary:
        return sizes
    out: dict = {}
    for key, n in sizes.items():
        prefix = key_split(key)
        out[prefix] = out.get(prefix, 0) + n
    return out


def retire_workers(cluster, workers, info) -> dict:
    """Retire ``workers`` (None: every idle one but the head) of ``cluster``; ``{address: info}``.

    ``info`` is ``scheduler_info()["workers"]`` read before they go.
    """
    if workers is None:
        idle = set(cluster.idle_workers())  # never the head: it is not the cluster's to remove
        workers = [w["address"] for w in worker_table() if w["node_id"] in idle]
    rows = cluster._retire(workers)
    return {w["address"]: dict(info.get(w["address"], w), status="closed") for w in rows}


def restart_workers(cluster: LocalCluster, workers, limit, raise_for_error) -> dict:
    """Restart ``workers`` of ``cluster`` (new nodes under the same names): ``{worker: "OK" | "timed out"}``."""
    out = cluster._restart(list(workers), limit)
    late = [w for w, status in out.items() if status != "OK"]
    if late and raise_for_error:
        raise TimeoutError(f"{len(late)}/{len(out)} worker(s) did not restart within {limit}s: {late}")
    return out


def run(refs, on_error):
    """``Client.run``'s results by worker address, as steps (see :mod:`raydask.awaiting`)."""
    results = {}
    for address, ref in refs.items():
        try:
            results[address] = yield get_one(ref)
        except ray.exceptions.RayError as err:
            exc = unwrap(err)
            if on_error == "raise":
                raise exc from None
            if on_error == "return":
                results[address] = exc
    return results


def scheduler_logs(n) -> list:
    """The GCS log's last ``n`` lines, newest first, as ``[(level, line)]``."""
    return records(cluster_logs(False, True, False)["Scheduler"], n)


def worker_logs(n, workers, nanny) -> dict:
    """``{address: [(level, line)]}``: each worker's raylet log, with its processes' unless ``nanny``."""
    logs = cluster_logs(False, False, True if workers is None else list(workers), processes=not nanny)
    return {address: records(log, n) for address, log in logs.items()}
