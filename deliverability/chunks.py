"""Big writes in chunks: at most CHUNK_ROWS rows per transaction, so no lock is held for long.

A chunk is a range of primary keys, never a list of ids fetched into Python: a job asks the
database for the smallest and largest key it will touch, then runs one statement per range of
CHUNK_ROWS keys, each in its own transaction. A range of that many keys holds at most that many
rows, so a send batch waiting for one of those rows waits for one chunk at most.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from django.db import models, transaction
from django.db.models import Count, Max, Min

CHUNK_ROWS = 10_000


def key_ranges(queryset: models.QuerySet, *, size: int | None = None) -> Iterator[tuple[int, int]]:
    """[low, high) key ranges of `size` keys covering every row of `queryset` (one aggregate query)."""
    size = size or CHUNK_ROWS
    # With MIN and MAX alone PostgreSQL walks the primary key from each end until a row matches:
    # a millisecond when many do, two random reads of the whole table when none does (the nightly
    # case). The COUNT makes it one sequential scan either way.
    bounds = queryset.order_by().aggregate(low=Min("pk"), high=Max("pk"), rows=Count("pk"))
    if not bounds["rows"]:
        return
    for low in range(bounds["low"], bounds["high"] + 1, size):
        yield low, low + size


def in_chunks(queryset: models.QuerySet, write: Callable[[models.QuerySet], int], *, size: int | None = None) -> int:
    """Call `write` on each key range of `queryset` in its own transaction; return the sum of what it returns."""
    total = 0
    for low, high in key_ranges(queryset, size=size):
        with transaction.atomic():
            total += write(queryset.filter(pk__gte=low, pk__lt=high))
    return total


def update_in_chunks(queryset: models.QuerySet, *, size: int | None = None, **changes) -> int:
    """`queryset.update(**changes)`, one key range per transaction. Returns the rows changed."""
    return in_chunks(queryset, lambda chunk: chunk.update(**changes), size=size)
