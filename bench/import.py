"""Contact import: Mailchimp exports of a million rows through the real import path.

Generates a deterministic Mailchimp audience export (a subscribed file, most rows with
opt-in or confirmation evidence, and an unsubscribed file of other addresses) and imports it
with `run_import`, as the import screen and `manage.py import_contacts` do: one job, one
subscription type, basis "evidence", so the import writes contacts, subscriptions, consent
records and suppressions. Each phase runs in a fresh process, so its peak RSS is its own.
The baseline, measured in the same run, is a plain `COPY` of the subscribed file into a
typed table with a unique `lower(email)` index; django-import-export's row-by-row import is
printed as a reference point. After the million-row import, the rows it wrote (contacts,
subscriptions, consent records) are copied out and `COPY`-ed into empty copies of their tables
with the same indexes and foreign keys: the least any import that writes those rows can cost,
printed beside the goal it is judged by. Between phases the CRM tables are vacuumed and analyzed, as
autovacuum would have done between two real imports.

    make bench BENCHES=import  # the defaults: 1M subscribed rows, 100k unsubscribed
    .venv/bin/python bench/import.py --rows 200000 --unsubscribed 20000 --database-url postgres://…/…bench…
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import multiprocessing
import os
import random
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import psycopg
from common import add_database_url, checked_args, configure_django, ensure_database
from psycopg import sql

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/deliverwell_bench_import"
SEED = 20261122
EXPORT_HASH = hashlib.sha256(str(SEED).encode()).hexdigest()[:10]
SUBSCRIPTION_TYPE = "Newsletter"
REFERENCE_ROWS = 10_000
BASELINE_TABLE = "bench_import_baseline"
DATA_TABLES = ["crm_contact", "crm_subscription", "crm_consentrecord", "crm_suppression"]
FLOOR_SCHEMA = "bench_import_floor"
# What a subscribed file's import writes (its suppressions table stays empty).
WRITTEN_TABLES = ["crm_contact", "crm_subscription", "crm_consentrecord"]
CRM_TABLES = [*DATA_TABLES, "crm_importjob"]

# The goals from issue #4.
MAX_NEW_RATIO = 3.0
MAX_AGAIN_RATIO = 4.0
MIN_GROWN_RATE = 0.7
MAX_RSS_MB = 300
# "Flat" peak RSS: the large import may use at most this much more than the small one.
MAX_RSS_GROWTH = 1.25

SUBSCRIBED_HEADER = [
    "Email Address", "First Name", "Last Name", "Address", "Phone Number", "MEMBER_RATING", "OPTIN_TIME",
    "OPTIN_IP", "CONFIRM_TIME", "CONFIRM_IP", "LATITUDE", "LONGITUDE", "GMTOFF", "DSTOFF", "TIMEZONE", "CC",
    "REGION", "LAST_CHANGED", "LEID", "EUID", "NOTES", "TAGS",
]  # fmt: skip
# Mailchimp's unsubscribed file replaces LAST_CHANGED with the UNSUB_* columns.
UNSUB_COLUMNS = ["UNSUB_TIME", "UNSUB_CAMPAIGN_TITLE", "UNSUB_CAMPAIGN_ID", "UNSUB_REASON", "UNSUB_REASON_OTHER"]
UNSUBSCRIBED_HEADER = [*SUBSCRIBED_HEADER[:17], *UNSUB_COLUMNS, *SUBSCRIBED_HEADER[18:]]
BASELINE_TYPES = {
    "MEMBER_RATING": "smallint", "OPTIN_TIME": "timestamptz", "OPTIN_IP": "inet", "CONFIRM_TIME": "timestamptz",
    "CONFIRM_IP": "inet", "LATITUDE": "double precision", "LONGITUDE": "double precision", "GMTOFF": "smallint",
    "DSTOFF": "smallint", "LAST_CHANGED": "timestamptz", "LEID": "bigint",
}  # fmt: skip

FIRST_NAMES = [
    "Alice", "Amara", "Anders", "Beatriz", "Bob", "Carmen", "Carol", "Chen", "Dan", "Dmitri",
    "Elena", "Erin", "Fatima", "Frank", "Giulia", "Grace", "Hana", "Heidi", "Ivan", "Jamal",
    "Judy", "Kenji", "Lars", "Leila", "Mallory", "Marta", "Mateo", "Niaj", "Noor", "Olga",
]  # fmt: skip
LAST_NAMES = [
    "Andersen", "Baker", "Costa", "Dubois", "Eriksson", "Fischer", "Garcia", "Haddad", "Ito", "Jones",
    "Kowalski", "Larsen", "Mendes", "Moreau", "Nakamura", "Novak", "Okafor", "Ortiz", "Petrov", "Quinn",
    "Rossi", "Sato", "Schmidt", "Silva", "Smith", "Tanaka", "Wagner", "Walsh", "Zhang", "Müller",
]  # fmt: skip
DOMAINS = ["mail.example", "post.example", "inbox.example", "webmail.example", "posteo.example"]
# Time zone, country, region, latitude, longitude, GMT and DST offsets, as Mailchimp geolocates them.
PLACES = [
    ("America/New_York", "US", "NY", 40.71, -74.01, -5, -4),
    ("America/Chicago", "US", "IL", 41.88, -87.63, -6, -5),
    ("America/Los_Angeles", "US", "CA", 34.05, -118.24, -8, -7),
    ("Europe/London", "GB", "ENG", 51.51, -0.13, 0, 1),
    ("Europe/Berlin", "DE", "BE", 52.52, 13.40, 1, 2),
    ("Europe/Paris", "FR", "IDF", 48.86, 2.35, 1, 2),
    ("Australia/Sydney", "AU", "NSW", -33.87, 151.21, 10, 11),
    ("America/Sao_Paulo", "BR", "SP", -23.55, -46.63, -3, -3),
]
TAGS = ["", "", "", '"customer"', '"webinar 2025"', '"customer","vip"']
UNSUB_REASONS = ["NORMAL", "NORMAL", "NORMAL", "NOSIGNUP", "INAPPROPRIATE", "SPAM", "OTHER"]
HISTORY_START = datetime(2016, 1, 1, tzinfo=UTC)
HISTORY_SECONDS = 10 * 365 * 86400


@dataclass(frozen=True)
class ExportFile:
    path: Path
    rows: int
    with_evidence: int


@dataclass
class Measured:
    """What one phase's process measured: wall time, its own peak RSS, and what it wrote."""

    seconds: float
    peak_rss_mb: float
    counts: dict[str, int] = field(default_factory=dict)
    # Seconds per kind of SQL statement (statements sent through Django's cursor; not COPY).
    statements: dict[str, float] = field(default_factory=dict)
    # CPU seconds of this process and of its PostgreSQL backend: on a shared machine the wall
    # time moves with everything else that runs, the CPU a phase needs much less.
    python_cpu: float = 0.0
    backend_cpu: float = 0.0
    statements_backend_cpu: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase:
    name: str
    rows: int
    measured: Measured
    goal: str = ""
    failures: tuple[str, ...] = ()

    @property
    def rate(self) -> float:
        return self.rows / self.measured.seconds


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the subscribed file")
    parser.add_argument("--unsubscribed", type=int, default=100_000, help="rows in the unsubscribed file")
    add_database_url(parser, DEFAULT_DATABASE_URL)
    args = checked_args(parser, argv)
    return args


# The export.


def moment(rng: random.Random, after: datetime, span_seconds: float) -> datetime:
    return after + timedelta(seconds=rng.random() * span_seconds)


def stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def ip(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
    return f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def address(rng: random.Random, n: int, first: str, last: str) -> str:
    """A unique address for person `n`: some capitalized, one in a thousand a role mailbox or an IDN domain."""
    if n % 997 == 0:
        return f"info@shop{n}.example"
    last = last.replace("ü", "ue")
    local = rng.choice((f"{first}.{last}{n}", f"{first[0]}{last}{n}", f"{last}_{first}{n}"))
    email = f"{local}@{'bücher.example' if n % 1009 == 0 else rng.choice(DOMAINS)}"
    return email if rng.random() < 0.15 else email.lower()


def person_cells(rng: random.Random, n: int) -> tuple[list[str], datetime, bool]:
    """The cells from Email Address to REGION, the opt-in time, and whether the row proves opt-in."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    optin = moment(rng, HISTORY_START, HISTORY_SECONDS)
    kind = rng.random()
    double_optin, single_optin = kind < 0.75, 0.75 <= kind < 0.9
    confirm = optin + timedelta(seconds=rng.randrange(30, 3600))
    timezone, country, region, latitude, longitude, gmtoff, dstoff = rng.choice(PLACES)
    located = rng.random() < 0.5
    cells = [
        address(rng, n, first, last),
        first if rng.random() < 0.95 else "",
        last if rng.random() < 0.9 else "",
        f"{rng.randrange(1, 200)} Main St  Springfield  IL  {rng.randrange(10000, 99999)}  US"
        if rng.random() < 0.1
        else "",
        f"+49 30 {rng.randrange(10**6, 10**7)}" if rng.random() < 0.25 else "",
        str(rng.choice((1, 2, 2, 2, 3, 3, 4, 5))),
        stamp(optin) if double_optin or single_optin else "",
        ip(rng) if double_optin or single_optin else "",
        stamp(confirm) if double_optin else "",
        ip(rng) if double_optin else "",
        f"{latitude + rng.uniform(-0.5, 0.5):.7f}" if located else "",
        f"{longitude + rng.uniform(-0.5, 0.5):.7f}" if located else "",
        str(gmtoff) if located else "",
        str(dstoff) if located else "",
        timezone if located else "",
        country if located else "",
        region if located else "",
    ]
    return cells, optin, double_optin or single_optin


def mailchimp_ids(rng: random.Random, n: int) -> list[str]:
    """LEID, EUID, NOTES and TAGS."""
    notes = "Met at the trade fair" if rng.random() < 0.02 else ""
    return [str(100_000_000 + n), f"{n * 2654435761 % 16**10:010x}", notes, rng.choice(TAGS)]


def subscribed_rows(rng: random.Random, start: int, count: int) -> Iterator[tuple[list[str], bool]]:
    for n in range(start, start + count):
        cells, optin, evidence = person_cells(rng, n)
        yield [*cells, stamp(moment(rng, optin, 86400 * 30)), *mailchimp_ids(rng, n)], evidence


def unsubscribed_rows(rng: random.Random, start: int, count: int) -> Iterator[tuple[list[str], bool]]:
    for n in range(start, start + count):
        cells, optin, evidence = person_cells(rng, n)
        unsubscribed = moment(rng, optin, 86400 * 365)
        reason = rng.choice(UNSUB_REASONS)
        unsub = [
            stamp(unsubscribed),
            f"Newsletter {unsubscribed:%B %Y}",
            f"{n * 40503 % 16**10:010x}",
            reason,
            "Too many emails" if reason == "OTHER" else "",
        ]
        yield [*cells, *unsub, *mailchimp_ids(rng, n)], evidence


def write_export(path: Path, header: list[str], rows: Iterator[tuple[list[str], bool]]) -> ExportFile:
    """Write rows as Mailchimp does (every cell quoted, CRLF); count them and those with evidence."""
    count = with_evidence = 0
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(header)
        for cells, evidence in rows:
            writer.writerow(cells)
            count += 1
            with_evidence += evidence
    return ExportFile(path, count, with_evidence)


def write_exports(directory: Path, rows: int, unsubscribed: int) -> tuple[ExportFile, ExportFile]:
    """The subscribed and unsubscribed files of one audience: different people, as Mailchimp splits them."""
    rng = random.Random(SEED)
    return (
        write_export(
            directory / f"subscribed_email_audience_export_{EXPORT_HASH}.csv",
            SUBSCRIBED_HEADER,
            subscribed_rows(rng, 0, rows),
        ),
        write_export(
            directory / f"unsubscribed_email_audience_export_{EXPORT_HASH}.csv",
            UNSUBSCRIBED_HEADER,
            unsubscribed_rows(rng, rows, unsubscribed),
        ),
    )


# The phases, each run in a child process.


def peak_rss_mb() -> float:
    """This process's peak RSS. Not getrusage(): its ru_maxrss keeps the forked parent's peak across exec."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


def backend_cpu_seconds(pid: int) -> float:
    """CPU seconds a PostgreSQL backend on this machine has used (0 if its /proc entry cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clock(backend_pid: int) -> tuple[float, float, float]:
    """Now: wall time, this process's CPU time, and a PostgreSQL backend's CPU time."""
    return time.perf_counter(), time.process_time(), backend_cpu_seconds(backend_pid)


def elapsed(backend_pid: int, started: tuple[float, float, float]) -> tuple[float, float, float]:
    """Wall seconds, this process's CPU seconds and the backend's CPU seconds since `started`."""
    now = clock(backend_pid)
    return now[0] - started[0], now[1] - started[1], now[2] - started[2]


def in_child(task: Callable[..., Measured], *args: object) -> Measured:
    """Run one phase in a fresh process, so the peak RSS it reports is that phase's alone."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(task, *args).result()


def copy_baseline(database_url: str, path: Path) -> Measured:
    """COPY the file into a typed table with a unique index on lower(email), like crm_contact's on the address."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(BASELINE_TYPES.get(name, "text")))
        for name in SUBSCRIBED_HEADER
    )
    # Mailchimp quotes empty cells: FORCE_NULL reads them as NULL in the typed columns.
    typed = sql.SQL(", ").join(map(sql.Identifier, BASELINE_TYPES))
    table = sql.Identifier(BASELINE_TABLE)
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(table, columns))
        conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (lower({}))").format(table, sql.Identifier("Email Address")))
        conn.commit()
        backend = conn.info.backend_pid
        started = clock(backend)
        copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true, FORCE_NULL ({}))").format(table, typed)
        with conn.cursor().copy(copy) as stream, path.open("rb") as file:
            while chunk := file.read(1 << 20):
                stream.write(chunk)
        conn.commit()
        seconds, python_cpu, used = elapsed(backend, started)
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return Measured(seconds, peak_rss_mb(), {"rows": rows}, python_cpu=python_cpu, backend_cpu=used)


def copy_what_the_import_wrote(database_url: str, directory: Path) -> Measured:
    """COPY the rows the import wrote into empty copies of their tables, with the same indexes and deferred foreign
    keys, in one transaction: what writing those rows costs PostgreSQL with no reading, checking or SQL around it."""
    schema = sql.Identifier(FLOOR_SCHEMA)
    dumps = {table: directory / f"{table}.copy" for table in WRITTEN_TABLES}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table, dump in dumps.items():
            copy = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(sql.Identifier(table))
            with conn.cursor().copy(copy) as stream, dump.open("wb") as file:
                for chunk in stream:
                    file.write(chunk)
        foreign_keys = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid = ANY(%s::regclass[])",
            [WRITTEN_TABLES],
        ).fetchall()
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        for table in map(sql.Identifier, WRITTEN_TABLES):
            conn.execute(sql.SQL("CREATE TABLE {}.{} (LIKE public.{} INCLUDING ALL)").format(schema, table, table))
        # Unqualified names now mean the copies: a key between two written tables points at the copy.
        conn.execute(sql.SQL("SET search_path TO {}, public").format(schema))
        for table, name, definition in foreign_keys:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.Identifier(table), sql.Identifier(name), sql.SQL(definition)
                )
            )
        conn.execute("CHECKPOINT")
        print("\nfloor, step by step:")
        backend = conn.info.backend_pid
        started = step = clock(backend)
        with conn.transaction():
            for table, dump in dumps.items():
                copy = sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(sql.Identifier(table))
                with conn.cursor().copy(copy) as stream, dump.open("rb") as file:
                    while chunk := file.read(1 << 20):
                        stream.write(chunk)
                seconds, _, used = elapsed(backend, step)
                print(f"  {seconds:8.1f} s  (backend CPU {used:5.1f} s)  COPY {table}")
                step = clock(backend)
        seconds, _, used = elapsed(backend, step)
        print(f"  {seconds:8.1f} s  (backend CPU {used:5.1f} s)  commit (the deferred foreign-key checks)")
        seconds, python_cpu, used = elapsed(backend, started)
        counts = {
            table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
            for table in WRITTEN_TABLES
        }
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
    for dump in dumps.values():
        dump.unlink()
    return Measured(seconds, peak_rss_mb(), counts, python_cpu=python_cpu, backend_cpu=used)


def import_row_by_row(database_url: str, path: Path, rows: int) -> Measured:
    """django-import-export's plain path: per row a lookup by address and a save() in a savepoint."""
    configure_django(database_url)
    import tablib
    from django.db import connection
    from import_export.resources import ModelResource

    from crm.models import Contact

    class ContactResource(ModelResource):
        class Meta:
            model = Contact
            fields = ("email", "first_name", "last_name")
            import_id_fields = ("email",)

    dataset = tablib.Dataset(headers=["email", "first_name", "last_name"])
    with path.open(newline="", encoding="utf-8") as file:
        for cells in islice(csv.reader(file), 1, rows + 1):
            dataset.append(cells[:3])
    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    started = clock(backend)
    result = ContactResource().import_data(dataset, raise_errors=True)
    seconds, python_cpu, used = elapsed(backend, started)
    counts = {"new": result.totals["new"], "contacts": Contact.objects.count()}
    return Measured(seconds, peak_rss_mb(), counts, python_cpu=python_cpu, backend_cpu=used)


class StatementTimer:
    """A Django execute wrapper adding up the seconds (and the backend's CPU seconds) per kind of statement."""

    def __init__(self, backend_pid: int) -> None:
        self.backend_pid = backend_pid
        self.seconds: dict[str, float] = defaultdict(float)
        self.backend_cpu: dict[str, float] = defaultdict(float)

    def __call__(self, execute, statement, params, many, context):
        started, backend_started = time.perf_counter(), backend_cpu_seconds(self.backend_pid)
        try:
            return execute(statement, params, many, context)
        finally:
            label = statement_label(statement)
            self.seconds[label] += time.perf_counter() - started
            self.backend_cpu[label] += backend_cpu_seconds(self.backend_pid) - backend_started


def statement_label(statement: str) -> str:
    words = re.sub(r"crm_import_stage_\d+", "stage", statement).replace('"', "").split()
    return " ".join(words[:3] if words[0] == "INSERT" else words[:6])


def import_file(database_url: str, path: Path) -> Measured:
    """One real import of one file: a job with one subscription type and basis "evidence"."""
    configure_django(database_url)
    from django.db import connection
    from django.utils import timezone

    from crm.importing.engine import run_import
    from crm.models import ImportBasis, ImportJob, SubscriptionType

    now = timezone.now()
    job = ImportJob.objects.create(
        file_name=path.name, file_path=str(path), preset="auto", basis=ImportBasis.EVIDENCE, created_at=now
    )
    job.subscription_types.set([SubscriptionType.objects.get(name=SUBSCRIPTION_TYPE)])
    backend = connection.connection.info.backend_pid
    timer = StatementTimer(backend)
    with connection.execute_wrapper(timer):
        started = clock(backend)
        counts = run_import(job, path, now=now)
        seconds, python_cpu, used = elapsed(backend, started)
    return Measured(
        seconds,
        peak_rss_mb(),
        counts.as_dict(),
        dict(timer.seconds),
        python_cpu=python_cpu,
        backend_cpu=used,
        statements_backend_cpu=dict(timer.backend_cpu),
    )


# The run.


def reset_crm() -> None:
    """Empty the CRM tables (TRUNCATE passes the consent log's append-only trigger)."""
    from django.db import connection

    from crm.models import SubscriptionType

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(CRM_TABLES)} RESTART IDENTITY CASCADE")
    SubscriptionType.objects.get_or_create(name=SUBSCRIPTION_TYPE)
    settle()


def settle() -> None:
    """Vacuum, analyze and checkpoint, so each phase starts where autovacuum would have left it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {', '.join(CRM_TABLES)}")
        cursor.execute("CHECKPOINT")


def table_sizes() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        sizes = {}
        for table in DATA_TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            sizes[table] = cursor.fetchone()[0]
    return sizes


def expect(name: str, measured: Measured, **expected: int) -> None:
    wrong = {
        key: (measured.counts.get(key), value) for key, value in expected.items() if measured.counts.get(key) != value
    }
    if wrong:
        raise SystemExit(f"{name}: unexpected counts (got, expected): {wrong}")


def size_label(size: int) -> str:
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size:,}"


def report_phase(phase: Phase) -> None:
    measured = phase.measured
    print(f"\n{phase.name}: {measured.seconds:.1f} s, {phase.rate:,.0f} rows/s (load average {load_average()})")
    print(f"  CPU: this process {measured.python_cpu:.1f} s, its PostgreSQL backend {measured.backend_cpu:.1f} s")
    print(f"  counts: {measured.counts}")
    statements = measured.statements
    if statements:
        print(f"  database afterwards: {table_sizes()}")
        outside = measured.seconds - sum(statements.values())
        backend_outside = measured.backend_cpu - sum(measured.statements_backend_cpu.values())
        print(
            f"  {outside:8.1f} s  (backend CPU {backend_outside:5.1f} s)  outside SQL statements: "
            "reading, validating, COPY into the stage; commits (with the deferred foreign-key checks)"
        )
        for label, seconds in sorted(statements.items(), key=lambda item: -item[1]):
            if seconds >= 0.01 * measured.seconds:
                cpu = measured.statements_backend_cpu.get(label, 0.0)
                print(f"  {seconds:8.1f} s  (backend CPU {cpu:5.1f} s)  {label} …")


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def run_phases(database_url: str, subscribed: ExportFile, unsubscribed: ExportFile) -> list[Phase]:
    big, small = size_label(subscribed.rows), size_label(unsubscribed.rows)
    baseline = Phase(
        "COPY into a typed table (baseline)", subscribed.rows, in_child(copy_baseline, database_url, subscribed.path)
    )
    report_phase(baseline)
    reset_crm()
    reference_rows = min(REFERENCE_ROWS, subscribed.rows)
    reference = Phase(
        "django-import-export, row by row (reference)",
        reference_rows,
        in_child(import_row_by_row, database_url, subscribed.path, reference_rows),
    )
    expect(reference.name, reference.measured, new=reference_rows)
    report_phase(reference)

    def run(name: str, export: ExportFile, **expected: int) -> Phase:
        measured = in_child(import_file, database_url, export.path)
        expect(name, measured, rows=export.rows, invalid=0, duplicate=0, **expected)
        phase = Phase(name, export.rows, measured)
        report_phase(phase)
        settle()
        return phase

    unsubscribed_counts = {"new": unsubscribed.rows, "suppressed": unsubscribed.rows, "subscribed": 0}
    reset_crm()
    small_empty = run(f"{small} unsubscribed into empty tables", unsubscribed, **unsubscribed_counts)
    reset_crm()
    new = run(
        f"{big} subscribed, all new",
        subscribed,
        new=subscribed.rows,
        subscribed=subscribed.with_evidence,
        no_consent=subscribed.rows - subscribed.with_evidence,
        suppressed=0,
    )
    floor = Phase(
        f"floor: COPY of what the {big} import wrote, same indexes and keys",
        subscribed.rows,
        in_child(copy_what_the_import_wrote, database_url, subscribed.path.parent),
    )
    report_phase(floor)
    settle()
    again = run(f"{big} subscribed again (all conflicts)", subscribed, new=0, updated=0, subscribed=0, suppressed=0)
    grown = run(f"{small} unsubscribed into {big} contacts", unsubscribed, **unsubscribed_counts)
    judged = judge(baseline, small_empty, new, again, grown)
    return [baseline, reference, *judged[:2], floor, *judged[2:]]


@dataclass(frozen=True)
class Goal:
    text: str
    met: bool
    observed: str


def judge(baseline: Phase, small_empty: Phase, new: Phase, again: Phase, grown: Phase) -> list[Phase]:
    """The import phases with their goals written in, and the goals they missed."""

    def ratio(phase: Phase) -> float:
        return baseline.rate / phase.rate

    def rss(phase: Phase) -> float:
        return phase.measured.peak_rss_mb

    def with_goals(phase: Phase, *goals: Goal) -> Phase:
        every = [*goals, Goal(f"RSS ≤ {MAX_RSS_MB} MB", rss(phase) <= MAX_RSS_MB, f"RSS {rss(phase):.0f} MB")]
        return replace(
            phase,
            goal="; ".join(goal.text for goal in every),
            failures=tuple(goal.observed for goal in every if not goal.met),
        )

    small = size_label(small_empty.rows)
    rss_growth = rss(new) / rss(small_empty)
    grown_rate = grown.rate / small_empty.rate
    return [
        with_goals(small_empty),
        with_goals(
            new,
            Goal(f"≤ {MAX_NEW_RATIO:g}x baseline", ratio(new) <= MAX_NEW_RATIO, f"{ratio(new):.2f}x"),
            Goal(
                f"RSS ≤ {MAX_RSS_GROWTH:g}x the {small} import's",
                rss_growth <= MAX_RSS_GROWTH,
                f"RSS {rss_growth:.2f}x the {small} import's",
            ),
        ),
        with_goals(
            again, Goal(f"≤ {MAX_AGAIN_RATIO:g}x baseline", ratio(again) <= MAX_AGAIN_RATIO, f"{ratio(again):.2f}x")
        ),
        with_goals(
            grown,
            Goal(
                f"≥ {MIN_GROWN_RATE:g}x the rows/s into empty tables",
                grown_rate >= MIN_GROWN_RATE,
                f"{grown_rate:.2f}x the rows/s into empty tables",
            ),
        ),
    ]


def print_table(phases: list[Phase]) -> None:
    baseline = phases[0]
    print(
        "\n| phase | rows | seconds | rows/s | ratio to baseline | Python CPU s | PostgreSQL CPU s "
        "| peak RSS MB | goal | verdict |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for phase in phases:
        measured = phase.measured
        verdict = ("FAIL: " + "; ".join(phase.failures) if phase.failures else "pass") if phase.goal else "-"
        print(
            f"| {phase.name} | {phase.rows:,} | {measured.seconds:.1f} | {phase.rate:,.0f} "
            f"| {baseline.rate / phase.rate:.2f} | {measured.python_cpu:.1f} | {measured.backend_cpu:.1f} "
            f"| {measured.peak_rss_mb:.0f} | {phase.goal or '-'} | {verdict} |"
        )
    print("\nratio to baseline: how many times longer each row takes than in the COPY (its rows/s ÷ the phase's).")
    print("CPU: the importing process's own, and its PostgreSQL backend's (0 if the database is on another machine).")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_database(args.database_url)
    configure_django(args.database_url)
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    with tempfile.TemporaryDirectory(prefix="deliverwell-bench-import-") as directory:
        started = time.perf_counter()
        subscribed, unsubscribed = write_exports(Path(directory), args.rows, args.unsubscribed)
        print(
            f"Generated {subscribed.path.name} ({subscribed.rows:,} rows, {subscribed.with_evidence:,} with opt-in "
            f"evidence, {subscribed.path.stat().st_size / 2**20:.0f} MB) and {unsubscribed.path.name} "
            f"({unsubscribed.rows:,} rows) in {time.perf_counter() - started:.1f} s"
        )
        phases = run_phases(args.database_url, subscribed, unsubscribed)
    print_table(phases)


if __name__ == "__main__":
    main()
