"""The statuses of records and images, defined once: what happened to one object or one image.

Every ``objects/`` row and every status shard row carries one of these in its ``status`` column
(as a plain string: ``Status`` is a ``StrEnum``, equal to its value), and every answer a host
gives is classified into one (``net.fetch.classify``).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """What one answer, record or image came to."""

    OK = "ok"  # a record (objects/), or an image in the store
    CSV = "csv"  # a record taken from MetObjects.csv
    NOT_FOUND = "not_found"  # 404 (the API: "ObjectID not found")
    NOT_VALID = "not_valid"  # the API's 404 "Not a valid object" (withdrawn, on loan)
    INVALID_ID = "invalid_id"  # the API's 400 "could not parse objectID"
    BLOCKED = "blocked"  # the bot protection's HTML page, with 403 or 200
    TRANSIENT = "transient"  # 429, 5xx, timeouts, cut bodies, resets, bad gzip
    TOO_LARGE = "too_large"  # a body over the byte cap (after decompression)
    FAILED = "failed"  # anything else, with its reason
    NO_IMAGE = "no_image"  # an object without an image URL (or its kept original)
    BAD_IMAGE = "bad_image"  # bytes that are no image metdata decodes (or a decompression bomb)

    @property
    def retryable(self) -> bool:
        """Whether asking again later may give another answer."""
        return self in RETRYABLE


#: The answers worth asking again: the host may answer otherwise later.
RETRYABLE = frozenset({Status.TRANSIENT, Status.BLOCKED})
#: The ``objects/`` rows that hold a record (the others hold only the id and why).
WITH_RECORD = (Status.OK, Status.CSV)
#: Every status an ``objects/`` row may carry.
RECORD_STATUSES = (
    Status.OK,
    Status.CSV,
    Status.NOT_FOUND,
    Status.NOT_VALID,
    Status.INVALID_ID,
    Status.BLOCKED,
    Status.TRANSIENT,
    Status.TOO_LARGE,
    Status.FAILED,
)
#: Every status an image slot may carry, in the images stage's order.
IMAGE_STATUSES = (
    Status.OK,
    Status.NO_IMAGE,
    Status.NOT_FOUND,
    Status.BAD_IMAGE,
    Status.TOO_LARGE,
    Status.BLOCKED,
    Status.TRANSIENT,
    Status.FAILED,
)
