"""The size a task's receipt reports follows Dask's ``sizeof`` rules, containers included."""

from __future__ import annotations

import ast
import subprocess
import sys
import pytest

from conftest import need
from raydask.sizeof import sizeof

pytestmark = pytest.mark.timeout(120)

def floats(n):
    return [1.5] * n


def test_a_list_counts_its_items_not_only_its_pointers():
    assert sizeof(floats(100_000)) == sys.getsizeof(floats(100_000)) + 100_000 * sys.getsizeof(1.5)
    assert sizeof(floats(100_000)) > 3 * sys.getsizeof(floats(100_000))


#: Built the same way in both processes (a list's spare capacity counts in getsizeof).
VALUES = """
import numpy as np
from collections import OrderedDict, namedtuple
Point = namedtuple("Point", "x y")
values = {
    "floats": [1.5] * 100_000, "ints": list(range(1_000)), "tuple": tuple([1.5] * 50),
    "namedtuple": Point([1.5] * 100, 2), "dict": {str(i).zfill(4): 1.5 for i in range(1_000)},  # items of one size: sampling is exact
    "ordered": OrderedDict(a=[1.5] * 100), "set": {1.5, 2.5}, "str": "x" * 1_000,
    "bytes": b"x" * 1_000, "array": np.zeros(1_000), "none": None, "int": 1,
}
"""


def test_sizes_match_dask_sizeof_for_the_common_types():
    """Ours in a fresh process without dask (where our rules answer, not dask's registry), Dask's here."""
    dask_sizeof = need("dask.sizeof")
    need("numpy")
    code = VALUES + ("import sys; from raydask.sizeof import sizeof; assert 'dask' not in sys.modules; "
                     "print(repr({k: sizeof(v) for k, v in values.items()}))")
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    namespace = {}
    exec(VALUES, namespace)  # noqa: S102 - the constant above
    assert ast.literal_eval(ours) == {k: dask_sizeof.sizeof(v) for k, v in namespace["values"].items()}


def test_a_pandas_frame_counts_its_columns():
    pd = need("pandas")
    df = pd.DataFrame({"a": range(1_000), "b": [float(i) for i in range(1_000)]})
    assert sizeof(df) >= 16_000


def test_an_object_that_refuses_its_size_counts_zero():
    class Broken:
        @property
        def nbytes(self):
            raise RuntimeError("no")

        def __sizeof__(self):
            raise RuntimeError("no")

    assert sizeof(Broken()) == 0


def test_a_tasks_receipt_reports_the_deep_size(client):
    f = client.submit(floats, 100_000, pure=False)
    assert f.result() == floats(100_000)
    assert f._state.load_record().nbytes == sizeof(floats(100_000))
