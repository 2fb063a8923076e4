"""Health checks: ``runner`` (each member's ``CheckRunner``), ``share`` (who probes what),
``assign`` (rendezvous hashing), ``worker`` and ``process`` (the probe worker process and the
member's handle on it), ``timers`` (the leader's TTL and heartbeat timers).

Kept empty of imports: the probe worker imports ``konsul.checks.worker`` alone, and should not
pay for the store and Raft at start-up."""
