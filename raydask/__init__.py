"""raydask: dask.distributed's futures API on Ray.

Change one import and Dask futures code runs on a Ray cluster::

    from raydask import Client, progress, as_completed
"""

from .actor import Actor, ActorFuture, BaseActorFuture
from .client import Client, fire_and_forget, futures_of
from .cluster import LocalCluster
from .errors import (CancelledError, FutureCancelledError, FuturesCancelledError, KilledWorker, TimeoutError,
                     WorkerStartTimeoutError)
from .events_sync import Event
from .future import Future
from .limits import annotate
from .locks import Lock, MultiLock, Semaphore
from .messages import print, warn  # noqa: A004 - Dask's names: print and warn in tasks reach the client
from .plugins import Environ, UploadFile, WorkerPlugin
from .progress import progress
from .queues import Queue
from .report import performance_report
from .servers import Scheduler, Worker
from .task_stream import get_task_stream
from .variable import Variable
from .waiting import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait
from .worker import default_client, get_client, get_worker, local_client, rejoin, secede, worker_client

__version__ = "0.1.0"

__all__ = [
    "ALL_COMPLETED",
    "Actor",
    "ActorFuture",
    "BaseActorFuture",
    "CancelledError",
    "Client",
    "Environ",
    "Event",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Future",
    "FutureCancelledError",
    "FuturesCancelledError",
    "KilledWorker",
    "LocalCluster",
    "Lock",
    "MultiLock",
    "Queue",
    "Scheduler",
    "Semaphore",
    "TimeoutError",
    "UploadFile",
    "Variable",
    "Worker",
    "WorkerPlugin",
    "WorkerStartTimeoutError",
    "annotate",
    "as_completed",
    "default_client",
    "fire_and_forget",
    "futures_of",
    "get_client",
    "get_task_stream",
    "get_worker",
    "local_client",
    "performance_report",
    "print",
    "progress",
    "rejoin",
    "secede",
    "wait",
    "warn",
    "worker_client",
]
