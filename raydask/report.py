"""Dask's ``performance_report``: a standalone HTML page of what ran inside a block.

It reads the same task stream as :func:`raydask.get_task_stream` (the
dashboard's one source, :mod:`raydask.task_stream`) and writes, on leaving
the block: the calling code, a summary (duration, tasks, errors, workers),
a table per key prefix (count, errors, compute time) and the task stream as a
Plotly figure, with plotly.js inline so the file opens without a network.
"""

from __future__ import annotations

import html
import inspect
import time
from collections import defaultdict

from .keys import format_bytes, key_split
from .task_stream import records, stream_source, task_stream_figure

__all__ = ["performance_report"]

_MODES = {None: True, "inline": True, "cdn": "cdn"}


class performance_report:
    """Write an HTML report of the tasks that ran inside a ``with`` block (Dask's).

    Args:
        filename: where to write the report (a local path; with fsspec installed,
            any URL fsspec opens, with ``storage_options``).
        stacklevel: which caller's code the "Calling code" section shows (1: the
            code around the ``with``).
        mode: ``None`` or ``"inline"`` (plotly.js inside the file) or ``"cdn"``
            (loaded from the network: a smaller file).
        storage_options: passed to ``fsspec.open`` for a URL.

    Differences from dask.distributed:
        Plotly, not Bokeh; it shows the task stream, a per-prefix summary and
        the workers, not Dask's worker profiles, bandwidth or system plots
        (Ray does not report those per task).
    """

    def __init__(self, filename="dask-report.html", stacklevel=1, mode=None, storage_options=None):
        if not isinstance(filename, str) or not filename:
            raise TypeError(f"filename must be a non-empty string, got {filename!r}")
        if not isinstance(stacklevel, int) or isinstance(stacklevel, bool):
            raise TypeError(f"stacklevel must be an integer, got {stacklevel!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be None, 'inline' or 'cdn', got {mode!r}")
        self.filename = filename
        self._stacklevel = stacklevel if stacklevel > 0 else 1  # as Dask: 0 would show raydask's own frames
        self.mode = mode
        self.storage_options = dict(storage_options or {})

    def __enter__(self):
        from .worker import default_client

        self._client = default_client()
        self._source = stream_source(self._client)
        self._before = self._source.finished_keys()
        self._start = time.time()
        return self

    def __exit__(self, exc_type, exc, tb):
        code = _calling_code(self._stacklevel + 1)
        self._write(render(records(self._source, exclude=self._before), self._start, time.time(), code,
                           self._source.workers(), _MODES[self.mode]))
        return False

    async def __aenter__(self):
        import asyncio

        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, exc_type, exc, tb):
        import asyncio

        code = _calling_code(self._stacklevel + 1)
        page = await asyncio.to_thread(lambda: render(records(self._source, exclude=self._before), self._start,
                                                      time.time(), code, self._source.workers(),
                                                      _MODES[self.mode]))
        await asyncio.to_thread(self._write, page)
        return False

    def _write(self, page: str) -> None:
        if "://" in self.filename or self.storage_options:
            import fsspec  # Dask writes with fsspec; only URLs need it here

            with fsspec.open(self.filename, mode="w", compression="infer", **self.storage_options) as f:
                f.write(page)
            return
        with open(self.filename, "w", encoding="utf-8") as f:
            f.write(page)


def _calling_code(level: int) -> str:
    """The source of the frame ``level`` above the caller (the code around the ``with``)."""
    frame = inspect.currentframe()
    try:
        for _ in range(level):
            if frame is None:
                break
            frame = frame.f_back
        if frame is None:
            return "<Code not available>"
        try:
            return inspect.getsource(frame)
        except (OSError, TypeError):
            return "<Code not available>"
    finally:
        del frame


def summary(recs) -> list[dict]:
    """Per key prefix: tasks, errors, compute seconds, bytes returned; most time first."""
    by = defaultdict(lambda: {"count": 0, "errors": 0, "compute": 0.0, "nbytes": 0})
    for r in recs:
        p = by[key_split(r["key"])]
        p["count"] += 1
        p["errors"] += r["status"] == "error"
        p["nbytes"] += r.get("nbytes", 0)
        p["compute"] += sum(s["stop"] - s["start"] for s in r["startstops"] if s["action"] == "compute")
    return sorted(({"prefix": k, **v} for k, v in by.items()), key=lambda p: -p["compute"])


def render(recs, start, stop, code, workers, include_plotlyjs=True) -> str:
    """The report page: a full HTML document."""
    esc = html.escape
    prefixes = summary(recs)
    used = sorted({r["worker"] for r in recs})
    errors = sum(r["status"] == "error" for r in recs)
    rows = "".join(
        f"<tr><td>{esc(p['prefix'])}</td><td>{p['count']}</td><td>{p['errors']}</td>"
        f"<td>{p['compute']:.3f} s</td><td>{format_bytes(p['nbytes'])}</td></tr>" for p in prefixes)
    worker_rows = "".join(
        f"<tr><td>{esc(w['address'])}</td><td>{esc(str(w['name']))}</td><td>{w['nthreads']}</td>"
        f"<td>{format_bytes(w['memory_limit'])}</td></tr>" for w in workers)
    figure = task_stream_figure(recs, title=None).to_html(full_html=False, include_plotlyjs=include_plotlyjs,
                                              div_id="task-stream")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Dask Performance Report (raydask)</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}pre{{background:#f6f6f6;padding:.6em}}</style>
</head><body>
<h1>Dask Performance Report</h1>
<h2>Summary</h2>
<table id="summary">
<tr><th>Started</th><td>{esc(when)}</td></tr>
<tr><th>Duration</th><td>{stop - start:.3f} s</td></tr>
<tr><th>Tasks</th><td>{len(recs)}</td></tr>
<tr><th>Erred</th><td>{errors}</td></tr>
<tr><th>Compute time</th><td>{sum(p['compute'] for p in prefixes):.3f} s</td></tr>
<tr><th>Workers used</th><td>{len(used)} of {len(workers)}</td></tr>
</table>
<h2>Task stream</h2>
{figure}
<h2>Tasks by prefix</h2>
<table id="prefixes"><tr><th>prefix</th><th>tasks</th><th>erred</th><th>compute</th><th>returned</th></tr>
{rows}</table>
<h2>Workers</h2>
<table id="workers"><tr><th>address</th><th>name</th><th>threads</th><th>memory</th></tr>{worker_rows}</table>
<h2>Calling code</h2>
<pre id="code">{esc(code)}</pre>
<p>Made by raydask from the tasks' receipts (where and when each ran); Ray reports no per-task
profiles, bandwidth or system plots, so Dask's other tabs are not here.</p>
</body></html>
"""
