"""The task functions every engine runs.

They are pickled *by value* (``cloudpickle.register_pickle_by_value``), so Ray's
and Dask's worker processes need not import this package.
"""

import importlib
import os
import random
import time


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def double(x):
    return 2 * x


def total(*xs):
    return sum(xs)


def nbytes_of(a):
    return int(a.nbytes)


def wait_for_file(path, limit=600.0):
    """Block until ``path`` exists: the blocker that keeps dependents pending."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return 0


def inc_after(x, blocker):
    return x + 1


# The seed notebook's functions, with the sleep scaled by SLEEP.
SLEEP = 0.001


def nb_inc(x, sleep=SLEEP):
    time.sleep(random.random() * sleep)
    return x + 1


def nb_double(x, sleep=SLEEP):
    time.sleep(random.random() * sleep)
    return 2 * x


def nb_add(x, y, sleep=SLEEP):
    time.sleep(random.random() * sleep)
    return x + y


def stamped_sleep(x, sleep):
    """Sleep ``sleep`` seconds; return (start, stop) wall-clock times (priority_jump)."""
    start = time.time()
    time.sleep(sleep)
    return (start, time.time(), x)


class Counter:
    """The actor of the actor rows: one method call is one increment."""

    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n


class Registry:
    """Raw Ray's floor for the coordination rows: the smallest actor a Ray user would
    write for a lock and a variable (a dict behind a lock; ``acquire`` never waits here,
    the lock is free).  Threaded, as any actor whose calls may block must be."""

    def __init__(self):
        import threading

        self.values, self.held, self.lock = {}, set(), threading.Lock()

    def set(self, name, value):
        with self.lock:
            self.values[name] = value

    def get(self, name):
        with self.lock:
            return self.values.get(name)

    def acquire(self, name):
        with self.lock:
            if name in self.held:
                return False
            self.held.add(name)
            return True

    def release(self, name):
        with self.lock:
            self.held.discard(name)


# Dask's task-launch page (distributed's docs/source/task-launch.rst): a recursive Fibonacci
# whose tasks submit their two predecessors.  ``api`` names the module whose get_client,
# worker_client, secede and rejoin they use ("raydask" or "distributed"); an argument, not a
# global the engine sets, because Ray pickles this module by reference (its own cloudpickle).
def fib_get_client(n, api):
    """The page's ``get_client`` block: map the two calls, secede while gathering, rejoin."""
    if n < 2:
        return n
    mod = importlib.import_module(api)
    client = mod.get_client()
    jobs = client.map(fib_get_client, [n - 1, n - 2], api=api)
    mod.secede()
    out = client.gather(jobs)
    mod.rejoin()
    return sum(out)


def fib_worker_client(n, api):
    """The same with ``worker_client()`` (two submits and a gather inside the block)."""
    if n < 2:
        return n
    with importlib.import_module(api).worker_client() as client:
        a_future = client.submit(fib_worker_client, n - 1, api)
        b_future = client.submit(fib_worker_client, n - 2, api)
        a, b = client.gather([a_future, b_future])
    return a + b


def ray_fib():
    """Raw Ray's nested tasks: a remote ``fib`` that calls ``fib.remote`` twice and ``ray.get``."""
    import ray

    @ray.remote
    def fib(n):
        if n < 2:
            return n
        return sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))

    return fib
