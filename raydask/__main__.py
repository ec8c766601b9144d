"""``raydask dashboard --address <ray address>``: the dashboard of every raydask client on a cluster.

Clients with a dashboard publish their task events to named actors
(:mod:`raydask.dashboard.publish`); this command joins the Ray cluster as a
separate driver, mirrors those events and serves the same pages.

Joining gives up after ``--timeout`` seconds: ``ray.init`` alone keeps retrying
an address where no GCS answers for a minute or more.  A plain TCP connect to
the address comes first (retried until the deadline, so a cluster that is
still starting is found), then ``ray.init`` runs in a thread joined with the
rest of the deadline, for an address that accepts connections but is no GCS.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
import time


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raydask", description="raydask command-line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    dash = commands.add_parser("dashboard", help="serve the dashboard of every raydask client on a Ray cluster")
    dash.add_argument("--address", required=True,
                      help="the Ray cluster's address (host:port of its GCS, or 'auto')")
    dash.add_argument("--dashboard-address", default=":8787",
                      help="where to listen: ':8787' (127.0.0.1), 'host:port' (default :8787; next free port if taken)")
    dash.add_argument("--max-graph-nodes", type=int, default=20_000,
                      help="past this many tasks the graph shows key prefixes (default 20000)")
    dash.add_argument("--timeout", type=float, default=30.0,
                      help="give up when the cluster does not answer within this many seconds (default 30)")
    return parser


def dashboard(address: str, dashboard_address: str = ":8787", max_graph_nodes: int = 20_000,
              stop: threading.Event | None = None, timeout: float = 30.0) -> None:
    """Serve the cluster-wide dashboard until ``stop`` is set (or Ctrl-C).

    Raises:
        TimeoutError: no Ray cluster let this process join at ``address`` within ``timeout`` seconds.
        ValueError: ``address`` or ``dashboard_address`` is malformed.
    """
    import ray

    from .dashboard.publish import ClusterLog
    from .dashboard.server import DashboardServer, parse_address
    from .dashboard.source import ClientSource

    parse_address(dashboard_address)  # a typo fails now, not after joining the cluster
    deadline = time.monotonic() + timeout
    if address != "auto":
        probe(address, deadline, timeout)
    _join(ray, address, deadline, timeout)
    try:
        source = ClientSource(ClusterLog(), max_graph_nodes=max_graph_nodes, name=f"cluster {address}")
        server = DashboardServer(None, dashboard_address, source=source)
        server.start()
        print(f"raydask dashboard for {address}: {server.link}", flush=True)
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    finally:
        ray.shutdown()


def gcs_host_port(address: str) -> tuple[str, int]:
    """``"host:port"``, ``"ray://host:port"``, ``"[::1]:port"`` -> ``(host, port)``."""
    text = address.strip()
    for scheme in ("ray://", "tcp://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"--address must be 'host:port' of the cluster's GCS (or 'auto'), got {address!r}")
    return host, int(port)


def probe(address: str, deadline: float, timeout: float) -> None:
    """Return once something accepts TCP connections at ``address``; TimeoutError at ``deadline``."""
    host, port = gcs_host_port(address)
    while True:
        left = deadline - time.monotonic()
        try:
            socket.create_connection((host, port), timeout=max(min(left, 5.0), 0.1)).close()
            return
        except OSError as exc:
            if left <= 0:
                reason = exc.strerror or type(exc).__name__
                raise TimeoutError(f"no Ray cluster answers at {address!r} ({reason.lower()}) "
                                   f"within {timeout:g} s") from None
        time.sleep(min(0.25, max(deadline - time.monotonic(), 0)))  # a cluster may be starting: retry


def _join(ray, address: str, deadline: float, timeout: float) -> None:
    """``ray.init(address)`` within the deadline (in a thread: ray.init itself has no timeout)."""
    outcome = {}

    def run():
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    # off the main thread Ray skips its SIGTERM handler and says so; main() installs one
    worker_log = logging.getLogger("ray._private.worker")
    quiet = _DropMessage("SIGTERM handler is not set")
    worker_log.addFilter(quiet)
    thread = threading.Thread(target=run, name="raydask-ray-init", daemon=True)
    try:
        thread.start()
        thread.join(max(deadline - time.monotonic(), 1.0))
    finally:
        worker_log.removeFilter(quiet)
    if thread.is_alive():
        raise TimeoutError(f"the Ray cluster at {address!r} did not let this process join within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]


class _DropMessage(logging.Filter):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def filter(self, record):
        return self.text not in record.getMessage()


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dashboard":
        stop = threading.Event()
        # SIGTERM stops serving as Ctrl-C does (Ray's own handler is not installed: see _join)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            dashboard(args.address, args.dashboard_address, args.max_graph_nodes, stop=stop, timeout=args.timeout)
        except (TimeoutError, ConnectionError, ValueError, TypeError) as exc:
            print(f"raydask dashboard: {exc}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
