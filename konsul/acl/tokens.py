"""Token secrets: what a valid one looks like, and the hash that is all the cluster keeps.

Secrets the cluster makes are random UUIDs; one an operator chooses (the initial management
token, a token created with a given secret) must have at least ``MIN_SECRET_LEN`` characters.
Either way the secret is high-entropy, so an unsalted SHA-256 is enough to store and look it up
by, and a leaked snapshot does not give tokens away.
"""

from __future__ import annotations

import hashlib

MIN_SECRET_LEN = 16
MAX_SECRET_LEN = 256


def valid_secret(text: str) -> bool:
    """Printable ASCII without spaces, ``MIN_SECRET_LEN`` to ``MAX_SECRET_LEN`` characters."""
    return (
        MIN_SECRET_LEN <= len(text) <= MAX_SECRET_LEN
        and text.isascii()
        and text.isprintable()
        and " " not in text
    )


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
