"""Parity rows for Dask's diagnostics a notebook calls: ``get_task_stream`` and ``performance_report``.

In the style of :mod:`test_parity` (whose ``impl`` fixture this reuses): one
snippet, both engines.  Dask draws its figures with Bokeh, which is not a test
dependency here, so the rows about figures and the HTML report run on raydask
only (its figures are Plotly's; docs/migrating.md, "Diagnostics").  The shared
clients of both engines run without a dashboard: Dask's task stream works
without one, and so must raydask's.
"""

from __future__ import annotations

import html.parser
import importlib
import time

import pytest

from test_dashboard_browser import ARTIFACTS, browser  # noqa: F401 - fixture
from test_parity import distributed_client, impl, inc  # noqa: F401 - fixtures

pytestmark = [pytest.mark.parity, pytest.mark.timeout(120)]

#: The keys of a record, as real distributed 2026.8 returns them (seen in a probe).
OK_KEYS = {"key", "worker", "thread", "startstops", "status", "stimulus_id", "metadata", "nbytes", "type",
           "typename"}
ERROR_KEYS = {"key", "worker", "thread", "startstops", "status", "stimulus_id", "cause", "exception",
              "exception_text", "traceback", "traceback_text"}


def api(impl):
    return importlib.import_module(impl.module)


def slowinc(x, delay=0.05):
    time.sleep(delay)
    return x + 1


def fail(x):
    raise ValueError(f"bad input {x!r}")


def run_block(impl, n=3, offset=0):
    """Inside a get_task_stream block: ``n`` tasks that succeed and one that fails."""
    c = impl.client
    with api(impl).get_task_stream(client=c) as ts:
        futures = c.map(slowinc, range(offset, offset + n), pure=False)
        assert c.gather(futures) == list(range(offset + 1, offset + n + 1))
        bad = c.submit(fail, offset, pure=False)
        with pytest.raises(ValueError):
            bad.result()
    return ts, futures, bad


def test_task_stream_block_has_one_record_per_task_in_dasks_shape(impl):
    ts, futures, bad = run_block(impl)
    assert sorted(r["key"] for r in ts.data) == sorted([f.key for f in futures] + [bad.key])
    workers = set(impl.client.scheduler_info()["workers"])
    for r in ts.data:
        assert r["worker"] in workers
        assert isinstance(r["thread"], int)
        (compute,) = [s for s in r["startstops"] if s["action"] == "compute"]
        assert set(compute) == {"action", "start", "stop"}
        assert abs(compute["start"] - time.time()) < 60
        assert compute["start"] <= compute["stop"]
        if r["key"] == bad.key:
            assert set(r) == ERROR_KEYS
            assert r["status"] == "error"
            assert r["cause"] == bad.key
            assert r["exception_text"] == "ValueError('bad input 0')"  # Dask's worker: repr(exception)
        else:
            assert set(r) == OK_KEYS
            assert r["status"] == "OK"
            assert r["typename"] == "int"
            assert r["nbytes"] == 28
            assert isinstance(r["type"], bytes)
            assert compute["stop"] - compute["start"] >= 0.04  # slowinc sleeps 50 ms


def test_task_stream_block_leaves_out_tasks_that_ran_before_it(impl):
    c = impl.client
    assert c.gather(c.map(slowinc, range(100, 104), pure=False))
    with api(impl).get_task_stream(client=c) as ts:
        assert c.submit(slowinc, 200, pure=False).result() == 201
    assert len(ts.data) == 1
    assert ts.data[0]["key"].startswith("slowinc-")


def test_client_get_task_stream_windows(impl):
    c = impl.client
    c.get_task_stream()  # Dask's docs: "call this once before you start work" (starts recording)
    before = time.time()
    time.sleep(0.05)
    futures = c.map(slowinc, range(300, 305), pure=False)
    c.gather(futures)
    keys = {f.key for f in futures}
    everything = c.get_task_stream()
    assert isinstance(everything, list)
    assert keys <= {r["key"] for r in everything}
    recent = c.get_task_stream(start=before)
    assert {r["key"] for r in recent} == keys
    assert len(c.get_task_stream(count=2)) == 2
    assert len(c.get_task_stream(start=before, count=3)) == 3
    assert c.get_task_stream(start=time.time() + 60) == []
    assert {r["key"] for r in c.get_task_stream(start="1 hour")} >= keys


# -- raydask only: Plotly instead of Bokeh (Dask needs bokeh, not a test dependency) ---------
def test_task_stream_plot_returns_a_plotly_figure_and_saves_it(client, tmp_path):
    import plotly.graph_objects as go

    from raydask import get_task_stream

    path = tmp_path / "stream.html"
    with get_task_stream(plot="save", filename=str(path)) as ts:
        client.gather(client.map(slowinc, range(400, 403), pure=False))
    assert len(ts.data) == 3
    assert isinstance(ts.figure, go.Figure)
    assert sum(len(t.x) for t in ts.figure.data) == 3  # one bar per compute
    assert "<html" in path.read_text()
    data, fig = client.get_task_stream(count=3, plot=True)
    assert len(data) == 3 and isinstance(fig, go.Figure)


def test_task_stream_bad_arguments_name_the_value(client):
    from raydask import get_task_stream

    with pytest.raises(ValueError, match="'yes'"):
        get_task_stream(client=client, plot="yes")
    with pytest.raises(ValueError, match="-1"):
        client.get_task_stream(count=-1)
    with pytest.raises(TypeError, match=r"\[1\]"):
        client.get_task_stream(start=[1])
    assert client.submit(inc, 1).result() == 2  # the client keeps working


class _Parts(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.ids, self.scripts_with_src, self.text = set(), set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "script" and attrs.get("src"):
            self.scripts_with_src.append(attrs["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_performance_report_writes_standalone_html_of_the_block(client, tmp_path):
    from raydask import performance_report

    earlier = client.map(inc, range(500, 510), pure=False)  # before the block: not in the report
    client.gather(earlier)
    path = tmp_path / "dask-report.html"
    with performance_report(filename=str(path), stacklevel=1, mode=None):
        futures = client.map(slowinc, range(3), pure=False)
        client.gather(futures)
        bad = client.submit(fail, 1, pure=False)
        with pytest.raises(ValueError):
            bad.result()
    page = path.read_text()
    parts = _Parts()
    parts.feed(page)
    assert page.lstrip().startswith("<!DOCTYPE html>") and "html" in parts.tags
    assert {"task-stream", "summary", "prefixes", "code"} <= parts.ids
    assert parts.scripts_with_src == []  # plotly.js is inline: the file opens offline
    assert "Plotly.newPlot" in page
    text = "".join(parts.text)
    for f in futures:
        assert f.key in page  # the stream's hover texts name every task
    assert bad.key in page
    assert "<td>slowinc</td><td>3</td><td>0</td>" in page  # the per-prefix table
    assert "<td>fail</td><td>1</td><td>1</td>" in page
    assert "<td>inc</td>" not in page
    assert not any(f.key in page for f in earlier)
    assert "Tasks4" in text.replace(" ", "").replace("\n", "")  # 3 + the one that failed
    assert "with performance_report(" in text  # the calling code


@pytest.mark.browser
def test_performance_report_draws_offline_in_chromium(client, browser, tmp_path):  # noqa: F811
    """The report opens from disk with no request off it, no script error, one bar per task."""
    from raydask import performance_report

    path = tmp_path / "dask-report.html"
    with performance_report(filename=str(path)):
        client.gather(client.map(slowinc, range(20), pure=False))
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors, requests = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: requests.append(req.url))
    try:
        page.goto(path.as_uri())
        page.wait_for_selector("#task-stream .main-svg", timeout=30_000)
        assert page.locator("#task-stream g.point").count() == 20
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "performance-report.png"), full_page=True)
    finally:
        page.close()
    assert errors == []
    assert [u for u in requests if not u.startswith("file:")] == []


def test_performance_report_bad_arguments(client):
    from raydask import performance_report

    with pytest.raises(ValueError, match="'svg'"):
        performance_report(mode="svg")
    with pytest.raises(TypeError, match="None"):
        performance_report(filename=None)


def test_task_stream_reads_the_dashboards_source(no_client):
    """With a dashboard, the stream reads the dashboard's rows: one task state, one reader."""
    from raydask import Client, get_task_stream
    from raydask.task_stream import stream_source

    with Client(n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0") as c:
        assert stream_source(c) is c._dashboard.source
        with get_task_stream(client=c) as ts:
            assert c.submit(slowinc, 1).result() == 2
        assert [r["key"] for r in ts.data] == [c.submit(slowinc, 1).key]
        assert c._stream_source is None


def make_array(n):
    import numpy as np

    return np.ones(n)


def array_sum(x):
    return float(x.sum())


def test_task_stream_shows_a_cross_node_input_as_a_transfer(multinode_client):
    """Dask puts a fetched dependency in the consumer's startstops as a "transfer" from its worker."""
    from raydask import get_task_stream

    c = multinode_client
    first, second = list(c.scheduler_info()["workers"])[:2]
    with get_task_stream(client=c) as ts:
        a = c.submit(make_array, 300_000, workers=[first])  # 2.4 MB: pulled node to node
        b = c.submit(array_sum, a, workers=[second])
        assert b.result() == 300_000.0
    by_key = {r["key"]: r for r in ts.data}
    assert set(by_key) == {a.key, b.key}
    assert [s["action"] for s in by_key[a.key]["startstops"]] == ["compute"]
    assert by_key[a.key]["worker"] == first and by_key[b.key]["worker"] == second
    transfer, compute = by_key[b.key]["startstops"]
    assert transfer["action"] == "transfer" and compute["action"] == "compute"
    assert transfer["source"] == first
    assert transfer["start"] <= transfer["stop"]
