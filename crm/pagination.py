"""A paginator for big tables: exact counts while they are cheap, the planner's estimate after."""

from __future__ import annotations

import json

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

# Counting this many rows through an index costs a few milliseconds; counting a million
# costs most of a second, so past it we ask the query planner instead.
EXACT_COUNT_LIMIT = 10_000


class EstimatedCountPaginator(Paginator):
    """Count exactly up to EXACT_COUNT_LIMIT rows; beyond that, use PostgreSQL's estimate.

    `is_estimate` tells templates to say "about". On databases without a planner estimate we
    count exactly (SQLite: local runs only).
    """

    is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list.order_by()
        bounded = queryset[: EXACT_COUNT_LIMIT + 1].count()
        if bounded <= EXACT_COUNT_LIMIT:
            return bounded
        estimate = planner_estimate(queryset)
        if estimate is None:
            return queryset.count()
        self.is_estimate = True
        return max(estimate, EXACT_COUNT_LIMIT + 1)


def planner_estimate(queryset) -> int | None:
    """The row count PostgreSQL's planner expects for `queryset`, or None elsewhere."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
