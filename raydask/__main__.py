"""The ``raydask`` command: ``dashboard``, and ``scheduler`` / ``worker`` as in ``dask scheduler`` / ``dask worker``.

``raydask scheduler`` runs a Ray head node without CPUs and ``raydask worker
ADDRESS [--nthreads N] [--resources "GPU=1 FOO=2"]`` a Ray node joined to it
(:mod:`raydask.servers`), in the foreground: Ctrl-C or SIGTERM stops the node
and the command, and a node that dies under it ends the command with code 1.

``raydask dashboard --address <ray address>``: the dashboard of every raydask client on a cluster.

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
import re
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
    sched = commands.add_parser("scheduler", help="run a Ray head node that runs no tasks (Dask's scheduler) "
                                                  "until Ctrl-C or SIGTERM")
    sched.add_argument("--host", default=None, help="the IP address of the head (default: Ray's choice)")
    sched.add_argument("--port", type=int, default=6379,
                       help="the GCS port workers and clients connect to (default 6379, as `ray start`; 0: any free port)")
    work = commands.add_parser("worker", help="run a Ray node joined to a scheduler (Dask's worker) "
                                              "until Ctrl-C or SIGTERM")
    work.add_argument("address", help="the scheduler's address: host:port of the cluster's GCS")
    work.add_argument("--nthreads", type=int, default=None, help="tasks run at once: the node's CPUs (default: all)")
    work.add_argument("--resources", default=None,
                      help='resources of the node, e.g. "GPU=1 FOO=2" (default: Dask\'s distributed.worker.resources)')
    work.add_argument("--memory-limit", default="auto", help="the node's memory: bytes, '4GiB' or 'auto'")
    work.add_argument("--name", default=None, help="the worker's name (default: its address)")
    work.add_argument("--host", default=None, help="the IP address the node uses (default: Ray's choice)")
    return parser


def parse_resources(text: str) -> dict:
    """``"GPU=1 FOO=2"`` (or comma-separated, as ``dask worker --resources``) -> ``{"GPU": 1.0, "FOO": 2.0}``."""
    out = {}
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        name, sep, amount = item.partition("=")
        try:
            out[name] = float(amount)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"--resources must look like 'GPU=1 FOO=2', got {text!r}")
    return out


def serve(server, stop: threading.Event, label: str, on_started=lambda: None, check_every: float = 1.0) -> int:
    """Start ``server`` (a Scheduler or Worker), print its address, run until ``stop``; then close it.

    ``on_started`` runs once the node is up (main() reinstalls its signal
    handlers there: starting a node on the main thread installs Ray's own).
    Returns 0 after ``stop``, 1 when the node's raylet died first (its
    scheduler went away, or someone killed it).
    """
    server.start()
    on_started()
    try:
        print(f"raydask {label} at: {server.address}", flush=True)
        if label == "scheduler":
            print(f"join with: raydask worker {server.address}   or   Client({server.address!r})", flush=True)
        while not stop.wait(check_every):
            if not server.alive():
                print(f"raydask {label}: its Ray node stopped", file=sys.stderr, flush=True)
                return 1
        return 0
    finally:
        server.close()


def _server(args):
    from .servers import Scheduler, Worker

    if args.command == "scheduler":
        return Scheduler(host=args.host, port=args.port)
    resources = None if args.resources is None else parse_resources(args.resources)
    return Worker(args.address, nthreads=args.nthreads, resources=resources, memory_limit=args.memory_limit,
                  name=args.name, host=args.host)


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
    if args.command in ("scheduler", "worker"):
        stop = threading.Event()

        def handle_signals():  # Ctrl-C and SIGTERM stop the node, then the command
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())

        handle_signals()
        try:
            server = _server(args)
        except (TypeError, ValueError) as exc:
            print(f"raydask {args.command}: {exc}", file=sys.stderr, flush=True)
            return 1
        return serve(server, stop, args.command, on_started=handle_signals)
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
