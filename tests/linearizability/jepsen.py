"""Linearizability under faults, Jepsen style, against a real 3-node Konsul cluster.

    python -m tests.linearizability.jepsen --runs 50 --seconds 20

Each run starts a fresh ``LocalCluster``, lets ``--clients`` client *processes*
(``tests.linearizability.client``) do random get/put/cas/delete on a few keys against random
nodes, while a nemesis thread SIGKILLs and restarts nodes (random ones and the leader) and
pauses them with SIGSTOP/SIGCONT. At the end everything is healed, the cluster converges, and a
``?consistent`` read of every key on every node joins the history. Each key's history then goes
through the checker, and the final reads through the direct lost-acknowledged-write check.

Faults, one at a time, every 1-3 s, held 1-3 s: SIGKILL (a random node, the leader, two nodes
or all three) and restart; SIGSTOP/SIGCONT (a random node or the leader); isolate a node (random
or the leader) from the other two, by dropping its Raft frames in the relays of ``partition``.
Half of the runs set a low snapshot threshold so that restarted nodes also catch up by
InstallSnapshot.

Prints ``runs=N violations=V lost_acked=L undecided=U ops=... unknown=... faults=...`` and exits
non-zero on any violation (or a history the checker could not decide). Offending histories are
saved under ``--out`` as JSON lines (``checker.load``) with a readable dump beside them.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.certs import CertDir
from tests.cluster_harness import ClusterNode, LocalCluster
from tests.linearizability import checker, client
from tests.linearizability.checker import Op, Result
from tests.linearizability.client import read_history, redirected_ok, request
from tests.linearizability.partition import PartitionableCluster
from tests.processes import REPO

KEYS = ("k0", "k1", "k2")
# Nemesis actions and their weights. Losing a majority (or everyone: every acknowledged write
# must come back from the WALs) is rarer than losing one node.
ACTIONS = {"kill": 2, "kill-leader": 2, "pause": 2, "pause-leader": 2, "isolate": 2,
           "isolate-leader": 2, "kill-majority": 1, "kill-all": 1}


@dataclass
class RunResult:
    seed: int
    setup: str = ""
    ops: int = 0
    redirected: int = 0  # acknowledged after following a 307
    unknown: int = 0
    faults: int = 0
    fault_kinds: dict[str, int] = field(default_factory=dict)
    violations: list[Result] = field(default_factory=list)
    undecided: list[Result] = field(default_factory=list)
    lost_acked: list[str] = field(default_factory=list)
    check_seconds: float = 0.0
    saved: Path | None = None

    @property
    def clean(self) -> bool:
        return not (self.violations or self.undecided or self.lost_acked)


# ------------------------------------------------------------------------------ the nemesis


class Nemesis(threading.Thread):
    """One fault at a time, every 1-3 s: kill (random node or leader) or pause, then heal."""

    def __init__(self, cluster: LocalCluster, rng: random.Random, until: float,
                 actions: dict[str, int] = ACTIONS) -> None:
        super().__init__(name="nemesis", daemon=True)
        self.cluster = cluster
        self.actions = actions
        self.rng = rng
        self.until = until
        self.stopping = threading.Event()
        self.events: list[tuple[int, str]] = []
        self.error: BaseException | None = None

    def note(self, what: str) -> None:
        self.events.append((time.monotonic_ns(), what))

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.rng.uniform(1.0, 3.0)):
                if time.monotonic() > self.until:
                    break
                self.one_fault()
        except BaseException as exc:  # reported by the runner, not lost in a thread
            self.error = exc

    def one_fault(self) -> None:
        action = self.rng.choices(list(self.actions), list(self.actions.values()))[0]
        nodes = self.targets(action)
        names = ",".join(n.node_id for n in nodes)
        hold = self.rng.uniform(1.0, 3.0 if action.startswith("isolate") else 2.0)
        if action.startswith("isolate"):
            self.note(f"isolate {names} ({action})")
            assert isinstance(self.cluster, PartitionableCluster)
            for node in nodes:
                self.cluster.relays.isolate(node.node_id)
            self.stopping.wait(hold)
            self.cluster.relays.heal()
            self.note("heal the network")
        elif action.startswith("kill"):
            self.note(f"SIGKILL {names} ({action})")
            for node in nodes:
                node.kill(signal.SIGKILL)
            self.stopping.wait(hold)
            self.note(f"restart {names}")
            for node in nodes:
                node.start()
            self.note(f"{names} live")
        else:
            self.note(f"SIGSTOP {names} ({action})")
            for node in nodes:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGSTOP)
            self.stopping.wait(hold)
            for node in nodes:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGCONT)
            self.note(f"SIGCONT {names}")

    def targets(self, action: str) -> list[ClusterNode]:
        if action == "kill-all":
            return list(self.cluster.nodes)
        if action == "kill-majority":
            return self.rng.sample(self.cluster.nodes, 2)
        node = self.leader() if action.endswith("leader") else None
        return [node or self.rng.choice(self.cluster.nodes)]

    def leader(self) -> ClusterNode | None:
        for node in self.cluster.nodes:
            status = node.status() if node.alive() else None
            if status and status.get("state") == "Leader":
                return node
        return None

    def kinds(self) -> dict[str, int]:
        """How many faults of each kind (the action is in parentheses in the event)."""
        kinds: dict[str, int] = {}
        for _, what in self.events:
            if what.endswith(")"):
                kind = what.rsplit("(", 1)[1][:-1]
                kinds[kind] = kinds.get(kind, 0) + 1
        return kinds

    @property
    def faults(self) -> int:
        faults = ("SIGKILL", "SIGSTOP", "isolate")
        return sum(1 for _, what in self.events if what.startswith(faults))


def heal(cluster: LocalCluster) -> None:
    if isinstance(cluster, PartitionableCluster):
        cluster.relays.heal()
    for node in cluster.nodes:
        if node.alive():
            assert node.proc is not None
            node.proc.send_signal(signal.SIGCONT)
        else:
            node.start()


# ------------------------------------------------------------------------------ one run


def final_reads(cluster: LocalCluster, keys: tuple[str, ...], first_id: int) -> list[Op]:
    """A ``?consistent`` read of every key on every node, retried until a node answers."""
    ops: list[Op] = []
    for key in keys:
        for node in cluster.nodes:
            deadline = time.monotonic() + 20
            while True:
                call = time.monotonic_ns()
                answer = request("GET", node.http_addr, f"/kv/{key}?consistent")
                ret = time.monotonic_ns()
                if answer.status in (200, 404):
                    body = answer.body if answer.status == 200 else {}
                    ops.append(Op(first_id + len(ops), "final", key, "read", "ok", call, ret,
                                  value=body.get("value"), index=body.get("modify_index"),
                                  node=node.http_addr))
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"final read of {key} on {node.node_id}: {answer}")
                time.sleep(0.1)
    return ops


SECURE_TOKEN = "jepsen-management-token"
# Relays read Raft frames to drop them, which TLS hides: a secure run faults by kill and pause.
SECURE_ACTIONS = {k: v for k, v in ACTIONS.items() if not k.startswith("isolate")}


def run_once(root: Path, seconds: float, seed: int, clients: int = 5,
             keys: tuple[str, ...] = KEYS, out: Path | None = None,
             secure: bool = False) -> RunResult:
    """``secure``: TLS on the API and between members, ACLs on, every client with a token."""
    rng = random.Random(seed)
    env = {"KONSUL_RAFT_SNAPSHOT_THRESHOLD": "200"} if rng.random() < 0.5 else {}
    setup = " ".join(f"{k}={v}" for k, v in env.items())
    result = RunResult(seed, setup=f"{setup} TLS+ACL".strip() if secure else setup)
    cluster: LocalCluster
    secure_args: list[str] = []
    if secure:
        certs = CertDir(root / "tls")
        cluster = LocalCluster(
            root / "cluster", size=3, certs=certs, headers={"X-Konsul-Token": SECURE_TOKEN},
            env={**env, "KONSUL_ACL_ENABLED": "true",
                 "KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN": SECURE_TOKEN},
        )
        secure_args = ["--ca-file", str(certs.ca_file), "--token", SECURE_TOKEN]
        client.configure(str(certs.ca_file), SECURE_TOKEN)  # for the final reads
    else:
        cluster = PartitionableCluster(root / "cluster", size=3, env=env)
    procs: list[subprocess.Popen[bytes]] = []
    nemesis: Nemesis | None = None
    try:
        cluster.start()
        until = time.monotonic_ns() + int(seconds * 1e9)
        files = [root / f"client{c}.jsonl" for c in range(clients)]
        for c, path in enumerate(files):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.linearizability.client", "--id", f"c{c}",
                 "--out", str(path), "--until", str(until), "--seed", str(seed * 100 + c),
                 "--keys", ",".join(keys), *secure_args, *(n.url for n in cluster.nodes)],
                cwd=REPO,
            ))
        nemesis = Nemesis(cluster, rng, time.monotonic() + seconds - 1.0,
                          SECURE_ACTIONS if secure else ACTIONS)
        nemesis.start()
        for proc in procs:
            proc.wait(timeout=seconds + 30)
        nemesis.stopping.set()
        nemesis.join(timeout=60)
        if nemesis.error is not None:
            raise nemesis.error
        heal(cluster)
        cluster.wait_converged(timeout=30)
        history = read_history(files)
        result.redirected = redirected_ok(files)
        history += final_reads(cluster, keys, len(history))
    finally:
        client.configure(None, None)
        if nemesis is not None:
            nemesis.stopping.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        cluster.stop()
    result.ops = len(history)
    result.unknown = sum(1 for op in history if op.status == "unknown")
    assert nemesis is not None
    result.faults = nemesis.faults
    result.fault_kinds = nemesis.kinds()
    check_history(history, result)
    if not result.clean and out is not None:
        result.saved = save_failure(out, history, result, nemesis.events, cluster)
    return result


def check_history(history: list[Op], result: RunResult) -> None:
    started = time.monotonic()
    for key, ops in sorted(checker.by_key(history).items()):
        verdict = checker.check_key(key, ops, budget_seconds=120)
        if verdict.ok is False:
            result.violations.append(verdict)
        elif verdict.ok is None:
            result.undecided.append(verdict)
        lost = checker.lost_acked_write(ops)
        if lost:
            result.lost_acked.append(f"{key}: {lost}")
    result.check_seconds = time.monotonic() - started


def save_failure(out: Path, history: list[Op], result: RunResult,
                 events: list[tuple[int, str]], cluster: PartitionableCluster) -> Path:
    """The history (loadable), a readable dump per offending key, and the node logs."""
    where = out / f"run-seed{result.seed}"
    where.mkdir(parents=True, exist_ok=True)
    checker.save(history, where / "history.jsonl")
    (where / "nemesis.json").write_text(json.dumps(events))
    bad = {r.key: r for r in result.violations + result.undecided}
    for key in sorted(set(bad) | {lost.split(":")[0] for lost in result.lost_acked}):
        ops = [op for op in history if op.key == key]
        lines = list(checker.dump(ops, bad.get(key), events))
        lines += [f"lost acknowledged write: {lost}" for lost in result.lost_acked
                  if lost.startswith(f"{key}:")]
        (where / f"{key}.txt").write_text("\n".join(lines) + "\n")
        if key in bad and bad[key].ok is False:
            small = checker.minimise(ops)
            verdict = checker.check_key(key, small)
            text = "\n".join(checker.dump(small, verdict, events, hide_unknown=True))
            (where / f"{key}-minimal.txt").write_text(text + "\n")
    for node in cluster.nodes:
        if node.log_path and node.log_path.exists():
            shutil.copy(node.log_path, where / f"{node.node_id}.log")
    return where


# ------------------------------------------------------------------------------ campaign


def summary(results: list[RunResult]) -> str:
    return (
        f"runs={len(results)} violations={sum(len(r.violations) for r in results)} "
        f"lost_acked={sum(len(r.lost_acked) for r in results)} "
        f"undecided={sum(len(r.undecided) for r in results)} "
        f"ops={sum(r.ops for r in results)} unknown={sum(r.unknown for r in results)} "
        f"faults={sum(r.faults for r in results)} "
        f"check_s={sum(r.check_seconds for r in results):.1f}"
    )


def describe(r: RunResult) -> str:
    state = "ok" if r.clean else f"FAILED (saved in {r.saved})"
    setup = f"{r.setup} " if r.setup else ""
    kinds = " ".join(f"{k}={n}" for k, n in sorted(r.fault_kinds.items()))
    line = (f"seed={r.seed} {setup}ops={r.ops} redirected={r.redirected} unknown={r.unknown} "
            f"faults={r.faults} "
            f"({kinds}) check={r.check_seconds:.1f}s {state}")
    details = [f"  {v.key}: {v.reason}" for v in r.violations + r.undecided]
    return "\n".join([line, *details, *(f"  lost: {lost}" for lost in r.lost_acked)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--out", type=Path, default=Path("jepsen-failures"))
    parser.add_argument("--secure", action="store_true",
                        help="TLS on the API and between members, ACLs on (kill/pause only)")
    args = parser.parse_args(argv)
    first = args.seed if args.seed is not None else random.randrange(1_000_000)
    results = []
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="konsul-jepsen-") as tmp:
            result = run_once(Path(tmp), args.seconds, first + n, args.clients, out=args.out,
                              secure=args.secure)
        results.append(result)
        print(describe(result), flush=True)
    print(summary(results), flush=True)
    return 0 if all(r.clean for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
