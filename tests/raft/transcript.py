"""Core scenarios as text transcripts, in the spirit of etcd-io/raft's ``testdata/*.txt``.

A transcript file is a list of commands, each followed by ``----`` and the output it must
produce, up to a blank line (``ok`` when a command prints nothing); ``#`` lines are comments::

    add-nodes a b c
    ----
    ok

The output is the core's own trace (``RaftCore(trace=...)``): messages as they are stepped,
the contents of each Ready, state changes. ``Env`` drives the cores with the harness of
``core_harness.py`` (disks, the Ready loop of the runtime) and an explicit network: messages
move only when a command delivers them. ``run_file`` runs a file and returns the transcript it
produced; ``tests/raft/test_core_transcripts.py`` compares it with the file.

Commands (``X`` node ids; ``[...]`` optional; ``key=value`` options):

    add-nodes X... [members=X,..] [learners=X,..] [terms=1,2,..] [term=N] [core=NAME]
                   [pre-vote=false] [check-quorum=false] [max-append=N] [max-inflight=N]
                   [max-append-bytes=N] [max-inflight-bytes=N]
        nodes restarted from a log: entry 1 the configuration (``members``, default the ids
        given, plus ``learners``), then one command per further term in ``terms``; hard
        state ``term`` (default the last of ``terms``). ``core`` names a broken core of
        ``konsul/raft/sim/broken.py``.
    add-empty X...            nodes with an empty disk (new, or wiped)
    bootstrap X
    tick X... [n=N]           tick each node N times (default 1)
    tick-election X           tick until X's election timer fires (X has something to say)
    tick-heartbeat X          tick a leader until its next heartbeat
    process-ready [X...]      hand out and handle each node's Readies (default: every node)
    deliver-msgs [X...] [from=X]   step the messages in flight to these nodes
    drop-msgs [from=X] [to=X] [kind=NAME] [entry-term=N]   lose messages in flight
    stabilize [X...]          process-ready and deliver-msgs until nothing moves
    propose X DATA [count=N] [bytes=N]   N commands DATA1.., each padded to N bytes
    propose-add X Y | propose-remove X Y | transfer X Y|any
    read-index X CTX | compact X [trailing=N] | unreachable X PEER
    partition X,X X,.. | heal | crash X | restart X | wipe X
        (a crashed node's messages already sent stay in flight; those sent to it are lost when
        it restarts)
    hold-persist X | ack-persist X   fsyncs that complete only when acknowledged
    status X...  |  log X
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace

from konsul.raft.core import (
    CoreConfig,
    NotLeaderError,
    ProposalRejected,
    RaftCore,
    RaftSafetyError,
    Role,
)
from konsul.raft.describe import describe_config, describe_entries, describe_message
from konsul.raft.messages import AppendEntries, Message
from konsul.raft.sim.broken import BROKEN_CORES
from konsul.raft.types import HardState, Member
from tests.raft.core_harness import FAST, Disk, Node, cmd, config_entry, config_of

Args = list[str]
Opts = dict[str, str]

_CORE_ERRORS = (NotLeaderError, ProposalRejected, RaftSafetyError, ValueError)


@dataclass
class Case:
    prefix: list[str]  # comments and blank lines before the command, verbatim
    command: str
    expected: str
    line: int


def parse(text: str) -> tuple[list[Case], list[str]]:
    """The cases of a transcript file, and the text after the last one."""
    cases: list[Case] = []
    lines = text.split("\n")
    prefix: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            prefix.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"line {i + 1}: expected '----' after the command {line!r}")
        j = i + 2
        while j < len(lines) and lines[j].strip():
            j += 1
        cases.append(Case(prefix, line, "\n".join(lines[i + 2 : j]), i + 1))
        prefix = []
        i = j
    return cases, prefix


def render(cases: list[Case], outputs: list[str], tail: list[str]) -> str:
    lines: list[str] = []
    for case, output in zip(cases, outputs, strict=True):
        lines += case.prefix
        lines += [case.command, "----", output]
    return "\n".join(lines + tail)


def run_file(text: str) -> str:
    """Run a transcript and return it with the output each command actually produced."""
    cases, tail = parse(text)
    env = Env()
    outputs = [env.run(case.command) for case in cases]
    return render(cases, outputs, tail)


class Env:
    """Nodes, the messages in flight between them, and the output of the current command."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.net: list[Message] = []
        self.down: set[str] = set()
        self.cut: set[frozenset[str]] = set()
        self.out: list[str] = []
        self.indent = ""

    def run(self, line: str) -> str:
        words = shlex.split(line)
        name, rest = words[0], words[1:]
        args = [w for w in rest if "=" not in w]
        opts = dict(w.split("=", 1) for w in rest if "=" in w)
        handler = _COMMANDS.get(name)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        self.out = []
        self.indent = ""
        try:
            handler(self, args, opts)
        except _CORE_ERRORS as exc:
            self.print(f"error: {type(exc).__name__}: {exc}")
        return "\n".join(self.out) or "ok"

    def print(self, text: str) -> None:
        self.out.append(self.indent + text)

    def add(self, node_id: str, cfg: CoreConfig, disk: Disk, core: str | None) -> None:
        core_class = BROKEN_CORES[core] if core else RaftCore
        self.nodes[node_id] = Node(node_id, cfg, 0, disk, core_class, trace=self.print)

    def core(self, node_id: str) -> RaftCore:
        return self.nodes[node_id].core

    def blocked(self, m: Message) -> str | None:
        if m.dst in self.down:
            return "node down"
        if frozenset((m.src, m.dst)) in self.cut:
            return "partition"
        return None

    def process_ready(self, ids: list[str]) -> bool:
        moved = False
        for nid in ids:
            node = self.nodes[nid]
            while nid not in self.down:
                # has_ready() may itself trace (a leader prepares its AppendEntries there)
                mark = len(self.out)
                self.indent = "  "
                if not node.core.has_ready():
                    break
                self.out.insert(mark, f"> {nid} handling Ready")
                self.net += node.handle_one_ready()
                moved = True
        self.indent = ""
        return moved

    def deliver(self, ids: list[str], src: str | None = None) -> bool:
        moved = False
        for nid in ids:
            mine = [m for m in self.net if m.dst == nid and (src is None or m.src == src)]
            if not mine:
                continue
            self.net = [m for m in self.net if not (m.dst == nid and (src is None or m.src == src))]
            self.indent = ""
            self.print(f"> {nid} receiving messages")
            self.indent = "  "
            for m in mine:
                why = self.blocked(m)
                if why is not None:
                    self.print(f"{describe_message(m)} (lost: {why})")
                    continue
                self.nodes[nid].core.step(m)
                moved = True
        self.indent = ""
        return moved


# ---------------------------------------------------------------------- commands


# option name -> CoreConfig field (the harness's FAST settings otherwise)
_CONFIG_OPTIONS = {
    "pre-vote": "pre_vote",
    "check-quorum": "check_quorum",
    "max-append": "max_append_entries",
    "max-append-bytes": "max_append_bytes",
    "max-inflight": "max_inflight",
    "max-inflight-bytes": "max_inflight_bytes",
}


def _cfg(opts: Opts) -> CoreConfig:
    fields: dict[str, object] = {}
    for key, value in opts.items():
        name = _CONFIG_OPTIONS.get(key)
        if name is not None:
            fields[name] = value == "true" if value in ("true", "false") else int(value)
    return replace(FAST, **fields)  # type: ignore[arg-type]


def _ids(value: str | None) -> list[str]:
    return value.split(",") if value else []


def _add_nodes(env: Env, args: Args, opts: Opts) -> None:
    members = _ids(opts.get("members")) or args
    config = config_of(*members, learners=_ids(opts.get("learners")))
    terms = [int(t) for t in opts.get("terms", "1").split(",")]
    term = int(opts.get("term", terms[-1]))
    for nid in args:
        log = [config_entry(1, terms[0], config)]
        log += [cmd(i, t) for i, t in enumerate(terms[1:], start=2)]
        env.add(nid, _cfg(opts), Disk(HardState(term, None), log), opts.get("core"))


def _add_empty(env: Env, args: Args, opts: Opts) -> None:
    for nid in args:
        env.add(nid, _cfg(opts), Disk(), opts.get("core"))


def _bootstrap(env: Env, args: Args, opts: Opts) -> None:
    (nid,) = args
    env.core(nid).bootstrap(Member(nid, f"{nid}:7000", True, f"{nid}:8500"))


def _tick(env: Env, args: Args, opts: Opts) -> None:
    for _ in range(int(opts.get("n", "1"))):
        for nid in args:
            env.core(nid).tick()


def _tick_election(env: Env, args: Args, opts: Opts) -> None:
    (nid,) = args
    core = env.core(nid)
    for _ in range(10_000):
        if core.has_ready():
            return
        core.tick()
    raise AssertionError(f"{nid} never said anything")


def _tick_heartbeat(env: Env, args: Args, opts: Opts) -> None:
    (nid,) = args
    for _ in range(env.nodes[nid].cfg.commit_ticks):
        env.core(nid).tick()


def _process_ready(env: Env, args: Args, opts: Opts) -> None:
    env.process_ready(args or list(env.nodes))


def _deliver_msgs(env: Env, args: Args, opts: Opts) -> None:
    env.deliver(args or list(env.nodes), opts.get("from"))


def _drop_msgs(env: Env, args: Args, opts: Opts) -> None:
    def matches(m: Message) -> bool:
        if "from" in opts and m.src != opts["from"]:
            return False
        if "to" in opts and m.dst != opts["to"]:
            return False
        if "kind" in opts and type(m).__name__ != opts["kind"]:
            return False
        if "entry-term" in opts:
            term = int(opts["entry-term"])
            return isinstance(m, AppendEntries) and any(e.term == term for e in m.entries)
        return True

    for m in env.net:
        if matches(m):
            env.print(f"dropped {describe_message(m)}")
    env.net = [m for m in env.net if not matches(m)]


def _stabilize(env: Env, args: Args, opts: Opts) -> None:
    ids = args or list(env.nodes)
    for _ in range(1000):
        moved = env.process_ready(ids)
        moved = env.deliver(ids) or moved
        if not moved and not any(m.dst in ids for m in env.net):
            return
    raise AssertionError("the cluster never settled")


def _propose(env: Env, args: Args, opts: Opts) -> None:
    nid, data = args
    count = int(opts.get("count", "1"))
    size = int(opts.get("bytes", "0"))
    for i in range(1, count + 1):
        text = f"{data}{i}" if count > 1 else data
        index, term = env.core(nid).propose(text.encode().ljust(size, b"."))
        env.print(f"proposed {index}@{term}")


def _propose_add(env: Env, args: Args, opts: Opts) -> None:
    nid, new = args
    index, term = env.core(nid).propose_add(Member(new, f"{new}:7000", False, f"{new}:8500"))
    env.print(f"proposed {index}@{term}")


def _propose_remove(env: Env, args: Args, opts: Opts) -> None:
    nid, gone = args
    index, term = env.core(nid).propose_remove(gone)
    env.print(f"proposed {index}@{term}")


def _transfer(env: Env, args: Args, opts: Opts) -> None:
    nid, target = args
    env.core(nid).transfer_leadership(None if target == "any" else target)


def _read_index(env: Env, args: Args, opts: Opts) -> None:
    nid, ctx = args
    env.core(nid).read_index(int(ctx))


def _compact(env: Env, args: Args, opts: Opts) -> None:
    (nid,) = args
    meta = env.nodes[nid].take_snapshot(int(opts.get("trailing", "0")))
    core = env.core(nid)
    env.print(f"snapshot {meta.index}@{meta.term}; log {core.first_index}..{core.last_index}")


def _unreachable(env: Env, args: Args, opts: Opts) -> None:
    nid, peer = args
    env.core(nid).peer_unreachable(peer)


def _partition(env: Env, args: Args, opts: Opts) -> None:
    groups = [set(g.split(",")) for g in args]
    env.cut = {
        frozenset((x, y))
        for i, a in enumerate(groups)
        for b in groups[i + 1 :]
        for x in a
        for y in b
    }


def _heal(env: Env, args: Args, opts: Opts) -> None:
    env.cut = set()


def _crash(env: Env, args: Args, opts: Opts) -> None:
    env.down.update(args)  # (what it sent before is still in flight: drop-msgs loses it)


def _restart(env: Env, args: Args, opts: Opts) -> None:
    for nid in args:
        _lose_messages_to(env, nid)  # they were on their way to the process that stopped
        env.down.discard(nid)
        env.nodes[nid].restart()


def _wipe(env: Env, args: Args, opts: Opts) -> None:
    for nid in args:
        node = env.nodes[nid]
        node.disk = Disk()
        node.snapshots.blobs.clear()
        _lose_messages_to(env, nid)
        env.down.discard(nid)
        node.restart()


def _lose_messages_to(env: Env, nid: str) -> None:
    for m in env.net:
        if m.dst == nid:
            env.print(f"lost {describe_message(m)}")
    env.net = [m for m in env.net if m.dst != nid]


def _hold_persist(env: Env, args: Args, opts: Opts) -> None:
    for nid in args:
        env.nodes[nid].auto_persist = False


def _ack_persist(env: Env, args: Args, opts: Opts) -> None:
    for nid in args:
        node = env.nodes[nid]
        node.ack_persisted()
        node.auto_persist = True


def _status(env: Env, args: Args, opts: Opts) -> None:
    for nid in args:
        core = env.core(nid)
        flags = " (catching up)" if core.catching_up else ""
        flags += " (down)" if nid in env.down else ""
        env.print(
            f"{nid}: {core.role.value}{flags} term={core.term} vote={core.vote} "
            f"leader={core.leader_id} commit={core.commit_index} "
            f"last={core.last_index}@{core.last_term} "
            f"config({describe_config(core.configuration)})"
        )
        if core.role is Role.LEADER:
            for m in core.configuration.members:
                if m.id != nid:
                    env.print(f"  {m.id}: match={core.match_index(m.id)}")


def _log(env: Env, args: Args, opts: Opts) -> None:
    (nid,) = args
    disk = env.nodes[nid].disk
    snap = f"snapshot {disk.snapshot.index}@{disk.snapshot.term} " if disk.snapshot else ""
    env.print(f"{nid}: {snap}{describe_entries(disk.log)}")


_COMMANDS: dict[str, Callable[[Env, Args, Opts], None]] = {
    "add-nodes": _add_nodes,
    "add-empty": _add_empty,
    "bootstrap": _bootstrap,
    "tick": _tick,
    "tick-election": _tick_election,
    "tick-heartbeat": _tick_heartbeat,
    "process-ready": _process_ready,
    "deliver-msgs": _deliver_msgs,
    "drop-msgs": _drop_msgs,
    "stabilize": _stabilize,
    "propose": _propose,
    "propose-add": _propose_add,
    "propose-remove": _propose_remove,
    "transfer": _transfer,
    "read-index": _read_index,
    "compact": _compact,
    "unreachable": _unreachable,
    "partition": _partition,
    "heal": _heal,
    "crash": _crash,
    "restart": _restart,
    "wipe": _wipe,
    "hold-persist": _hold_persist,
    "ack-persist": _ack_persist,
    "status": _status,
    "log": _log,
}
