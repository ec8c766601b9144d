"""Actors: ``client.submit(Counter, actor=True)`` as a Ray actor behind Dask's ``Actor`` proxy.

Data flow::

    submit(Counter, actor=True)
        │  Ray actor created from a subclass of Counter (its __init__ keeps a failure for later)
        │  ready = handle.__ray_call__(_created)        raises __init__'s exception, if any
        ▼
    Future ──> Ray task _bind(Actor(Counter, handle, key), ready) ──> value: the proxy
                                                                     (it holds the handle)
    proxy.increment(1) ──> handle.increment.remote(1) ──> ActorFuture(ref)
    proxy.n            ──> handle.__ray_call__(getattr, "n"), fetched at once

The Ray actor lives while a handle on it does: the Future's value holds one,
each proxy deserialised from it holds one (also inside tasks), so the actor
dies when the Future and every proxy are gone, as a Dask actor dies when its
key is released.  Method calls go from the caller straight to the actor; no
client, scheduler or extra round trip sits in between.
"""

from __future__ import annotations

import functools

import ray
import ray.exceptions

from .errors import TimeoutError, capture, unwrap
from .keys import parse_timedelta
from .scheduling import _unpack, pack, task_options

__all__ = [
    "Actor", "ActorFuture", "BaseActorFuture", "actor_class", "actor_options", "bind", "remote_class", "start",
]

#: ``__init__`` failures of the actors in this process, by ``id(instance)``: the
#: instance may refuse attributes (``__slots__``), so they are kept beside it.
_INIT_ERRORS: dict = {}


class BaseActorFuture:
    """What every actor call returns (Dask's ``BaseActorFuture``): ``result()``, ``done()``, ``await``."""

    __slots__ = ()

    def __repr__(self):
        return "<ActorFuture>"


class ActorFuture(BaseActorFuture):
    """The pending result of one actor method call (Dask's ``ActorFuture``).

    ``result()`` blocks, ``done()`` asks without blocking, ``await`` works in
    async code.  An exception raised by the method is raised again, with its
    own type.
    """

    __slots__ = ("_ref",)

    def __init__(self, ref):
        self._ref = ref

    def result(self, timeout=None):
        """The method's return value; raises its exception, or ``TimeoutError`` after ``timeout``."""
        try:
            return ray.get(self._ref, timeout=parse_timedelta(timeout))
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"actor call did not finish within {timeout!r}") from None
        except ray.exceptions.RayError as err:
            raise _translate(err) from None

    def done(self) -> bool:
        """True once the call returned or raised."""
        ready, _ = ray.wait([self._ref], timeout=0, fetch_local=False)
        return bool(ready)

    async def _result(self):
        try:
            return await self._ref
        except ray.exceptions.RayError as err:
            raise _translate(err) from None

    def __await__(self):
        return self._result().__await__()


class Actor:
    """A proxy on an object living in a Ray actor (Dask's ``Actor``).

    Calling a method returns an :class:`ActorFuture` at once; reading another
    attribute of the class (a class attribute, a property) fetches its current
    value from the actor.  The proxy can be passed to tasks and used there.

    Differences from dask.distributed:
        The object lives in a Ray actor process of its own, not in a worker
        process next to tasks; its methods run one at a time (async methods
        concurrently, on the actor's event loop).
    """

    def __init__(self, cls, handle, key):
        self._cls = cls
        self._handle = handle
        self.key = key

    def __reduce__(self):
        return Actor, (self._cls, self._handle, self.key)

    def __repr__(self):
        return f"<Actor: {self._cls.__name__}, key={self.key}>"

    def __dir__(self):
        names = set(dir(type(self)))
        names.update(a for a in dir(self._cls) if not a.startswith("_"))
        return sorted(names)

    def __getattr__(self, name):
        if name in ("_cls", "_handle", "key") or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)  # unpickling, copy and friends probe before __init__ ran
        attr = getattr(self._cls, name)  # AttributeError for names the class lacks, as Dask
        if callable(attr):
            call = _method(getattr(self._handle, name), attr)
            self.__dict__[name] = call  # later calls skip __getattr__
            return call
        try:
            return ray.get(self._handle.__ray_call__.remote(_read_attribute, name))
        except ray.exceptions.RayError as err:
            raise _translate(err) from None


def _method(remote_method, attr):
    submit = remote_method.remote

    @functools.wraps(attr)
    def call(*args, **kwargs):
        return ActorFuture(submit(*args, **kwargs))

    return call


def _read_attribute(instance, name):
    try:
        return getattr(instance, name)
    except BaseException as exc:
        raise capture(exc)


def _init_failed(instance, exc):
    # a module-level function: the subclass' __init__ is pickled by value, with
    # copies of the globals it names, so it must not touch _INIT_ERRORS itself
    _INIT_ERRORS[id(instance)] = capture(exc)


def _created(instance):
    """Raise the exception the instance's ``__init__`` raised, if it did (runs in the actor)."""
    err = _INIT_ERRORS.get(id(instance))
    if err is not None:
        raise err


def bind(proxy, ready):
    """The actor future's task: the proxy, once the actor exists (``ready`` raised otherwise)."""
    return proxy


def _translate(err):
    """Dask's exception for a failed actor call: the method's own, or RuntimeError for a lost actor."""
    if isinstance(err, ray.exceptions.RayActorError) and not isinstance(err, ray.exceptions.RayTaskError):
        return RuntimeError(f"Worker holding Actor was lost: {err}")
    return unwrap(err)


def actor_class(cls):
    """The Ray actor class for ``cls``: a subclass whose ``__init__`` keeps its failure.

    Ray reports a failed ``__init__`` as ``ActorDiedError`` without the
    exception; Dask raises the exception itself from the actor's future.  So
    the subclass keeps it, and :func:`_created` raises it, captured with its
    traceback.  ``__init__`` receives the call packed as tasks are
    (:func:`raydask.scheduling.pack`), so futures nested in the arguments
    arrive as values.
    """

    def __init__(self, packed, *args):
        try:
            if packed is None:
                cls.__init__(self, *args)
            else:
                a, kw = _unpack(packed, args)
                cls.__init__(self, *a, **kw)
        except BaseException as exc:  # raised again by _created, from the actor's future
            _init_failed(self, exc)

    namespace = {"__init__": __init__, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    sub = type(cls)(cls.__name__, (cls,), namespace)
    return ray.remote(sub)


@functools.lru_cache(maxsize=256)
def _cached_actor_class(cls, job_id):
    return actor_class(cls)


def remote_class(cls):
    """:func:`actor_class`, made once per class and Ray job (a new ``ray.init`` exports it again)."""
    try:
        context = ray.get_runtime_context()  # job ids restart on every cluster: the GCS tells them apart
        return _cached_actor_class(cls, (context.gcs_address, context.get_job_id()))
    except TypeError:  # an unhashable class (a metaclass with __eq__ and no __hash__)
        return actor_class(cls)


def actor_options(resources=None, placement=None) -> dict:
    """Ray options for an actor from Dask's ``resources=`` and a placement.

    An actor holds no CPU unless ``resources`` asks for one: a Dask actor does
    not occupy a worker thread between calls either.
    """
    opts = {"num_cpus": 0}
    opts.update(task_options(resources, None, placement))
    return opts


def start(cls, args, kwargs, key, options, future_type):
    """Create the Ray actor for ``cls(*args, **kwargs)``; return ``(bind, (proxy, ready))``.

    The caller submits ``bind(proxy, ready)`` as the actor's task under ``key``:
    its value is the proxy, its failure the exception of ``__init__``.

    Raises:
        TypeError: if ``cls`` is not a class.
    """
    if not isinstance(cls, type):
        raise TypeError(f"actor=True needs a class, got {cls!r}")
    packed, call_args, _ = pack(args, kwargs, future_type)
    handle = remote_class(cls).options(**options).remote(packed, *call_args)
    ready = handle.__ray_call__.remote(_created)
    return bind, (Actor(cls, handle, key), ready)
