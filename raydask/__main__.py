"""``raydask dashboard --address <ray address>``: the dashboard of every raydask client on a cluster.

Clients with a dashboard publish their task events to named actors
(:mod:`raydask.dashboard.publish`); this command joins the Ray cluster as a
separate driver, mirrors those events and serves the same pages.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading


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
    return parser


def dashboard(address: str, dashboard_address: str = ":8787", max_graph_nodes: int = 20_000,
              stop: threading.Event | None = None) -> None:
    """Serve the cluster-wide dashboard until ``stop`` is set (or Ctrl-C)."""
    import ray

    from .dashboard.publish import ClusterLog
    from .dashboard.server import DashboardServer
    from .dashboard.source import ClientSource

    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
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


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dashboard":
        dashboard(args.address, args.dashboard_address, args.max_graph_nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
