"""Serve the dashboard from the client's process: uvicorn in a named thread.

``Client(dashboard_address=":8787")`` starts one :class:`DashboardServer`; it
listens on 127.0.0.1 unless the address names a host, moves to the next free
port when the asked-for one is taken (as Dask does), and is stopped and joined
by ``Client.close()``.  The server thread holds the client's event log, never
the client itself.

Trust (see :mod:`raydask.dashboard.app` for the checks themselves): on
loopback, requests must name a loopback host in their ``Host`` header (DNS
rebinding); bound to any other address, the server logs a warning and, unless
``token=False``, every request needs the token its link carries.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import secrets
import socket
import threading

__all__ = ["DashboardServer", "host_names", "is_loopback", "parse_address"]

logger = logging.getLogger("raydask.dashboard")


_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")  # safe unquoted in a URL and a cookie
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?")


def parse_address(dashboard_address) -> tuple[str, int]:
    """``":8787"``, ``"8787"``, ``8787``, ``"host:8787"``, ``"[::1]:8787"`` -> ``(host, port)``.

    An empty host means 127.0.0.1; ``http://`` or ``tcp://`` in front is allowed;
    port 0 means "any free port".  Starts nothing and imports nothing heavy, so
    the Client can check its ``dashboard_address`` before it starts a cluster.

    Raises:
        TypeError: ``dashboard_address`` is neither a string nor an int.
        ValueError: it does not look like one of the above, or its port is outside 0..65535.
    """
    value = dashboard_address
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"dashboard_address must be a string like ':8787' or a port number, got {value!r}")
    if isinstance(value, int):
        host, port = "", value
    else:
        text = value.strip()
        for scheme in ("http://", "tcp://"):
            if text.lower().startswith(scheme):
                text = text[len(scheme):]
        if text.startswith("["):  # [::1]:8787
            inside, sep, port_text = text[1:].partition("]:")
            host = inside
            if not sep or not _is_ipv6(inside):
                raise ValueError(f"dashboard_address must look like '[::1]:8787' for an IPv6 host, got {value!r}")
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                host, port_text = "", text
            if host and not (_HOST_NAME.fullmatch(host) or _is_ipv4(host)):
                raise ValueError(f"dashboard_address must look like ':8787' or 'host:port' "
                                 f"(an IPv6 host in brackets), got {value!r}")
        if not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"dashboard_address must look like ':8787' or 'host:port', got {value!r}")
        port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"dashboard port must be between 0 and 65535, got {value!r}")
    return host or "127.0.0.1", port


def _is_ipv4(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) reaches only this machine."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def host_names(host: str) -> set[str]:
    """The ``Host`` header names (without port) that reach a server bound to ``host`` on this machine.

    Bound to loopback: the bound name plus ``localhost``, ``127.0.0.1`` and
    ``[::1]``.  Bound elsewhere: also the machine's host name, its fully
    qualified name, the addresses they resolve to, and the bound address
    (for ``0.0.0.0``/``::``, every such address).
    """
    names = {host, "localhost", "127.0.0.1", "::1"}
    if not is_loopback(host):
        machine = {socket.gethostname(), socket.getfqdn()}
        names |= machine
        for name in machine:
            try:
                names |= {i[4][0].split("%")[0] for i in socket.getaddrinfo(name, None)}
            except OSError:
                pass
        names -= {"0.0.0.0", "::"}
    return {normal_host(n) for n in names if n}


def normal_host(name: str) -> str:
    """A host name as the ``Host`` header carries it: lower case, IPv6 in brackets, no trailing dot."""
    name = name.strip().lower().rstrip(".")
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return name


def bind(host: str, port: int, tries: int = 100) -> socket.socket:
    """A listening socket on ``port``, or the next free port after it."""
    last = None
    for candidate in ([port] if port == 0 else range(port, min(port + tries, 65536))):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        if os.name == "posix":
            # as uvicorn does: a client restarted on the same port gets it back even while the
            # old connections linger in TIME_WAIT, so a page left open finds the new one there
            # (on Windows the option would let two servers share the port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
        allowed_hosts: names the ``Host`` header may carry besides the default
            ones (see :func:`host_names`); ``["*"]`` allows any.  Any port is fine.
        token: None: generate one (``secrets.token_urlsafe``) when bound to a
            non-loopback address, none on loopback; False: never; True: always
            generate one; a string: this token.  With a token every request needs
            ``?token=`` (answered with a cookie, so the page's own requests work) or
            that cookie.

    Raises:
        TypeError, ValueError: for a bad ``address``, ``allowed_hosts`` or ``token``.
    """

    def __init__(self, client, address=":8787", max_graph_nodes=20_000, source=None, publish=True,
                 allowed_hosts=None, token=None):
        self.host, self._asked_port = parse_address(address)
        self.local = is_loopback(self.host)
        self.token = _make_token(token, self.local)
        self.allowed_hosts = _allowed(allowed_hosts, self.host, self.local, self.token)
        if not self.local:
            logger.warning("the dashboard listens on %r, which other machines can reach; %s", self.host,
                           "its link carries the token every request needs" if self.token else
                           "token=False: anyone who can reach the port can read every task key and error")
        self._publisher = None
        if source is None:
            from .source import ClientSource

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
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        query = f"?token={self.token}" if self.token else ""
        return f"http://{host}:{self.port}/status{query}"

    def start(self) -> None:
        """Bind the port and start serving (returns at once; the socket already listens)."""
        if self._thread is not None:
            raise RuntimeError("the dashboard server is already started")
        import uvicorn

        from .app import create_app

        sock = bind(self.host, self._asked_port)
        self.port = sock.getsockname()[1]
        if self._asked_port and self.port != self._asked_port:
            logger.info("port %d is in use; the dashboard is on port %d", self._asked_port, self.port)
        app = create_app(self.source, allowed_hosts=self.allowed_hosts, token=self.token,
                         cookie=f"raydask-dashboard-{self.port}")
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1, server_header=False)
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
        link = self.link
        if link and self.token:  # a repr ends up in logs: keep the token out of it
            link = link.replace(self.token, "...")
        return f"<DashboardServer {link or 'stopped'}>"


def _make_token(token, local: bool) -> str | None:
    if token is None:
        token = not local
    if token is True:
        return secrets.token_urlsafe(32)
    if token is False:
        return None
    if not isinstance(token, str):
        raise TypeError(f"token must be None, True, False or a string, got {token!r}")
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"token must be a non-empty string of letters, digits, '-', '_', '.' or '~', got {token!r}")
    return token


def _allowed(allowed_hosts, host: str, local: bool, token) -> frozenset[str] | None:
    """The ``Host`` names to accept, or None for any.

    Bound off loopback with a token, any name is accepted, as Jupyter does: a
    DNS-rebinding page has neither the token nor the cookie (cookies belong to
    the name they were set for), and the machine may be reached by names it
    cannot know (a load balancer, a tunnel, a DNS alias).
    """
    if allowed_hosts is not None:
        if not isinstance(allowed_hosts, (list, tuple, set, frozenset)) or not all(
                isinstance(h, str) for h in allowed_hosts):
            raise TypeError(f"allowed_hosts must be a list of host names, got {allowed_hosts!r}")
        if "*" in allowed_hosts:
            return None
    if not local and token:
        return None
    return frozenset(host_names(host) | {normal_host(h) for h in allowed_hosts or ()})


def _serve(server, sock):
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
