"""``konsul``: start one node from its ``KONSUL_*`` environment.

``konsul restore FILE`` instead founds a new cluster from a backup in the (empty) data
directory that environment names, and exits: start the node afterwards (docs/backup.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys

from konsul import config, logs
from konsul.logs import event

log = logging.getLogger("konsul")

# The cyclic collector's first threshold (700 more container objects made than freed) is
# crossed again and again by the objects of the requests in flight alone: under 64 concurrent
# writes a leader ran about 30 young collections a second, each rescanning some 2,000 live
# request objects, 5-10 us of CPU per write (5-8 % of it). At 10,000 a collection waits for
# real growth (new keys, new connections); reference counting still frees at once everything
# that is not in a cycle.
GC_THRESHOLDS = (10_000, 10, 10)


def settle_gc() -> None:
    """Once the node serves: what start-up built (modules, the app, the recovered store and
    log) is frozen, so full collections stop rescanning it, and the thresholds are raised. A
    frozen cycle that later becomes garbage would stay until exit; what start-up builds and the
    node later drops (rows, log entries) holds no cycles, and reference counting frees it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(settings: config.Settings) -> None:
    # Imported here so that a configuration error is reported before heavy imports.
    from konsul.api import AppRunner, Site, create_app
    from konsul.node import Node

    node = Node(settings)
    await node.start()
    # konsul.api.AppRunner: even what aiohttp answers before any middleware runs is JSON.
    runner = AppRunner(create_app(node), access_log=None, handle_signals=False)
    await runner.setup()
    tls = node.tls.http_server if node.tls is not None else None
    site = Site(runner, settings.host, settings.port, ssl_context=tls)
    await site.start()
    settle_gc()
    event(
        log,
        logging.INFO,
        "konsul started",
        node_id=node.node_id,
        http=f"{settings.http_scheme}://{settings.host}:{settings.port}",
        clustered=settings.raft.enabled,
        data_dir=settings.data_dir,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    event(log, logging.INFO, "konsul stopping")
    await node.before_shutdown()
    await runner.cleanup()
    await node.stop()


def main() -> None:
    try:
        settings = config.load()
    except config.ConfigError as exc:
        print(f"konsul: {exc}", file=sys.stderr)
        sys.exit(2)
    if sys.argv[1:2] == ["restore"]:
        sys.exit(restore(sys.argv[2:], settings))
    if sys.argv[1:]:
        print("usage: konsul            start a node (settings from KONSUL_* variables)\n"
              "       konsul restore FILE   found a cluster from a backup in the empty data "
              "directory", file=sys.stderr)
        sys.exit(2)
    logs.setup(settings.log_level, settings.raft.log_level)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency on Linux
        runner = asyncio.run
    else:
        runner = uvloop.run
    from konsul.tls import TlsError

    try:
        with contextlib.suppress(KeyboardInterrupt):
            runner(serve(settings))
    except TlsError as exc:  # unusable certificate files: a configuration error too
        print(f"konsul: {exc}", file=sys.stderr)
        sys.exit(2)


def restore(args: list[str], settings: config.Settings) -> int:
    """``konsul restore FILE``: offline restore into this node's empty data directory."""
    from konsul.backup.seed import restore_offline
    from konsul.errors import KonsulError

    if len(args) != 1:
        print("usage: konsul restore FILE", file=sys.stderr)
        return 2
    try:
        seeded, checked = restore_offline(args[0], settings)
    except (KonsulError, OSError) as exc:
        print(f"konsul: restore: {exc}", file=sys.stderr)
        return 1
    print(f"Restored {args[0]} into {settings.raft.data_dir}: index {seeded.index}, "
          f"{checked.kv_count} key(s), {checked.service_count} service(s). New cluster "
          f"{seeded.cluster_id}, this node its only voter: start it, then join the others.")
    return 0


if __name__ == "__main__":
    main()
