"""Konsul's Raft: the sans-I/O core (``core``), its messages (``messages``), the runtime."""
