"""Dask's task stream: one record per task that ran, read from the dashboard's rows.

Data flow (nothing here collects anything of its own)::

    task receipt ──> receipts.STORE ──> EventLog (FutureState.record) ──> ClientSource.tasks()
                                                                             │
                 Client.get_task_stream / get_task_stream / performance_report ◄┘
                       (rows in Dask's record shape; a Plotly figure of them)

A client with a dashboard already has an event log and a
:class:`~raydask.dashboard.source.ClientSource`; the task stream reads that
same source.  A client made with ``dashboard_address=None`` records nothing
until the task stream is first asked for, as Dask's task-stream plugin "does
not run by default" (``Client.get_task_stream``'s docstring): the first call
starts the client's event log (following the keys the client holds at that
moment) and a source over it, which the later calls read.
"""

from __future__ import annotations

import pickle
import threading

from .context import default_client
from .keys import key_split, parse_timedelta

__all__ = ["get_task_stream", "records", "stream_source", "task_stream", "task_stream_figure"]

_starting = threading.Lock()  # two threads priming one client make one log


def stream_source(client):
    """The :class:`ClientSource` the task stream reads for ``client`` (started on first use)."""
    dashboard = getattr(client, "_dashboard", None)
    if dashboard is not None:
        return dashboard.source
    with _starting:
        source = getattr(client, "_stream_source", None)
        if source is None:
            from .dashboard.source import ClientSource

            source = ClientSource(client._recording(), name=client.id)
            client._stream_source = source
        return source


def _record(row, moves) -> dict:
    """One ClientSource task row (and the transfers into it) as a Dask task-stream record."""
    startstops = [{"action": "transfer", "start": m["start"], "stop": m["stop"], "source": m["from_worker"]}
                  for m in moves if m.get("start") is not None and m.get("stop") is not None]
    startstops.append({"action": "compute", "start": row["start"], "stop": row["stop"]})
    out = {"key": row["key"], "worker": row["worker"], "thread": row["pid"], "startstops": startstops}
    if row["state"] == "erred":  # Dask's erred record has no metadata, nbytes or type
        out.update(status="error", cause=row["key"], exception=None, traceback=None,
                   exception_text=row["error"] or "", traceback_text="",
                   stimulus_id=f"task-erred-{row['stop']}")
    else:
        out.update(status="OK", metadata={}, nbytes=row["nbytes"], typename=row["type"],
                   type=_pickled_type(row["type"]), stimulus_id=f"task-finished-{row['stop']}")
    return out


def _pickled_type(name) -> bytes:
    """Dask sends the result's class pickled; the receipt names it, so pickle that class if found."""
    from .future import resolve_type

    try:
        return pickle.dumps(resolve_type(name))
    except Exception:  # noqa: BLE001 - a class the client cannot import: its name instead
        return pickle.dumps(name)


def records(source, exclude=()) -> list[dict]:
    """Every task ``source`` knows to have run, in Dask's shape, ordered by when it stopped."""
    if hasattr(source, "await_records"):
        source.await_records()
    payload = source.tasks()
    moves: dict = {}
    for m in payload["transfers"]:
        moves.setdefault(m["to_key"], []).append(m)
    rows = [r for r in payload["tasks"] if r["key"] not in exclude and r["state"] != "cancelled"]
    rows.sort(key=lambda r: r["stop"])
    return [_record(r, moves.get(r["key"], ())) for r in rows]


def _window(recs, start, stop, count) -> list:
    """Dask's ``TaskStreamPlugin.collect``: by stop time (seconds ago if a string), then ``count``."""
    import bisect
    import time

    stops = [max(s["stop"] for s in r["startstops"]) for r in recs]
    if isinstance(start, str):
        start = time.time() - parse_timedelta(start)
    if isinstance(stop, str):
        stop = time.time() - parse_timedelta(stop)
    i = None if start is None else bisect.bisect_left(stops, start)
    j = None if stop is None else bisect.bisect_left(stops, stop)
    if count is not None:
        if i is None and j is None:
            j = len(recs)
            i = j - count
        elif i is None:
            i = j - count
        elif j is None:
            j = i + count
    i = max(0, 0 if i is None else i)
    j = min(len(recs), len(recs) if j is None else j)
    return recs[i:j]


def task_stream(client, start=None, stop=None, count=None, plot=False, filename="task-stream.html"):
    """``Client.get_task_stream``: the records of a window, with a figure if ``plot``."""
    for name, value in (("start", start), ("stop", stop)):
        if value is not None and (not isinstance(value, (int, float, str)) or isinstance(value, bool)):
            raise TypeError(f"{name} must be a time (a number or a string like '60s'), got {value!r}")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    _check_plot(plot, filename)
    recs = _window(records(stream_source(client)), start, stop, count)
    return _with_plot(recs, plot, filename)


def _check_plot(plot, filename) -> None:
    if plot not in (True, False, "save"):
        raise ValueError(f"plot must be True, False or 'save', got {plot!r}")
    if plot == "save" and not isinstance(filename, str):
        raise TypeError(f"filename must be a string, got {filename!r}")


def _with_plot(recs, plot, filename):
    if not plot:
        return recs
    fig = task_stream_figure(recs)
    if plot == "save":
        fig.write_html(filename, include_plotlyjs=True, full_html=True)
    return recs, fig


def task_stream_figure(recs, title="Task Stream"):
    """A Plotly figure of ``recs``: one row per worker process, one bar per compute/transfer.

    Plain dicts go into ``go.Figure`` (plotly validates them once); colours by key
    prefix as Dask's, erred tasks black, transfers red and faint.
    """
    import plotly.graph_objects as go

    rows: dict = {}
    bars: dict = {}  # legend group -> lists
    t0 = min((s["start"] for r in recs for s in r["startstops"]), default=0.0)
    t1 = max((s["stop"] for r in recs for s in r["startstops"]), default=t0)
    shortest = max((t1 - t0) * 1000 / 400, 0.5)  # a bar of a quick task stays visible (a pixel or so)
    for r in recs:
        lane = rows.setdefault(f"{r['worker']}-{r['thread']}", len(rows))
        for s in r["startstops"]:
            group = ("transfer" if s["action"] == "transfer" else
                     "erred" if r["status"] == "error" else key_split(r["key"]))
            b = bars.setdefault(group, {"base": [], "x": [], "y": [], "text": []})
            b["base"].append((s["start"] - t0) * 1000)
            b["x"].append(max((s["stop"] - s["start"]) * 1000, shortest))
            b["y"].append(lane)
            b["text"].append(f"{r['key']}<br>{s['action']} {1000 * (s['stop'] - s['start']):.1f} ms<br>{r['worker']}")
    palette = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725", "#e6550d", "#9467bd", "#8c564b")
    traces = []
    for n, (group, b) in enumerate(sorted(bars.items())):
        colour = "red" if group == "transfer" else "black" if group == "erred" else palette[n % len(palette)]
        traces.append({"type": "bar", "orientation": "h", "name": group, "base": b["base"], "x": b["x"],
                       "y": b["y"], "hovertext": b["text"], "hoverinfo": "text", "marker": {"color": colour},
                       "opacity": 0.4 if group == "transfer" else 1.0})
    lanes = sorted(rows, key=rows.get)
    layout = {"barmode": "overlay", "xaxis": {"title": {"text": "ms since the first start"}},
              "yaxis": {"tickvals": list(range(len(lanes))), "ticktext": lanes, "title": {"text": "worker-process"}},
              "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom"},
              "height": max(320, 140 + 40 * len(lanes)), "margin": {"t": 60}}
    if title:
        layout["title"] = {"text": title}
    return go.Figure({"data": traces, "layout": layout})


class get_task_stream:
    """Collect the task stream of the tasks that ran inside a ``with`` block (Dask's).

    Args:
        client: the client (default: the current one).
        plot: True to also make ``self.figure`` (a Plotly figure); ``"save"`` also writes it to ``filename``.
        filename: where ``plot="save"`` writes the figure as standalone HTML.

    Differences from dask.distributed:
        The figure is Plotly's, not Bokeh's.  ``thread`` is the Ray worker
        process id (one task at a time per process); an erred record carries
        ``exception_text`` but ``exception`` and ``traceback`` are None.
    """

    def __init__(self, client=None, plot=False, filename="task-stream.html"):
        _check_plot(plot, filename)
        self.data: list[dict] = []
        self.figure = None
        self._plot = plot
        self._filename = filename
        if client is None:
            client = default_client()
        self.client = client
        self._before = None

    def __enter__(self):
        self._source = stream_source(self.client)
        self._before = self._source.finished_keys()
        return self

    def __exit__(self, *exc):
        recs = records(self._source, exclude=self._before)
        res = _with_plot(recs, self._plot, self._filename)
        if self._plot:
            recs, self.figure = res
        self.data.extend(recs)
        return False

    async def __aenter__(self):
        import asyncio

        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, *exc):
        import asyncio

        return await asyncio.to_thread(self.__exit__, *exc)
