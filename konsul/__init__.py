"""Konsul: a service registry and key/value store replicated by its own Raft."""

__version__ = "0.1.0"
