"""``wait`` and ``as_completed``: waiters installed on futures, woken by Ray's callbacks.

As in ``concurrent.futures``, nothing polls: each future gets a waiter that the
settler thread calls when the task's receipt arrives, and the waiting thread
sleeps on one Condition until enough waiters fired.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from concurrent.futures import CancelledError

from .future import Future, Status, notify
from .keys import parse_timedelta

__all__ = ["as_completed", "wait", "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"]

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"


def _watch(future: Future, waiter) -> bool:
    """Install ``waiter`` on ``future``; False if it is already done (no call made)."""
    st = future._state
    if st.status is not Status.PENDING:
        return False
    if not st.add_waiter(waiter):
        return False
    st.watch(future.client._settler)
    return True


def _check_futures(fs, where):
    if isinstance(fs, Future):
        raise TypeError(f"{where} expects a collection of futures, got a single future {fs!r}; wrap it in a list")
    fs = list(fs)
    for f in fs:
        if not isinstance(f, Future):
            raise TypeError(f"{where} expects futures, got {f!r}")
    return fs


class DoneAndNotDoneFutures(tuple):
    """``(done, not_done)``, also readable as ``.done`` and ``.not_done``."""

    __slots__ = ()

    def __new__(cls, done, not_done):
        return super().__new__(cls, (done, not_done))

    @property
    def done(self):
        return self[0]

    @property
    def not_done(self):
        return self[1]


def wait(fs, timeout=None, return_when=ALL_COMPLETED):
    """Wait until futures are done; return ``(done, not_done)`` sets.

    Args:
        fs: futures (a list, set or other iterable).
        timeout: seconds or a string such as ``"10s"``.
        return_when: ``"ALL_COMPLETED"``, ``"FIRST_COMPLETED"`` or ``"FIRST_EXCEPTION"``.
    Raises:
        TimeoutError: if the timeout passes first (Dask's behaviour; Ray's ``wait``
            would return partial results instead).

    Differences from dask.distributed:
        ``FIRST_EXCEPTION`` is supported (Dask raises ``NotImplementedError``), an
        unknown ``return_when`` raises ``ValueError``, and items that are not
        futures raise ``TypeError`` (Dask ignores them).
    """
    if isinstance(fs, Future):  # as Dask: one future is waited on alone
        fs = [fs]
    fs = _check_futures(fs, "wait")
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(f"return_when must be ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION, got {return_when!r}")
    limit = parse_timedelta(timeout)
    cond = threading.Condition()
    pending = {}
    fired = []

    def waiter(state):
        with cond:
            fired.append(state)
            cond.notify()

    for f in fs:
        st = f._state
        if id(st) not in pending:
            if _watch(f, waiter):
                pending[id(st)] = st
            else:
                notify(st.poll(), st)
    states = list(pending.values())

    def satisfied():
        remaining = [st for st in states if st.status is Status.PENDING]
        if not remaining:
            return True
        if return_when == FIRST_COMPLETED:
            return len(remaining) < len(states) or any(f._state.status is not Status.PENDING for f in fs)
        if return_when == FIRST_EXCEPTION:
            return any(f._state.status is Status.ERROR for f in fs)
        return False

    deadline = None if limit is None else time.monotonic() + limit
    try:
        with cond:
            while not satisfied():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    n = sum(st.status is Status.PENDING for st in states)
                    raise TimeoutError(f"{n} of {len(fs)} futures did not finish within {timeout!r}")
                cond.wait(left)
    finally:
        for st in states:
            st.remove_waiter(waiter)
    done = {f for f in fs if f._state.status is not Status.PENDING}
    return DoneAndNotDoneFutures(done, {f for f in fs if f not in done})


class as_completed:
    """Yield futures in the order they finish; more can be added while iterating.

    Args:
        futures: futures to start with.
        with_results: yield ``(future, result)`` pairs.
        raise_errors: with ``with_results``, raise a failed future's exception;
            if False, yield ``(future, (type, exception, traceback))`` for it.
            A cancelled future is yielded with its ``CancelledError`` either way.
        timeout: seconds from construction after which ``next`` raises ``TimeoutError``.

    Differences from dask.distributed:
        With ``with_results=True`` the result is fetched when the future is taken
        from the iterator rather than as soon as it finishes.  ``count()`` counts
        a future added twice as two (what the iterator will still yield); Dask
        counts distinct pending futures plus the ready queue.
    """

    def __init__(self, futures=None, loop=None, with_results=False, raise_errors=True, *, timeout=None):
        self.futures = defaultdict(int)
        self.queue = deque()
        self.lock = threading.Lock()
        self.condition = threading.Condition(self.lock)
        self.with_results = with_results
        self.raise_errors = raise_errors
        limit = parse_timedelta(timeout)
        self._deadline = None if limit is None else time.monotonic() + limit
        if futures:
            self.update(futures)

    def _ready(self, future):
        with self.condition:
            count = self.futures.get(future)
            if not count:
                return
            if count == 1:
                del self.futures[future]
            else:
                self.futures[future] = count - 1
            self.queue.append(future)
            self.condition.notify()

    def update(self, futures):
        """Add several futures; each is yielded once it finishes."""
        futures = _check_futures(futures, "as_completed")
        later = []
        with self.lock:
            for f in futures:
                self.futures[f] += 1
                later.append(f)
        for f in later:
            if not _watch(f, lambda _st, f=f: self._ready(f)):
                self._ready(f)

    def add(self, future):
        """Add one future; it is yielded once it finishes (twice if added twice)."""
        self.update((future,))

    def count(self) -> int:
        """Distinct futures still running plus finished ones waiting in the queue (as Dask).

        A future added twice counts once while it runs and twice once it is done.
        """
        with self.lock:
            return len(self.futures) + len(self.queue)

    def is_empty(self) -> bool:
        return not self.count()

    def has_ready(self) -> bool:
        with self.lock:
            return bool(self.queue)

    def __repr__(self):
        with self.lock:
            return f"<as_completed: waiting={len(self.futures)} done={len(self.queue)}>"

    def __iter__(self):
        return self

    def _result(self, future):
        if not self.with_results:
            return future
        try:
            return future, future.result()
        except CancelledError as exc:  # as Dask: yielded, never raised
            return future, exc
        except Exception as exc:
            if self.raise_errors:
                raise
            return future, (type(exc), exc, exc.__traceback__)  # Dask yields exc_info

    def __next__(self):
        with self.condition:
            while not self.queue:
                if not self.futures:
                    raise StopIteration()
                left = None if self._deadline is None else self._deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"as_completed: no future finished before the timeout; {len(self.futures)} still pending")
                self.condition.wait(left)
            future = self.queue.popleft()
        return self._result(future)  # outside the lock: fetching may take a moment

    next = __next__

    def next_batch(self, block=True):
        """All futures that are done now; with ``block``, wait for at least one."""
        batch = [next(self)] if block else []
        with self.lock:
            ready = list(self.queue)
            self.queue.clear()
        return batch + [self._result(f) for f in ready]

    def batches(self):
        """Yield lists of finished futures as soon as any are ready."""
        while True:
            try:
                yield self.next_batch(block=True)
            except StopIteration:
                return

    def clear(self):
        """Forget every future, done or not."""
        with self.lock:
            self.futures.clear()
            self.queue.clear()
