"""Set-based writes: one INSERT … SELECT instead of a Python loop over rows."""

from __future__ import annotations

from django.db import connection, models


def insert_from_select(model: type[models.Model], queryset: models.QuerySet, fields: dict[str, str]) -> int:
    """Insert one `model` row per row of `queryset`; skip rows that hit a unique constraint.

    `fields` maps the target field names to annotation names on `queryset`, in order.
    Returns the number of rows inserted.
    """
    opts = model._meta
    source = queryset.order_by().values_list(*fields.values())
    select_sql, params = source.query.sql_with_params()
    quote = connection.ops.quote_name
    columns = ", ".join(quote(opts.get_field(name).column) for name in fields)
    # The outer SELECT … WHERE true keeps SQLite's parser from reading ON CONFLICT as a join.
    sql = (
        f"INSERT INTO {quote(opts.db_table)} ({columns}) "
        f"SELECT * FROM ({select_sql}) AS source WHERE true ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
