"""The dashboard's web app: three pages and a read-only JSON API.

``create_app(source)`` builds a FastAPI app over a
:class:`~raydask.dashboard.source.ClientSource`.  Pages are the static files of
the top-level ``dashboard/`` folder, installed as the package
``raydask.dashboard.static``; Plotly's JavaScript comes from the installed
``plotly`` package, so a page loads nothing from the internet.

Every endpoint is a GET that reads; there is no endpoint that writes or runs code.
Still, task keys, errors and worker addresses are not for every web page to read,
so one ASGI middleware (:class:`Guard`) sits in front of every route:

- it refuses a ``Host`` header the server does not answer to (400), so that a page
  on another site cannot reach the dashboard through DNS rebinding;
- with a token, it refuses a request that carries neither ``?token=`` nor the
  cookie a right ``?token=`` sets (403);
- it adds the security headers (:data:`SECURITY_HEADERS`) to every response,
  refusals included.

Cursors: every reply with a ``cursor`` also carries ``session``, an id of this
app.  A ``since`` this app never issued (larger than its cursor) or a ``session=``
of another app (a page left open across a client restart on the same port) is
answered as ``since=0`` would be, with ``"reset": true``: the page drops what it
drew and starts over.
"""

from __future__ import annotations

import hmac
import importlib.util
import logging
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl

__all__ = ["CSP", "PLOTLY_CSP", "SECURITY_HEADERS", "Guard", "create_app", "static_dir"]

logger = logging.getLogger("raydask.dashboard")

PAGES = {"/status": "status.html", "/graph": "graph.html", "/workers": "workers.html"}
ASSETS = ("dashboard.js", "dashboard.css", "status.js", "graph.js", "graph-first.js", "workers.js")

#: Only the dashboard's own files may run, style, load or be fetched.  Measured in
#: headless Chromium (tests/test_dashboard_browser.py, plotly.js 4.1 from the plotly package):
#: - style-src needs 'unsafe-inline': Plotly adds a <style> element as it draws, and the
#:   pages size their plots and bars with style="" attributes; styles run no code;
#: - the default needs nothing else (no inline script, no eval, no data: images).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

#: The pages that draw with Plotly also need 'unsafe-eval': its WebGL traces (scattergl,
#: for the task stream and the graph) compile their draw calls with ``Function(...)``
#: (regl); without it Plotly shows "WebGL is not supported by your browser".  Plotly's
#: "strict" bundle avoids this but is not in the plotly Python package.
PLOTLY_CSP = CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-eval'")
PLOTLY_PAGES = ("status.html", "graph.html")

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CSP.encode()),  # unless the route set its own
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def static_dir() -> Path:
    """The folder holding the page files, wherever raydask is installed.

    Imported from a source checkout (a ``pyproject.toml`` beside the package),
    that checkout's top-level ``dashboard/`` folder: an editable install maps
    ``raydask.dashboard.static`` to the folder of the checkout it was made from,
    which is another one when this code runs from a git worktree.
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "dashboard" / "status.html").is_file():
        return checkout / "dashboard"
    spec = importlib.util.find_spec("raydask.dashboard.static")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return checkout / "dashboard"


def plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the dashboard needs the 'plotly' package for its JavaScript; pip install plotly")
    return Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"


def create_app(source, allowed_hosts=None, token=None, cookie="raydask-dashboard"):
    """A FastAPI app serving the pages and the JSON API for ``source``.

    Args:
        source: a :class:`~raydask.dashboard.source.ClientSource`.
        allowed_hosts: the ``Host`` names (lower case, IPv6 in brackets, no port)
            to answer; None answers any.
        token: if set, the token every request must carry (``?token=`` or the cookie).
        cookie: the name of the token's cookie (browsers share cookies across
            ports, so the server puts its port in it).
    """
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

    app = FastAPI(title="raydask dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, allowed_hosts=allowed_hosts, token=token, cookie=cookie)
    folder = static_dir()
    plotly_path = plotly_js()
    long_cache = {"Cache-Control": "public, max-age=86400"}
    session = secrets.token_hex(8)

    def cursor_param(since: int):
        if since < 0:
            raise HTTPException(status_code=400, detail=f"since must be a non-negative cursor, got {since!r}")
        return since

    def delta(read, since: int, page_session: str):
        """``read(since)``, or the whole picture with ``reset`` if the page's cursor is not ours."""
        reply = read(since)
        if since > reply["cursor"] or (page_session and page_session != session):
            reply = read(0)
            reply["reset"] = True
        reply["session"] = session
        return JSONResponse(reply)

    @app.get("/", include_in_schema=False)
    def index():
        return RedirectResponse("/status")

    for route, filename in PAGES.items():
        csp = PLOTLY_CSP if filename in PLOTLY_PAGES else CSP
        app.add_api_route(route, _file_endpoint(folder / filename, FileResponse, {"Content-Security-Policy": csp}),
                          methods=["GET"], include_in_schema=False)

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
    def api_graph(since: int = Query(0), view: str = Query("auto"), session: str = Query("")):
        since = cursor_param(since)
        if view not in ("auto", "tasks", "prefix"):
            raise HTTPException(status_code=400, detail=f"view must be 'auto', 'tasks' or 'prefix', got {view!r}")
        if view == "prefix":
            return delta(lambda _: source.prefix_graph(), since, session)
        return delta(source.graph, since, session)

    @app.get("/api/tasks")
    def api_tasks(since: int = Query(0), session: str = Query("")):
        return delta(source.tasks, cursor_param(since), session)

    @app.get("/api/progress")
    def api_progress():
        return JSONResponse(source.progress())

    @app.get("/api/workers")
    def api_workers():
        return JSONResponse(source.worker_rows())

    return app


def _file_endpoint(path, response_type, headers):
    def page():
        return response_type(path, media_type="text/html", headers=headers)

    page.__name__ = f"page_{path.stem}"
    return page


class Guard:
    """ASGI middleware: the ``Host`` check, the token check and the security headers.

    Starlette's ``TrustedHostMiddleware`` is not used: it cuts the port at the
    first ``:``, which breaks ``[::1]:8787``, and its refusal does not say which
    host was refused.
    """

    def __init__(self, app, allowed_hosts=None, token=None, cookie="raydask-dashboard"):
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else frozenset(allowed_hosts)
        self.token = token.encode() if token else None
        self.cookie = cookie

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # the dashboard has none
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                own = {name.lower() for name, _ in headers}
                message["headers"] = headers + [h for h in SECURITY_HEADERS if h[0] not in own] + extra
            await send(message)

        extra = []
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if self.allowed_hosts is not None and _host_name(host) not in self.allowed_hosts:
            await _refuse(send_with_headers, 400, f"host {host!r} is not allowed for this dashboard "
                          "(DNS rebinding protection); open it by the link the client printed, "
                          "or add the name to DashboardServer(allowed_hosts=[...])")
            return
        if self.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.get("token", "").encode("latin-1")
            if given and hmac.compare_digest(given, self.token):
                extra.append((b"set-cookie", f"{self.cookie}={self.token.decode()}; Path=/; HttpOnly; "
                                             "SameSite=Strict".encode()))
            elif not hmac.compare_digest(_cookie(headers, self.cookie).encode("latin-1"), self.token):
                await _refuse(send_with_headers, 403, "this dashboard needs its token: open the link the "
                              "client printed (it ends in ?token=...)")
                return
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # answered here rather than by Starlette's outer error handler, so that a 500
            # carries the security headers too
            if started:
                raise
            logger.exception("the dashboard failed to answer %s", scope.get("path"))
            await _refuse(send_with_headers, 500, "the dashboard failed to answer; the client's log says why")


def _host_name(host: str) -> str:
    """``Host`` header -> the name without port, lower case, IPv6 in brackets, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end > 0 else host
    return host.rpartition(":")[0].rstrip(".") if ":" in host else host.rstrip(".")


def _cookie(headers: dict, name: str) -> str:
    jar = SimpleCookie()
    try:
        jar.load(headers.get(b"cookie", b"").decode("latin-1"))
    except Exception:  # noqa: BLE001 - a malformed Cookie header is no token
        return ""
    morsel = jar.get(name)
    return morsel.value if morsel is not None else ""


async def _refuse(send, status: int, message: str) -> None:
    body = (message + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
