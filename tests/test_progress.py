"""progress: Dask's text bar in a terminal, ipywidgets bars in a notebook."""

from __future__ import annotations

import re
import time

import pytest

from conftest import need
from raydask import progress
from raydask.progress import ProgressWidget, format_time


def slowinc(x, delay=0.1):
    time.sleep(delay)
    return x + 1


def fail(x):
    raise ValueError(x)


def test_text_bar_blocks_until_done_and_draws_like_dask(client, capsys):
    futures = client.map(slowinc, range(8), pure=False)
    progress(futures, notebook=False)
    assert all(f.done() for f in futures)
    out = capsys.readouterr().out
    last = out.rstrip("\n").split("\r")[-1]
    assert re.fullmatch(r"\[#{40}\] \| 100% Completed \| +\d+\.\ds", last), repr(last)


def test_text_bar_stops_on_error(client, capsys):
    futures = [client.submit(fail, 1, pure=False), client.submit(slowinc, 1, delay=5, pure=False)]
    start = time.monotonic()
    progress(futures, notebook=False)
    assert time.monotonic() - start < 4
    assert "Completed" in capsys.readouterr().out


def test_widget_has_a_bar_per_prefix(client):
    need("ipywidgets")
    a = client.map(slowinc, range(3), pure=False)
    b = [client.submit(fail, 1, pure=False)]
    w = ProgressWidget(a + b, multi=True)
    assert set(w.bars) == {"slowinc", "fail"}
    w._thread.start()
    w._thread.join(20)
    w._draw()
    assert w.bars["slowinc"][0].value == 1.0
    assert w.bars["fail"][0].bar_style == "danger"


def test_format_time_like_dask_progress():
    assert format_time(1.7) == " 1.7s"
    assert format_time(1000.4) == "16min 40.4s"


def test_progress_rejects_non_futures(client):
    with pytest.raises(ValueError, match="progress expects futures"):
        progress(1, 2, notebook=False)
