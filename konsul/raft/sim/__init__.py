"""Deterministic simulation of the Raft core: ``python -m konsul.raft.sim --help``.

One seed = one run, bit-for-bit reproducible (``--seed S --trace`` replays it): the real
``RaftCore`` on every node, driven exactly as ``konsul/raft/runtime.py`` drives it, on

- a clock of ticks (10 ms each; the guide's timeouts: heartbeat/election 100 ticks, lease 50,
  commit 5) with per-node drift and pauses (``cluster.py``);
- a network that delays, drops, duplicates, reorders and partitions, symmetric or one-way
  (``network.py``);
- a disk with a durable and an unsynced part: every Ready is written, then fsynced when the
  simulator decides (sometimes late); a crash keeps the durable part and perhaps a prefix of
  the rest; a lost disk keeps nothing (``disk.py``);
- a nemesis injecting one fault at a time and an operator doing membership (join as
  non-voter, promotion by the core, removal, rejoin of a wiped member) (``nemesis.py``);
- clients proposing unique writes (acknowledged only when applied on the proposing node with
  the proposal's index and term; ``--payload N`` pads them with up to N bytes) and ReadIndex
  reads, on a set-of-writes state machine (``model.py``);
- small replication limits in bytes (256 per AppendEntries, 768 in flight per follower), so
  that batches are cut by size and followers far behind are fed at the pace they acknowledge.

After every step ``invariants.Checker`` (plus a few runtime-contract checks in ``cluster.py``)
verifies: one leader per term, one vote per (term, voter), log matching, leader completeness,
the Figure 8 commitment rule, state machine safety, acknowledged writes never lost,
linearizable ReadIndex reads, one uncommitted configuration change at a time, no entry applied
before it is durable, no term regression. Each run ends with a quiet period (faults healed,
nodes restarted) in which a leader must commit a fresh write and every member catch up within
``quiet_limit`` ticks (``run.py``). ``broken.py`` holds broken cores the tests prove are caught;
``bench.py`` measures entries committed per CPU-second.
"""

from konsul.raft.sim.cluster import SimConfig
from konsul.raft.sim.run import Campaign, campaign, run_seed

__all__ = ["Campaign", "SimConfig", "campaign", "run_seed"]
