"""Backups, restores and disaster recovery (docs/backup.md is the user's guide).

- ``file``: the backup file: a header, the store's snapshot in frames, a SHA-256 trailer.
- ``save``: a consistent backup from the leader, streamed while the state is encoded.
- ``staging``: an uploaded backup, checked whole and kept on disk before anything changes.
- ``restore``: online restore onto a running cluster, through the Raft log
  (``konsul.store.restore`` holds the state machine's side and the argument).
- ``seed``: a new cluster founded from a backup: offline into an empty data directory, or on a
  running empty node (the operator's ``spec.restore``).
- ``recover``: a survivor made a cluster of one when a quorum is lost for good.
"""
