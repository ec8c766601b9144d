"""Parity rows for actors, published datasets and ``get_executor``: one snippet, both engines.

In the style of :mod:`test_parity` (whose ``impl`` fixture this reuses): each
test asserts what a Dask user observes; where raydask differs on purpose it
branches on ``impl.name`` and says why (listed in ``docs/migrating.md``).
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import re
import time
import uuid

import pytest

from test_parity import UUID, distributed_client, impl, inc  # noqa: F401 - fixtures

pytestmark = [pytest.mark.parity, pytest.mark.timeout(60)]


class Counter:
    n = 0

    def __init__(self, start=0):
        self.n = start

    def increment(self):
        self.n += 1
        return self.n

    def slow(self, seconds):
        time.sleep(seconds)
        return seconds


class Oops(Exception):
    pass


class Broken:
    def method(self):
        raise Oops("method")


class FailsToStart:
    def __init__(self):
        raise ValueError("bar")


def bump(counter, n):
    for _ in range(n):
        counter.increment().result()
    return type(counter).__name__


def read_dataset(module, name):
    return importlib.import_module(module).get_client().get_dataset(name).result()


def fail(x):
    raise ZeroDivisionError(x)


def api(impl):
    return importlib.import_module(impl.module)


# -- actors ---------------------------------------------------------------------------
def test_actor_future_proxy_and_calls(impl):
    mod = api(impl)
    fut = impl.client.submit(Counter, 5, actor=True)
    assert isinstance(fut, impl.Future)
    assert re.fullmatch(f"Counter-{UUID}", fut.key)
    proxy = fut.result()
    assert isinstance(proxy, mod.Actor)
    assert repr(proxy) == f"<Actor: Counter, key={fut.key}>"
    assert proxy.n == 5  # a plain attribute reads the actor's value
    call = proxy.increment()
    assert isinstance(call, mod.BaseActorFuture)
    assert repr(call) == "<ActorFuture>"
    assert call.result() == 6 and call.result() == 6 and call.done()
    assert proxy.n == 6
    assert hasattr(proxy, "increment") and not hasattr(proxy, "nope")
    assert {"increment", "n", "slow"} <= set(dir(proxy))
    with pytest.raises(TimeoutError):
        proxy.slow(1.0).result(timeout=0.05)


def test_actor_errors_keep_their_types(impl):
    proxy = impl.client.submit(Broken, actor=True).result()
    with pytest.raises(Oops, match="method"):
        proxy.method().result()
    with pytest.raises(ValueError, match="bar"):
        impl.client.submit(FailsToStart, actor=True).result()


def test_actor_proxy_used_inside_tasks(impl):
    fut = impl.client.submit(Counter, actor=True)
    proxy = fut.result()
    tasks = [impl.client.submit(bump, proxy, 3, pure=False) for _ in range(2)]
    assert impl.client.gather(tasks) == ["Actor", "Actor"]
    assert proxy.n == 6


def test_map_actors_makes_one_actor_per_call(impl):
    futures = impl.client.map(Counter, [10, 20], actors=True)
    assert len({f.key for f in futures}) == 2
    assert [p.increment().result() for p in impl.client.gather(futures)] == [11, 21]


def test_actor_true_with_a_function(impl):
    if impl.name == "raydask":  # a Ray actor needs a class; Dask makes an "actor" of the return value
        with pytest.raises(TypeError, match="actor=True needs a class, got <function inc at"):
            impl.client.submit(inc, 1, actor=True)
    else:
        assert impl.client.submit(inc, 1, actor=True).result() is not None


# -- published datasets ----------------------------------------------------------------
@pytest.fixture
def name(impl):
    made = f"parity-{uuid.uuid4().hex[:8]}"
    yield made
    impl.client.unpublish_dataset(made)


def test_publish_get_list_and_unpublish(impl, name):
    c = impl.client
    x = c.submit(inc, 1)
    c.publish_dataset(x, name=name)
    assert name in c.list_datasets()
    got = c.get_dataset(name)
    assert got.key == x.key and got.result() == 2
    assert c.get_dataset([name])[0].key == x.key
    with pytest.raises(KeyError, match=f"Dataset {name} already exists"):
        c.publish_dataset(x, name=name)
    c.publish_dataset({name: [x, "plain"]}, override=True)
    assert c.get_dataset(name)[1] == "plain"
    c.unpublish_dataset(name)
    assert name not in c.list_datasets()
    with pytest.raises(KeyError, match=f"Dataset '{name}' not found"):
        c.get_dataset(name)
    assert c.get_dataset(name, default="dflt") == "dflt"
    c.unpublish_dataset(name)  # unknown: ignored


def test_datasets_mapping_and_bad_calls(impl, name):
    c = impl.client
    c.datasets[name] = c.submit(inc, 2)
    assert name in c.datasets and name in list(c.datasets) and len(c.datasets) >= 1
    assert c.datasets[name].result() == 3
    del c.datasets[name]
    assert name not in c.datasets
    with pytest.raises(ValueError, match="If name is provided"):
        c.publish_dataset(name=name)
    with pytest.raises(ValueError, match=r"positional argument must be a \{name: value\} dict"):
        c.publish_dataset(1, 2)


def test_get_dataset_inside_a_task(impl, name):
    c = impl.client
    c.publish_dataset(c.submit(inc, 10), name=name)
    assert c.submit(read_dataset, impl.module, name, pure=False).result() == 11


# -- the executor ------------------------------------------------------------------------
def test_executor_futures_wait_as_completed_and_map(impl):
    ex = impl.client.get_executor(pure=False)
    fs = [ex.submit(inc, i) for i in range(4)]
    assert all(isinstance(f, cf.Future) for f in fs)
    done, not_done = cf.wait(fs, timeout=30)
    assert done == set(fs) and not not_done
    assert sorted(f.result() for f in cf.as_completed(fs)) == [1, 2, 3, 4]
    assert list(ex.map(inc, [1, 2, 3])) == [2, 3, 4]
    with pytest.raises(ZeroDivisionError):
        ex.submit(fail, 1).result(timeout=30)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(inc, 1)


def test_executor_keywords(impl):
    with pytest.raises(TypeError, match=r"unsupported arguments to ClientExecutor: \['key'\]"):
        impl.client.get_executor(key="x")
    if impl.name == "raydask":  # Dask's docstring promises any submit keyword; its code refuses priority
        assert impl.client.get_executor(priority=1).submit(inc, 1).result() == 2
    else:
        with pytest.raises(TypeError, match="priority"):
            impl.client.get_executor(priority=1)
