"""``konsul-operator``: run the operator.

    konsul-operator --namespace konsul            # watch one namespace (Role RBAC)
    konsul-operator --all-namespaces              # cluster-wide (ClusterRole RBAC)

It always runs standalone (no kopf peering): deploy exactly one replica with
``strategy: Recreate``. ``/metrics`` is served on ``--metrics-port`` and kopf's liveness probe
on ``--liveness-port`` (``/healthz``).
"""

from __future__ import annotations

import argparse
import logging

import kopf
from konsul_operator import handlers, metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="konsul-operator", description=__doc__.split("\n")[0])
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[],
                       help="namespace to watch (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true",
                       help="watch every namespace")
    parser.add_argument("--metrics-port", type=int, default=8080)
    parser.add_argument("--liveness-port", type=int, default=8081)
    parser.add_argument("--bind", default="0.0.0.0", help="address for metrics and liveness")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    assert handlers.on_change is not None  # the import registers the handlers
    metrics.serve(args.metrics_port, args.bind)
    namespaces = args.namespace or (() if args.all_namespaces else ("default",))
    kopf.run(
        standalone=True,
        clusterwide=args.all_namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{args.bind}:{args.liveness_port}/healthz",
        # The periodic reconcile (handlers.tick) lists the clusters where kopf watches them.
        memo=kopf.Memo(namespaces=list(namespaces)),
    )


if __name__ == "__main__":
    main()
