"""Exception types users catch, and the translation of Ray's errors into them.

Dask users write ``except CancelledError`` and ``except ValueError`` around
``future.result()``; Ray raises ``RayTaskError(ValueError)`` with a banner and a
text traceback, ``TaskCancelledError`` and ``GetTimeoutError``.  :func:`unwrap`
turns each into what dask.distributed raises: the task's *original* exception
with the remote frames as a real traceback (carried by tblib), a
:class:`FutureCancelledError`, or the builtin :class:`TimeoutError`.
"""

from __future__ import annotations

import time
from concurrent.futures import CancelledError

import ray.exceptions
import tblib

from .raycompat import task_attempt_nodes

__all__ = [
    "CancelledError",
    "CancelledFuturesGroup",
    "ClosedClientError",
    "FutureCancelledError",
    "FuturesCancelledError",
    "KilledWorker",
    "TimeoutError",
    "WorkerStartTimeoutError",
    "fresh",
    "task_traceback",
    "truncate",
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


def _plural(n) -> str:
    return "s" if n > 1 else ""


class CancelledFuturesGroup:
    """The cancelled futures that share one reason, inside a :class:`FuturesCancelledError`.

    Same attributes and text as ``distributed.client.CancelledFuturesGroup``.
    """

    __slots__ = ("errors", "reason")

    def __init__(self, errors, reason):
        self.errors = errors
        self.reason = reason

    def __str__(self):
        keys = [error.key for error in self.errors]
        example = next((error.msg for error in self.errors if error.msg), None)
        n = len(keys)
        return (f"{n} Future{_plural(n)} cancelled for reason: {self.reason}.\nMessage: {example}\n"
                f"Future{_plural(n)}: {keys}")


class FuturesCancelledError(CancelledError):
    """Raised by ``futures_of(..., client=c)`` / ``Client.futures_of`` when some of the futures were cancelled.

    Same type, attributes (``error_groups``, largest group first) and message as
    ``distributed.client.FuturesCancelledError``.
    """

    def __init__(self, error_groups):
        super().__init__(error_groups)
        self.error_groups = sorted(error_groups, key=lambda group: len(group.errors), reverse=True)

    def __str__(self):
        count = sum(len(group.errors) for group in self.error_groups)
        return "\n".join([f"{count} Future{_plural(count)} cancelled:", "Reasons:"]
                         + [str(group) for group in self.error_groups])


class KilledWorker(Exception):
    """Raised when a task's worker died more often than its retries allow.

    Same name and arguments as ``distributed.scheduler.KilledWorker``: the
    task's key, the last worker that tried it (here its address) and the number
    of deaths allowed (Ray's ``max_retries``).  ``workers`` lists the workers that
    tried it, in order, when Ray's task events still knew them; ``attempts`` is
    how often it was tried (``allowed_failures + 1`` unless Ray said otherwise).
    """

    def __init__(self, task, last_worker=None, allowed_failures=0, *, workers=(), attempts=None):
        super().__init__(task, last_worker, allowed_failures)
        self.task = task
        self.last_worker = last_worker
        self.allowed_failures = allowed_failures
        self.workers = list(workers)  # instance attributes survive pickling (BaseException.__reduce__)
        self.attempts = allowed_failures + 1 if attempts is None else attempts

    def __str__(self) -> str:
        last = getattr(self.last_worker, "address", self.last_worker)  # Dask passes a WorkerState
        if self.attempts is None:  # killed_worker knew neither the retries nor Ray's task events
            times = ""
        else:
            times = " once" if self.attempts == 1 else f" {self.attempts} times"
        where = f" on {', '.join(map(str, self.workers))}" if self.workers else ""
        return (
            f"Attempted to run task {self.task!r}{times}{where} (allowed failures: "
            f"{self.allowed_failures if self.attempts is not None else 'unknown'}), "
            "but each time the worker process died while running it. "
            f"The last worker that attempted to run the task was {last if last is not None else 'unknown'}. "
            "Inspecting worker logs is often a good next step to diagnose what went wrong. "
            "For more information see https://distributed.dask.org/en/stable/killed.html."
        )


class ClosedClientError(Exception):
    """Raised when a closed client is asked to submit work (``submit``, ``map``, ``compute``...).

    Dask's ``distributed.client.ClosedClientError``, with Dask's message.
    """


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


#: Longest exception message a task sends home, as Dask's ``distributed.admin.max-error-length``
#: (10000); a longer one is cut by :func:`truncate`.
MAX_ERROR_LENGTH = 10_000


def truncate(exc: BaseException, n: int = MAX_ERROR_LENGTH) -> BaseException:
    """``exc``, or for a message longer than ``n`` characters a shorter one of its type.

    Dask's ``distributed.utils.truncate_exception``, which its workers apply to
    every task error: ``type(exc)("Long error message", str(exc)[:n])``, or an
    ``Exception("Long error message", type(exc), str(exc)[:n])`` for a type that
    cannot be made so.
    """
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__: nothing to measure
        return exc
    if len(text) <= n:
        return exc
    try:
        return type(exc)("Long error message", text[:n])
    except Exception:  # noqa: BLE001
        return Exception("Long error message", type(exc), text[:n])


def capture(exc: BaseException) -> BaseException:
    """Attach the traceback of ``exc`` (minus the wrapper's frame) for the trip home.

    Called inside the task wrapper; the attribute travels with the exception
    because ``BaseException.__reduce__`` pickles the instance ``__dict__``.  A
    message longer than :data:`MAX_ERROR_LENGTH` is cut first, as Dask's workers
    do (:func:`truncate`); the traceback stays the original's.
    """
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # drop the wrapper's own frame
    exc = truncate(exc)
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


def task_traceback(exc: BaseException):
    """The traceback of the task that raised ``exc``, as the task saw it (None if not a task's).

    Rebuilt from what :func:`capture` sent home on every call: ``exc.__traceback__``
    also collects the frames of every place that raised it again since.
    """
    tb_dict = getattr(exc, REMOTE_TB_ATTR, None)
    if tb_dict is None:
        return None
    try:
        return tblib.Traceback.from_dict(tb_dict).as_traceback()
    except Exception:  # noqa: BLE001
        return None


def fresh(exc: BaseException) -> BaseException:
    """``exc`` ready to be raised once more: its traceback only the task's own frames.

    Dask re-raises a task's exception with the task's traceback
    (``raise exception.with_traceback(traceback)``), so a ``result()`` shows the
    caller, one frame of the client, and the task.  A stored exception raised
    again would otherwise keep the frames of every earlier raise.
    """
    return exc.with_traceback(task_traceback(exc))


def _is_ray_frames(tb) -> bool:
    while tb is not None:
        if "raydask" not in tb.tb_frame.f_code.co_filename and "ray" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


#: ``retries=`` of :func:`unwrap` when the caller does not know the task's retries.
UNKNOWN = object()


def unwrap(err: BaseException, key=None, *, ref=None, retries=UNKNOWN) -> BaseException:
    """Translate an exception raised by ``ray.get`` into the one Dask raises.

    Args:
        err: what Ray raised.
        key: the key of the future being read, for cancellation messages.
        ref: the task's value ref (``FutureState.ref``); with it a dead worker's
            :class:`KilledWorker` says how often and where the task ran.
        retries: the task's ``retries=`` as submitted (None: Ray's default of 3);
            leave it out when unknown.
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
            return unwrap(cause, key)  # a dependency's failure: not this task's attempts
        if isinstance(cause, BaseException):
            return restore(cause)
    if isinstance(err, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return killed_worker(key, ref, retries)
    return err


#: Ray's ``max_retries`` for a task that did not set it (``retries=None``).
RAY_DEFAULT_MAX_RETRIES = 3


def killed_worker(key, ref=None, retries=UNKNOWN) -> KilledWorker:
    """The :class:`KilledWorker` for a task whose worker died on every attempt.

    Ray raises ``WorkerCrashedError``/``NodeDiedError`` from ``ray.get`` only
    once the retries are spent, so the task ran ``max_retries + 1`` times
    (``retries=None``: Ray's default, 3).  With ``ref``, the GCS's task events
    for its task id (kept whether or not Ray's dashboard runs) give the
    attempts and the node of each.  Knowing neither, the message gives no count
    rather than a wrong one.
    """
    known = retries is not UNKNOWN
    allowed = RAY_DEFAULT_MAX_RETRIES if retries is None or not known else retries
    attempts = _task_attempts(ref, allowed + 1 if known else 1) if ref is not None else None
    if not attempts:
        err = KilledWorker(key, None, allowed)
        if not known:
            err.attempts = None
        return err
    workers = []
    for address in attempts:
        if address is not None and address not in workers:
            workers.append(address)
    last = next((a for a in reversed(attempts) if a is not None), None)
    # an attempt the events missed still ran; unknown retries: the events are all we know
    tried = max(allowed + 1, len(attempts)) if known else len(attempts)
    return KilledWorker(key, last, tried - 1, workers=workers, attempts=tried)


def _task_attempts(ref, expected: int, patience: float = 1.0) -> list | None:
    """The worker address of each attempt of ``ref``'s task, from the GCS (None: unknown).

    The events lag the work by up to a second (workers report them in batches),
    so while an attempt has no node yet this asks again, for at most
    ``patience`` seconds: it runs only when a worker died, on the thread that
    settles the failure.
    """
    deadline = time.monotonic() + patience
    while True:
        nodes = task_attempt_nodes(ref)
        if nodes is None:
            return None
        if (len(nodes) >= expected and all(nodes.values())) or time.monotonic() >= deadline:
            break
        time.sleep(0.1)  # Ray has no "task events reached the GCS" notification; bounded by patience
    if not nodes:
        return None
    addresses = _node_addresses()
    return [addresses.get(nodes[n]) if nodes[n] else None for n in sorted(nodes)]


def _node_addresses() -> dict:
    """``{node id: worker address}`` for every node Ray knows, dead ones too (as ``worker_table``)."""
    return {n["NodeID"]: f"tcp://{n['NodeManagerAddress']}:{n['NodeManagerPort']}" for n in ray.nodes()}
