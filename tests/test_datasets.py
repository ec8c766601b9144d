"""Published datasets: ``publish_dataset``/``get_dataset`` across clients, tasks and client lifetimes.

Scenarios after dask/distributed's ``distributed/tests/test_publish.py``; a
second client runs in a subprocess (one Ray driver per process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from conftest import need

pytestmark = pytest.mark.timeout(60)


def inc(x):
    return x + 1


def fail(x):
    raise ZeroDivisionError(f"no {x!r}")


def read_dataset(name):
    from raydask import get_client

    return get_client().get_dataset(name).result()


def publish_from_task(name, value):
    from raydask import get_client

    client = get_client()
    client.publish_dataset(client.submit(inc, value), name=name)
    return name


@pytest.fixture
def names(client):
    """Unique dataset names; whatever a test published under them is unpublished after it."""
    made = []

    def new():
        made.append(f"ds-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield new
    client.unpublish_dataset(made)


def second_client(client, code: str, timeout=45) -> str:
    """Run ``code`` in another process with ``c``, a second Client on ``client``'s Ray cluster."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from raydask import Client
        c = Client(address={client.cluster._gcs_address!r}, dashboard_address=None)
    """) + textwrap.dedent(code) + "\nc.close()\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, RAY_IGNORE_UNHANDLED_ERRORS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_publish_get_list_unpublish(client, names):
    a, b = names(), names()
    x = client.submit(inc, 1)
    client.publish_dataset(x, name=a)
    client.publish_dataset({b: [x, 10]})
    assert set(client.list_datasets()) >= {a, b}
    assert client.list_datasets() == sorted(client.list_datasets(), key=str)
    assert client.get_dataset(a).result() == 2
    got = client.get_dataset(b)
    assert isinstance(got, list) and got[1] == 10 and got[0].key == x.key and got[0].result() == 2
    assert [type(v) for v in client.get_dataset([a, b])] == [type(x), list]
    client.unpublish_dataset(a)
    assert a not in client.list_datasets()
    client.unpublish_dataset([b, "never-published"])  # unknown names are ignored, as in Dask
    assert b not in client.list_datasets()


def test_publish_keyword_form_plain_values_and_nested_structures(client, names):
    a, b = names(), names()
    x = client.submit(inc, 41)
    client.publish_dataset(**{a: {"total": x, "label": "answer", "more": (x, {x})}, b: 3.5})
    got = client.get_dataset(a)
    assert got["label"] == "answer" and got["total"].result() == 42
    assert got["more"][0].key == x.key and next(iter(got["more"][1])).key == x.key
    assert client.get_dataset(b) == 3.5


def test_publishing_a_name_twice_is_a_key_error_unless_override(client, names):
    a = names()
    client.publish_dataset(client.submit(inc, 1), name=a)
    with pytest.raises(KeyError, match=f"Dataset {a} already exists"):
        client.publish_dataset(client.submit(inc, 2), name=a)
    assert client.get_dataset(a).result() == 2
    client.publish_dataset(client.submit(inc, 2), name=a, override=True)
    assert client.get_dataset(a).result() == 3


def test_get_unknown_name(client):
    with pytest.raises(KeyError, match="Dataset 'nope-never' not found"):
        client.get_dataset("nope-never")
    assert client.get_dataset("nope-never", default=None) is None
    assert client.get_dataset("nope-never", default=[1]) == [1]


def test_bad_publish_calls(client):
    with pytest.raises(ValueError, match="If name is provided"):
        client.publish_dataset(name="x")
    with pytest.raises(ValueError, match=r"positional argument must be a \{name: value\} dict"):
        client.publish_dataset(1, 2)
    with pytest.raises(ValueError, match=r"positional argument must be a \{name: value\} dict"):
        client.publish_dataset([1])
    with pytest.raises(TypeError, match="'yes'"):
        client.publish_dataset(x=1, override="yes")


def test_datasets_mapping(client, names):
    a = names()
    x = client.submit(inc, 5)
    client.datasets[a] = x
    assert a in client.datasets
    assert a in list(client.datasets)
    assert len(client.datasets) == len(client.list_datasets())
    assert client.datasets[a].result() == 6
    del client.datasets[a]
    assert a not in client.datasets
    with pytest.raises(KeyError):
        client.datasets[a]


def test_get_dataset_from_inside_a_task_and_publish_from_one(client, names):
    a, b = names(), names()
    client.publish_dataset(client.submit(inc, 10), name=a)
    assert client.submit(read_dataset, a, pure=False).result() == 11
    assert client.submit(publish_from_task, b, 20, pure=False).result() == b
    assert client.get_dataset(b).result() == 21


def test_a_failed_future_is_published_as_failed(client, names):
    a = names()
    client.publish_dataset(client.submit(fail, 1), name=a)
    with pytest.raises(ZeroDivisionError, match="no 1"):
        client.get_dataset(a).result()


def test_a_pending_future_is_published_when_it_finishes(client, names):
    import time

    a = names()
    slow = client.submit(time.sleep, 0.5, pure=False)
    client.publish_dataset(slow, name=a)  # waits for the copy (docs/migrating.md)
    assert slow.done()
    assert client.get_dataset(a).result() is None


def test_second_client_reads_and_publishes(client, names):
    a, b = names(), names()
    client.publish_dataset(client.submit(inc, 100), name=a)
    out = second_client(client, f"""
        print(sorted(c.list_datasets()))
        print(c.get_dataset({a!r}).result())
        c.publish_dataset(c.submit(sum, [1, 2, 3]), name={b!r})
    """)
    listed, value = out.splitlines()[-2:]
    assert a in listed and value == "101"
    assert client.get_dataset(b).result() == 6


def test_published_future_outlives_its_client(client, names):
    """Dask's scheduler keeps published keys after their client left; Ray objects die with
    their owner, so the store must own a copy: the publisher's process has exited here."""
    np = need("numpy")
    a = names()
    second_client(client, f"""
        import numpy as np
        x = c.submit(np.arange, 1_000_000)  # 8 MB: in Ray's object store, not inlined
        c.publish_dataset(x, name={a!r})
    """)
    got = client.get_dataset(a)
    assert got.status == "finished"
    assert (got.result() == np.arange(1_000_000)).all()
    assert client.submit(np.sum, got).result() == np.arange(1_000_000).sum()
