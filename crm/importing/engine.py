"""The import: stream a file into a staging table, then apply it with set-based SQL.

Reading and validating is the only per-row work; every row goes into a staging table (COPY
on PostgreSQL). Applying is a handful of INSERT … SELECT / UPDATE … FROM statements inside
one transaction, so a crash leaves nothing half-imported and the job can simply run again.
Rules, in the order they apply:

- an unsubscribed, cleaned or blocklisted row becomes a suppression (original reason, time
  and note), never a subscription — even for an existing contact, even if another file
  lists the address as subscribed;
- existing contacts' fields follow the job's policy (fill blanks, overwrite, skip);
- a row is subscribed only with a basis: evidence in the row (an opt-in or confirm time)
  or staff attestation for the whole file; never for a suppressed, bounced or
  unsubscribed-from-all address; never over an existing subscription or withdrawal;
- every new subscription gets one consent record carrying the evidence (source system,
  file, line, times, IPs), so importing the same file twice changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address
from operator import itemgetter
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils.dateparse import parse_datetime
from psycopg import sql

from crm.addresses import parse_address
from crm.importing.presets import PRESETS, GenericPreset, Preset, detect_preset
from crm.importing.reading import Table, open_tables
from crm.models import ImportBasis, ImportJob, ImportProblem, ImportStatus

PROBLEM_BATCH = 1000
PROGRESS_EVERY = 10_000
STAGE_BATCH = 5000
# A PostgreSQL row must fit in a page once its long cells are moved out of line (18 bytes
# each remain): a file with more property columns than this (CRM exports can have hundreds)
# has its properties built in Python instead.
MAX_STAGED_PROPERTIES = 250
# SQLite's json_object() takes at most 127 arguments: bigger objects are built in parts.
_SQLITE_OBJECT_PAIRS = 50

# What Python writes for each row. The other person fields, the properties and the evidence
# are built by the database from the row's own cells, as generated columns: on PostgreSQL while the
# COPY runs, so one core trims cells and builds JSON while the other reads the next rows.
# Python builds properties only for sources that need more than their columns (listmonk's
# attributes).
STAGE_COLUMNS = [
    ("seq", "bigint NOT NULL"),
    ("line", "integer NOT NULL"),
    ("email", "text NOT NULL"),
    ("email_normalized", "text NOT NULL"),
    ("is_role", "boolean NOT NULL"),
    # Checked against the known zones here: a list of 600 in a generated column costs PostgreSQL
    # a comparison with each, for every row.
    ("time_zone", "text NOT NULL"),
    ("given_properties", "json"),
    ("ip", "text"),
    ("status", "text NOT NULL"),
    ("has_evidence", "boolean NOT NULL"),
    ("optin_at", "timestamp with time zone"),
    ("status_at", "timestamp with time zone"),
    ("status_note", "text NOT NULL"),
]
# What the apply reads: one table, whatever the number of files in the upload.
_LIMITS = {"first_name": 150, "last_name": 150, "company": 200, "phone": 50, "time_zone": 64, "language": 16}
APPLIED_COLUMNS = [
    *(name for name, _ in STAGE_COLUMNS if name not in ("line", "given_properties")),
    *(name for name in _LIMITS if name != "time_zone"),
    "properties",
    "evidence",
]
# What str.strip() removes, so that the database trims cells exactly as Python does (written out:
# finding them among all code points costs every process 50 ms at start).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_to_json = json.JSONEncoder(ensure_ascii=False, default=str).encode
# A dotted quad without leading zeros is already in the form ip_address() gives back: most
# source IPs skip the parser (a few µs per row); anything else (IPv6) still goes through it.
_PLAIN_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)


@dataclass
class Counts:
    rows: int = 0
    invalid: int = 0
    duplicate: int = 0
    new: int = 0
    updated: int = 0
    subscribed: int = 0
    suppressed: int = 0
    no_consent: int = 0
    kept_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _db_time(value: datetime | None):
    """A datetime as the database driver wants it in raw SQL (naive UTC text on SQLite)."""
    return connection.ops.adapt_datetimefield_value(value) if value is not None else None


def _parse_time(value: str) -> datetime | None:
    """Source times such as Mailchimp's `2023-04-01 10:00:00` (UTC) or ISO 8601; None if unreadable."""
    try:
        parsed = parse_datetime(value.strip()) if value else None
    except ValueError:
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _clean_ip(values: Iterator[str]) -> str | None:
    for value in values:
        if not value:
            continue
        if _PLAIN_IPV4.fullmatch(value):
            return value
        try:
            return str(ip_address(value.strip()))
        except ValueError:
            continue
    return None


def _preset_for(job: ImportJob, table: Table) -> Preset:
    preset_class = detect_preset(table.header, table.name) if job.preset == "auto" else PRESETS[job.preset]
    if preset_class is GenericPreset:
        return GenericPreset(table.header, file_name=table.name, mapping=job.column_mapping)
    return preset_class(table.header, file_name=table.name)


class _Stager:
    """Validates rows for the staging table; keeps the problems and progress to record between writes."""

    def __init__(self, job: ImportJob, progress: Callable[[int], None] | None) -> None:
        self.job = job
        self.progress = progress
        self.progress_due = False
        self.counts = Counts()
        self.seq = 0
        self.problems: list[ImportProblem] = []
        self.db_time = connection.ops.adapt_datetimefield_value

    def problem(self, file_name: str, line: int, reason: str, *, column: str = "", value: str = "") -> None:
        self.counts.invalid += 1
        self.problems.append(
            ImportProblem(
                job=self.job,
                file_name=file_name[:255],
                line=line,
                column=column[:255],
                value=value[:255],
                reason=reason,
            )
        )

    def record_problems_and_progress(self) -> None:
        """Write the problems found so far, and report progress if it is due (which may raise Cancelled)."""
        ImportProblem.objects.bulk_create(self.problems)
        self.problems = []
        if self.progress_due:
            self.progress_due = False
            self.progress(self.counts.rows)

    def staged_rows(self, table: Table, preset: Preset) -> Iterator[tuple | None]:
        """Each good row as STAGE_COLUMNS and then its raw cells (`_raw_cells`), and None where problems or
        progress are due: the caller records those (`record_problems_and_progress`) before it asks for more."""
        counts = self.counts
        report_every = PROGRESS_EVERY if self.progress else 0
        email, column = preset.email_position, preset.email_column
        raw_cells = _raw_cells(preset)
        status_of, properties_of, time_zone = preset.status, _python_properties(preset), preset.time_zone
        optin_times, optin_ips = preset.optin_time_positions, preset.optin_ip_positions
        db_time = self.db_time
        for row in table.rows:
            counts.rows += 1
            if report_every and counts.rows % report_every == 0:
                self.progress_due = True
                yield None
            if row.error:
                self.problem(table.name, row.line, f"line {row.line} {row.error}")
            else:
                cells = row.cells
                given = cells[email].strip()
                try:
                    address = parse_address(given)
                except ValidationError as exc:
                    self.problem(table.name, row.line, exc.messages[0], column=column, value=given)
                else:
                    status = status_of(cells)
                    optin = next((time for position in optin_times if (time := cells[position].strip())), "")
                    optin_at = _parse_time(optin)
                    status_at = _parse_time(status.time)
                    properties = properties_of(cells)
                    self.seq += 1
                    yield (
                        self.seq,
                        row.line,
                        address.given,
                        address.normalized,
                        address.is_role,
                        time_zone(cells)[: _LIMITS["time_zone"]],
                        None if properties is None else _to_json(properties),
                        _clean_ip(cells[position].strip() for position in optin_ips),
                        status.status.value,
                        bool(optin),
                        db_time(optin_at) if optin_at else None,
                        db_time(status_at) if status_at else None,
                        status.note[:1000],
                        *raw_cells(cells),
                    )
            if len(self.problems) >= PROBLEM_BATCH:
                yield None


def _staged_properties(preset: Preset) -> list[tuple[str, int]]:
    """(name, position) of the property columns whose cells the database turns into properties."""
    return preset.property_positions if len(preset.property_positions) <= MAX_STAGED_PROPERTIES else []


def _python_properties(preset: Preset) -> Callable[[list[str]], dict[str, object] | None]:
    """What builds a row's properties in Python; returns None where the database does."""
    if _staged_properties(preset) or not preset.property_positions:
        return preset.properties
    return lambda cells: preset.properties(cells) or preset.column_properties(cells)


def _raw_cells(preset: Preset) -> Callable[[list[str]], tuple[str, ...]]:
    """The cells the database builds fields, properties and evidence from, in the order `_create_stage_part` names
    them."""
    named = [*preset.field_positions, *_staged_properties(preset), *preset.evidence_positions]
    positions = [position for _, position in named]
    if preset.name_position is not None:
        positions.append(preset.name_position)
    if len(positions) > 1:
        return itemgetter(*positions)
    return lambda cells: tuple(cells[position] for position in positions)


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _literal(value: str) -> str:
    """A string as an SQL literal, for the one place that needs them: generated column expressions."""
    if connection.vendor == "postgresql":
        return sql.Literal(value).as_string(connection.connection)
    return "'" + value.replace("'", "''") + "'"


def _json_object(pairs: list[tuple[str, str]]) -> str:
    """SQL for a JSON object of (name, expression) pairs, leaving out the members whose expression is NULL."""
    if connection.vendor == "postgresql":
        if not pairs:
            return "CAST('{}' AS jsonb)"
        names = ", ".join(_literal(name) for name, _ in pairs)
        values = ", ".join(expression for _, expression in pairs)
        return f"jsonb_strip_nulls(jsonb_object(ARRAY[{names}], ARRAY[{values}]))"
    # A merge patch drops its null members (RFC 7396), and merges the object's parts in order.
    merged = "'{}'"
    for start in range(0, len(pairs), _SQLITE_OBJECT_PAIRS):
        members = ", ".join(
            f"{_literal(name)}, {expression}" for name, expression in pairs[start : start + _SQLITE_OBJECT_PAIRS]
        )
        merged = f"json_patch({merged}, json_object({members}))"
    return merged


def _create_stage_part(table: str, preset: Preset | None, file_name: str) -> str:
    """Create the staging table for one file of the upload; returns the column list its rows are written to."""
    postgresql = connection.vendor == "postgresql"
    json_type = "jsonb" if postgresql else "text"
    whitespace = _literal(WHITESPACE)
    field_names = [name for name, _ in preset.field_positions] if preset else []
    property_names = [name for name, _ in _staged_properties(preset)] if preset else []
    evidence_names = [name for name, _ in preset.evidence_positions] if preset else []
    raw = [
        *(f"f{index}" for index in range(len(field_names))),
        *(f"p{index}" for index in range(len(property_names))),
        *(f"e{index}" for index in range(len(evidence_names))),
        *(["full_name"] if preset and preset.name_position is not None else []),
    ]

    def trimmed(column: str) -> str:
        return f"{'btrim' if postgresql else 'trim'}({column}, {whitespace})"

    # Properties keep the cell as written, when it is not blank; evidence keeps it trimmed.
    properties = _json_object(
        [
            (name, f"CASE WHEN {trimmed(f'p{index}')} <> '' THEN p{index} END")
            for index, name in enumerate(property_names)
        ]
    )
    evidence = _json_object(
        [(name, f"NULLIF({trimmed(f'e{index}')}, '')") for index, name in enumerate(evidence_names)]
    )
    # The evidence starts with where the row came from; its line number is the row's own.
    source = _to_json({"source_system": preset.source_system if preset else "", "file": file_name})
    opening = _literal(source[:-1] + ', "line": ')
    start = f"{opening} || CAST(line AS text) || '}}'"
    evidence = f"CAST({start} AS jsonb) || {evidence}" if postgresql else f"json_patch({start}, {evidence})"
    fields = _field_expressions(field_names, "full_name" in raw, trimmed)
    columns = [
        *(f"{name} {kind.replace('json', json_type)}" for name, kind in STAGE_COLUMNS),
        *(f"{name} text NOT NULL" for name in raw),
        "duplicate boolean NOT NULL DEFAULT FALSE",
        *(f"{name} text GENERATED ALWAYS AS ({expression}) STORED" for name, expression in fields.items()),
        f"properties {json_type} GENERATED ALWAYS AS (COALESCE(given_properties, {properties})) STORED",
        f"evidence {json_type} GENERATED ALWAYS AS ({evidence}) STORED",
    ]
    unlogged = "UNLOGGED " if postgresql else ""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
        cursor.execute(f"CREATE {unlogged}TABLE {_quote(table)} ({', '.join(columns)})")
    return ", ".join([*(name for name, _ in STAGE_COLUMNS), *raw])


def _field_expressions(mapped: list[str], has_full_name: bool, trimmed: Callable[[str], str]) -> dict[str, str]:
    """SQL for each person field but the time zone: the trimmed cell of its column (its first characters, as many
    as the contact keeps), or the first name and the rest of a full name, or ""."""
    postgresql = connection.vendor == "postgresql"
    cells = {name: trimmed(f"f{index}") for index, name in enumerate(mapped)}
    if has_full_name:
        name = trimmed("full_name")
        space = f"strpos({name}, ' ')" if postgresql else f"instr({name}, ' ')"
        first = f"CASE WHEN {space} > 0 THEN substr({name}, 1, {space} - 1) ELSE {name} END"
        last = f"CASE WHEN {space} > 0 THEN substr({name}, {space} + 1) ELSE '' END"
        for field, part in (("first_name", first), ("last_name", last)):
            otherwise = cells.get(field, "''")
            cells[field] = f"CASE WHEN {part} <> '' THEN {part} ELSE {otherwise} END"
    return {
        field: f"substr({cells[field]}, 1, {limit})" if field in cells else "''"
        for field, limit in _LIMITS.items()
        if field != "time_zone"
    }


def _join_stage_parts(table: str, parts: list[str]) -> None:
    """Make `table` the staging table the apply reads, from the parts that hold each file's rows."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
        if len(parts) == 1:
            cursor.execute(f"ALTER TABLE {_quote(parts[0])} RENAME TO {_quote(table)}")
            return
        columns = ", ".join(APPLIED_COLUMNS)
        union = " UNION ALL ".join(f"SELECT {columns} FROM {_quote(part)}" for part in parts)
        unlogged = "UNLOGGED " if connection.vendor == "postgresql" else ""
        cursor.execute(
            f"CREATE {unlogged}TABLE {_quote(table)} AS SELECT {columns}, FALSE AS duplicate FROM ({union}) u"
        )
        for part in parts:
            cursor.execute(f"DROP TABLE {_quote(part)}")


def _fill_stage(table: str, columns: str, stager: _Stager, rows: Iterator[tuple | None]) -> None:
    # Rows are written as they are read (on PostgreSQL one COPY stores a row while Python reads
    # the next), and each write is a short transaction of its own. A write ends where problems
    # or progress are due: they are recorded (and the job may turn out cancelled) through this
    # connection, which psycopg cannot share with an open COPY; on SQLite, other writers (the
    # admin's cancel) get the lock between writes.
    while _write_stage(table, columns, rows):
        stager.record_problems_and_progress()
    stager.record_problems_and_progress()


def _write_stage(table: str, columns: str, rows: Iterator[tuple | None]) -> bool:
    """Write rows until the reader pauses (True) or has no more (False)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {_quote(table)} ({columns}) FROM STDIN") as copy:
                write = copy.write_row
                for row in rows:
                    if row is None:
                        return True
                    write(row)
            return False
        batch: list[tuple] = []
        more = False
        for row in rows:
            if row is not None:
                batch.append(row)
            if row is None or len(batch) == STAGE_BATCH:
                more = True
                break
        if batch:
            placeholders = ", ".join(["%s"] * len(batch[0]))
            cursor.executemany(f"INSERT INTO {_quote(table)} ({columns}) VALUES ({placeholders})", batch)
        return more


def stage_file(
    job: ImportJob,
    path: Path,
    *,
    table: str,
    progress: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> Counts:
    """Read every table of the file (its first `limit` rows) into the staging table `table`; record each bad row."""
    stager = _Stager(job, progress)
    parts: list[str] = []
    try:
        for source in open_tables(path, display_name=job.file_name, limit=limit):
            preset = _preset_for(job, source)
            if preset.email_column is None:
                stager.problem(source.name, 1, "no email column found; map one in the import settings")
                continue
            parts.append(f"{table}_{len(parts)}")
            columns = _create_stage_part(parts[-1], preset, source.name)
            _fill_stage(parts[-1], columns, stager, stager.staged_rows(source, preset))
        if not parts:
            parts.append(f"{table}_0")
            _create_stage_part(parts[-1], None, "")
        stager.record_problems_and_progress()
        _join_stage_parts(table, parts)
    finally:
        with connection.cursor() as cursor:
            for part in parts:
                cursor.execute(f"DROP TABLE IF EXISTS {_quote(part)}")
    if connection.vendor == "postgresql":
        # Only the columns the apply joins and filters on: sampling the wide columns (properties,
        # evidence) would cost more than every estimate they could improve.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {_quote(table)} (email_normalized, seq, status, has_evidence)")
    return stager.counts


def run_import(
    job: ImportJob,
    path: Path,
    *,
    now: datetime,
    progress: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> Counts:
    """Import the file at `path` as `job` describes; a dry run applies everything, then rolls back.

    `limit` reads only the first rows of each table (the admin's preview). Updates the job's
    status, counts and problems. Raises what the file, the database or `progress` raised after
    marking the job failed, unless it was cancelled meanwhile.
    """
    table = f"crm_import_stage_{job.pk}"
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING, started_at=now)
    job.problems.all().delete()
    try:
        counts = stage_file(job, path, table=table, progress=progress, limit=limit)
        with transaction.atomic():
            _apply(job, table, counts, now=now)
            if job.dry_run:
                transaction.set_rollback(True)
    except Exception as exc:
        running = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.RUNNING)
        running.update(status=ImportStatus.FAILED, message=str(exc)[:2000])
        raise
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportStatus.DONE, counts=counts.as_dict(), rows_read=counts.rows, finished_at=now
    )
    return counts


def _json(expression: str) -> str:
    return f"CAST({expression} AS jsonb)" if connection.vendor == "postgresql" else expression


def _merged_properties(existing: str, incoming: str, *, incoming_wins: bool) -> str:
    if connection.vendor == "postgresql":
        return f"({existing} || {incoming})" if incoming_wins else f"({incoming} || {existing})"
    return f"json_patch({existing}, {incoming})" if incoming_wins else f"json_patch({incoming}, {existing})"


def _execute(sql: str, params: list | tuple = ()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _count(sql: str, params: list | tuple = ()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def _apply(job: ImportJob, table: str, counts: Counts, *, now: datetime) -> None:
    stage = _quote(table)
    now = _db_time(now)
    if connection.vendor == "postgresql":
        # The ordered inserts sort a million staging rows; keep the sorts in memory.
        _execute("SET LOCAL work_mem = '256MB'")
    source = f"import #{job.pk}: {job.file_name}"[:255]
    staff = job.created_by_id
    # Grouped, not probed row by row: the stage needs no index, and in the usual file (no
    # duplicates) the update finds nothing to write.
    _execute(
        f"UPDATE {stage} SET duplicate = TRUE FROM (SELECT email_normalized, MIN(seq) AS first_seq FROM {stage} "
        "GROUP BY email_normalized HAVING COUNT(*) > 1) d "
        f"WHERE {stage}.email_normalized = d.email_normalized AND {stage}.seq > d.first_seq"
    )
    counts.duplicate = _count(f"SELECT COUNT(*) FROM {stage} WHERE duplicate")

    # Every negative row counts, duplicates included: the worst word about an address wins.
    counts.suppressed = _execute(
        "INSERT INTO crm_suppression (email, reason, source, note, occurred_at, created_at, created_by_id) "
        "SELECT email_normalized, CASE status WHEN 'cleaned' THEN 'imported_cleaned' ELSE 'imported_unsubscribe' END, "
        f"%s, status_note, status_at, %s, CAST(%s AS integer) FROM {stage} "
        "WHERE status IN ('unsubscribed', 'cleaned') ORDER BY seq "
        "ON CONFLICT (email, reason) DO NOTHING",
        [source, now, staff],
    )

    # Existing contacts first: the join finds exactly them, and the insert then leaves them out
    # before building their rows (a re-import would otherwise parse every row's properties only
    # for the conflict rule to drop it; the rule stays for a contact added meanwhile). A scalar
    # subquery, not NOT EXISTS: that becomes an anti-join reading the whole contact table, and
    # 100k rows into a million contacts took three times as long as into an empty table.
    counts.updated = _update_existing(job, stage, now=now)
    counts.new = _execute(
        "INSERT INTO crm_contact (email, email_normalized, is_role_address, first_name, last_name, company, phone, "
        "time_zone, language, properties, source, created_at, updated_at, sends_since_engagement, "
        "engagement_status, do_not_contact, email_status) "
        "SELECT email, email_normalized, is_role, first_name, last_name, company, phone, time_zone, language, "
        "properties, 'import', %s, %s, 0, 'new', FALSE, "
        f"CASE WHEN status = 'cleaned' THEN 'hard_bounced' ELSE 'ok' END FROM {stage} s "
        "WHERE NOT duplicate "
        "AND (SELECT 1 FROM crm_contact c WHERE c.email_normalized = s.email_normalized) IS NULL "
        "ORDER BY email_normalized ON CONFLICT (email_normalized) DO NOTHING",
        [now, now],
    )
    for subscription_type in job.subscription_types.all():
        counts.subscribed += _subscribe(job, table, subscription_type.pk, source=source, now=now)
    counts.kept_out = _count(
        f"SELECT COUNT(*) FROM {stage} s WHERE NOT s.duplicate AND s.status = 'subscribed' AND EXISTS "
        "(SELECT 1 FROM crm_suppression x WHERE x.email = s.email_normalized)"
    )
    if job.basis == ImportBasis.NONE or not job.subscription_types.exists():
        counts.no_consent = _count(f"SELECT COUNT(*) FROM {stage} WHERE NOT duplicate AND status = 'subscribed'")
    elif job.basis == ImportBasis.EVIDENCE:
        counts.no_consent = _count(
            f"SELECT COUNT(*) FROM {stage} WHERE NOT duplicate AND status = 'subscribed' AND NOT has_evidence"
        )


def _update_existing(job: ImportJob, stage: str, *, now) -> int:
    if job.field_policy == "skip":
        return 0
    fill = job.field_policy == "fill"
    assignments, changes = [], []
    for name in _LIMITS:
        current, incoming = f"crm_contact.{name}", f"s.{name}"
        takes = f"{incoming} <> '' AND {current} = ''" if fill else f"{incoming} <> '' AND {incoming} <> {current}"
        assignments.append(f"{name} = CASE WHEN {takes} THEN {incoming} ELSE {current} END")
        changes.append(f"({takes})")
    merged = _merged_properties("crm_contact.properties", "s.properties", incoming_wins=not fill)
    assignments.append(f"properties = {merged}")
    if connection.vendor == "postgresql":
        # A re-import's properties are already there: containment answers that without
        # building the merged document for every row.
        changes.append(f"(NOT crm_contact.properties @> s.properties AND {merged} <> crm_contact.properties)")
    else:
        # SQLite keeps JSON as text: compare both sides in json()'s minified form.
        changes.append(f"({merged} <> json(crm_contact.properties))")
    return _execute(
        f"UPDATE crm_contact SET {', '.join(assignments)}, updated_at = %s FROM {stage} s "
        "WHERE NOT s.duplicate AND s.email_normalized = crm_contact.email_normalized "
        f"AND ({' OR '.join(changes)})",
        [now],
    )


def _subscribe(job: ImportJob, table: str, type_id: int, *, source: str, now) -> int:
    """Subscribe the rows the basis allows to one type; returns how many subscriptions changed."""
    if job.basis == ImportBasis.NONE:
        return 0
    stage, candidates = _quote(table), _quote(f"{table}_candidates")
    evidence_rule = "" if job.basis == ImportBasis.ATTESTED else "AND s.has_evidence "
    # The candidates are found once, before anything is written: rows that may be subscribed,
    # whose subscription is missing or pending, and who never withdrew consent for this type or
    # for everything. Asked inside the inserts, the consent log and subscriptions being written
    # are also being searched, and a plan with a nested loop over them never ends.
    _execute(f"DROP TABLE IF EXISTS {candidates}")
    _execute(
        f"CREATE TEMPORARY TABLE {candidates} AS "
        "SELECT c.id AS contact_id, c.email_normalized, s.ip, s.evidence, s.optin_at "
        f"FROM {stage} s JOIN crm_contact c ON c.email_normalized = s.email_normalized "
        f"WHERE NOT s.duplicate AND s.status = 'subscribed' {evidence_rule}"
        "AND c.email_status = 'ok' AND c.unsubscribed_from_all_at IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM crm_suppression x WHERE x.email = c.email_normalized) "
        "AND NOT EXISTS (SELECT 1 FROM crm_subscription u WHERE u.contact_id = c.id "
        "AND u.subscription_type_id = %s AND u.status <> 'pending') "
        "AND NOT EXISTS (SELECT 1 FROM crm_consentrecord w WHERE w.contact_id = c.id AND w.action = 'withdrawn' "
        "AND (w.subscription_type_id = %s OR w.subscription_type_id IS NULL))",
        [type_id, type_id],
    )
    attested = job.basis == ImportBasis.ATTESTED
    consent_text = job.attestation if attested else "Opt-in recorded by the source system (see evidence)."
    evidence = _merged_properties("k.evidence", _json("%s"), incoming_wins=True) if attested else "k.evidence"
    params = [json.dumps({"attestation": job.attestation})] if attested else []
    # In address order, like the new contacts: the address indexes then grow at one end, and
    # so do the indexes that lead with the contact (its ids follow the same order).
    changed = _execute(
        "INSERT INTO crm_consentrecord (contact_id, email, subscription_type_id, action, method, lawful_basis, "
        "source_detail, staff_user_id, consent_text, ip_address, user_agent, evidence, created_at) "
        f"SELECT k.contact_id, k.email_normalized, %s, 'granted', 'import', %s, %s, CAST(%s AS integer), %s, "
        f"{'CAST(k.ip AS inet)' if connection.vendor == 'postgresql' else 'k.ip'}, '', {evidence}, %s "
        f"FROM {candidates} k ORDER BY k.email_normalized",
        [type_id, job.lawful_basis, source, job.created_by_id, consent_text, *params, now],
    )
    _execute(
        "UPDATE crm_subscription SET status = 'subscribed', subscribed_at = %s, updated_at = %s "
        "WHERE subscription_type_id = %s AND status = 'pending' "
        f"AND contact_id IN (SELECT contact_id FROM {candidates})",
        [now, now, type_id],
    )
    _execute(
        "INSERT INTO crm_subscription "
        "(contact_id, subscription_type_id, status, created_at, subscribed_at, updated_at) "
        f"SELECT k.contact_id, %s, 'subscribed', %s, COALESCE(k.optin_at, %s), %s FROM {candidates} k "
        "ORDER BY k.email_normalized ON CONFLICT (contact_id, subscription_type_id) DO NOTHING",
        [type_id, now, now, now],
    )
    _execute(f"DROP TABLE {candidates}")
    return changed
