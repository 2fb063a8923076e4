"""Deterministic simulation of the Raft core: ``python -m konsul.raft.sim --help``."""

from konsul.raft.sim.cluster import SimConfig
from konsul.raft.sim.run import Campaign, campaign, run_seed

__all__ = ["Campaign", "SimConfig", "campaign", "run_seed"]
