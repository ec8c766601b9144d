"""The wheel users install: built with ``pip wheel``, it ships the dashboard and imports cleanly.

Marked ``packaging``: it builds a wheel of this source tree (copied to a
temporary folder, so that no ``build/`` lands in the checkout) with pip's build
isolation, which fetches setuptools from the package index (about 20-40 s with
pip's cache warm).  Then it imports the *unpacked wheel* -- not the checkout --
under ``-W error::DeprecationWarning`` in a fresh interpreter.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src") / "raydask"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "test-artifacts"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("raydask-*.whl")
    return built


def test_wheel_ships_the_dashboard_pages(wheel):
    from raydask.dashboard.app import ASSETS, PAGES

    names = set(zipfile.ZipFile(wheel).namelist())
    for page in (*PAGES.values(), *ASSETS):
        assert f"raydask/dashboard/static/{page}" in names, page
    assert "raydask/raycompat.py" in names
    assert not any(n.startswith(("tests/", "dashboard/")) for n in names)


def test_wheel_metadata_declares_what_raydask_imports(wheel):
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(zf.read(meta_name))
    requires = meta.get_all("Requires-Dist")
    base = {r.split(";")[0].strip() for r in requires if "extra ==" not in r}
    names = {r.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in base}
    # every third-party top-level import in raydask/ (IPython/ipywidgets: the notebook extra)
    assert {"ray", "cloudpickle", "tblib", "fastapi", "uvicorn", "plotly", "psutil"} <= names
    ray_req = next(r for r in base if r.startswith("ray"))
    assert ray_req.startswith("ray[client]>=") and "==" not in ray_req and "<" not in ray_req
    assert meta["License-Expression"] == "BSD-3-Clause"


def test_wheel_imports_without_deprecation_warnings(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import raydask, raydask.dashboard.app as app, raydask.raycompat as rc; "
            "print(raydask.__file__); print(app.static_dir()); print(rc.direct_submission_problem())")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    file, static, problem = proc.stdout.split("\n")[:3]
    assert file.startswith(str(site)) and static.startswith(str(site))
    assert (Path(static) / "status.html").is_file()
    assert problem == "None"
