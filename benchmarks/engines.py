"""One engine per subprocess: raydask, raw Ray, or dask.distributed.

An engine starts its cluster once, then runs workloads by name as the parent
asks (:func:`serve`).  raydask and dask.distributed share the Dask-API workload
code (:class:`DaskAPI`); :class:`RawRay` is the idiomatic Ray equivalent:
``f.remote`` + ``ray.get``, a ``ray.wait`` loop for ``as_completed``, and
``ray.cluster_utils.Cluster`` for nodes (raydask's LocalCluster uses the same).

Every workload returns ``{"seconds": ...}`` (the timed part only) and may add
``"value"`` (a measured quantity that is not a time, e.g. bytes) or
``"parts"`` (named sub-timings).
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import sys
import tempfile
import time
import traceback

from . import tasks

OBJECT_STORE = 512 * 2**20  # per node, room for the 100 MB array and its copies


#: Seconds ``memory_10k`` waits after the last submit before it reads the RSS, in every engine.
#: Read at once, Ray's threads were still handing the tasks to the raylet, and their transient
#: buffers moved single readings of raydask by up to 20 % (81.9-97.7 MiB in six runs); after 2 s
#: three runs read 101.3-101.4 MiB, and Ray's 95.0-95.5.
SETTLE = 2.0


def rss() -> int:
    """Resident set size of this process in bytes, after returning free heap to the OS.

    Without the trim, memory freed by an earlier run is reused and the delta reads ~0.
    """
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Engine:
    def __init__(self):
        self._counter = itertools.count(1)
        import cloudpickle

        cloudpickle.register_pickle_by_value(tasks)

    def fresh(self, n: int) -> int:
        """A base integer so that no two runs submit equal (deduplicated) calls."""
        return next(self._counter) * 10_000_000 + n * 0

    @staticmethod
    def _blocker_path():
        fd, path = tempfile.mkstemp(prefix="raydask-bench-")
        os.close(fd)
        os.remove(path)
        return path


def _array_reduction(chunks, compute):
    import dask.array as da

    x = da.arange(chunks * 1000, chunks=1000)
    t0 = time.perf_counter()
    total = compute((x * 2).sum())
    seconds = time.perf_counter() - t0
    n = chunks * 1000
    assert total == n * (n - 1), total
    return {"seconds": seconds}


def _dataframe_groupby(partitions, compute):
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd

    n = partitions * 1000
    df = dd.from_pandas(pd.DataFrame({"k": np.arange(n) % 97, "v": np.arange(n)}), npartitions=partitions)
    t0 = time.perf_counter()
    out = compute(df.groupby("k").v.sum())
    seconds = time.perf_counter() - t0
    assert int(out.sum()) == n * (n - 1) // 2
    return {"seconds": seconds}


def _put_then_get(q, n):
    """The queue row's timed part, the same for every engine: ``n`` puts, then ``n`` gets."""
    t0 = time.perf_counter()
    for i in range(n):
        q.put(i)
    for _ in range(n):
        q.get()
    return {"seconds": time.perf_counter() - t0}


def _timed_fib(run, n):
    """Time ``run()``, which computes fib(n) on the cluster, and check its answer."""
    t0 = time.perf_counter()
    value = run()
    seconds = time.perf_counter() - t0
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    assert value == a, (n, value)
    return {"seconds": seconds}


class DaskAPI(_Engine):
    """raydask or dask.distributed, driven through the same Dask API calls."""

    def __init__(self, kind, nodes=1, cpus=2, dashboard=False):
        super().__init__()
        self.kind = kind
        self.cpus = cpus
        if kind == "raydask":
            import raydask as mod

            self.client = mod.Client(n_workers=nodes, threads_per_worker=cpus,
                                     dashboard_address="127.0.0.1:0" if dashboard else None,
                                     object_store_memory=OBJECT_STORE)
        elif kind == "dask":
            import distributed as mod

            cluster = mod.LocalCluster(n_workers=nodes, threads_per_worker=cpus, processes=True,
                                       dashboard_address="127.0.0.1:0" if dashboard else None)
            self.client = mod.Client(cluster)
        else:
            raise ValueError(f"unknown Dask-API engine {kind!r}")
        self.mod = mod
        self.api = mod.__name__  # the module the fib rows' tasks take get_client from
        self.dashboard_link = getattr(self.client, "dashboard_link", None) if dashboard else None

    def info(self):
        import dask
        import ray

        out = {"engine": self.kind, "dashboard": self.dashboard_link}
        if self.kind == "raydask":
            import raydask

            out["versions"] = {"raydask": getattr(raydask, "__version__", "?"), "ray": ray.__version__}
            out["dashboard_module"] = self.client._dashboard is not None
        else:
            import distributed

            out["versions"] = {"dask": dask.__version__, "distributed": distributed.__version__}
        return out

    def _workers(self):
        return sorted(self.client.scheduler_info()["workers"])

    # -- workloads ----------------------------------------------------------------
    def submit_rate(self, n):
        c, base = self.client, self.fresh(n)
        t0 = time.perf_counter()
        fs = [c.submit(tasks.inc, base + i) for i in range(n)]
        t = time.perf_counter() - t0
        self.mod.wait(fs)
        t1 = time.perf_counter()
        c.gather(fs)  # every task is done: this is the client's own cost of fetching
        return {"seconds": t, "parts": {"submit": t, "gather": time.perf_counter() - t1}}

    def throughput(self, n):
        c, base = self.client, self.fresh(n)
        t0 = time.perf_counter()
        fs = [c.submit(tasks.inc, base + i) for i in range(n)]
        c.gather(fs)
        return {"seconds": time.perf_counter() - t0}

    def priority_throughput(self, n):
        """throughput with ``priority=i % 5`` on every task (varied: the order changes)."""
        c, base = self.client, self.fresh(n)
        t0 = time.perf_counter()
        fs = [c.submit(tasks.inc, base + i, priority=i % 5) for i in range(n)]
        c.gather(fs)
        return {"seconds": time.perf_counter() - t0}

    def priority_jump(self, n, sleep, delay):
        """A ``priority=100`` task submitted ``delay`` s after ``n`` queued ``priority=0`` ones."""
        c, base = self.client, self.fresh(n)
        fs = [c.submit(tasks.stamped_sleep, base + i, sleep, priority=0) for i in range(n)]
        time.sleep(delay)  # let the low ones reach the scheduler / gate and start running
        submitted = time.time()
        high = c.submit(tasks.stamped_sleep, base + n, sleep, priority=100)
        gate = getattr(c, "_gate", None)
        inflight = gate.stats()["released"] if gate is not None else None
        start, stop, _ = high.result()
        return _jump(submitted, start, stop, c.gather(fs), inflight)

    def array_reduction(self, chunks):
        """``(x * 2).sum().compute()`` over a ``dask.array`` of ``chunks`` chunks, on this client."""
        return _array_reduction(chunks, lambda c: c.compute())

    def dataframe_groupby(self, partitions):
        """``df.groupby(k).v.sum().compute()`` over ``partitions`` pandas partitions."""
        return _dataframe_groupby(partitions, lambda c: c.compute())

    def async_awaits(self, n):
        """``n`` futures of an asynchronous client, each awaited by its own coroutine, in one loop."""
        import asyncio

        base = self.fresh(n)

        async def main():
            if self.kind == "raydask":  # a second client of this process's Ray
                c = await self.mod.Client(asynchronous=True, set_as_default=False, dashboard_address=None)
            else:
                c = await self.mod.Client(self.client.scheduler.address, asynchronous=True, set_as_default=False)
            try:
                t0 = time.perf_counter()
                futures = [c.submit(tasks.inc, base + i) for i in range(n)]

                async def one(f):
                    return await f

                values = await asyncio.gather(*(one(f) for f in futures))
                seconds = time.perf_counter() - t0
            finally:
                await c.close()
            assert values[-1] == base + n
            return {"seconds": seconds}

        return asyncio.run(main())

    def map(self, n):
        c, base = self.client, self.fresh(n)
        t0 = time.perf_counter()
        fs = c.map(tasks.inc, range(base, base + n))
        c.gather(fs)
        return {"seconds": time.perf_counter() - t0}

    def round_trip(self, n):
        c, base = self.client, self.fresh(n)
        t0 = time.perf_counter()
        for i in range(n):
            c.submit(tasks.inc, base + i).result()
        return {"seconds": time.perf_counter() - t0}

    def chain(self, n):
        c, base = self.client, self.fresh(n)
        t0 = time.perf_counter()
        x = c.submit(tasks.inc, base)
        for _ in range(n - 1):
            x = c.submit(tasks.inc, x)
        x.result()
        return {"seconds": time.perf_counter() - t0}

    def tree(self, n):
        c, base = self.client, self.fresh(n)
        t0 = time.perf_counter()
        level = c.map(tasks.inc, range(base, base + n))
        while len(level) > 1:
            level = [c.submit(tasks.add, level[i], level[i + 1]) for i in range(0, len(level), 2)]
        level[0].result()
        return {"seconds": time.perf_counter() - t0}

    def fib_get_client(self, n):
        """Dask's task-launch page, the ``get_client`` block: ``fib(n)`` whose tasks launch tasks."""
        return _timed_fib(lambda: self.client.submit(tasks.fib_get_client, n, self.api).result(), n)

    def fib_worker_client(self, n):
        """The same page's ``worker_client`` block."""
        return _timed_fib(lambda: self.client.submit(tasks.fib_worker_client, n, self.api).result(), n)

    def as_completed(self, n):
        c, base = self.client, self.fresh(n)
        t0 = time.perf_counter()
        fs = [c.submit(tasks.inc, base + i) for i in range(n)]
        for f in self.mod.as_completed(fs):
            f.result()
        return {"seconds": time.perf_counter() - t0}

    def _actor(self):
        return self.client.submit(tasks.Counter, actor=True).result()

    def actor_calls(self, n):
        counter = self._actor()
        counter.increment().result()  # the actor is up before the clock starts
        t0 = time.perf_counter()
        for _ in range(n):
            counter.increment().result()
        return {"seconds": time.perf_counter() - t0}

    def actor_inflight(self, n):
        counter = self._actor()
        counter.increment().result()
        t0 = time.perf_counter()
        futures = [counter.increment() for _ in range(n)]
        last = [f.result() for f in futures][-1]
        assert last == n + 1, last
        return {"seconds": time.perf_counter() - t0}

    def scatter_transfer(self, mb):
        import numpy as np

        c = self.client
        workers = self._workers()
        if len(workers) < 2:
            raise RuntimeError(f"scatter_transfer needs 2 workers, have {workers!r}")
        arr = np.random.default_rng(self.fresh(0)).random(mb * 2**20 // 8)
        gc.collect()
        t0 = time.perf_counter()
        if self.kind == "dask":  # data on the first worker, the task on the second
            fut = c.scatter(arr, workers=[workers[0]])
            other = workers[1]
        else:  # raydask scatters into the driver's node; the task goes to the other one
            import ray

            here = ray.get_runtime_context().get_node_id()
            info = c.scheduler_info()["workers"]
            other = next(a for a in workers if info[a].get("node_id") != here)
            fut = c.scatter(arr)
        t1 = time.perf_counter()
        n = c.submit(tasks.nbytes_of, fut, workers=[other]).result()
        t2 = time.perf_counter()
        back = c.gather(fut)
        t3 = time.perf_counter()
        assert n == arr.nbytes and back.shape == arr.shape
        return {"seconds": t3 - t0, "parts": {"scatter": t1 - t0, "remote task": t2 - t1, "gather": t3 - t2}}

    def notebook(self, sleep, one_client=False):
        """The seed notebook (examples/futures.py) minus startup and ``scale(10)``.

        Each run has a new client of this engine's cluster (made and closed
        outside the timing), as the notebook runs once per client: its
        ``priority=1`` loop comes last, so raydask's priority gate is off for the
        graph before it.  ``one_client``: every run on the engine's long-lived
        client instead, where raydask's gate is on from the second run.
        """
        c = self.client if one_client else self._new_client()
        try:
            return self._notebook(c, sleep)
        finally:
            if c is not self.client:
                c.close()

    def _new_client(self):
        """Another client of this engine's cluster, with the same dashboard setting."""
        if self.kind == "raydask":
            return self.mod.Client(dashboard_address="127.0.0.1:0" if self.dashboard_link else None,
                                   set_as_default=False)
        return self.mod.Client(self.client.cluster, set_as_default=False)

    def _notebook(self, c, sleep):
        ac = self.mod.as_completed
        inc, double, add = tasks.nb_inc, tasks.nb_double, tasks.nb_add
        base = self.fresh(0)
        t0 = time.perf_counter()
        c.submit(inc, base + 1, sleep).result()
        x = c.submit(inc, base + 1, sleep)
        y = c.submit(double, base + 2, sleep)
        c.submit(add, x, y, sleep).result()
        zs = []
        for i in range(256):
            x = c.submit(inc, base + i, sleep)
            y = c.submit(double, x, sleep)
            zs.append(c.submit(add, x, y, sleep))
        total = c.submit(sum, zs)
        L = zs
        while len(L) > 1:
            L = [c.submit(add, L[i], L[i + 1], sleep) for i in range(0, len(L), 2)]
        L[0].result(), total.result()
        zs = c.map(inc, zs, sleep=sleep)
        seq = ac(zs)
        while seq.count() > 1:
            a = next(seq)
            b = next(seq)
            seq.add(c.submit(add, a, b, sleep, priority=1))
        next(seq).result()
        return {"seconds": time.perf_counter() - t0}

    def memory_10k(self, n):
        c, base = self.client, self.fresh(n)
        path = self._blocker_path()
        gc.collect()
        before = rss()
        t0 = time.perf_counter()
        blocker = c.submit(tasks.wait_for_file, path, pure=False)
        fs = [c.submit(tasks.inc_after, base + i, blocker) for i in range(n)]
        t = time.perf_counter() - t0
        time.sleep(SETTLE)
        after = rss()
        open(path, "w").close()
        try:
            c.gather(fs)
        finally:
            os.remove(path)
        return {"seconds": t, "value": (after - before) * 10_000 / n}

    # -- coordination primitives: one client, small items, calls one after another --
    def queue_put_get(self, n):
        """``n`` ``Queue.put`` of small items, then ``n`` ``Queue.get``."""
        q = self.mod.Queue(f"bench-queue-{self.fresh(n)}", client=self.client)
        return _put_then_get(q, n)

    def lock_pairs(self, n):
        """``n`` ``Lock.acquire`` + ``release`` pairs on a free lock."""
        lock = self.mod.Lock(f"bench-lock-{self.fresh(n)}")
        t0 = time.perf_counter()
        for _ in range(n):
            lock.acquire()
            lock.release()
        return {"seconds": time.perf_counter() - t0}

    def variable_pairs(self, n):
        """``n`` ``Variable.set`` + ``get`` pairs of small values."""
        var = self.mod.Variable(f"bench-variable-{self.fresh(n)}", client=self.client)
        t0 = time.perf_counter()
        for i in range(n):
            var.set(i)
            var.get()
        return {"seconds": time.perf_counter() - t0}

    def scale_up(self):
        c = self.client
        n0 = len(self._workers())
        t0 = time.perf_counter()
        c.cluster.scale(n0 + 1)
        c.wait_for_workers(n0 + 1)
        t = time.perf_counter() - t0
        c.cluster.scale(n0)
        deadline = time.monotonic() + 60
        while len(self._workers()) > n0 and time.monotonic() < deadline:
            time.sleep(0.1)
        return {"seconds": t}

    def set_nodes(self, n):
        self.client.cluster.scale(n)
        self.client.wait_for_workers(n)
        return {"seconds": 0.0}

    def close(self):
        cluster = getattr(self.client, "cluster", None)
        self.client.close()
        if self.kind == "dask" and cluster is not None:
            cluster.close()


class RawRay(_Engine):
    """The idiomatic Ray program for each workload, on ``ray.cluster_utils.Cluster``."""

    def __init__(self, kind="ray", nodes=1, cpus=2, dashboard=False):
        super().__init__()
        import logging

        import ray
        from ray.cluster_utils import Cluster

        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
        self.cpus = cpus
        self.cluster = Cluster(initialize_head=True, connect=False, head_node_args=dict(
            num_cpus=cpus, num_gpus=0, object_store_memory=OBJECT_STORE, include_dashboard=False))
        self.nodes = []
        for _ in range(nodes - 1):
            self.nodes.append(self.cluster.add_node(num_cpus=cpus, num_gpus=0, object_store_memory=OBJECT_STORE))
        ray.init(address=self.cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        self.cluster.wait_for_nodes()
        self.ray = ray
        r = ray.remote
        self.inc, self.add, self.double, self.total = r(tasks.inc), r(tasks.add), r(tasks.double), r(tasks.total)
        self.nbytes_of, self.wait_for_file, self.inc_after = r(tasks.nbytes_of), r(tasks.wait_for_file), r(tasks.inc_after)
        self.nb_inc, self.nb_double, self.nb_add = r(tasks.nb_inc), r(tasks.nb_double), r(tasks.nb_add)
        self.stamped_sleep = r(tasks.stamped_sleep)
        self.fib = tasks.ray_fib()

    def info(self):
        return {"engine": "ray", "versions": {"ray": self.ray.__version__}}

    def submit_rate(self, n):
        base = self.fresh(n)
        t0 = time.perf_counter()
        refs = [self.inc.remote(base + i) for i in range(n)]
        t = time.perf_counter() - t0
        self.ray.wait(refs, num_returns=len(refs), fetch_local=False)
        t1 = time.perf_counter()
        self.ray.get(refs)
        return {"seconds": t, "parts": {"submit": t, "gather": time.perf_counter() - t1}}

    def throughput(self, n):
        base = self.fresh(n)
        t0 = time.perf_counter()
        refs = [self.inc.remote(base + i) for i in range(n)]
        self.ray.get(refs)
        return {"seconds": time.perf_counter() - t0}

    priority_throughput = throughput  # Ray has no priorities (ray-project/ray#52865)

    def array_reduction(self, chunks):
        """The same with Ray's own Dask scheduler, ``ray.util.dask.ray_dask_get``."""
        from ray.util.dask import ray_dask_get

        return _array_reduction(chunks, lambda c: c.compute(scheduler=ray_dask_get))

    def dataframe_groupby(self, partitions):
        from ray.util.dask import ray_dask_get

        return _dataframe_groupby(partitions, lambda c: c.compute(scheduler=ray_dask_get))

    def async_awaits(self, n):
        """``n`` refs, each awaited by its own coroutine (``await ref``), in one loop."""
        import asyncio

        base = self.fresh(n)

        async def main():
            t0 = time.perf_counter()
            refs = [self.inc.remote(base + i) for i in range(n)]

            async def one(ref):
                return await ref

            values = await asyncio.gather(*(one(r) for r in refs))
            assert values[-1] == base + n
            return {"seconds": time.perf_counter() - t0}

        return asyncio.run(main())

    def priority_jump(self, n, sleep, delay):
        """The same submissions without priorities: Ray starts them first come, first served."""
        base, ray = self.fresh(n), self.ray
        refs = [self.stamped_sleep.remote(base + i, sleep) for i in range(n)]
        time.sleep(delay)
        submitted = time.time()
        high = self.stamped_sleep.remote(base + n, sleep)
        start, stop, _ = ray.get(high)
        return _jump(submitted, start, stop, ray.get(refs), None)
    map = throughput  # Ray has no map: a list comprehension of .remote calls is the idiom

    def _actor(self):
        return self.ray.remote(tasks.Counter).remote()

    def actor_calls(self, n):
        counter, get = self._actor(), self.ray.get
        get(counter.increment.remote())
        t0 = time.perf_counter()
        for _ in range(n):
            get(counter.increment.remote())
        return {"seconds": time.perf_counter() - t0}

    def actor_inflight(self, n):
        counter = self._actor()
        self.ray.get(counter.increment.remote())
        t0 = time.perf_counter()
        last = self.ray.get([counter.increment.remote() for _ in range(n)])[-1]
        assert last == n + 1, last
        return {"seconds": time.perf_counter() - t0}

    # -- the coordination rows: Ray's own Queue, and the smallest actor a Ray user would write --
    def queue_put_get(self, n):
        """``n`` puts then ``n`` gets on ``ray.util.queue.Queue`` (Ray's own, an async actor)."""
        from ray.util.queue import Queue

        q = Queue()
        q.put(0)
        q.get()
        return _put_then_get(q, n)

    def _registry(self):
        registry = self.ray.remote(num_cpus=0, max_concurrency=1000)(tasks.Registry).remote()
        self.ray.get(registry.get.remote("x"))  # up before the clock starts
        return registry

    def lock_pairs(self, n):
        registry, get = self._registry(), self.ray.get
        t0 = time.perf_counter()
        for _ in range(n):
            assert get(registry.acquire.remote("lock"))
            get(registry.release.remote("lock"))
        return {"seconds": time.perf_counter() - t0}

    def variable_pairs(self, n):
        registry, get = self._registry(), self.ray.get
        t0 = time.perf_counter()
        for i in range(n):
            get(registry.set.remote("x", i))
            get(registry.get.remote("x"))
        return {"seconds": time.perf_counter() - t0}

    def round_trip(self, n):
        base, get = self.fresh(n), self.ray.get
        t0 = time.perf_counter()
        for i in range(n):
            get(self.inc.remote(base + i))
        return {"seconds": time.perf_counter() - t0}

    def chain(self, n):
        base = self.fresh(n)
        t0 = time.perf_counter()
        x = self.inc.remote(base)
        for _ in range(n - 1):
            x = self.inc.remote(x)
        self.ray.get(x)
        return {"seconds": time.perf_counter() - t0}

    def tree(self, n):
        base = self.fresh(n)
        t0 = time.perf_counter()
        level = [self.inc.remote(base + i) for i in range(n)]
        while len(level) > 1:
            level = [self.add.remote(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        self.ray.get(level[0])
        return {"seconds": time.perf_counter() - t0}

    def fib_get_client(self, n):
        """Nested Ray tasks: a remote fib calling ``fib.remote`` and ``ray.get`` (Ray has no keys:
        ``fib(k)`` runs once per call, 2 fib(n+1) - 1 tasks in all)."""
        return _timed_fib(lambda: self.ray.get(self.fib.remote(n)), n)

    fib_worker_client = fib_get_client  # Ray has one way to launch tasks from tasks

    def as_completed(self, n):
        base, ray = self.fresh(n), self.ray
        t0 = time.perf_counter()
        pending = [self.inc.remote(base + i) for i in range(n)]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            ray.get(ready[0])
        return {"seconds": time.perf_counter() - t0}

    def scatter_transfer(self, mb):
        import numpy as np
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        here = ray.get_runtime_context().get_node_id()
        other = next((n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != here), None)
        if other is None:
            raise RuntimeError("scatter_transfer needs 2 nodes")
        arr = np.random.default_rng(self.fresh(0)).random(mb * 2**20 // 8)
        gc.collect()
        t0 = time.perf_counter()
        ref = ray.put(arr)
        t1 = time.perf_counter()
        n = ray.get(self.nbytes_of.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(other, soft=False)).remote(ref))
        t2 = time.perf_counter()
        back = ray.get(ref)
        t3 = time.perf_counter()
        assert n == arr.nbytes and back.shape == arr.shape
        return {"seconds": t3 - t0, "parts": {"scatter": t1 - t0, "remote task": t2 - t1, "gather": t3 - t2}}

    def notebook(self, sleep, one_client=False):  # one_client: Ray has no client to keep
        ray, base = self.ray, self.fresh(0)
        inc, double, add = self.nb_inc, self.nb_double, self.nb_add
        t0 = time.perf_counter()
        ray.get(inc.remote(base + 1, sleep))
        x = inc.remote(base + 1, sleep)
        y = double.remote(base + 2, sleep)
        ray.get(add.remote(x, y, sleep))
        zs = []
        for i in range(256):
            x = inc.remote(base + i, sleep)
            y = double.remote(x, sleep)
            zs.append(add.remote(x, y, sleep))
        total = self.total.remote(*zs)
        L = zs
        while len(L) > 1:
            L = [add.remote(L[i], L[i + 1], sleep) for i in range(0, len(L), 2)]
        ray.get([L[0], total])
        pending = [inc.remote(z, sleep) for z in zs]
        done = []
        count = len(pending)
        while count > 1:
            while len(done) < 2:
                ready, pending = ray.wait(pending, num_returns=1)
                done.extend(ready)
            a, b = done.pop(0), done.pop(0)
            pending.append(add.remote(a, b, sleep))
            count -= 1
        ray.get(done + pending)
        return {"seconds": time.perf_counter() - t0}

    def memory_10k(self, n):
        base = self.fresh(n)
        path = self._blocker_path()
        gc.collect()
        before = rss()
        t0 = time.perf_counter()
        blocker = self.wait_for_file.remote(path)
        refs = [self.inc_after.remote(base + i, blocker) for i in range(n)]
        t = time.perf_counter() - t0
        time.sleep(SETTLE)
        after = rss()
        open(path, "w").close()
        try:
            self.ray.get(refs)
        finally:
            os.remove(path)
        return {"seconds": t, "value": (after - before) * 10_000 / n}

    def _alive(self):
        return sum(1 for n in self.ray.nodes() if n["Alive"])

    def scale_up(self):
        t0 = time.perf_counter()
        node = self.cluster.add_node(num_cpus=self.cpus, num_gpus=0, object_store_memory=OBJECT_STORE)
        self.cluster.wait_for_nodes()
        t = time.perf_counter() - t0
        self.cluster.remove_node(node)
        return {"seconds": t}

    def set_nodes(self, n):
        while 1 + len(self.nodes) < n:
            self.nodes.append(self.cluster.add_node(num_cpus=self.cpus, num_gpus=0, object_store_memory=OBJECT_STORE))
        while 1 + len(self.nodes) > n:
            self.cluster.remove_node(self.nodes.pop())
        self.cluster.wait_for_nodes()
        return {"seconds": 0.0}

    def close(self):
        self.ray.shutdown()
        self.cluster.shutdown()


def _jump(submitted, start, stop, lows, inflight):
    """priority_jump's figures from the wall-clock stamps of the high task and the low ones."""
    out = {
        # low tasks that started after the high one was submitted, before it started
        "overtook": sum(1 for s, _, _ in lows if submitted < s < start),
        "ahead": sum(1 for s, _, _ in lows if s < start),  # started before it, in all
        "behind": sum(1 for _, e, _ in lows if e > stop),  # still running or not started when it ended
        "low": len(lows),
    }
    if inflight is not None:
        out["released"] = inflight  # the gate's tasks in flight when the high one arrived
    return {"seconds": start - submitted, "parts": out}


#: A second raw-Ray engine in its own process (``--aa``): Ray ÷ Ray measures the run's own noise.
AGAIN = "ray-again"


def make(name, **config):
    """``raydask``, ``raydask+dashboard``, ``ray`` (``ray-again``: a second one) or ``dask``, started."""
    if name in ("ray", AGAIN):
        return RawRay(**config)
    dashboard = name.endswith("+dashboard")
    return DaskAPI(name.split("+")[0], dashboard=dashboard, **config)


def serve(conn, name, config, log_path):
    """Subprocess main: start the engine, then run workloads the parent names."""
    log = open(log_path, "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:
        engine = make(name, **config)
        conn.send(("ready", engine.info()))
    except BaseException:  # noqa: BLE001 - report any failure to the parent
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            msg = ("close",)
        if msg[0] == "close":
            try:
                engine.close()
            finally:
                conn.send(("closed", None))
            return
        _, workload, params = msg
        try:
            conn.send(("ok", getattr(engine, workload)(**params)))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))


def fresh_main(argv):
    """``python -m benchmarks.engines NAME CONFIG MODE``: one measurement in a fresh process.

    ``startup``: time from nothing to the first result.  ``memory_10k:N``: after a
    warm-up, the driver's RSS growth while N futures wait (a fresh process, because
    a process that ran other work reuses freed memory and under-reports).
    """
    name, config, mode = argv[0], json.loads(argv[1]), argv[2]
    t0 = time.perf_counter()
    engine = make(name, **config)
    engine.round_trip(1)
    if mode == "startup":
        out = {"seconds": time.perf_counter() - t0}
    else:
        engine.throughput(200)
        out = engine.memory_10k(int(mode.split(":")[1]))
    engine.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    fresh_main(sys.argv[1:])
