"""Sender-health jobs on a million contacts and ten million events, against hand-written SQL.

Generates (once; kept while the counts match, `--regenerate` to start over) with COPY:
1,000,000 contacts whose engagement counters look as event ingestion leaves them (about 44 %
caught by the graymail rule), two sending domains with one campaign each a day for 120 days, and
10,000,000 email events (deliveries, bounces by category, human and machine opens, clicks,
complaints, unsubscribes; the human open rate falls over the last 60 days). Then, in the same
run, each job against the same computation as one hand-written SQL statement:

- the rollup: `roll_up_daily_metrics` over the whole history (what the first run does) against
  one `SELECT … GROUP BY` of the same figures per domain, day and bounce category (the totals of
  both are compared); and the nightly run (the last HEALTH_ROLLUP_DAYS days), for information;
- the unengaged job: `mark_unengaged_contacts` against one `UPDATE` of the same rows, each from
  the same starting state, twice in alternating order; its query phase (the one aggregate that
  finds the key range) on its own, when it marks 444k contacts and when nothing is left to
  mark (the nightly case), and the rows and duration of its largest chunk;
- the open-rate evaluation: `evaluate_open_rates` for one day against one `INSERT … SELECT … ON
  CONFLICT` writing the same evaluation rows (window and baseline sums from the rollup, status,
  streak), and, for information, against one `SELECT` of the 30-day rate straight from the events.

Rollup and unengaged runs alternate their order (whichever goes first reads cold pages).

Usage: python bench/health.py [--contacts 1000000] [--events 10000000] [--regenerate] [--database-url postgres://…]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from common import add_database_url, checked_args, configure_django, ensure_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/deliverwell_bench_health"
DOMAINS = ["news.bench.example", "shop.bench.example"]
DAYS = 120
TODAY = date(2026, 11, 30)
NOW = datetime(2026, 11, 30, 2, 40, tzinfo=UTC)
COPY_ROWS = 200_000
SENDS_PER_CAMPAIGN = 20_000
# Goals from issue #8.
MAX_RATIO = 1.5
MAX_QUERY_PHASE_SECONDS = 1.0
MAX_CHUNK_ROWS = 10_000
MAX_CHUNK_SECONDS = 1.0

GRAYMAIL_RULE = (
    "((last_engaged_at IS NULL AND sends_since_engagement >= 11) "
    "OR (last_engaged_at IS NOT NULL AND sends_since_engagement >= 16))"
)
RESET_STATUSES = (
    "UPDATE crm_contact SET engagement_status = CASE WHEN last_engaged_at IS NULL THEN 'new' ELSE 'engaged' END "
    "WHERE engagement_status = 'unengaged'"
)
BASELINE_UNENGAGED = (
    f"UPDATE crm_contact SET engagement_status = 'unengaged' WHERE {GRAYMAIL_RULE} AND engagement_status <> 'unengaged'"
)
# Grouped by campaign first, then folded into sending domains: joining every event to its
# campaign and domain instead makes PostgreSQL pick a nested loop over the campaign index (the
# domain join's estimate is off by 10x), 21-27 s here. Sends belong to one campaign, so distinct
# counts per campaign add up to the domain's.
BASELINE_ROLLUP = """
SELECT sd.id AS domain_id, g.day, g.bounce_category, sum(g.sent) AS sent, sum(g.delivered) AS delivered,
       sum(g.not_sent) AS not_sent, sum(g.hard_bounces) AS hard_bounces, sum(g.soft_bounces) AS soft_bounces,
       sum(g.human_opens) AS human_opens, sum(g.machine_opens) AS machine_opens, sum(g.clicks) AS clicks,
       sum(g.complaints) AS complaints, sum(g.unsubscribes) AS unsubscribes
FROM (
    SELECT e.campaign_id, (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.bounce_category,
           count(*) FILTER (WHERE e.type IN ('accepted', 'delivered', 'hard_bounce', 'soft_bounce', 'not_sent')
                            AND e.source IN ('smtp', 'esp_api')) AS sent,
           count(*) FILTER (WHERE e.type = 'delivered') AS delivered,
           count(*) FILTER (WHERE e.type = 'not_sent') AS not_sent,
           count(*) FILTER (WHERE e.type = 'hard_bounce') AS hard_bounces,
           count(*) FILTER (WHERE e.type = 'soft_bounce') AS soft_bounces,
           count(DISTINCT e.send_id) FILTER (WHERE e.type = 'open' AND NOT e.is_machine) AS human_opens,
           count(*) FILTER (WHERE e.type = 'open' AND e.is_machine) AS machine_opens,
           count(DISTINCT e.send_id) FILTER (WHERE e.type = 'click' AND NOT e.is_machine) AS clicks,
           count(*) FILTER (WHERE e.type = 'complaint') AS complaints,
           count(*) FILTER (WHERE e.type = 'unsubscribe') AS unsubscribes
    FROM campaigns_emailevent e WHERE e.campaign_id IS NOT NULL GROUP BY 1, 2, 3
) g
JOIN campaigns_campaign c ON c.id = g.campaign_id
JOIN deliverability_sendingdomain sd ON sd.domain = lower(split_part(c.from_email, '@', 2))
GROUP BY 1, 2, 3
"""
# The evaluation's rows for every domain (window and baseline sums, status, streak) in one statement.
BASELINE_EVALUATION = """
INSERT INTO deliverability_healthevaluation (domain_id, day, window_start, window_end, delivered, human_opens,
    open_rate, baseline_delivered, baseline_open_rate, status, low_streak, evaluated_at)
SELECT d.id, %(day)s, %(start)s, %(end)s, coalesce(t.delivered, 0), coalesce(t.opens, 0),
       t.opens::float / nullif(t.delivered, 0), coalesce(t.base_delivered, 0),
       t.base_opens::float / nullif(t.base_delivered, 0),
       CASE WHEN coalesce(t.delivered, 0) < %(min)s THEN 'insufficient'
            WHEN t.opens::float / t.delivered < %(critical)s THEN 'low'
            WHEN t.base_delivered >= %(min)s
                 AND t.opens::float / t.delivered < t.base_opens::float / t.base_delivered * %(keep)s THEN 'dropped'
            ELSE 'healthy' END,
       CASE WHEN coalesce(t.delivered, 0) >= %(min)s AND t.opens::float / t.delivered < %(critical)s
            THEN coalesce(y.low_streak, 0) + 1 ELSE 0 END,
       now()
FROM deliverability_sendingdomain d
LEFT JOIN (
    SELECT domain_id,
           sum(delivered) FILTER (WHERE day >= %(start)s) AS delivered,
           sum(human_opens) FILTER (WHERE day >= %(start)s) AS opens,
           sum(delivered) FILTER (WHERE day < %(start)s) AS base_delivered,
           sum(human_opens) FILTER (WHERE day < %(start)s) AS base_opens
    FROM deliverability_dailymetrics WHERE day >= %(base)s AND day < %(end)s GROUP BY domain_id
) t ON t.domain_id = d.id
LEFT JOIN deliverability_healthevaluation y ON y.domain_id = d.id AND y.day = %(yesterday)s
ON CONFLICT (domain_id, day) DO UPDATE SET delivered = EXCLUDED.delivered, human_opens = EXCLUDED.human_opens,
    open_rate = EXCLUDED.open_rate, status = EXCLUDED.status, low_streak = EXCLUDED.low_streak
"""
RAW_EVALUATION = """
SELECT lower(split_part(c.from_email, '@', 2)),
       count(DISTINCT e.send_id) FILTER (WHERE e.type = 'open' AND NOT e.is_machine)::float
       / nullif(count(*) FILTER (WHERE e.type = 'delivered'), 0)
FROM campaigns_emailevent e JOIN campaigns_campaign c ON c.id = e.campaign_id
WHERE e.occurred_at >= %(start)s AND e.occurred_at < %(end)s GROUP BY 1
"""


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


# Data --------------------------------------------------------------------------------------


def copy_text(model, columns: list[str], lines: Iterator[str]) -> None:
    """COPY tab-separated `lines` into the model's table, in blocks."""
    from django.db import connection

    table = model._meta.db_table
    with connection.cursor() as cursor:
        copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        buffer = io.StringIO()

        def flush() -> None:
            with cursor.copy(copy_sql) as copy:
                copy.write(buffer.getvalue())

        for count, line in enumerate(lines, 1):
            buffer.write(line)
            if count % COPY_ROWS == 0:
                flush()
                buffer.seek(0)
                buffer.truncate()
        if buffer.tell():
            flush()


def text_defaults(model, given: list[str]) -> tuple[list[str], str]:
    """The model's other columns with their defaults as COPY text: (columns, tab-joined values)."""
    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key or field.column in given:
            continue
        default = field.get_default()
        if default is None:
            value = "\\N"
        elif isinstance(default, bool):
            value = "t" if default else "f"
        elif isinstance(default, dict | list):
            value = "{}" if isinstance(default, dict) else "[]"
        else:
            value = str(default)
        columns.append(field.column)
        values.append(value)
    return columns, "\t".join(values)


def stamp(day: date, minute: int) -> str:
    return f"{day.isoformat()} {minute // 60:02d}:{minute % 60:02d}:00+00"


def contact_lines(count: int, extra: str) -> Iterator[str]:
    """Contacts with the counters ingestion keeps: 30 % never engaged (0-16 sends since), 70 % engaged before (0-30)."""
    created = "2026-01-01 00:00:00+00"
    for n in range(1, count + 1):
        email = f"r{n}@mail{n % 97}.bench.example"
        if n % 10 < 3:
            engaged, sends, status = "\\N", (n * 7919) % 17, "new"
        else:
            engaged, sends, status = stamp(TODAY - timedelta(days=1 + n % 300), n % 1440), (n * 7919) % 31, "engaged"
        yield f"{email}\t{email}\t{created}\t{created}\t{engaged}\t{sends}\t{status}\t{extra}\n"


def event_lines(total: int, campaigns: list[tuple[int, date]], extra: str) -> Iterator[str]:
    """Exactly `total` events: per message its outcome, then perhaps opens, clicks, a complaint or an unsubscribe.

    The human open rate falls from 25 % to 5 % over the last 60 days.
    """
    per_campaign = -(-total // len(campaigns))
    send_id = written = 0
    for campaign_id, day in campaigns:
        age = (TODAY - day).days
        open_share = 25 if age > 60 else 5 + age // 3
        quota = min(written + per_campaign, total)
        while written < quota:
            send_id += 1
            n = send_id
            minute = 360 + n % 600
            outcome = n % 200
            if outcome < 2:
                kind, category = "hard_bounce", ("unknown_user", "dns_failure")[n % 2]
            elif outcome < 4:
                kind, category = "soft_bounce", ("mailbox_full", "spam_content", "policy")[n % 3]
            elif outcome < 5:
                kind, category = "not_sent", ""
            else:
                kind, category = "delivered", ""
            rows = [(kind, "smtp", day, minute, category, "f")]
            if kind == "delivered":
                later = day + timedelta(days=n % 3)
                if n % 100 < open_share:
                    rows.append(("open", "tracking", later, minute + 90, "", "f"))
                    if n % 7 == 0:
                        rows.append(("open", "tracking", later, minute + 200, "", "f"))
                if n % 100 >= 80:
                    rows.append(("open", "tracking", day, minute, "", "t"))
                if n % 100 < open_share // 5:
                    rows.append(("click", "tracking", later, minute + 95, "", "f"))
                if n % 2000 == 7:
                    rows.append(("complaint", "webhook", later, minute + 100, "", "f"))
                if n % 400 == 11:
                    rows.append(("unsubscribe", "unsubscribe_link", later, minute + 110, "", "f"))
            contact = 1 + n % 1_000_000
            for kind, source, when, at_minute, category, machine in rows[: quota - written]:
                occurred = stamp(when, min(at_minute, 1439))
                yield (
                    f"{kind}\t{source}\t{occurred}\t{occurred}\t{n}\t{campaign_id}\t{contact}\t{category}\t"
                    f"{machine}\t{extra}\n"
                )
                written += 1


def generate(contacts: int, events: int) -> None:
    from django.db import connection

    from campaigns.models import Campaign, EmailEvent
    from crm.models import Contact, SubscriptionType
    from deliverability.models import SendingDomain

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE campaigns_emailevent, campaigns_send, campaigns_campaign, crm_contact, "
            "deliverability_dailymetrics, deliverability_healthevaluation, deliverability_healthalert, "
            "deliverability_reputationrepairplan, deliverability_sendingdomain CASCADE"
        )
    newsletter, _ = SubscriptionType.objects.get_or_create(name="Newsletter")
    for name in DOMAINS:
        SendingDomain.objects.create(domain=name)
    campaigns = []
    for offset in range(DAYS, 0, -1):
        day = TODAY - timedelta(days=offset)
        for name in DOMAINS:
            campaign = Campaign.objects.create(
                name=f"{name} {day}",
                subscription_type=newsletter,
                from_name="Bench",
                from_email=f"news@{name}",
                subject="News",
                html_body="<p>News</p>",
                status="sent",
            )
            campaigns.append((campaign.pk, day))
    given = ["email", "email_normalized", "created_at", "updated_at", "last_engaged_at", "sends_since_engagement"]
    given.append("engagement_status")
    others, extra = text_defaults(Contact, given)
    seconds, _ = timed(lambda: copy_text(Contact, given + others, contact_lines(contacts, extra)))
    print(f"  {contacts:,} contacts by COPY in {seconds:.1f} s")
    given = ["type", "source", "occurred_at", "recorded_at", "send_id", "campaign_id", "contact_id"]
    given += ["bounce_category", "is_machine"]
    others, extra = text_defaults(EmailEvent, given)
    seconds, _ = timed(lambda: copy_text(EmailEvent, given + others, event_lines(events, campaigns, extra)))
    print(f"  {events:,} events by COPY in {seconds:.1f} s")
    vacuum()


# Each campaign's sends, handed over on the campaign's day (its first event): 96 % delivered, 1 % hard
# and 1 % soft bounces in five categories, 0.5 % not sent, 1.5 % skipped; a quarter opened, some clicked,
# complained or unsubscribed; one address in 200 at gmial.com.
SENDS = """
INSERT INTO campaigns_send (email, status, skip_reason, due_at, attempts, first_attempt_at, last_attempt_at,
    claim_token, message_id, smtp_code, smtp_reply, bounce_category, created_at, campaign_id, contact_id,
    opened_at, clicked_at, complained_at, unsubscribed_at)
SELECT s.email, s.status, CASE WHEN s.status = 'skipped' THEN 'unengaged' ELSE '' END, c.t, 1, s.handed_over,
    s.handed_over, '', '<' || c.campaign_id || '.' || n || '@bench.example>',
    CASE WHEN s.bounced THEN 550 END, CASE WHEN s.bounced THEN '550 5.1.1 User unknown (' || n %% 7 || ')' ELSE '' END,
    CASE WHEN s.bounced
         THEN (ARRAY['unknown_user', 'mailbox_full', 'policy', 'spam_content', 'dns_failure'])[1 + n %% 5] ELSE '' END,
    c.t, c.campaign_id, s.contact_id,
    CASE WHEN s.status = 'delivered' AND n %% 4 = 0 THEN c.t + interval '2 hours' END,
    CASE WHEN s.status = 'delivered' AND n %% 40 = 0 THEN c.t + interval '3 hours' END,
    CASE WHEN s.status = 'delivered' AND n %% 2000 = 0 THEN c.t + interval '4 hours' END,
    CASE WHEN s.status = 'delivered' AND n %% 400 = 1 THEN c.t + interval '4 hours' END
FROM (SELECT campaign_id, min(occurred_at) AS t FROM campaigns_emailevent GROUP BY 1) c
CROSS JOIN generate_series(0, %(per_campaign)s - 1) AS n
CROSS JOIN LATERAL (SELECT (c.campaign_id * 7919 + n) %% %(contacts)s + 1 AS contact_id,
    CASE WHEN (n * 37 + c.campaign_id) %% 1000 < 10 THEN 'hard_bounced'
         WHEN (n * 37 + c.campaign_id) %% 1000 < 20 THEN 'soft_bounced'
         WHEN (n * 37 + c.campaign_id) %% 1000 < 25 THEN 'not_sent'
         WHEN (n * 37 + c.campaign_id) %% 1000 < 40 THEN 'skipped'
         ELSE 'delivered' END AS status) p
CROSS JOIN LATERAL (SELECT p.contact_id, p.status, p.status IN ('hard_bounced', 'soft_bounced') AS bounced,
    CASE WHEN p.status <> 'skipped' THEN c.t + (n %% 600) * interval '1 second' END AS handed_over,
    CASE WHEN n %% 200 = 7 THEN 'x' || p.contact_id || '@gmial.com' ELSE 'c' || p.contact_id || '@example.org' END
        AS email) s
"""


def generate_sends(contacts: int, per_campaign: int) -> None:
    seconds, _ = timed(lambda: sql(SENDS, {"per_campaign": per_campaign, "contacts": contacts}))
    print(f"  {per_campaign:,} sends a campaign by INSERT … SELECT in {seconds:.1f} s")
    vacuum("campaigns_send")


def vacuum(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables or ("crm_contact", "campaigns_emailevent", "campaigns_campaign"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("CHECKPOINT")


def prepare(args: argparse.Namespace) -> None:
    ensure_database(args.database_url)
    configure_django(args.database_url)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from campaigns.models import Campaign, EmailEvent, Send
    from crm.models import Contact

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM crm_contact")
        have_contacts = cursor.fetchone()[0]
    if args.regenerate or have_contacts != args.contacts or EmailEvent.objects.count() != args.events:
        print(f"Generating (load {load()})")
        generate(args.contacts, args.events)
    if Send.objects.count() != args.sends_per_campaign * Campaign.objects.count():
        print(f"Generating the sends (load {load()})")
        Send.objects.all().delete()
        generate_sends(args.contacts, args.sends_per_campaign)
    assert Contact.objects.count() == args.contacts


# Measurements -------------------------------------------------------------------------------


class Statements:
    """Each SQL statement's duration and row count, through Django's cursor."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, int]] = []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        result = execute(sql, params, many, context)
        self.rows.append((sql, time.perf_counter() - started, context["cursor"].rowcount))
        return result


def sql(statement: str, params=None) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def fetch(statement: str, params=None) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def bench_rollup(results: list, rounds: int = 2) -> None:
    from deliverability import health
    from deliverability.models import DailyMetrics

    mine_times, baseline_times = [], []
    for round_ in range(rounds):
        # Alternate the order: whichever runs first pays for reading the events from disk.
        for which in ["baseline", "mine"] if round_ % 2 == 0 else ["mine", "baseline"]:
            DailyMetrics.objects.all().delete()
            if which == "baseline":
                seconds, grouped = timed(lambda: len(fetch(BASELINE_ROLLUP)))
                baseline_times.append(seconds)
            else:
                seconds, written = timed(lambda: health.roll_up_daily_metrics(now=NOW))
                mine_times.append(seconds)
    nightly_runs = [timed(lambda: health.roll_up_daily_metrics(now=NOW))[0] for _ in range(3)]
    nightly = min(nightly_runs)
    same_figures(DailyMetrics)
    runs = ", ".join(f"{t:.1f}" for t in mine_times) + " vs " + ", ".join(f"{t:.1f}" for t in baseline_times)
    results.append(
        (
            "rollup, whole history",
            statistics.median(mine_times),
            statistics.median(baseline_times),
            f"{written} domain-days ({grouped} grouped rows); runs {runs}",
            load(),
        )
    )
    nightly_notes = "last days only; best of " + ", ".join(f"{t:.2f}" for t in nightly_runs)
    print(f"  nightly rollup (last {_setting('HEALTH_ROLLUP_DAYS')} days): {nightly_notes} s")
    results.append(("rollup, nightly (reference)", nightly, statistics.median(baseline_times), nightly_notes, load()))


def same_figures(model) -> None:
    """The rollup's totals equal the hand-written statement's (both computed again, untimed)."""
    from django.db import connection

    columns = ["sent", "delivered", "not_sent", "hard_bounces", "soft_bounces", "human_opens", "clicks"]
    columns += ["machine_opens", "complaints", "unsubscribes"]
    totals = ", ".join(f"sum({column})" for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {totals} FROM ({BASELINE_ROLLUP}) AS baseline")
        expected = cursor.fetchone()
        cursor.execute(f"SELECT {totals} FROM {model._meta.db_table}")
        got = cursor.fetchone()
    assert got == expected, f"the rollup's totals {got} differ from the hand-written SQL's {expected}"
    print(
        "  same totals as the hand-written SQL: " + ", ".join(f"{c} {n:,}" for c, n in zip(columns, got, strict=True))
    )


def _setting(name: str):
    from django.conf import settings

    return getattr(settings, name)


def bench_unengaged(results: list, rounds: int = 2) -> dict:
    from django.db import connection

    from deliverability import health

    mine_times, baseline_times, details = [], [], {}
    for round_ in range(rounds):
        order = ["mine", "baseline"] if round_ % 2 else ["baseline", "mine"]
        for which in order:
            sql(RESET_STATUSES)
            vacuum("crm_contact")
            if which == "baseline":
                seconds, changed = timed(lambda: sql(BASELINE_UNENGAGED))
                baseline_times.append(seconds)
                details["baseline rows"] = changed
                continue
            statements = Statements()
            with connection.execute_wrapper(statements):
                seconds, changed = timed(lambda: health.mark_unengaged_contacts(now=NOW))
            mine_times.append(seconds)
            updates = [(d, n) for s, d, n in statements.rows if s.startswith("UPDATE")]
            details.update(
                {
                    "rows": changed,
                    "query phase": statements.rows[0][1],
                    "chunks": len(updates),
                    "largest chunk rows": max(n for _, n in updates),
                    "longest chunk seconds": max(d for d, _ in updates),
                    "ids read into Python": sum(n for s, _, n in statements.rows if s.startswith("SELECT")) - 1,
                }
            )
    # The nightly steady state: (almost) everyone is marked already, so the query phase finds nothing.
    statements = Statements()
    with connection.execute_wrapper(statements):
        seconds, changed = timed(lambda: health.mark_unengaged_contacts(now=NOW))
    details["query phase, nothing to change"] = statements.rows[0][1]
    details["whole run, nothing to change"] = seconds
    results.append(
        (
            "unengaged job",
            statistics.median(mine_times),
            statistics.median(baseline_times),
            f"{details['rows']:,} contacts marked (baseline {details['baseline rows']:,}); runs "
            + ", ".join(f"{t:.2f}" for t in mine_times)
            + " vs "
            + ", ".join(f"{t:.2f}" for t in baseline_times),
            load(),
        )
    )
    return details


def bench_evaluation(results: list) -> None:

    from deliverability import health
    from deliverability.models import HealthAlert, HealthEvaluation, ReputationRepairPlan

    HealthEvaluation.objects.all().delete()
    ReputationRepairPlan.objects.all().delete()
    HealthAlert.objects.all().delete()
    # Untimed: the days before, so each timed run evaluates today only (and alerts exist already).
    health.evaluate_open_rates(now=NOW - timedelta(days=1))
    health.evaluate_open_rates(now=NOW)
    window, _ = health.evaluation_windows(NOW)
    params = health.evaluation_figures(NOW.date(), NOW)  # the same days and thresholds for the hand-written SQL
    today = HealthEvaluation.objects.filter(day=NOW.date())

    def baseline_run() -> None:
        today.delete()
        sql(BASELINE_EVALUATION, params)

    def mine_run() -> None:
        today.delete()
        health.evaluate_open_rates(now=NOW)

    def best(run) -> float:
        times = []
        for _ in range(7):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    base_seconds, mine = best(baseline_run), best(mine_run)
    fields = ["domain_id", "delivered", "human_opens", "baseline_delivered", "status", "low_streak"]
    ours = list(today.order_by("domain_id").values_list(*fields))
    baseline_run()
    theirs = list(today.order_by("domain_id").values_list(*fields))
    assert ours == theirs, (ours, theirs)
    print(f"  same rows as the hand-written SQL: {ours}")
    raw_params = {"start": health.day_start(window.start), "end": health.day_start(window.end)}
    raw, _ = timed(lambda: sql(RAW_EVALUATION, raw_params))
    results.append(
        (
            "open-rate evaluation (one day, two domains)",
            mine,
            base_seconds,
            "best of 7 each, today's rows deleted before each (the delete is in both figures); reads the rollup",
            load(),
        )
    )
    results.append(("open-rate evaluation vs raw events (reference)", mine, raw, "30-day rate from the events", load()))


# What the dashboard's recommendations counted before they read the rollup: the month's messages handed over.
MONTH_OF_SENDS = """
SELECT count(*) FROM campaigns_send s JOIN campaigns_campaign c ON c.id = s.campaign_id
WHERE upper(c.from_email) LIKE upper(%(pattern)s) AND s.first_attempt_at >= %(since)s
  AND s.status IN ('accepted', 'delivered', 'hard_bounced', 'soft_bounced')
"""


def bench_dashboard(results: list) -> None:
    from deliverability.dashboard import dashboard
    from deliverability.models import SendingDomain

    domain = SendingDomain.objects.get(domain=DOMAINS[0])
    params = {"pattern": f"%@{domain.domain}", "since": NOW - timedelta(days=30)}

    def best(run) -> float:
        run()
        return min(timed(run)[0] for _ in range(3))

    mine, base = best(lambda: dashboard(domain, now=NOW)), best(lambda: fetch(MONTH_OF_SENDS, params))
    results.append(
        (
            "dashboard data, one domain (reference)",
            mine,
            base,
            "best of 3 after a warm-up; vs counting its last 30 days of sends",
            load(),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sends-per-campaign", type=int, default=SENDS_PER_CAMPAIGN)
    parser.add_argument("--regenerate", action="store_true")
    add_database_url(parser, DEFAULT_DATABASE_URL)
    args = checked_args(parser)
    print(uptime())
    prepare(args)
    results: list = []
    print(f"Rollup (load {load()})")
    bench_rollup(results)
    print(f"Unengaged job (load {load()})")
    details = bench_unengaged(results)
    print(f"Open-rate evaluation (load {load()})")
    bench_evaluation(results)
    print(f"Dashboard (load {load()})")
    bench_dashboard(results)
    print(uptime())

    print()
    print("| job | seconds | hand-written SQL seconds | ratio | notes | load (1/5/15 min) after |")
    print("|---|---:|---:|---:|---|---|")
    for name, mine, baseline, notes, loads in results:
        print(f"| {name} | {mine:.3f} | {baseline:.3f} | {mine / baseline:.2f} | {notes} | {loads} |")
    print()
    print("| unengaged job detail | value |")
    print("|---|---:|")
    for name, value in details.items():
        print(f"| {name} | {value:.3f} |" if isinstance(value, float) else f"| {name} | {value:,} |")
    print()
    verdicts = [
        ("rollup ≤ 1.5x", results[0][1] / results[0][2] <= MAX_RATIO),
        ("unengaged job ≤ 1.5x", results[2][1] / results[2][2] <= MAX_RATIO),
        ("open-rate evaluation ≤ 1.5x (rollup SQL)", results[3][1] / results[3][2] <= MAX_RATIO),
        ("open-rate evaluation ≤ 1.5x (raw-event SQL)", results[4][1] / results[4][2] <= MAX_RATIO),
        (
            f"unengaged query phase ≤ {MAX_QUERY_PHASE_SECONDS} s",
            max(details["query phase"], details["query phase, nothing to change"]) <= MAX_QUERY_PHASE_SECONDS,
        ),
        (f"chunks ≤ {MAX_CHUNK_ROWS:,} rows", details["largest chunk rows"] <= MAX_CHUNK_ROWS),
        (f"no chunk holds locks over {MAX_CHUNK_SECONDS} s", details["longest chunk seconds"] <= MAX_CHUNK_SECONDS),
        ("no contact ids read into Python", details["ids read into Python"] == 0),
    ]
    for goal, passed in verdicts:
        print(f"{'pass' if passed else 'FAIL'}: {goal}")


if __name__ == "__main__":
    main()
