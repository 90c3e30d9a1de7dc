"""Deterministic fault injection: which request or object goes wrong, and how.

Two families, both pure functions of the seed:

- transient faults hit one request to a path, drawn from (seed, kind, path, attempt number),
  so a retry of the same path gets a fresh draw and eventually succeeds;
- permanent faults are properties of an object or image, drawn from (seed, kind, objectID or
  path), so every request for it sees the same fault, as with a withdrawn object or a dead link.

``rate`` is the probability of each selected kind on the requests or objects it applies to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

TRANSIENT = ("500", "502", "503", "slow", "drop")
PERMANENT = ("not-valid", "image-404", "truncate", "not-image")
KINDS = TRANSIENT + PERMANENT
#: What each kind does, for the CLI's help.
DESCRIPTIONS = {
    "500": "HTTP 500 with an error page",
    "502": "HTTP 502 with an error page",
    "503": "HTTP 503 with an error page",
    "slow": "the answer comes after --slow-seconds (longer than a client's timeout)",
    "drop": "the connection is closed without an answer",
    "not-valid": 'a listed id answers 404 "Not a valid object"',
    "image-404": "an object's image link answers the image host's 404 page",
    "truncate": "an image body is cut short (a valid response with a truncated JPEG)",
    "not-image": "an image URL answers HTML bytes with an image content type",
}


def parse_kinds(text: str) -> frozenset[str]:
    """Parse a comma-separated list of fault kinds; ``all`` selects every kind.

    >>> sorted(parse_kinds("503,drop"))
    ['503', 'drop']

    Raises:
        ValueError: naming the unknown kind and listing the valid ones.
    """
    names = {part.strip() for part in text.split(",") if part.strip()}
    if names == {"all"}:
        return frozenset(KINDS)
    unknown = sorted(names - set(KINDS))
    if unknown:
        raise ValueError(f"unknown fault kind {', '.join(unknown)!s}; choose from all, {', '.join(KINDS)}")
    return frozenset(names)


def draw(seed: int, *key: object) -> float:
    """A uniform number in [0, 1) that depends only on the seed and the key."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class FaultPlan:
    """Which faults are switched on, how often, under which seed."""

    seed: int = 0
    rate: float = 0.0
    kinds: frozenset[str] = frozenset()

    def transient(self, path: str, attempt: int) -> str | None:
        """Return the transient fault for the ``attempt``-th request to ``path``, if any."""
        for kind in TRANSIENT:
            if kind in self.kinds and draw(self.seed, kind, path, attempt) < self.rate:
                return kind
        return None

    def permanent(self, kind: str, key: object) -> bool:
        """Whether the object or image ``key`` carries the permanent fault ``kind``."""
        return kind in self.kinds and draw(self.seed, kind, key) < self.rate
