"""Lock, Semaphore and MultiLock: named leases shared by clients and tasks.

Leases live in the coordination actor (:mod:`raydask.coordinator`); an
``acquire`` that must wait waits there, in a thread of the actor's "wait"
group.  A lease held by a process that dies must not stay taken forever, so,
as in Dask, every lease *expires* unless its holder refreshes it::

    holder process                              coordination actor
    acquire ───────── acquire(name, id) ──────> lease id: expires now + lease_timeout
    raydask-lease-refresher thread,
      every lease_timeout / 5 ─── refresh ────> expires now + lease_timeout
    release ───────── release(name, id) ──────> freed, waiters wake
    (process dies: no refresh)                  the expiry thread frees it at its deadline

The actor's expiry thread sleeps until the earliest deadline (no polling), so a
dead holder's lease is free within ``lease_timeout`` (plus a few milliseconds)
of its last refresh.  Dask's default ``lease_timeout`` of 30 s is raydask's.
"""

from __future__ import annotations

import collections
import logging
import numbers
import threading
import time
import uuid
import weakref

import ray

from .coordinator import call, call_async, check_name, ensure_connected, wait, wait_once
from .keys import parse_timedelta

__all__ = ["Lock", "MultiLock", "MultiLockStore", "Semaphore", "SemaphoreStore"]

logger = logging.getLogger("raydask")

LEASE_TIMEOUT = 30.0  # seconds, Dask's distributed.scheduler.locks.lease-timeout


# -- expiry, shared by both stores ----------------------------------------------------------
class _Expiry:
    """Deadlines of leases, and one thread that expires them when they are due.

    The thread (``raydask-lease-expiry``, in the actor) sleeps until the earliest
    deadline or until a deadline is added; it calls ``on_expired(key)`` holding
    ``lock``, the store's condition.
    """

    def __init__(self, lock, on_expired):
        self.deadlines: dict = {}  # key -> monotonic deadline
        self._lock = lock
        self._on_expired = on_expired
        self._thread = None

    def set(self, key, timeout):
        """(Re)start ``key``'s clock; call holding the lock."""
        if timeout is None:
            self.deadlines.pop(key, None)
            return
        self.deadlines[key] = time.monotonic() + timeout
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="raydask-lease-expiry", daemon=True)
            self._thread.start()
        self._lock.notify_all()

    def drop(self, key):
        self.deadlines.pop(key, None)

    def _run(self):
        with self._lock:
            while True:
                now = time.monotonic()
                for key in [k for k, deadline in self.deadlines.items() if deadline <= now]:
                    del self.deadlines[key]
                    logger.warning("raydask: lease %r expired: its holder stopped refreshing it", key)
                    self._on_expired(key)
                earliest = min(self.deadlines.values(), default=None)
                self._lock.wait(None if earliest is None else max(0.0, earliest - now))


# -- Semaphore and Lock -----------------------------------------------------------------------
class _Sem:
    __slots__ = ("max_leases", "lease_timeout", "leases")

    def __init__(self, max_leases, lease_timeout):
        self.max_leases = max_leases
        self.lease_timeout = lease_timeout
        self.leases: set = set()

    def free(self):
        return len(self.leases) < self.max_leases


class SemaphoreStore:
    """The actor-side state of every Semaphore and Lock: name -> the leases held."""

    def __init__(self):
        self.sems: dict = {}
        self.changed = threading.Condition()
        self.expiry = _Expiry(self.changed, self._expired)

    def _sem(self, name, max_leases, lease_timeout):
        sem = self.sems.get(name)
        if sem is None:
            sem = self.sems[name] = _Sem(max_leases, lease_timeout)
        elif sem.max_leases != max_leases:  # Dask's check and message
            raise ValueError(f"Inconsistent max leases: {max_leases}, expected: {sem.max_leases}")
        return sem

    def _expired(self, key):
        name, lease_id = key
        sem = self.sems.get(name)
        if sem is not None:
            sem.leases.discard(lease_id)
        self.changed.notify_all()

    def _grant(self, name, sem, lease_id):
        sem.leases.add(lease_id)
        self.expiry.set((name, lease_id), sem.lease_timeout)
        return (sem.lease_timeout,)  # the first user's lease_timeout rules: refresh by it

    def acquire(self, name, max_leases, lease_timeout, lease_id):
        """A lease if one is free now: ``(lease_timeout,)``, else None (never waits)."""
        with self.changed:
            sem = self._sem(name, max_leases, lease_timeout)
            return self._grant(name, sem, lease_id) if sem.free() else None

    def wait_acquire(self, name, max_leases, lease_timeout, lease_id, timeout):
        with self.changed:
            sem = self._sem(name, max_leases, lease_timeout)
            if not self.changed.wait_for(lambda: self.sems.get(name) is not sem or sem.free(), timeout):
                return None
            if self.sems.get(name) is not sem:  # closed while we waited
                return None
            return self._grant(name, sem, lease_id)

    def release(self, name, lease_id):
        with self.changed:
            sem = self.sems.get(name)
            if sem is None or lease_id not in sem.leases:
                logger.warning("raydask: released lease %r of %r, which it no longer held (expired or closed)",
                               lease_id, name)
                return False
            sem.leases.discard(lease_id)
            self.expiry.drop((name, lease_id))
            self.changed.notify_all()
            return True

    def refresh(self, name, lease_ids):
        with self.changed:
            sem = self.sems.get(name)
            for lease_id in lease_ids:
                if sem is None or lease_id not in sem.leases:
                    logger.warning("raydask: refreshing unknown lease %r of %r; it expired, and the semaphore "
                                   "may be overbooked", lease_id, name)
                    continue
                self.expiry.set((name, lease_id), sem.lease_timeout)

    def value(self, name):
        with self.changed:
            sem = self.sems.get(name)
            return 0 if sem is None else len(sem.leases)

    def close(self, name):
        with self.changed:
            sem = self.sems.pop(name, None)
            if sem is not None:
                for lease_id in sem.leases:
                    self.expiry.drop((name, lease_id))
                self.changed.notify_all()


# -- the refresher: one thread per process -------------------------------------------------
class _Refresher:
    """Refreshes the leases this process holds, every ``lease_timeout / 5`` seconds.

    One daemon thread per process (``raydask-lease-refresher``), started by the
    first lease and idle (no wake-ups) while the process holds none.  It waits on
    Ray, which releases the GIL, so it runs while the task blocks in ``ray.get``.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._held: dict = {}  # (store class, name) -> {lease id: lease_timeout}
        self._changed = threading.Event()
        self._thread = None
        self._due = None  # when the thread will next refresh (monotonic); None: it sleeps until woken

    def add(self, store_cls, name, lease_id, lease_timeout):
        if lease_timeout is None:
            return
        with self._lock:
            self._held.setdefault((store_cls, name), {})[lease_id] = lease_timeout
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="raydask-lease-refresher", daemon=True)
                self._thread.start()
            # wake the thread only if it would refresh too late (an acquire/release pair
            # in a loop must not wake it every time: measured, that halves the pairs/s)
            wake = self._due is None or time.monotonic() + lease_timeout / 5 < self._due
        if wake:
            self._changed.set()

    def remove(self, store_cls, name, lease_id):
        with self._lock:
            leases = self._held.get((store_cls, name))
            if leases is not None:
                leases.pop(lease_id, None)
                if not leases:
                    del self._held[(store_cls, name)]

    def forget(self, store_cls, name, lease_ids):
        """Stop refreshing ``lease_ids`` (their holder was garbage-collected): they will expire."""
        for lease_id in list(lease_ids):
            self.remove(store_cls, name, lease_id)

    def _schedule(self):
        """When to refresh next (under the lock, so ``add`` sees the schedule it may change)."""
        with self._lock:
            timeouts = [t for leases in self._held.values() for t in leases.values()]
            now = time.monotonic()
            if not timeouts:
                self._due = None
            elif self._due is None or self._due > now + min(timeouts) / 5:  # a new, shorter lease: sooner
                self._due = now + min(timeouts) / 5
            return self._due, now

    def _run(self):
        while True:
            due, now = self._schedule()
            self._changed.wait(None if due is None else max(0.0, due - now))
            self._changed.clear()
            if due is None or time.monotonic() < due:
                continue  # woken by a lease added: only the schedule changed
            with self._lock:
                self._due = None
                batches = [(store, name, list(leases)) for (store, name), leases in self._held.items()]
            if not batches or not ray.is_initialized():
                continue
            try:
                ray.get([call_async(store, "refresh", name, ids) for store, name, ids in batches], timeout=30)
            except Exception:  # noqa: BLE001 - the cluster went away: the leases went with it
                logger.debug("raydask: refreshing leases failed", exc_info=True)


_refresher = _Refresher()


def _check_lease_timeout(value):
    if value is None:
        return None
    seconds = parse_timedelta(value, "lease_timeout")
    if seconds == 0:
        raise ValueError(f"lease_timeout must be positive (or None: leases never expire), got {value!r}")
    return seconds


class Semaphore:
    """At most ``max_leases`` holders at a time, across every client and task of the cluster.

    Args:
        max_leases: how many may hold a lease at once (a positive integer).
        name: the name other processes use to find it; a fresh one if None.
        scheduler_rpc, loop: accepted for compatibility, ignored.
        client: the client to use; by default the default client (raydask only).
        lease_timeout: seconds after which a lease whose holder stopped
            refreshing it (its process died) is freed; None never frees it.  The
            first process to use a name sets it (raydask only: Dask reads
            ``distributed.scheduler.locks.lease-timeout``, default 30 s).

    Differences from dask.distributed:
        ``max_leases`` below 1 raises ``ValueError`` (Dask accepts it and then
        never grants a lease); a non-integer raises ``TypeError`` (Dask: an
        ``AssertionError``).  ``name`` must be a string.
    """

    _prefix = "semaphore"

    def __init__(self, max_leases=1, name=None, scheduler_rpc=None, loop=None, *, client=None,
                 lease_timeout=LEASE_TIMEOUT):
        if isinstance(max_leases, bool) or not isinstance(max_leases, numbers.Integral):
            raise TypeError(f"max_leases must be a positive integer, got {max_leases!r}")
        if max_leases < 1:
            raise ValueError(f"max_leases must be at least 1, got {max_leases!r}")
        self.max_leases = int(max_leases)
        self.name = check_name(name, self._prefix)
        self.lease_timeout = _check_lease_timeout(lease_timeout)
        self.id = uuid.uuid4().hex
        self._client = client
        self._leases: collections.deque = collections.deque()
        # as Dask's: a Semaphore dropped while holding leases stops refreshing them
        self._forget = weakref.finalize(self, _refresher.forget, SemaphoreStore, self.name, self._leases)

    def acquire(self, timeout=None):
        """Take a lease, waiting up to ``timeout`` seconds (None: forever) for one to be free.

        Returns:
            True if a lease was taken, False if ``timeout`` passed first.
        """
        seconds = parse_timedelta(timeout)
        ensure_connected(self._client, type(self).__name__)
        lease_id = uuid.uuid4().hex
        args = (self.name, self.max_leases, self.lease_timeout, lease_id)
        granted = call(SemaphoreStore, "acquire", *args)
        if granted is None and seconds != 0:
            granted = wait(SemaphoreStore, "wait_acquire", *args, timeout=seconds)
        if granted is None:
            return False
        self._leases.append(lease_id)
        _refresher.add(SemaphoreStore, self.name, lease_id, granted[0])
        return True

    def release(self):
        """Give back the oldest lease this object holds.

        Returns:
            True (as Dask; a lease that had expired is logged as a warning).

        Raises:
            RuntimeError: if this object holds no lease ("Released too often", as Dask).
        """
        if not self._leases:
            raise RuntimeError("Released too often")
        ensure_connected(self._client, type(self).__name__)
        lease_id = self._leases.popleft()
        _refresher.remove(SemaphoreStore, self.name, lease_id)
        call(SemaphoreStore, "release", self.name, lease_id)
        return True

    def get_value(self):
        """How many leases are held now (by anyone)."""
        ensure_connected(self._client, type(self).__name__)
        return call(SemaphoreStore, "value", self.name)

    def close(self):
        """Forget the semaphore on the cluster, and any leases still held on it."""
        ensure_connected(self._client, type(self).__name__)
        for lease_id in self._leases:
            _refresher.remove(SemaphoreStore, self.name, lease_id)
        self._leases.clear()
        call(SemaphoreStore, "close", self.name)

    def register(self, **kwargs):
        """Accepted for compatibility: the semaphore registers itself on first use."""

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.release()

    def __getstate__(self):
        return (self.name, self.max_leases, self.lease_timeout)

    def __setstate__(self, state):
        name, max_leases, lease_timeout = state
        Semaphore.__init__(self, max_leases=max_leases, name=name, lease_timeout=lease_timeout)

    def __repr__(self):
        return f"<{type(self).__name__}: {self.name!r} max_leases={self.max_leases}>"


class Lock(Semaphore):
    """A named lock shared by every client and task of the cluster (a Semaphore of one lease).

    Args:
        name: the name other processes use to find it; a fresh one if None.
        client: the client to use; by default the default client.
        scheduler_rpc, loop: accepted for compatibility, ignored.
        lease_timeout: see :class:`Semaphore` (raydask only).

    Differences from dask.distributed:
        A Lock without a name is called ``lock-<hex>`` (Dask's says ``semaphore-``).
        A lease that expired while its holder still lived (a holder that cannot
        refresh for ``lease_timeout``) lets a second holder in, as in Dask.
    """

    _prefix = "lock"

    def __init__(self, name=None, client=None, scheduler_rpc=None, loop=None, *, lease_timeout=LEASE_TIMEOUT):
        super().__init__(max_leases=1, name=name, client=client, lease_timeout=lease_timeout)

    def acquire(self, blocking=True, timeout=None):
        """Take the lock; with ``blocking=False`` only if it is free now.

        Returns:
            True if taken, False if not (``timeout`` passed, or not free).

        Raises:
            ValueError: for a ``timeout`` with ``blocking=False`` (as Dask).
        """
        if not isinstance(blocking, bool):
            raise TypeError(f"blocking must be True or False, got {blocking!r}")
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        return super().acquire(timeout=timeout)

    def locked(self):
        """Whether anyone holds the lock now."""
        return self.get_value() == 1

    def __getstate__(self):
        return (self.name, self.lease_timeout)

    def __setstate__(self, state):
        name, lease_timeout = state
        Lock.__init__(self, name=name, lease_timeout=lease_timeout)


# -- MultiLock ------------------------------------------------------------------------------
class MultiLockStore:
    """The actor-side state of every MultiLock: lock name -> queue of requester ids.

    A requester holds a lock while it is first in that lock's queue.  Each
    ``acquire`` joins every queue it names in one step (under the store's lock),
    so all queues order requesters by arrival: a requester only ever waits for
    earlier ones, which is why several locks are taken without deadlock (Dask's
    MultiLockExtension works the same way).
    """

    def __init__(self):
        self.queues: dict = collections.defaultdict(list)  # lock name -> [requester id]
        self.requests: dict = {}  # requester id -> [names, num_locks, holds, lease_timeout]
        self.changed = threading.Condition()
        self.expiry = _Expiry(self.changed, self._expired)

    def _holds(self, rid):
        names, num_locks = self.requests[rid][:2]
        return sum(1 for n in names if self.queues[n][0] == rid) >= num_locks

    def _settle(self, rid):
        """``rid`` holds enough locks: leave the queues it does not head."""
        request = self.requests[rid]
        kept = []
        for n in request[0]:
            if self.queues[n][0] == rid:
                kept.append(n)
            else:
                self.queues[n].remove(rid)
        request[0], request[2] = kept, True

    def _leave(self, rid):
        request = self.requests.pop(rid, None)
        if request is None:
            return False
        self.expiry.drop(("multilock", rid))
        heads = []
        for n in request[0]:
            q = self.queues[n]
            was_head = q[0] == rid
            q.remove(rid)
            if not q:
                del self.queues[n]
            elif was_head:
                heads.append(q[0])
        for head in heads:
            if head in self.requests and not self.requests[head][2] and self._holds(head):
                self._settle(head)
        self.changed.notify_all()
        return True

    def _expired(self, key):
        self._leave(key[1])

    def acquire(self, names, rid, timeout, num_locks, lease_timeout):
        with self.changed:
            if rid in self.requests:  # the same MultiLock again: it already holds or waits
                return True
            names = list(dict.fromkeys(names))  # a name given twice is one lock
            self.requests[rid] = [names, min(num_locks, len(names)), False, lease_timeout]
            for n in names:
                self.queues[n].append(rid)
            self.expiry.set(("multilock", rid), lease_timeout)
            if self._holds(rid):
                self._settle(rid)
                return True
            if timeout != 0 and self.changed.wait_for(
                    lambda: rid not in self.requests or self.requests[rid][2], timeout):
                return rid in self.requests
            self._leave(rid)
            return False

    def release(self, rid):
        with self.changed:
            return self._leave(rid)

    def refresh(self, _, rids):
        with self.changed:
            for rid in rids:
                request = self.requests.get(rid)
                if request is not None:
                    self.expiry.set(("multilock", rid), request[3])


class MultiLock:
    """Several named locks taken together, without deadlock (``distributed.MultiLock``).

    Args:
        names: the names of the locks (a list of strings).
        client: the client to use; by default the default client.
        lease_timeout: see :class:`Semaphore` (raydask only); Dask's MultiLock
            never expires.

    Differences from dask.distributed:
        A held (or awaited) MultiLock whose process dies is freed after
        ``lease_timeout``.  ``names`` must be a list or tuple of strings (Dask
        takes a string as its characters).  A failed ``acquire`` leaves the
        MultiLock unlocked (Dask marks it locked).  Its names are its own:
        ``MultiLock(["x"])`` and ``Lock("x")`` do not exclude each other, as in Dask.
    """

    def __init__(self, names=None, client=None, *, lease_timeout=LEASE_TIMEOUT):
        if names is None:
            names = []
        if not isinstance(names, (list, tuple)):
            raise TypeError(f"names must be a list of lock names, got {names!r}")
        for n in names:
            if not isinstance(n, str):
                raise TypeError(f"lock names must be strings, got {n!r} in {names!r}")
        self.names = list(names)
        self.lease_timeout = _check_lease_timeout(lease_timeout)
        self.id = uuid.uuid4().hex
        self._client = client
        self._locked = False
        self._forget = weakref.finalize(self, _refresher.remove, MultiLockStore, "multilock", self.id)

    def acquire(self, blocking=True, timeout=None, num_locks=None):
        """Take ``num_locks`` of the locks (None: all of them).

        Returns:
            True if taken, False if ``timeout`` passed first (or, with
            ``blocking=False``, they were not free now).

        Raises:
            ValueError: for a ``timeout`` with ``blocking=False`` (as Dask), or a
                ``num_locks`` outside 1..len(names).
        """
        if not isinstance(blocking, bool):
            raise TypeError(f"blocking must be True or False, got {blocking!r}")
        seconds = parse_timedelta(timeout)
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            seconds = 0.0
        if num_locks is None:
            num_locks = len(self.names)
        elif isinstance(num_locks, bool) or not isinstance(num_locks, numbers.Integral):
            raise TypeError(f"num_locks must be an integer or None, got {num_locks!r}")
        elif not 1 <= num_locks <= len(self.names):
            raise ValueError(f"num_locks must be between 1 and {len(self.names)}, got {num_locks!r}")
        ensure_connected(self._client, "MultiLock")
        if not self.names:
            self._locked = True
            return True
        # refreshed from before the call: a process that dies while waiting must leave the queues
        _refresher.add(MultiLockStore, "multilock", self.id, self.lease_timeout)
        got = wait_once(MultiLockStore, "acquire", self.names, self.id, seconds, int(num_locks), self.lease_timeout)
        if got:
            self._locked = True
        else:
            _refresher.remove(MultiLockStore, "multilock", self.id)
        return got

    def release(self):
        """Release the locks.

        Raises:
            ValueError: if they are not held ("Lock is not yet acquired", as Dask).
        """
        if not self._locked:
            raise ValueError("Lock is not yet acquired")
        self._locked = False
        if self.names:
            ensure_connected(self._client, "MultiLock")
            _refresher.remove(MultiLockStore, "multilock", self.id)
            call(MultiLockStore, "release", self.id)

    def locked(self):
        """Whether this MultiLock holds its locks."""
        return self._locked

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.release()

    def __reduce__(self):
        return type(self), (self.names, None), {"lease_timeout": self.lease_timeout}

    def __setstate__(self, state):
        self.lease_timeout = state["lease_timeout"]

    def __repr__(self):
        return f"<MultiLock: {self.names!r}>"
