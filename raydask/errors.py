"""Exception types users catch, and the translation of Ray's errors into them.

Dask users write ``except CancelledError`` and ``except ValueError`` around
``future.result()``; Ray raises ``RayTaskError(ValueError)`` with a banner and a
text traceback, ``TaskCancelledError`` and ``GetTimeoutError``.  :func:`unwrap`
turns each into what dask.distributed raises: the task's *original* exception
with the remote frames as a real traceback (carried by tblib), a
:class:`FutureCancelledError`, or the builtin :class:`TimeoutError`.
"""

from __future__ import annotations

from concurrent.futures import CancelledError

import ray.exceptions
import tblib

__all__ = [
    "CancelledError",
    "FutureCancelledError",
    "KilledWorker",
    "TimeoutError",
    "WorkerStartTimeoutError",
    "unwrap",
]

TimeoutError = TimeoutError  # noqa: A001 - dask.distributed re-exports the builtin

#: Attribute under which the task wrapper stores the serialised remote traceback.
REMOTE_TB_ATTR = "_raydask_tb"


class FutureCancelledError(CancelledError):
    """Raised when the result of a cancelled future is asked for.

    Same type, attributes and message as ``distributed.client.FutureCancelledError``.
    """

    def __init__(self, key, reason=None, msg=None):
        super().__init__(key, reason, msg)
        self.key = key
        self.reason = reason if reason else "unknown"
        self.msg = msg

    def __str__(self) -> str:
        result = f"{self.key} cancelled for reason: {self.reason}."
        if self.msg:
            result += f"\n{self.msg}"
        return result


class KilledWorker(Exception):
    """Raised when a task's worker died more often than its retries allow.

    Same name and arguments as ``distributed.scheduler.KilledWorker``.
    """

    def __init__(self, task, last_worker=None, allowed_failures=0):
        super().__init__(task, last_worker, allowed_failures)
        self.task = task
        self.last_worker = last_worker
        self.allowed_failures = allowed_failures

    def __str__(self) -> str:
        return (
            f"Attempted to run task {self.task!r} on {self.allowed_failures + 1} "
            f"different workers, but all those workers died while running it. "
            f"The last worker that attempt to run the task was {self.last_worker}."
        )


class WorkerStartTimeoutError(TimeoutError):
    """Raised when ``wait_for_workers`` runs out of time (a ``TimeoutError``)."""

    def __init__(self, available_workers, expected_workers, timeout):
        super().__init__(available_workers, expected_workers, timeout)
        self.available_workers = available_workers
        self.expected_workers = expected_workers
        self.timeout = timeout

    def __str__(self) -> str:
        return (
            f"Only {self.available_workers}/{self.expected_workers} workers arrived "
            f"after {self.timeout}"
        )


def capture(exc: BaseException) -> BaseException:
    """Attach the traceback of ``exc`` (minus the wrapper's frame) for the trip home.

    Called inside the task wrapper; the attribute travels with the exception
    because ``BaseException.__reduce__`` pickles the instance ``__dict__``.
    """
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # drop the wrapper's own frame
    try:
        setattr(exc, REMOTE_TB_ATTR, tblib.Traceback(tb).as_dict())
    except Exception:  # an exception type that refuses attributes keeps Ray's text
        pass
    return exc


def restore(exc: BaseException) -> BaseException:
    """Give an exception that came back from a task its remote traceback."""
    tb_dict = getattr(exc, REMOTE_TB_ATTR, None)
    if tb_dict is not None and (exc.__traceback__ is None or _is_ray_frames(exc.__traceback__)):
        try:
            exc.__traceback__ = tblib.Traceback.from_dict(tb_dict).as_traceback()
        except Exception:
            pass
    return exc


def _is_ray_frames(tb) -> bool:
    while tb is not None:
        if "raydask" not in tb.tb_frame.f_code.co_filename and "ray" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def unwrap(err: BaseException, key=None) -> BaseException:
    """Translate an exception raised by ``ray.get`` into the one Dask raises.

    Args:
        err: what Ray raised.
        key: the key of the future being read, for cancellation messages.
    Returns:
        The exception to raise in the user's code (never a Ray wrapper when the
        task's own exception could be recovered).
    """
    if isinstance(err, ray.exceptions.TaskCancelledError):
        return FutureCancelledError(key, None)
    if isinstance(err, ray.exceptions.GetTimeoutError):
        return TimeoutError(str(err))
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause
        if isinstance(cause, ray.exceptions.RayError) and cause is not err:
            return unwrap(cause, key)
        if isinstance(cause, BaseException):
            return restore(cause)
    if isinstance(err, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return KilledWorker(key, None, 0)
    return err
