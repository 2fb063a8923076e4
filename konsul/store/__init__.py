"""The replicated state machine: KV, services, health checks, transactions, export/import.

Deterministic: it never reads the clock or randomness. Writes arrive as commands (the types of
``konsul.store.schema``) built and validated by ``konsul.store.commands``, and are applied in log
order by ``StateMachine.apply``; reads go straight to the local replica.
"""

from konsul.store import commands
from konsul.store.machine import StateMachine
from konsul.store.types import (
    ApplyResult,
    Check,
    CheckWritten,
    Event,
    Ignored,
    Imported,
    KVDeleted,
    KVEntry,
    KVWritten,
    Reason,
    Rejected,
    Service,
    ServiceWritten,
    TxnDone,
)

__all__ = [
    "ApplyResult",
    "Check",
    "CheckWritten",
    "Event",
    "Ignored",
    "Imported",
    "KVDeleted",
    "KVEntry",
    "KVWritten",
    "Reason",
    "Rejected",
    "Service",
    "ServiceWritten",
    "StateMachine",
    "TxnDone",
    "commands",
]
