"""Calling a user's function inside a task: a plain one, or an ``async def`` one.

Dask awaits a coroutine function's coroutine on the worker, so the future's
value is what the coroutine returns.  A Ray task is a plain call in a thread
without an event loop, so the coroutine runs to completion on a loop of its
own here (``asyncio.run``).  The task wrapper (:mod:`raydask.scheduling`) and a
time limit (:class:`raydask.limits.Limited`, so the limit covers the awaiting)
both call through :func:`call`.
"""

from __future__ import annotations

import asyncio
import inspect

__all__ = ["call", "run_coroutine"]


def call(func, args, kwargs):
    """``func(*args, **kwargs)``; a coroutine it returns is run to its value."""
    result = func(*args, **kwargs)
    if inspect.iscoroutine(result):
        return run_coroutine(result)
    return result


def run_coroutine(coro):
    """Run ``coro`` to its value from synchronous code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case in a Ray task: no loop in this thread
        return asyncio.run(coro)
    # called from inside a running loop (a user's own): run it on a loop in another thread
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raydask-coroutine") as pool:
        return pool.submit(asyncio.run, coro).result()
