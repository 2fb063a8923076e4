"""A real standalone node, and the app in front of it: the fixtures of tests/api."""

from tests.api.conftest import client, node

__all__ = ["client", "node"]
