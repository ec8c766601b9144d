"""The dashboard's web app: three pages and a read-only JSON API.

``create_app(source)`` builds a FastAPI app over a
:class:`~raydask.dashboard.source.ClientSource`.  Pages are the static files of
the top-level ``dashboard/`` folder, installed as the package
``raydask.dashboard.static``; Plotly's JavaScript comes from the installed
``plotly`` package, so a page loads nothing from the internet.

Every endpoint is a GET that reads; there is no endpoint that writes or runs code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["create_app", "static_dir"]

PAGES = {"/status": "status.html", "/graph": "graph.html", "/workers": "workers.html"}
ASSETS = ("dashboard.js", "dashboard.css", "status.js", "graph.js", "workers.js")


def static_dir() -> Path:
    """The folder holding the page files, wherever raydask is installed."""
    spec = importlib.util.find_spec("raydask.dashboard.static")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    # a source checkout run without installing: the top-level dashboard/ folder
    return Path(__file__).resolve().parents[2] / "dashboard"


def plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the dashboard needs the 'plotly' package for its JavaScript; pip install plotly")
    return Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"


def create_app(source):
    """A FastAPI app serving the pages and the JSON API for ``source``."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

    app = FastAPI(title="raydask dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    folder = static_dir()
    plotly_path = plotly_js()
    long_cache = {"Cache-Control": "public, max-age=86400"}

    def cursor_param(since: int):
        if since < 0:
            raise HTTPException(status_code=400, detail=f"since must be a non-negative cursor, got {since!r}")
        return since

    @app.get("/", include_in_schema=False)
    def index():
        return RedirectResponse("/status")

    for route, filename in PAGES.items():
        app.add_api_route(route, _file_endpoint(folder / filename, FileResponse), methods=["GET"],
                          include_in_schema=False)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str):
        if name == "plotly.min.js":
            return FileResponse(plotly_path, media_type="text/javascript", headers=long_cache)
        if name not in ASSETS:
            raise HTTPException(status_code=404, detail=f"no dashboard file named {name!r}")
        return FileResponse(folder / name)

    @app.get("/api/graph")
    def api_graph(since: int = Query(0), view: str = Query("auto")):
        since = cursor_param(since)
        if view not in ("auto", "tasks", "prefix"):
            raise HTTPException(status_code=400, detail=f"view must be 'auto', 'tasks' or 'prefix', got {view!r}")
        if view == "prefix":
            return JSONResponse(source.prefix_graph())
        return JSONResponse(source.graph(since))

    @app.get("/api/tasks")
    def api_tasks(since: int = Query(0)):
        return JSONResponse(source.tasks(cursor_param(since)))

    @app.get("/api/progress")
    def api_progress():
        return JSONResponse(source.progress())

    @app.get("/api/workers")
    def api_workers():
        return JSONResponse(source.worker_rows())

    return app


def _file_endpoint(path, response_type):
    def page():
        return response_type(path, media_type="text/html")

    page.__name__ = f"page_{path.stem}"
    return page
