"""``progress``: a text bar in a terminal, ipywidgets bars in a notebook.

The bars are redrawn every ``interval`` (as Dask's are, 100 ms) while waiters
installed on the futures count completions; nothing asks Ray for status.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict

from .future import Status, quick
from .keys import key_split
from .waiting import _watch

__all__ = ["progress"]


def format_time(t: float) -> str:
    """``' 1.7s'``, ``' 2min  3.0s'``: as ``distributed.diagnostics.progress.format_time``."""
    m, s = divmod(t, 60)
    h, m = divmod(m, 60)
    if h:
        return f"{h:2.0f}hr {m:2.0f}min {s:4.1f}s"
    if m:
        return f"{m:2.0f}min {s:4.1f}s"
    return f"{s:4.1f}s"


class _Tracker:
    """Counts finished futures per group; wakes the drawer on every completion."""

    def __init__(self, futures, group_by=key_split):
        self.cond = threading.Condition()
        self.total = defaultdict(int)
        self.done = defaultdict(int)
        self.erred = defaultdict(int)
        self.exception = None
        self._states = {}
        for f in futures:
            self._states.setdefault(f.key, f)
        self._group = {key: group_by(key) for key in self._states}  # group_by may be the user's
        for group in self._group.values():
            self.total[group] += 1
        for key, f in self._states.items():
            if not _watch(f, self._on_done):
                self._on_done(f._state)

    @quick
    def _on_done(self, state):
        """Count one finished future (quick: it may run on Ray's callback thread)."""
        with self.cond:
            group = self._group[state.key]
            self.done[group] += 1
            if state.status in (Status.ERROR, Status.LOST):
                self.erred[group] += 1
                self.exception = self.exception or state.exception
            self.cond.notify_all()

    @property
    def remaining(self) -> int:
        return sum(self.total.values()) - sum(self.done.values())

    def wait(self, interval):
        with self.cond:
            if self.remaining and not self.exception:
                self.cond.wait(interval)


class TextProgressBar:
    """``[####    ] | 50% Completed |  1.2s`` on stdout, redrawn until all are done."""

    def __init__(self, futures, width=40, interval=0.1):
        self.width = width
        self.interval = interval
        self._start = time.monotonic()
        self.tracker = _Tracker(futures)
        self.all = sum(self.tracker.total.values())

    def run(self):
        while True:
            remaining = self.tracker.remaining
            self._draw(remaining)
            if not remaining or self.tracker.exception is not None:
                break
            self.tracker.wait(self.interval)
        sys.stdout.write("\n")
        sys.stdout.flush()

    def _draw(self, remaining):
        frac = (1 - remaining / self.all) if self.all else 1.0
        bar = "#" * int(self.width * frac)
        elapsed = format_time(time.monotonic() - self._start)
        sys.stdout.write(f"\r[{bar:<{self.width}}] | {int(100 * frac)}% Completed | {elapsed}")
        sys.stdout.flush()


class ProgressWidget:
    """One ipywidgets bar per key prefix, updated by a named thread until done."""

    def __init__(self, futures, multi=True, interval=0.1):
        from ipywidgets import HTML, FloatProgress, HBox, VBox

        self.interval = interval
        self.tracker = _Tracker(futures, key_split if multi else (lambda key: ""))
        self._start = time.monotonic()
        self.elapsed = HTML("")
        self.bars = {}
        rows = []
        for group in sorted(self.tracker.total):
            bar = FloatProgress(min=0, max=1, description="")
            text = HTML("")
            label = HTML(f'<div style="padding: 0px 10px 0px 10px; text-align:left;">{group}</div>')
            self.bars[group] = (bar, text)
            rows.append(HBox([label, text, bar]))
        self.widget = VBox([self.elapsed, *rows])
        self._thread = threading.Thread(target=self._run, name="raydask-progress", daemon=True)

    def _ipython_display_(self, **kwargs):
        from IPython.display import display

        display(self.widget, **kwargs)
        if not self._thread.is_alive():
            self._thread.start()

    def _draw(self):
        t = self.tracker
        for group, (bar, text) in self.bars.items():
            total, done = t.total[group], t.done[group]
            bar.value = done / total if total else 1.0
            text.value = f'<div style="padding: 0px 10px 0px 10px; text-align:right;">{done} / {total}</div>'
            if t.erred[group]:
                bar.bar_style = "danger"
            elif done == total:
                bar.bar_style = "success"
        elapsed = format_time(time.monotonic() - self._start)
        if t.exception is not None:
            self.elapsed.value = f'<div style="padding: 0px 10px 5px 10px"><b>Exception</b> <tt>{t.exception!r}</tt>:{elapsed}</div>'
        elif not t.remaining:
            self.elapsed.value = f'<div style="padding: 0px 10px 5px 10px"><b>Finished:</b> {elapsed}</div>'
        else:
            self.elapsed.value = f'<div style="padding: 0px 10px 5px 10px"><b>Computing:</b> {elapsed}</div>'

    def _run(self):
        while True:
            self._draw()
            if not self.tracker.remaining or self.tracker.exception is not None:
                return
            self.tracker.wait(self.interval)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress(*futures, notebook=None, multi=True, complete=True, group_by="prefix", **kwargs):
    """Show progress of futures: blocks with a text bar in a terminal, or returns
    ipywidgets bars (one per key prefix with ``multi=True``) in a notebook.

    Differences from dask.distributed:
        Only the given futures are counted (``complete`` is accepted and ignored);
        Ray does not expose their dependencies' progress to the client.
    """
    from .client import futures_of

    found = futures_of(list(futures))
    if not found:
        raise ValueError(f"progress expects futures, got {futures!r}")
    if notebook is None:
        notebook = _in_notebook()
    if notebook:
        try:
            widget = ProgressWidget(found, multi=multi)
        except ImportError:
            notebook = False
        else:
            from IPython.display import display

            display(widget)
            return None
    TextProgressBar(found).run()
    return None
