"""Benchmark the contact list in the admin (/admin/crm/contact/) as the table grows.

Seeds contacts, subscriptions and suppressions with COPY into a PostgreSQL database of its
own, growing it through each size (10k, 100k and 1M by default), and times the list page as
a logged-in superuser: the first page, a deep page, the middle page, each filter and an
email search. Figures are medians of warm runs, printed with the page's query count and as
ratios to two baselines measured in the same run: an exact COUNT(*) of the contact table
and an unindexed ILIKE scan of it.

    make bench BENCHES=admin_changelist  # the defaults: 10k, 100k and 1M, 5 runs
    .venv/bin/python bench/admin_changelist.py --sizes 10000,100000 --runs 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from common import add_database_url, checked_args, configure_django, ensure_database, logged_in_client
from django.apps import apps
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from psycopg import sql

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/deliverwell_bench"
CHANGELIST_URL = "/admin/crm/contact/"

# The goals from the issue: every view fast at the largest size, first page and filters
# nearly flat, a constant and small number of queries, searches served by an index.
MAX_MS = 300
MAX_GROWTH = 1.5
MAX_QUERIES = 12

SEED = 20261122
CHUNK = 50_000
PER_PAGE = 50  # ContactAdmin.list_per_page
DEEP_PAGE = 90  # offset 4,450: valid at every size
SEARCH_CONTACT_ID = 4_321
HISTORY = timedelta(days=730)

FIRST_NAMES = [
    "Alice", "Amara", "Anders", "Beatriz", "Bob", "Carmen", "Carol", "Chen", "Dan", "Dmitri",
    "Elena", "Erin", "Fatima", "Frank", "Giulia", "Grace", "Hana", "Heidi", "Ivan", "Jamal",
    "Judy", "Kenji", "Lars", "Leila", "Mallory", "Marta", "Mateo", "Niaj", "Noor", "Olga",
    "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Victor", "Wen", "Yusuf",
]  # fmt: skip
LAST_NAMES = [
    "Andersen", "Baker", "Costa", "Dubois", "Eriksson", "Fischer", "Garcia", "Haddad", "Ito",
    "Jones", "Kowalski", "Larsen", "Mendes", "Moreau", "Nakamura", "Novak", "Okafor", "Ortiz",
    "Petrov", "Quinn", "Rossi", "Sato", "Schmidt", "Silva", "Smith", "Tanaka", "Umar", "Varga",
    "Wagner", "Walsh", "Xu", "Yilmaz", "Zhang", "Zimmermann", "Bianchi", "Horvat", "Lindqvist",
    "Murphy", "Nguyen", "Popescu",
]  # fmt: skip
COMPANIES = [
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Soylent",
    "Tyrell", "Cyberdyne", "Wonka", "Gringotts", "Oscorp", "Monarch", "Aperture", "", "", "", "",
]  # fmt: skip
MAIL_DOMAINS = ["mail.example", "post.example", "inbox.example", "webmail.example", "posteo.example"]
LOCAL_PARTS = ["{first}.{last}{n}", "{f}{last}{n}", "{first}_{last}{n}", "{last}.{first}{n}"]
SUBSCRIPTION_TYPES = ["Newsletter", "Product updates", "Events & webinars"]

SOURCES = (["form", "import", "admin", "api"], [50, 35, 5, 10])
ENGAGEMENT = (["new", "engaged", "unengaged"], [20, 50, 30])
EMAIL_STATUSES = (["ok", "hard_bounced", "complained", "invalid"], [98.5, 0.8, 0.2, 0.5])
SUBSCRIPTION_STATUSES = (["subscribed", "pending", "unsubscribed"], [75, 10, 15])
SUPPRESSION_REASONS = {"hard_bounced": "hard_bounce", "complained": "complaint"}

CONTACT_COLUMNS = [
    "id", "email", "email_normalized", "is_role_address", "first_name", "last_name", "company",
    "phone", "time_zone", "language", "properties", "source", "created_at", "updated_at",
    "last_sent_at", "last_open_at", "last_click_at", "last_engaged_at", "sends_since_engagement",
    "engagement_status", "email_status",
]  # fmt: skip
SUBSCRIPTION_COLUMNS = [
    "contact_id", "subscription_type_id", "status", "created_at", "requested_at", "subscribed_at", "unsubscribed_at",
    "updated_at",
]  # fmt: skip
SUPPRESSION_COLUMNS = ["email", "reason", "source", "note", "created_at"]


@dataclass(frozen=True)
class SearchTerms:
    exact: str
    prefix: str
    substring: str


@dataclass(frozen=True)
class View:
    name: str
    params: dict[str, str]
    growth_goal: bool = False
    search: bool = False


@dataclass(frozen=True)
class Measurement:
    ms: float
    queries: int
    slowest_sql_ms: float
    seq_scan: bool
    plan: list[str]


@dataclass(frozen=True)
class SizeResult:
    size: int
    seed_seconds: float
    baselines: dict[str, float]
    views: dict[str, Measurement]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="contact counts, ascending")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per view (the median is printed)")
    add_database_url(parser, DEFAULT_DATABASE_URL)
    args = checked_args(parser, argv)
    args.sizes = sorted(int(size) for size in args.sizes.split(","))
    return args


def setup(database_url: str) -> None:
    # The test client talks plain HTTP to "testserver".
    configure_django(database_url, ALLOWED_HOSTS="testserver", SESSION_COOKIE_SECURE="0")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # a new database (a new machine) has no tables yet


def reset_tables() -> list[int]:
    """Empty the CRM tables and create the subscription types; return their ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE crm_subscription, crm_suppression, crm_consentrecord, crm_contact, crm_subscriptiontype "
            "RESTART IDENTITY CASCADE"
        )
    subscription_type = apps.get_model("crm", "SubscriptionType")
    return [subscription_type.objects.create(name=name).pk for name in SUBSCRIPTION_TYPES]


def pick(rng: random.Random, choices: tuple[list[str], list[float]]) -> str:
    values, weights = choices
    return rng.choices(values, weights)[0]


def moment_between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + (end - start) * rng.random()


def fake_contact(rng: random.Random, contact_id: int, now: datetime, type_ids: list[int]) -> tuple:
    """One contact's rows: (contact, [subscriptions], suppression or None)."""
    first, last, company = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), rng.choice(COMPANIES)
    local = rng.choice(LOCAL_PARTS).format(first=first, f=first[0], last=last, n=contact_id)
    domain = f"{company.lower()}.example" if company and rng.random() < 0.5 else rng.choice(MAIL_DOMAINS)
    normalized = f"{local}@{domain}".lower()
    email = f"{local}@{domain}" if rng.random() < 0.2 else normalized
    created = now - HISTORY * rng.random()
    engagement, email_status = pick(rng, ENGAGEMENT), pick(rng, EMAIL_STATUSES)
    last_sent = None if engagement == "new" else moment_between(rng, created, now)
    last_engaged = last_sent if engagement == "engaged" else None
    sends = {"new": 0, "engaged": rng.randrange(3), "unengaged": rng.randrange(10, 40)}[engagement]
    contact = (
        contact_id, email, normalized, False, first, last, company, "", "", "", "{}", pick(rng, SOURCES),
        created, moment_between(rng, created, now), last_sent, last_engaged, None, last_engaged, sends,
        engagement, email_status,
    )  # fmt: skip
    subscriptions = [
        fake_subscription(rng, contact_id, type_id, created, now) for type_id in type_ids if rng.random() < 0.6
    ]
    reason = SUPPRESSION_REASONS.get(email_status)
    suppression = (normalized, reason, "bench", "", moment_between(rng, created, now)) if reason else None
    return contact, subscriptions, suppression


def fake_subscription(rng: random.Random, contact_id: int, type_id: int, created: datetime, now: datetime) -> tuple:
    status = pick(rng, SUBSCRIPTION_STATUSES)
    requested = created if status == "pending" else None
    subscribed = None if status == "pending" else created
    unsubscribed = moment_between(rng, created, now) if status == "unsubscribed" else None
    return contact_id, type_id, status, created, requested, subscribed, unsubscribed, unsubscribed or created


def copy_rows(cursor: CursorWrapper, table: str, columns: list[str], rows: list[tuple]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def grow_contacts(start: int, stop: int, *, now: datetime, type_ids: list[int]) -> float:
    """Add contacts with ids start+1..stop (and their rows) by COPY; return the seconds taken."""
    began = time.perf_counter()
    rng = random.Random(f"{SEED}:{start}")
    with transaction.atomic(), connection.cursor() as cursor:
        for chunk_start in range(start, stop, CHUNK):
            contacts, subscriptions, suppressions = [], [], []
            for contact_id in range(chunk_start + 1, min(chunk_start + CHUNK, stop) + 1):
                contact, contact_subscriptions, suppression = fake_contact(rng, contact_id, now, type_ids)
                contacts.append(contact)
                subscriptions.extend(contact_subscriptions)
                if suppression:
                    suppressions.append(suppression)
            copy_rows(cursor, "crm_contact", CONTACT_COLUMNS, contacts)
            copy_rows(cursor, "crm_subscription", SUBSCRIPTION_COLUMNS, subscriptions)
            copy_rows(cursor, "crm_suppression", SUPPRESSION_COLUMNS, suppressions)
        cursor.execute("SELECT setval(pg_get_serial_sequence('crm_contact', 'id'), %s)", [stop])
    with connection.cursor() as cursor:
        # Steady state: fresh statistics and a visibility map, as autovacuum would leave them, and
        # no dirty buffers left for a checkpoint to write while the pages are being timed.
        cursor.execute("VACUUM (ANALYZE) crm_contact, crm_subscription, crm_suppression")
        cursor.execute("CHECKPOINT")
    return time.perf_counter() - began


def search_terms(contact_id: int) -> SearchTerms:
    with connection.cursor() as cursor:
        cursor.execute("SELECT email_normalized FROM crm_contact WHERE id = %s", [contact_id])
        (email,) = cursor.fetchone()
    # The substring is five characters from the middle of the local part, as in a half-remembered name.
    local = email.partition("@")[0]
    middle = len(local) // 2
    return SearchTerms(exact=email, prefix=email[:6], substring=local[middle - 2 : middle + 3])


def changelist_views(size: int, *, type_id: int, terms: SearchTerms, now: datetime) -> list[View]:
    # The same bounds DateFieldListFilter puts in its "Past 7 days" link.
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    past_week = {"created_at__gte": str(today - timedelta(days=7)), "created_at__lt": str(today + timedelta(days=1))}
    return [
        View("first page", {}, growth_goal=True),
        View(f"deep page (p={DEEP_PAGE}, offset 4,450)", {"p": str(DEEP_PAGE)}),
        View("middle page (offset N/2)", {"p": str(max(1, size // PER_PAGE // 2))}),
        View("engagement_status=unengaged", {"engagement_status__exact": "unengaged"}, growth_goal=True),
        View("email_status=hard_bounced", {"email_status__exact": "hard_bounced"}, growth_goal=True),
        View("suppressed=yes", {"suppressed": "yes"}, growth_goal=True),
        View("suppressed=no", {"suppressed": "no"}, growth_goal=True),
        View("source=import", {"source__exact": "import"}, growth_goal=True),
        View("created_at: past 7 days", past_week, growth_goal=True),
        View("subscription=Newsletter:subscribed", {"subscription": f"{type_id}:subscribed"}, growth_goal=True),
        View(f"search exact ({terms.exact})", {"q": terms.exact}, search=True),
        View(f"search prefix ({terms.prefix})", {"q": terms.prefix}, search=True),
        View(f"search substring ({terms.substring})", {"q": terms.substring}, search=True),
    ]


def median_ms(action: Callable[[], object], runs: int) -> float:
    action()
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


def fetch(client: Client, url: str) -> None:
    response = client.get(url)
    if response.status_code != 200 or b'id="result_list"' not in response.content:
        raise RuntimeError(f"GET {url} answered {response.status_code} without a result list")


def explain(statement: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {statement}")
        return [line for (line,) in cursor.fetchall()]


def measure_view(client: Client, view: View, runs: int) -> Measurement:
    url = f"{CHANGELIST_URL}?{urlencode(view.params)}" if view.params else CHANGELIST_URL
    ms = median_ms(lambda: fetch(client, url), runs)
    with CaptureQueriesContext(connection) as captured:
        fetch(client, url)
    slowest = max(captured.captured_queries, key=lambda query: float(query["time"]))
    # Its plan: of the slowest statement that is not itself the paginator's EXPLAIN estimate.
    planned = max(
        (query for query in captured.captured_queries if not query["sql"].startswith("EXPLAIN")),
        key=lambda query: float(query["time"]),
    )
    contact_queries = [
        query["sql"]
        for query in captured.captured_queries
        if 'FROM "crm_contact"' in query["sql"] and not query["sql"].startswith("EXPLAIN")
    ]
    plans = {statement: explain(statement) for statement in contact_queries} if view.search else {}
    # A search shows the plan of the page's own query (LIMIT, no COUNT); other views their slowest.
    # A single page of results is fetched without LIMIT; then the plain contact query is the one.
    page_queries = [s for s in contact_queries if "COUNT(" not in s]
    results_query = next((s for s in page_queries if " LIMIT " in s), page_queries[-1] if page_queries else None)
    return Measurement(
        ms=ms,
        queries=len(captured),
        slowest_sql_ms=float(slowest["time"]) * 1000,
        seq_scan=any("Seq Scan on crm_contact" in "\n".join(plan) for plan in plans.values()),
        plan=plans[results_query] if view.search and results_query else explain(planned["sql"]),
    )


def median_sql_ms(statement: str, params: list[str], runs: int) -> float:
    def execute() -> None:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            cursor.fetchall()

    return median_ms(execute, runs)


def measure_baselines(terms: SearchTerms, runs: int) -> dict[str, float]:
    """An exact COUNT(*) and an ILIKE that no index serves, timed on the same table."""
    return {
        "COUNT(*)": median_sql_ms("SELECT count(*) FROM crm_contact", [], runs),
        "ILIKE": median_sql_ms(
            "SELECT id FROM crm_contact WHERE email::text ILIKE %s LIMIT 50", [f"%{terms.exact}%"], runs
        ),
    }


def size_label(size: int) -> str:
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def print_size_report(result: SizeResult, views: list[View]) -> None:
    count_ms, ilike_ms = result.baselines["COUNT(*)"], result.baselines["ILIKE"]
    print(f"\n## {result.size:,} contacts (seeded in {result.seed_seconds:.1f} s)\n")
    print(f"Baselines: exact COUNT(*) {count_ms:.1f} ms; unindexed ILIKE {ilike_ms:.1f} ms\n")
    print("| view | ms | queries | slowest SQL ms | x COUNT(*) | x ILIKE | seq scan on crm_contact |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for view in views:
        m = result.views[view.name]
        seq_scan = ("yes" if m.seq_scan else "no") if view.search else "-"
        print(
            f"| {view.name} | {m.ms:.1f} | {m.queries} | {m.slowest_sql_ms:.1f} | "
            f"{m.ms / count_ms:.2f} | {m.ms / ilike_ms:.2f} | {seq_scan} |"
        )
    for view in views:
        m = result.views[view.name]
        if view.search or m.ms > MAX_MS:
            which = "results query" if view.search else "slowest query"
            print(f"\nPlan of the {which} of {view.name}:\n")
            print("\n".join(f"    {line}" for line in m.plan))


def verdict(view: View, first: Measurement, last: Measurement) -> str:
    failures = []
    if last.ms > MAX_MS:
        failures.append(f"> {MAX_MS} ms")
    if view.growth_goal and last.ms > MAX_GROWTH * first.ms:
        failures.append(f"> {MAX_GROWTH}x growth")
    if last.queries != first.queries:
        failures.append("query count changes")
    if last.queries > MAX_QUERIES:
        failures.append(f"> {MAX_QUERIES} queries")
    if view.search and last.seq_scan:
        failures.append("seq scan")
    return "FAIL: " + "; ".join(failures) if failures else "pass"


def print_summary(results: list[SizeResult], views: list[View]) -> None:
    first, last = results[0], results[-1]
    small, large = size_label(first.size), size_label(last.size)
    print(f"\n## Summary (goals: ≤ {MAX_MS} ms at {large}; first page and filters ≤ {MAX_GROWTH}x their {small} time;")
    print(f"## same query count at {small} and {large}, ≤ {MAX_QUERIES}; searches without a seq scan)\n")
    ms_columns = " | ".join(f"ms@{size_label(result.size)}" for result in results)
    print(
        f"| view | {ms_columns} | {large}/{small} | x COUNT(*)@{large} | x ILIKE@{large} "
        f"| queries@{small} | queries@{large} | verdict |"
    )
    print("|---|" + "---:|" * (len(results) + 5) + "---|")
    for view in views:
        timings = " | ".join(f"{result.views[view.name].ms:.1f}" for result in results)
        before, after = first.views[view.name], last.views[view.name]
        print(
            f"| {view.name} | {timings} | {after.ms / before.ms:.2f} | {after.ms / last.baselines['COUNT(*)']:.2f} "
            f"| {after.ms / last.baselines['ILIKE']:.2f} | {before.queries} | {after.queries} "
            f"| {verdict(view, before, after)} |"
        )
    baselines = " | ".join(
        f"{result.baselines['COUNT(*)']:.1f} / {result.baselines['ILIKE']:.1f}" for result in results
    )
    print(f"\nBaselines COUNT(*) / unindexed ILIKE, ms at each size: {baselines}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_database(args.database_url)
    setup(args.database_url)
    now = timezone.now()
    type_ids = reset_tables()
    client = logged_in_client()
    results: list[SizeResult] = []
    seeded = 0
    for size in args.sizes:
        seed_seconds = grow_contacts(seeded, size, now=now, type_ids=type_ids)
        seeded = size
        terms = search_terms(min(SEARCH_CONTACT_ID, args.sizes[0]))
        views = changelist_views(size, type_id=type_ids[0], terms=terms, now=now)
        result = SizeResult(
            size=size,
            seed_seconds=seed_seconds,
            baselines=measure_baselines(terms, args.runs),
            views={view.name: measure_view(client, view, args.runs) for view in views},
        )
        results.append(result)
        print_size_report(result, views)
    print_summary(results, views)


if __name__ == "__main__":
    main()
