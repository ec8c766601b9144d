"""``client.get_executor()``: a ``concurrent.futures.Executor`` over a client (Dask's ``ClientExecutor``).

Each ``submit`` is a ``client.submit`` with the executor's keywords; the
raydask Future's completion (a callback on raydask's callback thread, no
polling) settles a ``concurrent.futures.Future``, so the stdlib's ``wait`` and
``as_completed`` work on them unchanged.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
import weakref

from .keys import parse_timedelta
from .waiting import wait as _wait_all

__all__ = ["ClientExecutor"]


class ClientExecutor(cf.Executor):
    """A ``concurrent.futures`` Executor that runs its calls on a raydask client.

    Args:
        client: the client to submit to.
        **kwargs: ``submit`` keywords given to every call: ``pure``, ``workers``,
            ``resources``, ``allow_other_workers``, ``retries``, ``priority``.
    Raises:
        TypeError: for any other keyword.

    Differences from dask.distributed:
        ``priority=`` is accepted (Dask's docstring promises any ``submit``
        keyword; its code refuses ``priority``).
    """

    _allowed_kwargs = frozenset(["pure", "workers", "resources", "allow_other_workers", "retries", "priority"])

    def __init__(self, client, **kwargs):
        unknown = set(kwargs) - self._allowed_kwargs
        if unknown:
            raise TypeError(f"unsupported arguments to ClientExecutor: {sorted(unknown)}")
        self._client = client
        self._kwargs = kwargs
        self._futures: weakref.WeakSet = weakref.WeakSet()  # raydask futures, of submit and map
        self._wrapped: weakref.WeakSet = weakref.WeakSet()  # the stdlib futures submit returned
        self._shutdown = False
        self._lock = threading.Lock()

    def _wrap(self, future) -> cf.Future:
        """A stdlib Future that follows ``future``; cancelling it cancels ``future``."""
        cf_future = cf.Future()

        def cancel_task(cf_fut):
            if cf_fut.cancelled() and future.status != "cancelled":
                future.cancel()

        cf_future.add_done_callback(cancel_task)
        future.add_done_callback(lambda fut: _cascade(fut, cf_future))
        return cf_future

    def submit(self, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on the cluster; return a ``concurrent.futures.Future``.

        Raises:
            RuntimeError: after :meth:`shutdown`.
        """
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future = self._client.submit(fn, *args, **{**self._kwargs, **kwargs})
            self._futures.add(future)
        cf_future = self._wrap(future)
        self._wrapped.add(cf_future)
        return cf_future

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """An iterator of ``fn``'s results over the zipped ``iterables``, in their order.

        All calls are submitted before the first result is asked for; leaving
        the iterator early cancels the calls not yet yielded.

        Raises:
            TimeoutError: if the results are not all there ``timeout`` seconds after the call.
            Exception: whatever ``fn`` raised, when its result is reached.
        """
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        end = None if timeout is None else time.monotonic() + parse_timedelta(timeout)
        futures = iter(self._client.map(fn, *iterables, **self._kwargs))

        def results():
            try:
                for future in futures:
                    self._futures.add(future)
                    if end is None:
                        yield future.result()
                    else:
                        try:
                            yield future.result(max(0.0, end - time.monotonic()))
                        except TimeoutError:
                            raise cf.TimeoutError from None
            finally:
                remaining = list(futures)
                self._futures.update(remaining)
                if remaining:
                    self._client.cancel(remaining)

        return results()

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Refuse new calls; with ``wait``, block until the submitted ones ended, else cancel them.

        Safe to call more than once.  ``cancel_futures`` (the stdlib's keyword)
        cancels the calls not yet finished.
        """
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            futures, wrapped = list(self._futures), list(self._wrapped)
        if not wait or cancel_futures:
            self._client.cancel(futures)
            return
        if futures:
            _wait_all(futures)
        cf.wait(wrapped)  # their outcomes are passed on by raydask's callback thread


def _cascade(future, cf_future) -> None:
    """Pass ``future``'s outcome to ``cf_future`` (on raydask's callback thread)."""
    if cf_future.done():
        return
    status = future.status
    if status == "cancelled":
        cf_future.cancel()
        cf_future.set_running_or_notify_cancel()  # wakes wait() and as_completed()
        return
    try:
        result = future.result()
    except BaseException as exc:  # noqa: BLE001 - the task's failure is the answer
        try:
            cf_future.set_exception(exc)
        except cf.InvalidStateError:
            pass
        return
    try:
        cf_future.set_result(result)
    except cf.InvalidStateError:
        pass
