"""Three 20-second runs of the linearizability campaign against real clusters under faults.

Each run: 3 nodes, 5 client processes on 3 keys, a nemesis killing/pausing nodes (random and
leader) every few seconds; every key's history must be linearizable and no acknowledged write
may be missing from the final reads. The first run is secure: TLS on the API and between
members, ACLs on, every client with a token (its nemesis kills and pauses; the relays that
partition the others cannot read TLS). ``make jepsen RUNS=50`` runs the long campaign.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.linearizability.jepsen import describe, run_once, summary

RUNS = 3
SECONDS = 20.0


@pytest.mark.timeout(150)
@pytest.mark.parametrize("run", range(RUNS))
def test_histories_under_faults_are_linearizable(tmp_path: Path, run: int) -> None:
    seed = random.randrange(1_000_000)
    result = run_once(tmp_path / "run", SECONDS, seed, out=tmp_path / "failures",
                      secure=run == 0)
    print(describe(result))
    print(summary([result]))
    assert result.faults >= 2, "the nemesis must have struck during the run"
    assert result.ops > 500, "the clients must have got work done despite the faults"
    assert result.redirected > 0, "writes sent to followers must reach the leader by 307"
    assert result.clean, describe(result)
