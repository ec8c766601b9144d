"""``get_logs()``: Dask's log dictionaries, filled from Ray's session log files.

Dask keeps each server's recent log records in memory; Ray writes every
process's output to files in the session's log directory.  A worker's log here
is its raylet's log followed by the stdout/stderr of the worker processes that
raylet started (the raylet logs "Started worker process with pid P
worker_id=W"; the worker writes ``worker-W-<job>-P.out`` / ``.err``), which is
where a task's prints and warnings land.  The scheduler's log is the GCS's.
Each file contributes at most its last ``lines`` lines, under a ``==> name <==``
header as ``tail`` prints.
"""

from __future__ import annotations

import html
import os
import re

__all__ = ["Log", "Logs", "gcs_log", "node_log", "records"]

#: Dask keeps the last 10,000 records per server (``distributed.admin.log-length``).
LINES = 10_000

#: Ray's C++ log lines start ``[2026-12-01 18:02:16,258 I 1874 1874]``: the letter is the level.
_GLOG = re.compile(r"^\[\S+ \S+ ([DIWEF]) \d+ \d+\]")
_LEVELS = {"D": "DEBUG", "I": "INFO", "W": "WARNING", "E": "ERROR", "F": "CRITICAL"}
_PYLEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
_STARTED = re.compile(r"Started worker process with pid (\d+) worker_id=([0-9a-f]+)")


class Log(str):
    """A log's text; shown preformatted in notebooks (Dask's ``distributed.utils.Log``)."""

    def _repr_html_(self):
        return f'<pre style="white-space: pre-wrap">{html.escape(self)}</pre>'


class Logs(dict):
    """``{name: Log}``; shown as one section per name in notebooks (Dask's ``Logs``)."""

    def _repr_html_(self):
        return "".join(f"<details><summary>{html.escape(str(name))}</summary>{Log(text)._repr_html_()}</details>"
                       for name, text in sorted(self.items(), key=lambda kv: str(kv[0])))


def _tail(path, lines) -> str | None:
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    kept = text.splitlines()[-lines:]
    return "\n".join(kept)


def _sections(paths, lines) -> Log:
    parts = []
    for path in paths:
        text = _tail(path, lines)
        if text:
            parts.append(f"==> {os.path.basename(path)} <==\n{text}")
    return Log("\n\n".join(parts))


def node_log(raylet, lines=LINES, processes=True) -> Log:
    """The log of one node: its raylet's files, then (``processes``) its worker processes' stdout/stderr."""
    paths = [p for p in (raylet.stdout, raylet.stderr) if p]
    raylet_text = _tail(raylet.stdout, 10**9) if raylet.stdout and processes else None
    if raylet_text and raylet.log_dir:
        try:
            names = os.listdir(raylet.log_dir)
        except OSError:
            names = []
        for pid, worker_id in _STARTED.findall(raylet_text):
            for name in sorted(names):
                if name.startswith(f"worker-{worker_id}-") and name.endswith((f"-{pid}.out", f"-{pid}.err")):
                    paths.append(os.path.join(raylet.log_dir, name))
    return _sections(paths, lines)


def gcs_log(log_dir, lines=LINES) -> Log:
    """The log of the cluster's GCS (Ray's scheduler-side state), from the head's session."""
    if not log_dir:
        return Log("")
    return _sections([os.path.join(log_dir, "gcs_server.out"), os.path.join(log_dir, "gcs_server.err")], lines)


def records(log: str, n=None) -> list[tuple[str, str]]:
    """``[(level, line), ...]``, newest first, at most ``n`` (Dask's default 10,000).

    The shape of Dask's ``get_scheduler_logs``/``get_worker_logs``.  The level
    is read off each line: Ray's C++ prefix (``I``, ``W``, ``E``...), else the
    first Python logging level the line names, else ``INFO`` (a task's prints).
    File headers and blank lines are left out.
    """
    n = LINES if n is None else n
    out = []
    for line in reversed(log.splitlines()):
        if len(out) >= n:
            break
        if not line.strip() or (line.startswith("==> ") and line.endswith(" <==")):
            continue
        m = _GLOG.match(line)
        if m:
            level = _LEVELS[m.group(1)]
        else:
            m = _PYLEVEL.search(line)
            level = m.group(1) if m else "INFO"
        out.append((level, line))
    return out
