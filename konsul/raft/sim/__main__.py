"""``python -m konsul.raft.sim``: run seeds, replay one, or benchmark the core.

    python -m konsul.raft.sim --seeds 1000 --nodes 3          # seeds 0..999
    python -m konsul.raft.sim --seeds 1000 --start 5000 --nodes 5
    python -m konsul.raft.sim --seed 1234 --nodes 5 --trace   # replay one seed, print all events
    python -m konsul.raft.sim --bench

Prints ``seeds=N violations=V elections=E commits=C max_recovery_ms=R``; on a violation also the
seed, the invariant and the last events, and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time

from konsul.raft.sim.cluster import RunResult, SimConfig
from konsul.raft.sim.run import campaign, run_seed


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m konsul.raft.sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    p.add_argument("--start", type=int, default=0, help="first seed")
    p.add_argument("--seed", type=int, help="replay this one seed")
    p.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    p.add_argument("--steps", type=int, default=2000, help="ticks of faults per run")
    p.add_argument("--trace", action="store_true", help="with --seed: print every event")
    p.add_argument("--messages", action="store_true", help="with --trace: every message too")
    p.add_argument("--keep-going", action="store_true", help="do not stop at the first violation")
    p.add_argument("--retention", type=int, default=2, help="snapshots the store keeps")
    p.add_argument("--payload", type=int, default=0,
                   help="pad each write with up to this many random bytes")
    p.add_argument("--pipeline", action="store_true",
                   help="etcd-style runtime: Readies pipelined, leader appends sent before fsync")
    p.add_argument("--bench", action="store_true", help="entries committed per CPU-second")
    return p


def replay_flags(cfg: SimConfig) -> str:
    flags = f"--nodes {cfg.nodes}"
    if cfg.steps != 2000:
        flags += f" --steps {cfg.steps}"
    if cfg.snapshot_retention != 2:
        flags += f" --retention {cfg.snapshot_retention}"
    if cfg.pipeline:
        flags += " --pipeline"
    if cfg.payload_bytes:
        flags += f" --payload {cfg.payload_bytes}"
    return flags


def report(result: RunResult, cfg: SimConfig) -> str:
    v = result.violation
    assert v is not None
    return (
        f"VIOLATION seed={result.seed} nodes={cfg.nodes} invariant={v.invariant}\n"
        f"  {v.detail}\n"
        f"last events (tick, ms, node, event):\n{result.trace}\n"
        f"replay: python -m konsul.raft.sim --seed {result.seed} {replay_flags(cfg)} --trace"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.bench:
        from konsul.raft.sim.bench import bench

        print(bench())
        return 0
    cfg = SimConfig(nodes=args.nodes, steps=args.steps, snapshot_retention=args.retention,
                    pipeline=args.pipeline, payload_bytes=args.payload)
    if args.seed is not None:
        cfg.trace_echo = args.trace
        cfg.trace_messages = args.messages
        cfg.trace_digest = True
        result = run_seed(args.seed, cfg)
        if result.violation is not None:
            print(report(result, cfg))
        print(
            f"seed={args.seed} violation={result.violation.invariant if result.violation else None}"
            f" elections={result.elections} commits={result.commits} acked={result.acked}"
            f" reads={result.reads} recovery_ms={result.recovery_ticks * 10}"
            f" ticks={result.ticks} trace={result.digest}"
        )
        return 1 if result.violation else 0
    started = time.monotonic()
    totals = campaign(
        range(args.start, args.start + args.seeds), cfg, stop_at_first=not args.keep_going
    )
    for result in totals.violations:
        print(report(result, cfg))
    print(totals.summary(), f"nodes={args.nodes} wall_s={time.monotonic() - started:.1f}")
    return 1 if totals.violations else 0


if __name__ == "__main__":
    sys.exit(main())
