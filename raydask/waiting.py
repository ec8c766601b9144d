"""``wait`` and ``as_completed``: the waiting thread waits in Ray, for many futures at once.

A thread blocked in ``wait`` or in ``next(as_completed)`` asks Ray with one
``ray.wait`` over the refs of all the futures it still waits for (Ray
releases the GIL while it waits) and settles what ended in one batch
(:func:`raydask.scheduling.refresh`).  No completion callback runs per task:
those run on Ray's I/O thread and hold it up behind the GIL, which cost 10 % of
the tasks per second on two cores.  Each Ray wait lasts at most ``TICK``
seconds, so a future cancelled or added by another thread is seen promptly.

``as_completed`` also installs a quick waiter on each future (no Ray call), so a
future settled by anyone else (``cancel``, ``progress``, a status check) joins
its queue at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import CancelledError

import ray

from .arguments import check_as_completed_options, check_wait_options
from .awaiting import LoopSignal, Step, run
from .future import Future, Status, _result_steps, quick
from .scheduling import refresh
from .structure import CONTAINERS, futures_of, is_dask_collection

__all__ = ["as_completed", "wait", "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"]

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"

TICK = 0.1  # longest single wait in Ray: how soon another thread's cancel or add is seen


def _window(n: int) -> float:
    """How long ``as_completed`` collects endings for one Ray call over ``n`` futures.

    A Ray wait costs about 0.2 µs per future it looks at, so the more futures
    are pending, the more endings one call should gather: 10 µs per pending
    future, at most 20 ms (from 2,000 up).  Measured on 2 CPUs with 2,000 no-op
    tasks: a 5 ms cap gave 0.95x a raw ``ray.wait`` loop's rate, 20 ms 1.02x,
    50 ms 1.04x; a handful of futures waits a fraction of a millisecond.
    """
    return 0.0 if n < 2 else min(0.02, n * 1e-5)


def _watch(future: Future, waiter) -> bool:
    """Install ``waiter`` on ``future`` and ask Ray to call back when it ends.

    False if it is already done (no call made).  For ``progress``, which has no
    thread of its own waiting in Ray.
    """
    st = future._state
    if st.status is not Status.PENDING:
        return False
    if not st.add_waiter(waiter):
        return False
    st.watch(future.client._settler)
    return True


def _check_futures(fs, where):
    """The futures of ``fs``: a list of them, nested containers of them, or Dask
    collections holding them (as Dask's ``futures_of``)."""
    if isinstance(fs, Future):
        raise TypeError(f"{where} expects a collection of futures, got a single future {fs!r}; wrap it in a list")
    if is_dask_collection(fs):
        return futures_of(fs, Future)
    out = []
    for f in fs:
        if isinstance(f, Future):
            out.append(f)
        elif isinstance(f, CONTAINERS) or is_dask_collection(f):
            out.extend(futures_of(f, Future))
        else:
            raise TypeError(f"{where} expects futures, got {f!r}")
    return out


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
    limit, return_when = check_wait_options(timeout=timeout, return_when=return_when)
    fs = _check_futures(fs, "wait")
    states = list({id(f._state): f._state for f in fs}.values())

    def satisfied():
        remaining = [st for st in states if st.status is Status.PENDING]
        if not remaining:
            return True
        if return_when == FIRST_COMPLETED:
            return len(remaining) < len(states)
        if return_when == FIRST_EXCEPTION:
            return any(st.status is Status.ERROR for st in states)
        return False

    deadline = None if limit is None else time.monotonic() + limit

    def result():
        done = {f for f in fs if f._state.status is not Status.PENDING}
        return DoneAndNotDoneFutures(done, {f for f in fs if f not in done})

    def timed_out():
        n = sum(st.status is Status.PENDING for st in states)
        return TimeoutError(f"{n} of {len(fs)} futures did not finish within {timeout!r}")

    # FIRST_COMPLETED needs one ending; the others learn of endings in batches
    want = 1 if return_when == FIRST_COMPLETED else None
    step = Step(lambda: _block_until(states, satisfied, deadline, want, timed_out),
                lambda: _await_until(states, satisfied, deadline, timed_out, _settler_of(fs)))
    return run(_then(step, result), _asynchronous(fs))


def _then(step, finish):
    yield step
    return finish()


def _asynchronous(fs) -> bool:
    """Whether ``wait`` returns a coroutine: the futures' client is asynchronous, in its loop."""
    client = fs[0]._client if fs else None
    return client is not None and client.asynchronous


def _settler_of(fs):
    return fs[0].client._settler if fs else None


def _block_until(states, satisfied, deadline, want, timed_out) -> None:
    """Block until ``satisfied()``: Ray waits over the refs, in batches (see the module doc)."""
    refresh(states)
    woken = threading.Event()
    wake = quick(lambda _state: woken.set())
    try:
        for st in states:
            if st.ref is None:  # held by the priority gate: it settles states with waiters when Ray is done
                st.add_waiter(wake)
        while not satisfied():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise timed_out()
            pending = [st for st in states if st.status is Status.PENDING]
            tick = TICK if left is None else min(TICK, left)
            if any(st.ref is not None for st in pending):
                refresh(pending, want, tick)
            else:
                woken.wait(tick)
                woken.clear()
    finally:
        for st in states:
            st.remove_waiter(wake)


async def _await_until(states, satisfied, deadline, timed_out, settler) -> None:
    """Await ``satisfied()`` without a thread: each pending state wakes the loop when it settles.

    Every pending task is watched (a Ray completion callback each), since no
    thread of ours waits in Ray on the loop's behalf.
    """
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    @quick
    def wake(_state):
        try:
            loop.call_soon_threadsafe(woken.set)
        except RuntimeError:  # the loop closed
            pass

    try:
        for st in states:
            if st.add_waiter(wake) and settler is not None:
                st.watch(settler)
        while not satisfied():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise timed_out()
            try:
                await asyncio.wait_for(woken.wait(), left)
            except asyncio.TimeoutError:
                pass
            woken.clear()
    finally:
        for st in states:
            st.remove_waiter(wake)


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
        self.futures = defaultdict(int)  # still running: future -> times added
        self.queue = deque()  # done, not yet yielded (a future added twice: twice)
        self.lock = threading.Lock()
        self.condition = threading.Condition(self.lock)
        with_results, raise_errors, limit = check_as_completed_options(
            with_results=with_results, raise_errors=raise_errors, timeout=timeout)
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._deadline = None if limit is None else time.monotonic() + limit
        self._harvesting = False  # a thread is waiting in Ray on this iterator's behalf
        self._by_state = {}  # state -> its futures in self.futures
        self._by_ref = {}  # value ref -> state, for the states in self._by_state
        self._refs = []  # the value refs to ask Ray about (some may have settled meanwhile)
        self._signals = []  # coroutines awaiting the next ending (``async for``)
        self._settler = None  # set once iterated asynchronously: every pending state is watched
        if futures:
            self.update(futures)

    @quick
    def _ready(self, state):
        """``state`` settled: queue its futures (runs wherever it settled; a short lock)."""
        with self.condition:
            self._by_ref.pop(state.ref, None)
            self._queue_futures_of(state)
            self.condition.notify_all()
            signals, self._signals = self._signals, []
        for signal in signals:
            signal.set()

    def _queue_futures_of(self, state):
        """Move ``state``'s futures from running to the queue (hold the lock)."""
        for f in self._by_state.pop(state, ()):
            self.queue.extend([f] * self.futures.pop(f, 0))

    def update(self, futures):
        """Add several futures; each is yielded once it finishes."""
        futures = _check_futures(futures, "as_completed")
        watch = []
        with self.condition:
            for f in futures:
                if f._state.status is not Status.PENDING:
                    self.queue.append(f)
                    continue
                same = self._by_state.get(f._state)
                if same is None:
                    same = self._by_state[f._state] = []
                    if f._state.ref is not None:
                        self._by_ref[f._state.ref] = f._state
                        self._refs.append(f._state.ref)
                    # else: held by the priority gate, which settles it (it has our waiter) when Ray is done
                    watch.append(f._state)
                if f not in self.futures:
                    same.append(f)
                self.futures[f] += 1
            self.condition.notify_all()
            settler = self._settler
        for st in watch:
            if not st.add_waiter(self._ready):  # settled in the meantime
                self._ready(st)
            elif settler is not None:
                st.watch(settler)

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
        self._harvest(block=False)
        with self.lock:
            return bool(self.queue)

    def __repr__(self):
        # live counts, as Dask's (whose event loop moves finished futures at once):
        # one non-blocking look at Ray first
        try:
            self._harvest(block=False)
        except Exception:  # noqa: BLE001 - Ray gone (the client closed): the counts as they were
            pass
        with self.lock:
            return f"<as_completed: waiting={len(self.futures)} done={len(self.queue)}>"

    def __iter__(self):
        return self

    def _harvest(self, block=True, left=None) -> None:
        """Ask Ray which of our futures ended and queue them.

        Blocking, it collects whatever ends within a short window (:func:`_window`),
        else waits in Ray up to ``TICK`` (or ``left``) for the first: one Ray call per
        handful of completions, where a loop of ``ray.wait(num_returns=1)`` makes
        one per completion.  It waits on the values' refs (without fetching them)
        and does not settle the futures: a yielded future settles when asked
        (``status``, ``result``), so the loop costs no Ray call per future.  One
        thread harvests at a time; others wait on the condition.
        """
        with self.condition:
            if self._harvesting:
                if block:
                    self.condition.wait(TICK if left is None else min(TICK, left))
                return
            self._harvesting = True
            refs, self._refs = self._refs, []
        ready = []
        if not refs and block:  # only held futures: they settle themselves (self._ready)
            with self.condition:
                self._harvesting = False
                self._refs = refs + self._refs
                if not self.queue:
                    self.condition.wait(TICK if left is None else max(0.0, min(TICK, left)))
            return
        try:
            if refs:
                if not block:
                    ready, refs = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
                else:
                    ready, refs = ray.wait(refs, num_returns=len(refs), timeout=_window(len(refs)),
                                           fetch_local=False)
                    if not ready:
                        wait = TICK if left is None else max(0.0, min(TICK, left))
                        ready, refs = ray.wait(refs, num_returns=1, timeout=wait, fetch_local=False)
        finally:
            with self.condition:
                self._harvesting = False
                by_ref = self._by_ref
                self._refs = [r for r in refs if r in by_ref] + self._refs
                for ref in ready:
                    state = by_ref.pop(ref, None)
                    if state is not None:
                        self._queue_futures_of(state)
                self.condition.notify_all()

    def _result(self, future, asynchronous=False):
        if not self.with_results:
            return future if not asynchronous else _value(future)
        return run(self._result_steps(future), asynchronous)

    def _result_steps(self, future):
        try:
            return future, (yield from _result_steps(future._state, None))
        except CancelledError as exc:  # as Dask: yielded, never raised
            return future, exc
        except Exception as exc:
            if self.raise_errors:
                raise
            return future, (type(exc), exc, exc.__traceback__)  # Dask yields exc_info

    # -- ``async for``: no thread waits in Ray; each pending state wakes the loop ------
    def __aiter__(self):
        return self

    async def __anext__(self):
        while True:
            with self.condition:
                future, left = self._take(StopAsyncIteration)
                if future is not None:
                    break
                signal = LoopSignal()
                self._signals.append(signal)
                watch = list(self._by_state) if self._settler is None else ()
                if watch:
                    self._settler = next(iter(self.futures)).client._settler
                settler = self._settler
            for st in watch:
                st.watch(settler)
            await signal.wait(left)
        return await self._result(future, asynchronous=True)

    async def _next_batch_async(self):
        batch = [await self.__anext__()]
        with self.lock:
            ready = list(self.queue)
            self.queue.clear()
        for f in ready:
            batch.append(await self._result(f, asynchronous=True))
        return batch

    def __next__(self):
        while True:
            with self.condition:
                future, left = self._take(StopIteration)
                if future is not None:
                    break
            self._harvest(block=True, left=left)
        return self._result(future)  # outside the lock: fetching may take a moment

    def _take(self, end):
        """``(next queued future, None)``, or ``(None, seconds left)`` to wait (hold the lock).

        Raises:
            end: when nothing is queued or running any more.
            TimeoutError: when the iterator's timeout has passed.
        """
        if self.queue:
            return self.queue.popleft(), None
        if not self.futures:
            raise end()
        left = None if self._deadline is None else self._deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(f"as_completed: no future finished before the timeout; {len(self.futures)} still pending")
        return None, left

    next = __next__

    def next_batch(self, block=True):
        """All futures that are done now; with ``block``, wait for at least one."""
        batch = [next(self)] if block else []
        self._harvest(block=False)
        with self.lock:
            ready = list(self.queue)
            self.queue.clear()
        return batch + [self._result(f) for f in ready]

    def batches(self):
        """Lists of finished futures as soon as any are ready (``for`` or ``async for``)."""
        return _Batches(self)

    def clear(self):
        """Forget every future, done or not."""
        with self.lock:
            self.futures.clear()
            self._by_state.clear()
            self._by_ref.clear()
            self._refs.clear()
            self.queue.clear()


async def _value(x):
    return x


class _Batches:
    """``as_completed.batches()``: iterable with ``for`` (blocking) and ``async for``."""

    def __init__(self, ac):
        self._ac = ac

    def __iter__(self):
        while True:
            try:
                yield self._ac.next_batch(block=True)
            except StopIteration:
                return

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self._ac._next_batch_async()
        except StopAsyncIteration:
            raise StopAsyncIteration() from None
