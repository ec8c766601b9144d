"""Serve the dashboard from the client's process: uvicorn in a named thread.

``Client(dashboard_address=":8787")`` starts one :class:`DashboardServer`; it
listens on 127.0.0.1 unless the address names a host, moves to the next free
port when the asked-for one is taken (as Dask does), and is stopped and joined
by ``Client.close()``.  The server thread holds the client's event log, never
the client itself.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading

from .app import create_app
from .source import ClientSource

__all__ = ["DashboardServer", "parse_address"]

logger = logging.getLogger("raydask.dashboard")


def parse_address(address) -> tuple[str, int]:
    """``":8787"``, ``"8787"``, ``8787``, ``"0.0.0.0:8787"`` -> ``(host, port)``.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(address, int) and not isinstance(address, bool):
        host, port = "", address
    elif isinstance(address, str):
        text = address.strip()
        for scheme in ("http://", "tcp://"):
            if text.startswith(scheme):
                text = text[len(scheme):]
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = "", text
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"dashboard_address must look like ':8787' or 'host:port', got {address!r}") from None
    else:
        raise ValueError(f"dashboard_address must be a string like ':8787' or a port number, got {address!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"dashboard port must be between 0 and 65535, got {address!r}")
    return host or "127.0.0.1", port


def bind(host: str, port: int, tries: int = 100) -> socket.socket:
    """A listening socket on ``port``, or the next free port after it."""
    last = None
    for candidate in ([port] if port == 0 else range(port, min(port + tries, 65536))):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((host, candidate))
            sock.listen(128)
            sock.set_inheritable(True)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            last = exc
    raise OSError(f"no free port for the dashboard from {port} to {port + tries - 1} on {host!r}") from last


class DashboardServer:
    """The dashboard of one client, served by uvicorn on a thread of its own.

    Args:
        client: a Client with an event log (``client._events``).
        address: ``":8787"`` (127.0.0.1), ``"host:port"``, or a port; port 0 picks a free one.
        max_graph_nodes: past this many tasks the graph page shows key prefixes.
        source: what to show, instead of ``client``'s events (e.g. a
            :class:`~raydask.dashboard.source.ClientSource` over a recorded log).
        publish: also send the client's events to a named actor, so that
            ``raydask dashboard --address`` in another process can show them.
    """

    def __init__(self, client, address=":8787", max_graph_nodes=20_000, source=None, publish=True):
        self.host, self._asked_port = parse_address(address)
        self._publisher = None
        if source is None:
            events = getattr(client, "_events", None)
            if events is None:
                raise ValueError(f"client {client!r} records no events; create it with a dashboard_address")
            source = ClientSource(events, max_graph_nodes=max_graph_nodes, name=getattr(client, "id", "raydask"))
            if publish:
                from .publish import Publisher

                self._publisher = Publisher(events, client.id)
        self.source = source
        self.port = None
        self._server = None
        self._thread = None

    @property
    def link(self) -> str | None:
        if self.port is None:
            return None
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/status"

    def start(self) -> None:
        """Bind the port and start serving (returns at once; the socket already listens)."""
        if self._thread is not None:
            raise RuntimeError("the dashboard server is already started")
        import uvicorn

        sock = bind(self.host, self._asked_port)
        self.port = sock.getsockname()[1]
        if self._asked_port and self.port != self._asked_port:
            logger.info("port %d is in use; the dashboard is on port %d", self._asked_port, self.port)
        config = uvicorn.Config(create_app(self.source), log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=_serve, args=(self._server, sock),
                                        name=f"raydask-dashboard-{self.port}", daemon=True)
        self._thread.start()
        if self._publisher is not None:
            self._publisher.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and publishing; join the threads."""
        if self._publisher is not None:
            self._publisher.stop(timeout)
            self._publisher = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = self._thread = None

    def __repr__(self):
        return f"<DashboardServer {self.link or 'stopped'}>"


def _serve(server, sock):
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
