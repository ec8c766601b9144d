"""Queue: a named multi-producer, multi-consumer queue (``distributed.Queue``).

Items live in the coordination actor (:mod:`raydask.coordinator`), pickled,
one deque per name.  A ``get`` on an empty queue (or a ``put`` on a full one)
first asks without waiting, then waits in a thread of the actor's "wait" group,
so it blocks no other call.  A raydask Future put into the queue travels as its
Ray refs and comes out as a working Future in whichever process gets it; other
items travel by value.
"""

from __future__ import annotations

import collections
import numbers
import threading

from .coordinator import WaitTimeout, call, check_name, ensure_connected, pack, unpack, wait
from .keys import parse_timedelta

__all__ = ["Queue", "QueueStore"]


class _Q:
    __slots__ = ("items", "maxsize", "users")

    def __init__(self, maxsize):
        self.items = collections.deque()
        self.maxsize = maxsize
        self.users = 0

    def full(self):
        return 0 < self.maxsize <= len(self.items)


class QueueStore:
    """The actor-side state of every Queue: name -> its packed items, size limit and users."""

    def __init__(self):
        self.queues: dict = {}
        self.changed = threading.Condition()

    def _queue(self, name, maxsize=0):
        q = self.queues.get(name)
        if q is None:  # first use, or closed by its last user while another process uses the name
            q = self.queues[name] = _Q(maxsize)
        return q

    def create(self, name, maxsize):
        """Count one more user; return the size limit (the first user's)."""
        with self.changed:
            q = self._queue(name, maxsize)
            q.users += 1
            return q.maxsize

    def put(self, name, blob):
        """Append unless full; True if appended (never waits)."""
        with self.changed:
            q = self._queue(name)
            if q.full():
                return False
            q.items.append(blob)
            self.changed.notify_all()
            return True

    def wait_put(self, name, blob, timeout):
        with self.changed:
            if not self.changed.wait_for(lambda: not self._queue(name).full(), timeout):
                return False
            self._queue(name).items.append(blob)
            self.changed.notify_all()
            return True

    def _take(self, q, n):
        out = [q.items.popleft() for _ in range(n)]
        self.changed.notify_all()  # room for waiting putters
        return out

    def get(self, name, batch):
        """The first item (or a list for ``batch``); None if not there yet (never waits)."""
        with self.changed:
            q = self._queue(name)
            if batch is True:
                return self._take(q, len(q.items))
            n = 1 if batch is False else batch
            if len(q.items) < n:
                return None
            out = self._take(q, n)
            return out[0] if batch is False else out

    def wait_get(self, name, batch, timeout):
        n = 1 if batch is False else batch
        with self.changed:
            if not self.changed.wait_for(lambda: len(self._queue(name).items) >= n, timeout):
                return None
            out = self._take(self._queue(name), n)
            return out[0] if batch is False else out

    def qsize(self, name):
        q = self.queues.get(name)
        return 0 if q is None else len(q.items)

    def close(self, name):
        with self.changed:
            q = self.queues.get(name)
            if q is None:
                return
            q.users -= 1
            if q.users <= 0:
                del self.queues[name]  # its items (and any Futures' refs) go with it


def _check_maxsize(maxsize):
    if isinstance(maxsize, bool) or not isinstance(maxsize, numbers.Integral):
        raise TypeError(f"maxsize must be an integer, got {maxsize!r}")
    return int(maxsize)


def _check_batch(batch, timeout):
    if batch is True or batch is False:
        return batch
    if not isinstance(batch, numbers.Integral):
        raise TypeError(f"batch must be True, False or a number of items, got {batch!r}")
    if batch < 0:
        raise ValueError(f"batch must not be negative, got {batch!r}")
    if timeout is not None:  # Dask's rule and message
        raise NotImplementedError("Dask queues don't support simultaneous use of integer batch sizes and timeouts")
    return int(batch)


class Queue:
    """A named queue shared by every client and task of the cluster.

    Args:
        name: the name other processes use to find it; a fresh one if None.
        client: the client to use; by default the default client (in a task, Ray
            is already connected).
        maxsize: how many items it holds before ``put`` waits; 0 for no limit.
            The first process to use a name sets its size.

    Differences from dask.distributed:
        Items may be any picklable object, not only msgpack-encodable ones; they
        are kept in the coordination actor's memory (put a Future of large data
        instead).  ``name`` must be a string.  The queue is created on its first
        use rather than in the constructor, so making one needs no cluster.
    """

    def __init__(self, name=None, client=None, maxsize=0):
        self.name = check_name(name, "queue")
        self.maxsize = _check_maxsize(maxsize)
        self._client = client
        self._created = False

    def _ready(self):
        ensure_connected(self._client, "Queue")
        if not self._created:
            call(QueueStore, "create", self.name, self.maxsize)
            self._created = True

    def put(self, value, timeout=None):
        """Put ``value`` (a Future or any picklable object) at the end of the queue.

        Raises:
            TimeoutError: if the queue stays full for ``timeout`` seconds.
        """
        seconds = parse_timedelta(timeout)
        self._ready()
        blob = pack(value)
        if call(QueueStore, "put", self.name, blob):
            return
        if seconds == 0 or not wait(QueueStore, "wait_put", self.name, blob, timeout=seconds, miss=False):
            raise WaitTimeout(f"Queue {self.name!r} stayed full for {timeout!r}")

    def get(self, timeout=None, batch=False):
        """Remove and return the first item, waiting up to ``timeout`` seconds for one.

        Args:
            batch: True returns every item there now (maybe none) as a list; an
                integer ``n`` waits until ``n`` items are there and takes them
                together (Dask takes them one by one as they come).

        Raises:
            TimeoutError: if the queue stays empty for ``timeout`` seconds.
            NotImplementedError: for an integer ``batch`` with a ``timeout``, as Dask.
        """
        seconds = parse_timedelta(timeout)
        batch = _check_batch(batch, timeout)
        self._ready()
        out = call(QueueStore, "get", self.name, batch)
        if out is None and seconds != 0:
            out = wait(QueueStore, "wait_get", self.name, batch, timeout=seconds)
        if out is None:
            raise WaitTimeout(f"Queue {self.name!r} stayed empty for {timeout!r}")
        if batch is False:
            return unpack(out)
        return [unpack(blob) for blob in out]

    def qsize(self):
        """How many items are in the queue now."""
        self._ready()
        return call(QueueStore, "qsize", self.name)

    def close(self):
        """Release this handle; the queue and its items go when every user closed it."""
        if self._created:
            ensure_connected(self._client, "Queue")
            call(QueueStore, "close", self.name)
            self._created = False

    def __reduce__(self):
        return type(self), (self.name, None, self.maxsize)

    def __repr__(self):
        return f"<Queue: {self.name!r} maxsize={self.maxsize}>"
