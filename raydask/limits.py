"""Per-task time limits: ``with annotate(time_limit="10s"): client.submit(...)``.

Dask users have asked for this since 2016 (dask/distributed#391).  The client
reads the limit when it submits (:func:`current_time_limit`) and sends
``Limited(func, seconds)`` to Ray in place of ``func``; the key stays the
function's.  Inside the worker process the limit is enforced in two stages::

    task starts ─┬─► SIGALRM in `seconds` ──────────► the handler raises TimeoutError
                 │   (Ray runs a task in the worker's     in the task's Python code;
                 │    main thread, so signals reach it)   retries= apply as to any error
                 └─► a kernel timer in `seconds+grace` ─► faulthandler, in C, prints the
                     (signals a real-time signal:         stacks to the worker's log
                      needs no GIL; _Killer)              (Ray shows it on the driver),
                                                          then the process ends

The second stage is for code the first cannot stop: a C loop that holds the GIL
(``sum(range(10**12))``, a long numpy kernel) never returns to the interpreter,
so the signal handler cannot run; code that catches the TimeoutError and carries
on.  Ray then sees a dead worker: it reruns the task as after any crash (up to
``retries``; Ray's default of 3 when none are given) and the future then fails
with :class:`~raydask.KilledWorker`, not TimeoutError: a killed process returns
no exception.

Outside the main thread (threaded or async actors, a user's own threads) there
are no signals: a watchdog thread raises TimeoutError in the task's thread with
``PyThreadState_SetAsyncExc``.  It arrives at the next bytecode, so a task
blocked in ``time.sleep`` or in C is only stopped when that returns, and there
is no second stage (it would take an actor's other calls down with it, and the
process has one such timer, not one per thread).
"""

from __future__ import annotations

import contextvars
import ctypes
import datetime
import faulthandler
import math
import os
import signal
import sys
import threading
import time

from .calling import call
from .keys import funcname, parse_timedelta

__all__ = [
    "DASK_ANNOTATIONS",
    "GRACE",
    "HONOURED_ANNOTATIONS",
    "Limited",
    "annotate",
    "current_annotations",
    "current_time_limit",
]

#: The annotations ``raydask.annotate`` acts on.
HONOURED_ANNOTATIONS = frozenset({"time_limit"})
#: Annotations dask.distributed's scheduler acts on: accepted, so that code written
#: for Dask keeps working, but not acted on by raydask yet (pass them to submit).
DASK_ANNOTATIONS = frozenset({"allow_other_workers", "priority", "resources", "retries", "workers"})
#: Seconds after its limit that a task which did not stop gets its worker process ended.
GRACE = 5.0

_annotations: contextvars.ContextVar[dict] = contextvars.ContextVar("raydask_annotations", default={})


def parse_time_limit(value) -> float | None:
    """Seconds from ``10``, ``"10s"``, ``"2 minutes"``, a ``timedelta``, or None (no limit).

    Raises:
        TypeError: for a value that is not a number, a string or a timedelta.
        ValueError: for a string that is no duration, or a limit that is not positive.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str, datetime.timedelta)):
        raise TypeError(f"time_limit must be seconds or a duration like '10s', got {value!r}")
    seconds = parse_timedelta(value, "time_limit")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"time_limit must be a positive, finite duration, got {value!r}")
    return seconds


class annotate:  # noqa: N801 - named and used like dask.annotate
    """Annotate the tasks submitted inside a ``with`` block, as ``dask.annotate`` does.

    ``with annotate(time_limit="10s"): client.submit(f, x)`` stops ``f`` after ten
    seconds with ``TimeoutError``.  Blocks nest; the inner value wins, and
    ``time_limit=None`` lifts an outer limit.  The values live in a contextvar, so
    they hold in this thread (and in asyncio tasks started inside the block), not
    in other threads.

    Args:
        time_limit: seconds, or a duration string like ``"500ms"`` or ``"2 minutes"``.
        allow_other_workers, priority, resources, retries, workers: accepted for
            compatibility with code written for ``dask.annotate``, not acted on yet.
    Raises:
        TypeError: for an annotation raydask does not know (a misspelt ``time_limit``
            would otherwise run without a limit), or a time limit of the wrong type.
        ValueError: for a time limit that is not a positive duration.

    Differences from dask.distributed:
        Dask has no time limit.  ``dask.annotate`` accepts any name, since scheduler
        plugins may read it; raydask has no plugins and refuses names it does not know.
    """

    __slots__ = ("_values", "_tokens")

    def __init__(self, **annotations):
        unknown = sorted(set(annotations) - HONOURED_ANNOTATIONS - DASK_ANNOTATIONS)
        if unknown:
            known = sorted(HONOURED_ANNOTATIONS | DASK_ANNOTATIONS)
            raise TypeError(f"unknown annotations {unknown!r}; raydask knows {known!r}")
        if "time_limit" in annotations:
            annotations["time_limit"] = parse_time_limit(annotations["time_limit"])
        self._values = annotations
        self._tokens = []  # one per entry: the same object may be entered again

    def __enter__(self):
        self._tokens.append(_annotations.set({**_annotations.get(), **self._values}))
        return self

    def __exit__(self, *exc_info):
        _annotations.reset(self._tokens.pop())
        return False

    def __repr__(self) -> str:
        return f"annotate({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


def current_annotations() -> dict:
    """The annotations in force here: a new dict, empty outside any ``annotate`` block."""
    return dict(_annotations.get())


def current_time_limit() -> float | None:
    """The time limit in seconds in force here, or None."""
    return _annotations.get().get("time_limit")


class Limited:
    """``func`` with a time limit: call it as ``func``, inside a Ray worker or anywhere.

    Equal and hashing by ``(func, seconds, grace)``, so the client makes one Ray
    function for repeated submits, and named like ``func`` (``__name__``,
    ``__qualname__``, ``__module__``, ``__wrapped__``), so keys and Ray's task names
    stay the function's.

    Args:
        func: the callable to run.
        seconds: the limit, a positive number of seconds.
        grace: in the main thread, seconds after the limit after which a call that
            did not stop ends the whole process (see the module docstring).
    Raises:
        TimeoutError: from a call that ran past its limit.
    """

    def __init__(self, func, seconds, grace=GRACE):
        if not callable(func):
            raise TypeError(f"Limited needs a callable, got {func!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"seconds must be a positive, finite number, got {seconds!r}")
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) \
                or not math.isfinite(grace) or grace < 0:
            raise ValueError(f"grace must be a non-negative, finite number, got {grace!r}")
        self.func = self.__wrapped__ = func
        self.seconds = float(seconds)
        self.grace = float(grace)
        self.__name__ = funcname(func)
        self.__qualname__ = getattr(func, "__qualname__", self.__name__)
        self.__module__ = getattr(func, "__module__", None)
        self.__doc__ = getattr(func, "__doc__", None)

    def __eq__(self, other):
        if type(other) is not Limited:
            return NotImplemented
        return (self.func, self.seconds, self.grace) == (other.func, other.seconds, other.grace)

    def __hash__(self):
        return hash((Limited, self.func, self.seconds, self.grace))

    def __repr__(self) -> str:
        return f"Limited({self.func!r}, {self.seconds!r})"

    def message(self) -> str:
        return f"task {self.__name__!r} exceeded its time limit of {self.seconds:g} s"

    def __call__(self, *args, **kwargs):
        entry = _Entry(self)
        try:
            if threading.current_thread() is threading.main_thread():
                return _call_with_alarm(entry, args, kwargs)
            return _call_with_watchdog(entry, args, kwargs)
        except TimeoutError as exc:
            if entry.fired and not exc.args:  # the watchdog's bare TimeoutError: give it its message
                raise TimeoutError(self.message()).with_traceback(exc.__traceback__) from None
            raise
        except Exception as exc:
            if entry.fired:  # the code caught the TimeoutError and raised something else
                raise TimeoutError(self.message()) from exc
            raise


class _Entry:
    """One running call of a Limited: its deadlines and whether its limit fired."""

    __slots__ = ("limited", "deadline", "kill_at", "fired", "done")

    def __init__(self, limited):
        self.limited = limited
        self.deadline = time.monotonic() + limited.seconds
        self.kill_at = self.deadline + limited.grace
        self.fired = False  # the limit was reached
        self.done = False  # the call is over: a late alarm must not raise any more


def _call_with_alarm(entry, args, kwargs):
    _alarm.push(entry)
    try:
        result = call(entry.limited.func, args, kwargs)  # an async def's coroutine within the limit
    finally:
        # First statement, a plain attribute store: no signal handler can run before it,
        # so an alarm landing from here on does not raise into the cleanup.
        entry.done = True
        _alarm.pop(entry)
    if entry.fired:  # the code swallowed the TimeoutError and returned anyway
        raise TimeoutError(entry.limited.message())
    return result


class _Alarm:
    """The main thread's real-time timer (there is one per process), shared by nested
    limits and by whoever had armed it before (pytest-timeout does, for instance).

    Worker processes are reused: the previous SIGALRM handler and timer are put back
    when the outermost limit ends, and the killer is disarmed.
    """

    _EARLY = 1e-3  # an alarm within a millisecond of a deadline counts as that deadline

    def __init__(self):
        self.stack: list[_Entry] = []
        self.previous = None  # (handler, monotonic deadline or None, interval) before the first push

    def push(self, entry):
        if not self.stack:
            handler = signal.signal(signal.SIGALRM, self.on_alarm)
            delay, interval = signal.getitimer(signal.ITIMER_REAL)
            self.previous = (handler, time.monotonic() + delay if delay else None, interval)
        self.stack.append(entry)
        self.arm()

    def pop(self, entry):
        self.stack.remove(entry)
        if self.stack:
            self.arm()
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        _killer.cancel()
        handler, deadline, interval = self.previous
        self.previous = None
        # None: a handler set from C, which Python cannot put back; the default is the
        # closest (and what a Ray worker has).
        signal.signal(signal.SIGALRM, signal.SIG_DFL if handler is None else handler)
        if deadline is not None:
            signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-6), interval)

    def arm(self):
        """Set the timer for the next deadline, and the killer for the next kill."""
        now = time.monotonic()
        live = [e for e in self.stack if not e.done]
        due = [e.deadline for e in live if not e.fired]
        if self.previous is not None and self.previous[1] is not None:
            due.append(self.previous[1])
        signal.setitimer(signal.ITIMER_REAL, max(min(due) - now, 1e-6) if due else 0)
        if live:
            _killer.arm(max(min(e.kill_at for e in live) - now, 1e-3))
        else:
            _killer.cancel()

    def on_alarm(self, signum, frame):
        now = time.monotonic() + self._EARLY
        previous = self.previous
        if previous is not None and previous[1] is not None and now >= previous[1]:
            handler, deadline, interval = previous
            self.previous = (handler, deadline + interval if interval else None, interval)
            self.arm()
            if callable(handler):  # its own alarm, e.g. pytest-timeout's: it may raise
                handler(signum, frame)
        for entry in self.stack:  # outermost first: its limit is the one reached
            if not entry.done and not entry.fired and now >= entry.deadline:
                entry.fired = True
                self.arm()
                raise TimeoutError(entry.limited.message())
        self.arm()  # early, or for a limit that is over: wait for the next one


class _Killer:
    """Ends this process after a delay, printing every thread's stack first; needs no GIL.

    On 64-bit Linux a POSIX timer (``timer_create``, made once per process) sends a
    real-time signal that ``faulthandler.register(chain=True)`` handles in C: it
    dumps the stacks to stderr, then re-raises the signal at its default action,
    which ends the process.  Arming and disarming are one ``timer_settime`` each.
    Elsewhere ``faulthandler.dump_traceback_later(exit=True)`` does the same, but it
    starts and joins a thread per call: 115 µs, measured here, a tenth of a no-op
    task (the POSIX timer: about 2 µs).
    """

    def __init__(self):
        self._pid = None  # the process the timer belongs to (timers do not survive fork)
        self._timer = None  # a timer_t; the first one a process makes is 0
        self._ready = False  # False: none (yet), use faulthandler's
        self._spec = None

    def arm(self, delay: float) -> None:
        if self._pid != os.getpid():
            self._make()
        if self._ready:
            self._spec.it_value.tv_sec = int(delay)
            self._spec.it_value.tv_nsec = int((delay % 1) * 1e9)
            if self._settime(self._timer, 0, ctypes.byref(self._spec), None) == 0:
                return
            self._ready = False  # should not happen; the fallback still ends the task
        faulthandler.dump_traceback_later(delay, exit=True)

    def cancel(self) -> None:
        if self._ready and self._pid == os.getpid():
            self._spec.it_value.tv_sec = self._spec.it_value.tv_nsec = 0
            self._settime(self._timer, 0, ctypes.byref(self._spec), None)
        else:
            faulthandler.cancel_dump_traceback_later()

    def _make(self) -> None:
        self._pid, self._ready = os.getpid(), False
        if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
            return  # the structures below are 64-bit Linux's
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            create, self._settime = libc.timer_create, libc.timer_settime
        except (OSError, AttributeError):
            return
        # a real-time signal nobody handles (Ray and Python use none): its default ends the process
        free = [n for n in range(signal.SIGRTMAX, signal.SIGRTMIN, -1) if signal.getsignal(n) == signal.SIG_DFL]
        if not free:
            return
        signum = free[0]
        faulthandler.register(signum, all_threads=True, chain=True)
        event = _SigEvent(sigev_signo=signum, sigev_notify=0)  # SIGEV_SIGNAL
        timer = ctypes.c_void_p()
        if create(1, ctypes.byref(event), ctypes.byref(timer)) != 0:  # CLOCK_MONOTONIC
            faulthandler.unregister(signum)
            return
        self._timer, self._spec, self._ready = timer, _ITimerSpec(), True


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


class _SigEvent(ctypes.Structure):  # glibc's struct sigevent: 64 bytes
    _fields_ = [("sigev_value", ctypes.c_void_p), ("sigev_signo", ctypes.c_int),
                ("sigev_notify", ctypes.c_int), ("_rest", ctypes.c_int * 12)]


_alarm = _Alarm()  # one per process, as the timer and the signal handler are
_killer = _Killer()


def _call_with_watchdog(entry, args, kwargs):
    ident = threading.get_ident()
    lock = threading.Lock()

    def expire():
        with lock:
            if not entry.done:
                entry.fired = True
                _set_async_exc(ident, TimeoutError)

    timer = threading.Timer(entry.limited.seconds, expire)
    timer.name = f"raydask-time-limit-{entry.limited.__name__}"
    timer.daemon = True
    timer.start()
    try:
        result = call(entry.limited.func, args, kwargs)  # an async def's coroutine within the limit
    finally:
        entry.done = True  # first, as in _call_with_alarm
        timer.cancel()
        with lock:  # an expire() already past its check has set the exception by now
            pass
        if entry.fired:
            _set_async_exc(ident, None)  # one that has not arrived yet must not hit the caller
        timer.join()
    if entry.fired:
        raise TimeoutError(entry.limited.message())
    return result


# PyThreadState_SetAsyncExc takes an exception class (an instance gives SystemError
# "is not a BaseException subclass", measured on 3.11), so Limited.__call__ adds the
# message; NULL clears a pending one.  PYFUNCTYPE: called with the GIL held.
_raise_in_thread = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))
_clear_in_thread = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))


def _set_async_exc(ident: int, exc_type) -> None:
    """Raise ``exc_type`` in thread ``ident`` at its next bytecode; None clears a pending one."""
    if exc_type is None:
        _clear_in_thread(ident, None)
    else:
        _raise_in_thread(ident, exc_type)
