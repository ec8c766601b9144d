"""Blocking or awaited: the one place that decides.

Dask's asynchronous client returns a coroutine where its synchronous client
returns a value.  raydask writes each such operation once, as a generator of
*steps*: it yields what it has to wait for (values of Ray refs, held tasks
becoming Ray tasks, a condition over task states, a call that blocks) and is
sent what came of it.  :func:`run` drives the generator either way::

    steps ──► run(steps, asynchronous=False) ──► step.block()   (ray.get, thread waits)
          └─► run(steps, asynchronous=True)  ──► await step.wait()  (await ref, loop futures)

Awaiting costs no thread: Ray's completion callback hands a ref's value to the
loop's inbox (:func:`ref_future`, one wake-up per batch), and a state change
reaches the loop through ``call_soon_threadsafe`` from the callback that records it.  Only a call that
blocks in Ray or in the OS (``close``, starting a cluster) runs in a worker
thread of the loop, once per call, never once per future.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import weakref

import ray
import ray.exceptions

from .raycompat import on_completed, on_ready

__all__ = ["LoopSignal", "LoopThread", "StartOnce", "Step", "dispatched", "get", "get_one", "in_loop", "ready",
           "run", "run_call"]


def in_loop() -> bool:
    """Whether the calling thread is running an event loop (``await`` is possible here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Step:
    """One thing to wait for: how to wait for it blocking, and how awaiting.

    ``block()`` returns the result; ``wait()`` is a coroutine function returning
    the same.  Both raise the same exceptions, so the generator that yielded the
    step handles one set.
    """

    __slots__ = ("block", "wait")

    def __init__(self, block, wait):
        self.block = block
        self.wait = wait


def run(steps, asynchronous: bool):
    """The generator ``steps``' return value (blocking), or a coroutine that awaits it."""
    if asynchronous:
        return _awaited(steps)
    return _blocking(steps)


def run_call(fn, asynchronous: bool, blocking: bool = False):
    """``fn()``'s value now, or (asynchronous) a coroutine calling it when awaited.

    ``blocking`` says ``fn`` may block for a while (Ray calls that wait, joins):
    awaited, it then runs in a worker thread so the loop keeps serving.
    """
    if not asynchronous:
        return fn()
    if blocking:
        return asyncio.to_thread(fn)
    return _call_later(fn)


async def _call_later(fn):
    return fn()


def _blocking(gen):
    value, error = None, None
    while True:
        try:
            step = gen.send(value) if error is None else gen.throw(error)
        except StopIteration as stop:
            return stop.value
        value = error = None
        try:
            value = step.block()
        except BaseException as exc:  # noqa: BLE001 - handed back to the generator
            error = exc


async def _awaited(gen):
    value, error = None, None
    while True:
        try:
            step = gen.send(value) if error is None else gen.throw(error)
        except StopIteration as stop:
            return stop.value
        value = error = None
        try:
            value = await step.wait()
        except asyncio.CancelledError:
            gen.close()  # the awaiting task was cancelled: the work goes on, this wait ends
            raise
        except BaseException as exc:  # noqa: BLE001
            error = exc


# -- the steps ----------------------------------------------------------------------------
def _timed(awaitable, timeout):
    """``awaitable`` bounded by ``timeout`` seconds, timing out as ``ray.get`` does."""
    if timeout is None:
        return awaitable

    async def bounded():
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except asyncio.TimeoutError:
            raise ray.exceptions.GetTimeoutError(f"not ready within {timeout} s") from None

    return bounded()


def get_one(ref, timeout=None) -> Step:
    """The value of one ref (``ray.get(ref)`` / awaited through :func:`ref_future`)."""
    if timeout is None:
        return Step(lambda: ray.get(ref), lambda: ref_future(ref))
    return Step(lambda: ray.get(ref, timeout=timeout), lambda: _timed(ref_future(ref), timeout))


class _Inbox:
    """Endings of the refs one event loop awaits, handed over in batches.

    Ray's own ``await ref`` wraps a ``concurrent.futures.Future`` per ref and
    wakes the loop once per ref (``call_soon_threadsafe``).  Here Ray's
    completion callback only appends to a list; the first append since the
    last delivery wakes the loop, which then settles every waiting future at
    once: thousands of concurrent awaits cost a handful of wake-ups.
    """

    __slots__ = ("loop", "lock", "items", "scheduled", "__weakref__")

    def __init__(self, loop):
        self.loop = loop
        self.lock = threading.Lock()
        self.items: list = []
        self.scheduled = False

    def deliver(self, future, value) -> None:
        """On Ray's callback thread: queue ``value`` for ``future`` (never blocks)."""
        with self.lock:
            self.items.append((future, value))
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop closed: nobody is waiting any more
            pass

    def _drain(self) -> None:
        with self.lock:
            items, self.items = self.items, []
            self.scheduled = False
        for future, value in items:
            if future.done():  # its awaiting task was cancelled
                continue
            if isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.set_result(value)


_inboxes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _inbox():
    """The running loop and its :class:`_Inbox`."""
    loop = asyncio.get_running_loop()
    inbox = _inboxes.get(loop)
    if inbox is None:
        inbox = _inboxes[loop] = _Inbox(loop)
    return loop, inbox


def ref_future(ref) -> asyncio.Future:
    """An asyncio future of ``ref``'s value (or its Ray error), set through this loop's inbox."""
    loop, inbox = _inbox()
    future = loop.create_future()
    on_completed(ref, lambda value, future=future, inbox=inbox: inbox.deliver(future, value))
    return future


def ready(ref, timeout=None) -> Step:
    """Wait until ``ref``'s object exists, without fetching it: True, or False on timeout."""

    def block():
        done, _ = ray.wait([ref], timeout=timeout, fetch_local=False)
        return bool(done)

    async def wait():
        loop, inbox = _inbox()
        future = loop.create_future()
        on_ready(ref, lambda future=future, inbox=inbox: inbox.deliver(future, True))
        try:
            return await _timed(future, timeout)
        except ray.exceptions.GetTimeoutError:
            return False

    return Step(block, wait)


def get(refs, timeout=None) -> Step:
    """The values of ``refs``, in order (``ray.get(refs)`` / all of them awaited at once)."""
    refs = list(refs)

    async def wait():
        if not refs:
            return []
        return await _timed(asyncio.gather(*[ref_future(r) for r in refs]), timeout)

    return Step(lambda: ray.get(refs, timeout=timeout), wait)


class LoopSignal:
    """Wakes one awaiting coroutine from any thread (``set()`` is what callbacks call).

    Made on the loop's thread; ``set`` may run on Ray's callback thread or a
    raydask thread, so it goes through ``call_soon_threadsafe``.
    """

    __slots__ = ("_loop", "_future")

    def __init__(self):
        self._loop = asyncio.get_running_loop()
        self._future = self._loop.create_future()

    def set(self, *_args) -> None:
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop closed: nobody is waiting any more
            pass

    def _wake(self):
        if not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        return self._future.done()

    async def wait(self, timeout=None) -> bool:
        """True once set; False if ``timeout`` seconds pass first."""
        if timeout is None:
            await self._future
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except asyncio.TimeoutError:
            return False
        return True


def dispatched(states, timeout=None) -> Step:
    """Every held task of ``states`` became a Ray task (or settled); False on timeout.

    One wake-up for all of them (a :class:`Countdown`), not one per task: the
    gate releases a ``gather`` of thousands of held tasks a window at a time.
    """

    def block():
        event = threading.Event()
        return _count_down(states, event) or event.wait(timeout)

    async def wait():
        signal = LoopSignal()
        return _count_down(states, signal) or await signal.wait(timeout)

    return Step(block, wait)


def _count_down(states, signal) -> bool:
    """Register one :class:`Countdown` on every held state; True if none was held."""
    countdown = Countdown(signal)
    for st in states:
        countdown.add()
        if not st.on_dispatched(countdown):
            countdown.set()  # it is a Ray task already: nothing to wait for
    return countdown.set()  # the guard taken at the start


class Countdown:
    """Sets ``signal`` once ``set()`` was called as often as ``add()``, plus once for a guard.

    ``set`` runs on the gate's thread, so it only takes a short lock.
    """

    __slots__ = ("_left", "_lock", "_signal")

    def __init__(self, signal):
        self._left = 1
        self._lock = threading.Lock()
        self._signal = signal

    def add(self) -> None:
        with self._lock:
            self._left += 1

    def set(self, *_args) -> bool:
        """Count one down; True (and ``signal`` set) when that was the last."""
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._signal.set()
        return last


class StartOnce:
    """A start that blocks (Ray's nodes take seconds), run once in a worker thread of
    the loop however many coroutines await it (``await client``, ``async with``)."""

    def __init__(self, start):
        self._start = start
        self._task = None

    async def __call__(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(asyncio.to_thread(self._start))
        await asyncio.shield(self._task)


class LoopThread:
    """An event loop on a named thread of its own: where a synchronous client's
    :meth:`Client.sync` runs coroutines (Dask's client has such a loop thread).
    Started on first use, stopped and joined by :meth:`close`.
    """

    def __init__(self, name="raydask-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, awaitable, timeout=None):
        """Run ``awaitable`` on the loop and block for its result.

        Raises:
            TimeoutError: if ``timeout`` seconds pass first (the coroutine is cancelled).
        """
        future = asyncio.run_coroutine_threadsafe(_wrapped(awaitable), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the coroutine did not finish within {timeout} s") from None

    def close(self, timeout=5.0) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
            self.loop.close()


async def _wrapped(awaitable):
    return await awaitable
