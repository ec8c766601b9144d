"""The example notebooks, executed end to end in a real Jupyter kernel (nbclient + ipykernel).

Each notebook runs in a kernel of this virtualenv's Python (a kernelspec written to
a temporary directory, found through ``JUPYTER_PATH``), with
``RAYDASK_EXAMPLE_SLEEP=0.02`` to shorten the sleeps.  The kernel starts its own
Ray, so the test process's shared cluster is closed first (``no_client``): one Ray
at a time.  The tests check what a user would look at: the displayed values and
Future reprs, and that no cell produced an error.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import need

nbformat = need("nbformat")
nbclient = need("nbclient")
need("ipykernel")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KERNEL = "raydask-test-python"


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernelspec that runs ``sys.executable`` (this venv), whatever ``python`` is on PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "raydask tests",
        "language": "python",
    }))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(root))
    mp.setenv("RAYDASK_EXAMPLE_SLEEP", "0.02")
    mp.setenv("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    yield KERNEL
    mp.undo()


def run(name, kernel_name, extra_cells=()):
    """Execute ``examples/<name>`` (plus test-only cells appended in memory); return it."""
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    for source in extra_cells:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel_name, timeout=240, startup_timeout=120,
        resources={"metadata": {"path": str(EXAMPLES)}},
    )
    client.execute()
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    return nb


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def text(cell) -> str:
    """What a cell showed as text: its stdout and the text/plain of its results."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream" and out["name"] == "stdout":  # stderr: Ray's logs
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def html(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.get("outputs", []))


def cell_with(nb, snippet):
    """The code cell whose source ends with (or is) ``snippet``."""
    found = [c for c in code_cells(nb) if c.source.strip().endswith(snippet)]
    assert found, f"no cell ending with {snippet!r}"
    return found[0]


FUTURE_REPR = r"<Future: (pending|finished), (type: int, )?key: {prefix}-[0-9a-f]{{32}}>"


@pytest.mark.timeout(600)
def test_seed_notebook(no_client, kernel_name):
    # 256 x 3 + 128 + ... tasks; the seed's sum over as_completed is checked by a test-only cell.
    expected = sum(3 * (i + 1) + 1 for i in range(256))
    nb = run("futures.ipynb", kernel_name, extra_cells=[
        "last = next(seq).result()\nprint('as_completed sum:', last)",
        "assert seq.is_empty()",
        "import sys\nprint(sys.executable)",
        "client.close()",
    ])
    cells = code_cells(nb)
    assert "Client" in html(cells[0]) and "raydask" in html(cells[0])
    assert text(cell_with(nb, "inc(1)")).strip() == "2"
    submit_cell = next(c for c in cells if c.source.startswith("future = client.submit(inc, 1)"))
    assert re.fullmatch(FUTURE_REPR.format(prefix="inc"), text(submit_cell).strip())
    assert re.fullmatch(FUTURE_REPR.format(prefix="inc"), text(cell_with(nb, "# scheduler and client talk constantly")).strip())
    assert text(cell_with(nb, "future.result()")).strip() == "2"
    assert re.fullmatch(FUTURE_REPR.format(prefix="add"), text(cell_with(nb, "z = client.submit(add, x, y)\nz")).strip())
    assert text(cell_with(nb, "z.result()")).strip() == "6"
    assert "Wall time" in text(next(c for c in cells if c.source.startswith("%%time")))
    assert f"as_completed sum: {expected}" in text(cells[-4])
    assert text(cells[-2]).strip() == sys.executable  # the kernel is this virtualenv's Python


@pytest.mark.timeout(300)
def test_parameter_sweep_notebook(no_client, kernel_name):
    nb = run("parameter-sweep.ipynb", kernel_name)
    assert text(cell_with(nb, "len(futures)")).strip() == "20"
    summary = text(cell_with(nb, 'print(f"{len(params)} evaluations; best loss {loss:.3f} at learning_rate={lr:g}, depth={depth}")'))
    m = re.search(r"(\d+) evaluations; best loss ([0-9.]+) at learning_rate=([0-9.e-]+), depth=(\d+)", summary)
    assert m, summary
    evaluations, loss = int(m.group(1)), float(m.group(2))
    assert 20 < evaluations <= 100  # the grid plus refinements, within the budget
    assert loss < 0.4  # better than every grid point: the refinement found its way


@pytest.mark.timeout(300)
def test_tasks_launching_tasks_notebook(no_client, kernel_name):
    nb = run("tasks-launching-tasks.ipynb", kernel_name)
    assert text(cell_with(nb, "future.result()")).strip() == str(sum(range(80)))
    assert text(cell_with(nb, "client.gather(launchers)")).strip() == str([sum(range(10 * n)) for n in (2, 4, 6, 8)])
    assert text(cell_with(nb, "client.submit(fib, 6).result()")).strip() == "8"


@pytest.mark.timeout(300)
def test_tree_reduction_dashboard_notebook(no_client, kernel_name):
    nb = run("tree-reduction-dashboard.ipynb", kernel_name)
    first = text(code_cells(nb)[0])
    assert re.match(r"(http://[\w.]+:\d+/status|None)\n", first), first
    assert re.fullmatch(FUTURE_REPR.format(prefix="add"), text(cell_with(nb, "total = L[0]\ntotal")).strip())
    assert text(cell_with(nb, "total.result()")).strip() == str(sum(range(3200)))
    workers = text(cell_with(nb, "{worker: n for worker, n in client.nthreads().items()}"))
    assert workers.count(": 1") == 2  # two workers of one thread each
    if not first.startswith("None"):
        assert text(cell_with(nb, 'print(response.status, json.dumps(json.load(response))[:300])')).startswith("200 ")


@pytest.mark.timeout(300)
def test_async_notebook_with_top_level_await(no_client, kernel_name):
    nb = run("async-futures.ipynb", kernel_name)
    assert text(cell_with(nb, "client.status")).strip() == "'running'"
    assert text(cell_with(nb, "await future")).strip() == "2"
    assert text(cell_with(nb, "await client.gather(futures)")).strip() == str(list(range(1, 11)))
    assert text(cell_with(nb, "total")).strip() == str(sum(range(101, 111)))
    assert text(cell_with(nb, "len(done), len(not_done)")).strip() == "(20, 0)"
    assert text(cell_with(nb, "await asyncio.gather(*client.map(inc, range(5)))")).strip() == "[1, 2, 3, 4, 5]"
    assert text(code_cells(nb)[-1]).strip() == "'closed'"


@pytest.mark.timeout(300)
def test_collections_notebook_mixes_delayed_arrays_dataframes_and_futures(no_client, kernel_name):
    nb = run("collections.ipynb", kernel_name)
    assert text(cell_with(nb, "os.getpid() not in dask.compute(*[where() for _ in range(4)])")).strip() == "True"
    assert text(cell_with(nb, "len(futures_of(y))")).strip() == "16"
    assert text(cell_with(nb, "float(abs(y.sum().compute())) < 1e-6")).strip() == "True"
    assert text(cell_with(nb, 'df.groupby("part").value.sum().compute().tolist()')).strip() == \
        str([sum(range(i * 10, i * 10 + 10)) for i in range(8)])
    assert float(text(cell_with(nb, "(arr ** 2).sum().compute()")).strip().replace("np.float64(", "").rstrip(")")) == 285.0
    assert text(cell_with(nb, "total.result()")).strip() == str(sum(range(10)) + 1)
