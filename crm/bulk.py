"""Set-based writes: one INSERT … SELECT instead of a Python loop over rows."""

from __future__ import annotations

import json
from datetime import date, datetime

from django.core.exceptions import EmptyResultSet
from django.db import connection, models
from django.db.models.expressions import RawSQL


def insert_from_select(model: type[models.Model], queryset: models.QuerySet, fields: dict[str, str]) -> int:
    """Insert one `model` row per row of `queryset`; skip rows that hit a unique constraint.

    `fields` maps the target field names to annotation names on `queryset`, in order.
    Returns the number of rows inserted.
    """
    source = queryset.order_by().values_list(*fields.values())
    try:
        select_sql, params = source.query.sql_with_params()
    except EmptyResultSet:  # e.g. pk__in=[]: Django knows no row can match
        return 0
    return insert_from_sql(model, list(fields), f"SELECT * FROM ({select_sql}) AS source", params)


def insert_from_sql(model: type[models.Model], fields: list[str], select_sql: str, params: list | tuple) -> int:
    """Insert one `model` row per row of `select_sql`, whose columns are `fields` in order; skip rows that hit a
    unique constraint. `select_sql` must end in a FROM clause without WHERE. Returns the number of rows inserted."""
    opts = model._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(opts.get_field(name).column) for name in fields)
    # WHERE true keeps SQLite's parser from reading ON CONFLICT as a join.
    sql = f"INSERT INTO {quote(opts.db_table)} ({columns}) {select_sql} WHERE true ON CONFLICT DO NOTHING"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _json_cell(field: models.Field, obj: models.Model):
    """A field's value as a JSON cell that PostgreSQL's input function for the column reads back."""
    value = getattr(obj, field.attname)
    if isinstance(field, models.JSONField) or value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _recordset(fields: list[models.Field], objects: list[models.Model]) -> tuple[str, str]:
    """(`jsonb_to_recordset(…) AS source (…)`, its one parameter) holding `fields` of `objects`.

    One JSON parameter instead of a placeholder per cell: psycopg adapts each parameter in
    Python (tens of microseconds a cell), while json.dumps is C and PostgreSQL parses the rest.
    """
    quote = connection.ops.quote_name
    typed = ", ".join(f"{quote(field.column)} {field.cast_db_type(connection)}" for field in fields)
    names = ", ".join(quote(field.column) for field in fields)
    rows = [{field.column: _json_cell(field, obj) for field in fields} for obj in objects]
    source = f"ROWS FROM (jsonb_to_recordset(%s::jsonb) AS ({typed})) WITH ORDINALITY AS source ({names}, ordinality)"
    return source, json.dumps(rows, separators=(",", ":"))


def update_rows(model: type[models.Model], objects: list[models.Model], fields: list[str]) -> None:
    """Write `fields` of `objects` back in one statement.

    On PostgreSQL one `UPDATE … FROM jsonb_to_recordset(…)`: Django's bulk_update builds a CASE
    per field and row, which costs milliseconds of Python per row on a batch of hundreds.
    Elsewhere (SQLite, local runs) bulk_update does.
    """
    if not objects:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objects, fields)
        return
    opts = model._meta
    quote = connection.ops.quote_name
    columns = [opts.get_field(name) for name in fields]
    source, rows = _recordset([opts.pk, *columns], objects)
    assignments = ", ".join(f"{quote(field.column)} = source.{quote(field.column)}" for field in columns)
    pk = quote(opts.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(opts.db_table)} AS target SET {assignments} FROM {source} WHERE target.{pk} = source.{pk}",
            [rows],
        )


def insert_rows(model: type[models.Model], objects: list[models.Model]) -> None:
    """Insert `objects` in one statement and set their primary keys (bulk_create without its per-cell cost)."""
    if not objects:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objects)
        return
    opts = model._meta
    quote = connection.ops.quote_name
    fields = [field for field in opts.concrete_fields if not field.primary_key]
    for obj in objects:
        for field in fields:
            if getattr(obj, field.attname) is None and field.has_default():
                setattr(obj, field.attname, field.get_default())
    source, rows = _recordset(fields, objects)
    names = ", ".join(quote(field.column) for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(opts.db_table)} ({names}) SELECT {names} FROM {source} ORDER BY ordinality "
            f"RETURNING {quote(opts.pk.column)}",
            [rows],
        )
        for obj, (pk,) in zip(objects, cursor.fetchall(), strict=True):
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = connection.alias


def in_values(values, db_type: str):
    """What to pass to `field__in=` for many values: one array parameter on PostgreSQL.

    psycopg scans a query's text once per placeholder, so `IN` with a thousand values costs
    more in Python than the query does in the database; `IN (SELECT unnest(%s::type[]))` has
    one placeholder whatever the count. Elsewhere (SQLite) the values themselves.
    """
    values = list(values)
    if connection.vendor == "postgresql":
        return RawSQL(f"SELECT unnest(%s::{db_type}[])", [values])
    return values
