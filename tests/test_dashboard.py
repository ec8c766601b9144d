"""The dashboard's JSON API against a real three-node Ray cluster, and its parts.

The cluster tests start their own client with the dashboard on (the shared
fixtures turn it off) and talk HTTP to the server it started.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import ray

from raydask.dashboard.layout import GraphLayout, prefix_layout
from raydask.dashboard.server import DashboardServer, parse_address


# -- parts that need no cluster ------------------------------------------------------------
def test_layout_column_is_one_past_deepest_dependency_and_row_is_mean():
    g = GraphLayout()
    assert g.add("a") == (0, 0.0)
    assert g.add("b") == (0, 1.0)
    assert g.add("c", ["a"]) == (1, 0.0)
    assert g.add("d", ["c", "b"]) == (2, 0.5)
    assert g.add("e") == (0, 2.0)  # a root opens a new row below all used rows


def test_layout_positions_never_move_and_collisions_are_nudged():
    g = GraphLayout()
    g.add("x")
    first = g.add("inc", ["x"])
    second = g.add("double", ["x"])
    assert first[0] == second[0] == 1 and first[1] != second[1]
    assert g.add("inc", ["somewhere-else"]) == first


def test_prefix_layout_orders_prefixes_by_dependency_and_ignores_self_loops():
    places = prefix_layout({"add": {"inc", "double", "add"}, "double": {"inc"}, "inc": set()})
    assert places["inc"][0] == 0 and places["double"][0] == 1 and places["add"][0] == 2


def test_ray_window_waits_for_both_the_owner_s_and_the_worker_s_events():
    from raydask.dashboard.transfers import ray_window
    from raydask.raycompat import TaskTiming

    owner = {"PENDING_ARGS_AVAIL": 10.0, "SUBMITTED_TO_WORKER": 11.0, "FINISHED": 13.0}
    worker = {"RUNNING": 11.1}
    span = {"task:deserialize_arguments": (11.2, 12.5)}
    assert ray_window(TaskTiming(0, "n1", dict(owner)), "n1", stopped=12.9, now=13.5) is None  # worker's not in
    assert ray_window(TaskTiming(0, "n1", dict(worker), dict(span)), "n1", 12.9, now=13.5) is None  # owner's not in
    both = TaskTiming(0, "n1", {**owner, **worker}, dict(span))
    assert ray_window(both, "n2", 12.9, now=13.5) is None  # an attempt elsewhere than the receipt's
    w = ray_window(both, "n1", 12.9, now=13.5)
    assert w.direct[:2] == (11.2, 12.5) and "task:deserialize_arguments" in w.direct[2]
    assert w.owner[:2] == (11.0, 12.5) and "SUBMITTED_TO_WORKER" in w.owner[2]
    fetched = TaskTiming(0, "n1", {**owner, **worker, "PENDING_ARGS_FETCH": 10.5}, dict(span))
    assert ray_window(fetched, "n1", 12.9, now=13.5).direct[:2] == (10.5, 12.5)
    # without the profile span (Ray's timeline off): RUNNING to the task's start, after a grace period
    no_span = TaskTiming(0, "n1", {**owner, **worker})
    assert ray_window(no_span, "n1", 12.9, now=13.5) is None
    w = ray_window(no_span, "n1", 12.9, now=20.0)
    assert w.direct[:2] == (11.1, None) and w.owner[:2] == (11.0, None)


@pytest.mark.parametrize("address, expected", [
    (":8787", ("127.0.0.1", 8787)), ("8787", ("127.0.0.1", 8787)), (0, ("127.0.0.1", 0)), (8787, ("127.0.0.1", 8787)),
    ("0.0.0.0:9000", ("0.0.0.0", 9000)), ("http://localhost:1234", ("localhost", 1234)),
    ("tcp://127.0.0.1:0", ("127.0.0.1", 0)), (" :8787 ", ("127.0.0.1", 8787)), (":65535", ("127.0.0.1", 65535)),
    ("[::1]:8787", ("::1", 8787)), ("[::]:0", ("::", 0)), ("my-host.example_1:80", ("my-host.example_1", 80)),
])
def test_parse_address(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", [
    "nope", ":99999", ":65536", -1, 65536, "", ":", "host:", ":-1", ":+80", ":8_0", ":８７", "::1:8787", "[::1]",
    "[nope]:80", "https://host:80", "http://host:80/status", "ho st:80", "host:80:90", "1.2.3.4.5:80x",
])
def test_parse_address_rejects_bad_values_naming_them(address):
    with pytest.raises(ValueError, match="dashboard") as info:
        parse_address(address)
    assert repr(address) in str(info.value)


@pytest.mark.parametrize("address", [None, 1.5, True, b":8787", [":8787"]])
def test_parse_address_rejects_other_types_naming_them(address):
    with pytest.raises(TypeError, match="dashboard_address") as info:
        parse_address(address)
    assert repr(address) in str(info.value)


def test_parse_address_starts_nothing():
    """In a fresh process (here Ray may already run for other tests): no Ray, no thread."""
    import subprocess
    import sys

    code = ("import threading, ray; from raydask.dashboard.server import parse_address; "
            "n = threading.active_count(); assert parse_address(':8787') == ('127.0.0.1', 8787); "
            "assert not ray.is_initialized() and threading.active_count() == n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_page_files_are_in_the_package_and_load_nothing_from_the_internet():
    import tomllib
    from pathlib import Path

    from raydask.dashboard.app import ASSETS, PAGES, plotly_js, static_dir

    folder = static_dir()
    names = set(PAGES.values()) | set(ASSETS)
    assert names <= {p.name for p in folder.iterdir()}
    patterns = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["raydask.dashboard.static"]
    assert {"*" + Path(n).suffix for n in names} <= set(patterns)  # all shipped in the wheel
    for name in names:
        text = (folder / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
    assert plotly_js().stat().st_size > 1_000_000


def test_pages_come_from_the_checkout_the_code_runs_from():
    """Not the one an editable install points at: a git worktree serves its own pages."""
    from pathlib import Path

    import raydask
    from raydask.dashboard.app import static_dir

    checkout = Path(raydask.__file__).resolve().parents[1]
    assert (checkout / "pyproject.toml").is_file()  # the tests run from a source checkout
    assert static_dir() == checkout / "dashboard"


# -- against a real cluster ---------------------------------------------------------------
@pytest.fixture(scope="module")
def dash_client():
    import conftest
    from raydask import Client

    conftest._pool.close()  # one Ray per process: close the shared client first
    client = Client(n_workers=3, threads_per_worker=1, dashboard_address="127.0.0.1:0")
    try:
        yield client
    finally:
        client.close()
        if ray.is_initialized():
            ray.shutdown()


@pytest.fixture(scope="module")
def http(dash_client):
    base = dash_client.dashboard_link.rsplit("/", 1)[0]
    with httpx.Client(base_url=base, timeout=30) as h:
        yield h


def _inc(x):
    return x + 1


def _add(*xs):
    return sum(xs)


def _total(xs):
    return sum(xs)


def _node_id(_=None):
    return ray.get_runtime_context().get_node_id()


def _array(nbytes):
    import numpy as np

    return np.ones(nbytes // 8, dtype="float64")


def _size(a):
    return int(a.nbytes)


def _fail(x):
    raise ValueError(f"bad {x}")


def _wait_for(fetch, ok, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        reply = fetch()
        if ok(reply) or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


@pytest.mark.multinode
@pytest.mark.timeout(180)
def test_link_and_server_thread(dash_client, http):
    assert dash_client.dashboard_link.startswith("http://127.0.0.1:")
    assert dash_client.dashboard_link.endswith("/status")
    assert dash_client.dashboard_link in dash_client._repr_html_()
    names = [t.name for t in threading.enumerate()]
    assert f"raydask-dashboard-{dash_client._dashboard.port}" in names
    for page in ("/status", "/graph", "/workers"):
        r = http.get(page)
        assert r.status_code == 200 and "<html" in r.text
    r = http.get("/static/plotly.min.js")
    assert r.status_code == 200 and len(r.content) > 1_000_000


@pytest.mark.multinode
def test_graph_edges_equal_submitted_dependencies(dash_client, http):
    a = dash_client.submit(_inc, 100)
    b = dash_client.submit(_inc, 200)
    c = dash_client.submit(_add, a, b)
    d = dash_client.submit(_total, [a, c])  # nested futures are dependencies too
    d.result()
    graph = http.get("/api/graph").json()
    ours = {a.key, b.key, c.key, d.key}
    edges = {tuple(e) for e in graph["edges"] if e[1] in ours}
    assert edges == {(a.key, c.key), (b.key, c.key), (a.key, d.key), (c.key, d.key)}
    nodes = {n["key"]: n for n in graph["nodes"]}
    assert nodes[c.key]["x"] == max(nodes[a.key]["x"], nodes[b.key]["x"]) + 1
    assert nodes[d.key]["x"] == nodes[c.key]["x"] + 1
    assert nodes[c.key]["prefix"] == "add"
    done = _wait_for(lambda: http.get("/api/graph").json(),
                     lambda g: {n["key"]: n["state"] for n in g["nodes"]}.get(d.key) == "memory")
    assert {n["key"]: n["state"] for n in done["nodes"]}[d.key] == "memory"


@pytest.mark.multinode
def test_graph_since_cursor_returns_only_changes(dash_client, http):
    http.get("/api/graph")  # learn what earlier tests' tasks did...
    assert dash_client._events.await_records(timeout=10)  # ...and let their records land
    first = http.get("/api/graph").json()
    before = {n["key"]: (n["x"], n["y"]) for n in first["nodes"]}
    x = dash_client.submit(_inc, 1000)
    y = dash_client.submit(_inc, x)
    y.result()
    x.result()
    # the tasks' records follow their ends (raydask.receipts) and show the keys again: let them land
    assert dash_client._events.await_records(timeout=10)
    delta = _wait_for(lambda: http.get("/api/graph", params={"since": first["cursor"]}).json(),
                      lambda g: {n["key"] for n in g["nodes"]} >= {x.key, y.key})
    assert {n["key"] for n in delta["nodes"]} == {x.key, y.key}
    assert delta["edges"] == [[x.key, y.key]]
    assert delta["cursor"] > first["cursor"]
    again = http.get("/api/graph").json()  # older nodes keep their positions
    assert all((n["x"], n["y"]) == before[n["key"]] for n in again["nodes"] if n["key"] in before)
    assert http.get("/api/graph", params={"since": delta["cursor"]}).json()["nodes"] == []


@pytest.mark.multinode
def test_task_records_carry_the_node_that_ran_them(dash_client, http):
    from raydask.cluster import worker_table

    rows = worker_table()
    assert len(rows) == 3
    futures = {w["address"]: dash_client.submit(_node_id, w["address"], workers=[w["address"]], pure=False)
               for w in rows}
    ran_on = {addr: f.result() for addr, f in futures.items()}
    by_key = {t["key"]: t for t in _wait_for(
        lambda: http.get("/api/tasks").json(),
        lambda r: {f.key for f in futures.values()} <= {t["key"] for t in r["tasks"]})["tasks"]}
    for addr, f in futures.items():
        rec = by_key[f.key]
        assert rec["node_id"] == ran_on[addr]
        assert rec["worker"] == addr
        assert rec["stop"] >= rec["start"] > 0
        assert rec["state"] == "memory"
    assert len({by_key[f.key]["node_id"] for f in futures.values()}) == 3


def _transfers_into(http, key, timed_by_ray=True, since=0, records=()):
    """``(reply, transfers into key)`` once the consumer shows (with Ray's timing if asked)
    and the tasks named in ``records`` have theirs: each worker sends its receipts on its
    own, so one node's record can arrive after another's."""
    def ok(r):
        into = [t for t in r["transfers"] if t["to_key"] == key]
        have = {t["key"] for t in r["tasks"] if t.get("node_id")}
        return (into and (not timed_by_ray or all(t["timing"] == "ray" for t in into))
                and have.issuperset(records))

    reply = _wait_for(lambda: http.get("/api/tasks", params={"since": since}).json(), ok, timeout=30)
    return reply, [t for t in reply["transfers"] if t["to_key"] == key]


@pytest.mark.multinode
def test_large_result_consumed_on_another_node_is_a_direct_transfer_timed_by_ray(dash_client, http):
    from raydask.cluster import worker_table

    first, second = worker_table()[:2]
    nbytes = 4 * 2**20
    x = dash_client.submit(_array, nbytes, workers=[first["address"]])
    y = dash_client.submit(_size, x, workers=[second["address"]])
    same = dash_client.submit(_size, x, workers=[first["address"]], pure=False)  # its own key
    assert y.result() == same.result() == nbytes
    reply, (t,) = _transfers_into(http, y.key, records=(x.key, y.key, same.key))
    tasks = {r["key"]: r for r in reply["tasks"]}
    assert tasks[same.key]["node_id"] == tasks[x.key]["node_id"]
    assert not [t for t in reply["transfers"] if t["to_key"] == same.key]  # same node: nothing moved
    assert t["key"] == x.key and t["nbytes"] == tasks[x.key]["nbytes"] == nbytes
    assert t["from_worker"] == first["address"] and t["to_worker"] == second["address"]
    assert t["from_node_id"] == tasks[x.key]["node_id"] and t["to_node_id"] == tasks[y.key]["node_id"]
    assert t["route"] == "direct" and t["via"].startswith(f"direct object transfer ({nbytes} B)")
    assert "task:deserialize_arguments" in t["timed"] or "PENDING_ARGS_FETCH" in t["timed"]
    # Ray's window: after the producer stored its result, ending by the consumer's start
    assert tasks[x.key]["stop"] <= t["start"] <= t["stop"] <= tasks[y.key]["start"]


@pytest.mark.multinode
def test_small_result_consumed_on_another_node_is_a_transfer_via_the_owner(dash_client, http):
    from raydask.cluster import worker_table

    first, second, third = worker_table()[:3]
    x = dash_client.submit(_inc, 5000, workers=[first["address"]])
    y = dash_client.submit(_inc, x, workers=[second["address"]])
    z = dash_client.submit(_add, x, y, workers=[third["address"]])
    assert z.result() == 5001 + 5002
    reply, (t,) = _transfers_into(http, y.key)
    tasks = {r["key"]: r for r in reply["tasks"]}
    size = tasks[x.key]["nbytes"]
    assert 0 < size < 100 * 1024  # the receipt's size of an int, inlined by Ray
    assert t["key"] == x.key and t["nbytes"] == size
    assert (t["from_worker"], t["to_worker"]) == (first["address"], second["address"])
    assert t["route"] == "owner" and t["via"].startswith(f"via the owner (inlined, {size} B)")
    assert "SUBMITTED_TO_WORKER" in t["timed"] and t["timing"] == "ray"
    assert tasks[x.key]["stop"] <= t["start"] <= t["stop"] <= tasks[y.key]["start"]
    reply, into_z = _transfers_into(http, z.key)  # one transfer per input from another node
    assert sorted((t["key"], t["from_worker"], t["to_worker"]) for t in into_z) == sorted(
        [(x.key, first["address"], third["address"]), (y.key, second["address"], third["address"])])


@pytest.mark.multinode
def test_ray_s_timing_reaches_a_page_that_already_saw_the_estimate(dash_client, http):
    from raydask.cluster import worker_table

    first, second = worker_table()[:2]
    x = dash_client.submit(_inc, 7000, workers=[first["address"]])
    y = dash_client.submit(_inc, x, workers=[second["address"]])
    y.result()
    seen, (t,) = _transfers_into(http, y.key, timed_by_ray=False)  # Ray reports events about once a second
    if t["timing"] == "estimate":
        assert "estimated" in t["timed"] and t["stop"] == {r["key"]: r for r in seen["tasks"]}[y.key]["start"]
        later, (t,) = _transfers_into(http, y.key, since=seen["cursor"])
        assert later["cursor"] > seen["cursor"] and y.key in {r["key"] for r in later["tasks"]}
    assert t["timing"] == "ray"


@pytest.mark.multinode
def test_progress_and_errors(dash_client, http):
    futures = dash_client.map(_fail, range(3))
    for f in futures:
        with pytest.raises(ValueError):
            f.result()
    reply = _wait_for(lambda: http.get("/api/progress").json(),
                      lambda r: any(p["prefix"] == "fail" and p["erred"] == 3 for p in r["prefixes"]))
    (p,) = [p for p in reply["prefixes"] if p["prefix"] == "fail"]
    assert p["total"] == 3 and p["erred"] == 3 and p["done"] == 0
    graph = http.get("/api/graph").json()
    states = {n["key"]: n for n in graph["nodes"]}
    assert {states[f.key]["state"] for f in futures} == {"erred"}
    assert "ValueError" in states[futures[0].key]["error"]
    # erred tasks are in the task stream too (drawn black), with where and when they failed
    tasks = {t["key"]: t for t in http.get("/api/tasks").json()["tasks"]}
    nodes = {w["node_id"] for w in http.get("/api/workers").json()["workers"]}
    for f in futures:
        assert tasks[f.key]["state"] == "erred" and tasks[f.key]["node_id"] in nodes
        assert tasks[f.key]["stop"] >= tasks[f.key]["start"] > 0


@pytest.mark.multinode
def test_workers_endpoint(dash_client, http):
    f = dash_client.submit(_inc, 7, pure=False)
    f.result()
    rows = _wait_for(lambda: http.get("/api/workers").json()["workers"],
                     lambda rows: sum(r["finished"] for r in rows) > 0)
    assert len(rows) == 3
    assert all(r["nthreads"] == 1 and r["address"].startswith("tcp://") for r in rows)
    assert all(r["object_store_memory"] > 0 for r in rows)
    assert sum(r["finished"] for r in rows) >= 1


@pytest.mark.multinode
def test_a_finished_task_shows_within_a_second_even_if_nobody_waits_on_it(dash_client, http):
    cursor = http.get("/api/tasks").json()["cursor"]
    f = dash_client.submit(_inc, 43, pure=False)  # no result(), no wait: the dashboard must find out
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tasks = {t["key"]: t for t in http.get("/api/tasks", params={"since": cursor}).json()["tasks"]}
        if f.key in tasks:
            break
        time.sleep(0.05)
    seen = time.time()
    assert f.key in tasks
    assert seen - tasks[f.key]["stop"] < 1.0


@pytest.mark.multinode
@pytest.mark.parametrize("url, status", [
    ("/api/graph?since=abc", 422), ("/api/graph?since=-1", 400), ("/api/graph?view=pie", 400),
    ("/api/tasks?since=1.5", 422), ("/static/../../etc/passwd", 404), ("/static/secret.py", 404),
])
def test_malformed_parameters_are_rejected(http, url, status):
    r = http.get(url)
    assert r.status_code == status
    if status != 404 or "secret" in url:
        assert "detail" in r.json()


@pytest.mark.multinode
@pytest.mark.parametrize("url", ["/api/graph", "/api/tasks", "/api/workers", "/api/progress"])
def test_the_api_is_read_only(http, url):
    assert http.post(url, json={}).status_code == 405
    assert http.delete(url).status_code == 405


@pytest.mark.multinode
def test_prefix_view_past_the_size_limit(dash_client, http):
    source = dash_client._dashboard.source
    old = source.max_graph_nodes
    source.max_graph_nodes = 1
    try:
        graph = http.get("/api/graph").json()
    finally:
        source.max_graph_nodes = old
    assert graph["view"] == "prefix"
    prefixes = {n["key"]: n for n in graph["nodes"]}
    assert {"inc", "add"} <= set(prefixes)
    assert prefixes["inc"]["count"] >= 3
    assert ["inc", "add"] in graph["edges"]


@pytest.mark.multinode
def test_busy_port_moves_to_the_next_one_and_stop_joins(dash_client):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        server = DashboardServer(dash_client, f"127.0.0.1:{port}")
        server.start()
        try:
            assert server.port != port and server.port > port
            assert httpx.get(server.link, timeout=10).status_code == 200
        finally:
            thread = server._thread
            server.stop()
        assert not thread.is_alive()
    finally:
        taken.close()


def test_event_log_keeps_dropped_running_tasks_until_they_finish():
    from raydask.events import EventLog, TaskRecord

    log = EventLog()
    log.submitted("a", ())
    log.submitted("b", ("a",))
    log.released("a")  # the client let go, but "b" still needs it and Ray still runs it
    states = {e.key: e.state for e in log.snapshot()[1]}
    assert states == {"a": "processing", "b": "waiting"}
    log.finished("a", TaskRecord("int", 28, 1.0, 2.0, "n", 1))
    log.finished("b", TaskRecord("int", 28, 2.0, 3.0, "n", 1))
    states = {e.key: e.state for e in log.snapshot()[1]}
    assert states == {"a": "released", "b": "memory"}
    log.released("b")
    assert {e.key: e.state for e in log.snapshot()[1]}["b"] == "released"


def test_event_log_forgets_the_oldest_released_keys_in_batches():
    from raydask.events import EventLog

    log = EventLog(max_tasks=100)
    log.submitted("live", ())  # never released: it must stay
    sizes = []
    for i in range(200):
        log.submitted(f"k-{i}", ())
        log.finished(f"k-{i}", None)
        log.released(f"k-{i}")
        sizes.append(len(log.snapshot()[1]))
    assert max(sizes) <= 110  # the limit, and a tenth of headroom
    assert min(sizes[100:]) <= 91  # a tenth freed at once, not one key per submit
    keys = [e.key for e in log.snapshot()[1]]
    assert "live" in keys and "k-199" in keys and "k-0" not in keys
    assert keys[1:] == sorted(keys[1:], key=lambda k: int(k[2:]))  # the oldest went first


def test_event_log_shrinks_to_its_cap_when_live_tasks_are_released_later():
    from raydask.events import EventLog

    log = EventLog(max_tasks=100)
    for i in range(200):  # all live: nothing to forget while they run
        log.submitted(f"k-{i}", ())
    assert len(log) == 200
    for i in range(200):
        log.finished(f"k-{i}", None)
        log.released(f"k-{i}")
    assert len(log) <= 100  # released rows go as soon as there are enough, not at the next submit
    assert [e.key for e in log.snapshot()[1]][-1] == "k-199"


@pytest.mark.multinode
@pytest.mark.timeout(180)
def test_cli_dashboard_in_another_process_shows_the_published_graph(dash_client):
    import os
    import re
    import signal
    import subprocess
    import sys

    a = dash_client.submit(_inc, 31337)
    b = dash_client.submit(_add, a, 1)
    b.result()
    gcs = ray.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [sys.executable, "-m", "raydask", "dashboard", "--address", gcs, "--dashboard-address", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ),
    )
    try:
        line = proc.stdout.readline()
        link = re.search(r"http://\S+/status", line)
        assert link, line
        base = link.group(0).rsplit("/", 1)[0]
        graph = _wait_for(lambda: httpx.get(base + "/api/graph", timeout=30).json(),
                          lambda g: b.key in {n["key"] for n in g["nodes"]}, timeout=30)
        assert [a.key, b.key] in graph["edges"]
        assert {n["key"]: n["state"] for n in graph["nodes"]}[b.key] == "memory"
        tasks = {t["key"]: t for t in httpx.get(base + "/api/tasks", timeout=30).json()["tasks"]}
        assert tasks[b.key]["node_id"] == {t["key"]: t for t in
                                           dash_client._dashboard.source.tasks()["tasks"]}[b.key]["node_id"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(90)
def test_publisher_sends_events_only_while_a_dashboard_in_another_process_reads(dash_client):
    from ray.experimental.internal_kv import _internal_kv_del

    from raydask.dashboard.publish import NAMESPACE, VIEWER_KEY, ClusterLog, Publisher
    from raydask.events import EventLog, TaskRecord

    _internal_kv_del(VIEWER_KEY, namespace=NAMESPACE)  # no reader yet (an earlier test had one)
    events = EventLog()
    events.submitted("solo-1", ())
    events.finished("solo-1", TaskRecord("int", 28, 1.0, 2.0, "n", 1))
    publisher = Publisher(events, "test-viewer", interval=0.05)
    publisher.start()
    try:
        time.sleep(0.5)  # ten intervals with nobody reading
        assert publisher._actor is None
        log = ClusterLog(refresh=0)
        seen = _wait_for(lambda: {e.key: e.state for e in log.snapshot()[1]},
                         lambda states: "solo-1" in states, timeout=30)
        assert seen["solo-1"] == "memory"
        assert publisher._actor is not None
    finally:
        publisher.stop()


@pytest.mark.multinode
@pytest.mark.timeout(180)
def test_dask_array_tasks_show_with_dask_s_keys_and_prefixes(dash_client, http):
    from conftest import need

    da = need("dask.array")
    x = dash_client.persist(da.ones((20, 20), chunks=(10, 10)) * 3)
    assert x.sum().compute() == 1200
    chunk_keys = {str(k) for row in x.__dask_keys__() for k in row}
    reply = _wait_for(lambda: http.get("/api/progress").json(),
                      lambda r: any(p["prefix"] == "mul" and p["done"] >= 4 for p in r["prefixes"]))
    (mul,) = [p for p in reply["prefixes"] if p["prefix"] == "mul"]
    assert mul["total"] >= 4 and mul["done"] >= 4
    graph = http.get("/api/graph").json()
    shown = {str(n["key"]) if not isinstance(n["key"], list) else str(tuple(n["key"])) for n in graph["nodes"]}
    assert chunk_keys <= shown, sorted(chunk_keys - shown)[:3]
