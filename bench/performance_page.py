"""The campaign performance page at the scale of a big send, against one hand-written SQL statement.

Generates (once; kept while the counts match, `--regenerate` to start over) with COPY: one sent
campaign with 10 tracked links, 1,000,000 contacts and a send to each (96 % delivered, 1.5 %
bounced with categories, the rest deferred, not sent or skipped with reasons), and its events:
a delivery, bounce, deferral or failure per message sent, ~250k human opens by ~190k people,
~300k machine opens, ~40k clicks (people and scanners) over the links, a few hundred complaints
and a few thousand unsubscribes, with the sends' opened_at, clicked_at, complained_at and
unsubscribed_at as event ingestion leaves them (the earliest human open and click).

Then, best of 3 after one warm-up each, in the same run: `campaign_performance(campaign,
with_details=True)`, a GET of the admin performance page as a logged-in superuser, and the
baseline, one `SELECT` of the headline figures (sends by status; opened, clicked, complained and
unsubscribed) whose figures are checked against the page's; and each statement's time.

Usage: python bench/performance_page.py [--sends 1000000] [--regenerate] [--database-url postgres://…]
"""

from __future__ import annotations

import argparse
import time
from bisect import bisect
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from common import add_database_url, checked_args, configure_django, ensure_database, logged_in_client
from health import copy_text, load, text_defaults, uptime

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/deliverwell_bench_perfpage"
CAMPAIGN_NAME = "Big send"
SENT_AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
RUNS = 3
MAX_PAGE_SECONDS = 1.0

# Per mille of the sends, in the order `outcome` reads them.
OUTCOMES = [
    ("delivered", 960),
    ("hard_bounced", 10),
    ("soft_bounced", 5),
    ("deferred", 10),
    ("not_sent", 5),
    ("skipped", 10),
]
OUTCOME_BOUNDS = list(accumulate(share for _, share in OUTCOMES))
HARD_CATEGORIES = ["unknown_user", "unknown_user", "unknown_user", "dns_failure"]
SOFT_CATEGORIES = ["mailbox_full", "mailbox_full", "policy", "spam_content", "reputation"]
SKIP_REASONS = ["unsubscribed", "hard_bounced", "frequency_cap", "unengaged", "complained"]
EVENT_TYPES = {
    "delivered": "delivered",
    "hard_bounced": "hard_bounce",
    "soft_bounced": "soft_bounce",
    "deferred": "deferred",
    "not_sent": "not_sent",
}
SMTP_CODES = {"delivered": "250", "hard_bounced": "550", "soft_bounced": "452", "deferred": "421"}
# Clicks per link in percent: the first links of an email take most of them.
LINK_BOUNDS = list(accumulate([30, 20, 12, 10, 8, 6, 5, 4, 3, 2]))

BASELINE = """
SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'skipped'),
       count(*) FILTER (WHERE status = 'sending'), count(*) FILTER (WHERE status = 'deferred'),
       count(*) FILTER (WHERE status = 'accepted'), count(*) FILTER (WHERE status = 'delivered'),
       count(*) FILTER (WHERE status = 'hard_bounced'), count(*) FILTER (WHERE status = 'soft_bounced'),
       count(*) FILTER (WHERE status = 'not_sent'), count(*) FILTER (WHERE status = 'cancelled'),
       count(opened_at), count(clicked_at), count(complained_at), count(unsubscribed_at)
FROM campaigns_send WHERE campaign_id = %s
"""
BASELINE_STATUSES = [
    "queued",
    "skipped",
    "sending",
    "deferred",
    "accepted",
    "delivered",
    "hard_bounced",
    "soft_bounced",
    "not_sent",
    "cancelled",
]


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S+00")


def outcome(n: int) -> str:
    return OUTCOMES[bisect(OUTCOME_BOUNDS, (n * 7919) % 1000)][0]


def later(sent: datetime, n: int, salt: int) -> datetime:
    """A reaction some minutes after the send, most within hours, the last ones days later."""
    spread = (n * 2654435761 + salt * 40503) % 1000
    return sent + timedelta(minutes=2 + spread * spread // 220)


class Message:
    """One recipient's send and its events, decided by its number alone."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.status = outcome(n)
        self.sent = SENT_AT + timedelta(seconds=n // 400)
        self.events: list[tuple[str, str, datetime, str, bool, int | None]] = []
        self.opened = self.clicked = self.complained = self.unsubscribed = None
        self.category = ""
        if self.status == "hard_bounced":
            self.category = HARD_CATEGORIES[n % len(HARD_CATEGORIES)]
        elif self.status == "soft_bounced":
            self.category = SOFT_CATEGORIES[n % len(SOFT_CATEGORIES)]
        if self.status in EVENT_TYPES:
            self.events.append((EVENT_TYPES[self.status], "smtp", self.sent, self.category, False, None))
        if self.status == "delivered":
            self._engagement()

    def _engagement(self) -> None:
        n = self.n
        if (n * 53) % 100 < 31:  # a privacy proxy fetches the pixel on delivery
            self.events.append(("open", "tracking", self.sent + timedelta(seconds=5), "", True, None))
            if (n // 100) % 100 < 2:  # a link scanner follows the first link
                self.events.append(("click", "tracking", self.sent + timedelta(seconds=6), "", True, self.link(0)))
        if (n * 37) % 100 < 20:
            self.opened = later(self.sent, n, 1)
            self.events.append(("open", "tracking", self.opened, "", False, None))
            if n % 10 < 3:
                self.events.append(("open", "tracking", later(self.opened, n, 2), "", False, None))
            if (n // 100 * 13) % 100 < 15:
                self.clicked = self.opened + timedelta(seconds=40)
                self.events.append(("click", "tracking", self.clicked, "", False, self.link(1)))
                if n % 5 == 0:
                    self.events.append(("click", "tracking", later(self.clicked, n, 3), "", False, self.link(2)))
        if n % 2500 == 7:
            self.complained = later(self.sent, n, 4)
            self.events.append(("complaint", "webhook", self.complained, "", False, None))
        if n % 400 == 11:
            self.unsubscribed = later(self.sent, n, 5)
            self.events.append(("unsubscribe", "unsubscribe_link", self.unsubscribed, "", False, None))

    def link(self, salt: int) -> int:
        return bisect(LINK_BOUNDS, (self.n * 17 + salt * 31) % 100)


def nullable(moment: datetime | None) -> str:
    return stamp(moment) if moment else "\\N"


def contact_lines(count: int, extra: str) -> Iterator[str]:
    created = stamp(SENT_AT - timedelta(days=200))
    for n in range(1, count + 1):
        email = f"r{n}@mail{n % 97}.bench.example"
        yield f"{n}\t{email}\t{email}\t{created}\t{created}\t{extra}\n"


def send_lines(count: int, campaign_id: int, extra: str) -> Iterator[str]:
    created = stamp(SENT_AT - timedelta(minutes=5))
    for n in range(1, count + 1):
        message = Message(n)
        email = f"r{n}@mail{n % 97}.bench.example"
        if message.status == "skipped":
            reason, attempts, attempted, code = SKIP_REASONS[n % len(SKIP_REASONS)], 0, "\\N", "\\N"
        else:
            reason, attempts, attempted = "", 1, stamp(message.sent)
            code = SMTP_CODES.get(message.status, "\\N")
        yield (
            f"{n}\t{campaign_id}\t{n}\t{email}\t{message.status}\t{reason}\t{stamp(message.sent)}\t{attempts}\t"
            f"{attempted}\t{attempted}\t{message.category}\t{code}\t{nullable(message.opened)}\t"
            f"{nullable(message.clicked)}\t{nullable(message.complained)}\t{nullable(message.unsubscribed)}\t"
            f"{created}\t{extra}\n"
        )


def event_lines(count: int, campaign_id: int, link_ids: list[int], extra: str) -> Iterator[str]:
    for n in range(1, count + 1):
        for kind, source, when, category, machine, link in Message(n).events:
            link_id = "\\N" if link is None else link_ids[link]
            occurred = stamp(when)
            yield (
                f"{kind}\t{source}\t{occurred}\t{occurred}\t{n}\t{campaign_id}\t{n}\t{category}\t"
                f"{'t' if machine else 'f'}\t{link_id}\t{extra}\n"
            )


def expected_events(count: int) -> int:
    return sum(len(Message(n).events) for n in range(1, count + 1))


def generate(sends: int) -> None:
    from django.db import connection

    from campaigns.models import Campaign, CampaignLink, EmailEvent, Send
    from crm.models import Contact, SubscriptionType

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE campaigns_emailevent, campaigns_send, campaigns_campaignlink, campaigns_campaign, crm_contact "
            "RESTART IDENTITY CASCADE"
        )
    newsletter, _ = SubscriptionType.objects.get_or_create(name="Newsletter")
    campaign = Campaign.objects.create(
        name=CAMPAIGN_NAME,
        subscription_type=newsletter,
        from_name="Bench",
        from_email="news@news.bench.example",
        subject="News",
        html_body="<p>News</p>",
        status="sent",
        status_changed_at=SENT_AT + timedelta(hours=1),
    )
    link_ids = [
        CampaignLink.objects.create(
            campaign=campaign,
            url=f"https://shop.bench.example/{position}",
            url_hash=f"{position:064d}",
            target=f"https://shop.bench.example/{position}",
            position=position,
            created_at=SENT_AT,
        ).pk
        for position in range(1, 11)
    ]
    started = time.perf_counter()
    given = ["id", "email", "email_normalized", "created_at", "updated_at"]
    others, extra = text_defaults(Contact, given)
    copy_text(Contact, given + others, contact_lines(sends, extra))
    given = ["id", "campaign_id", "contact_id", "email", "status", "skip_reason", "due_at", "attempts"]
    given += ["first_attempt_at", "last_attempt_at", "bounce_category", "smtp_code", "opened_at", "clicked_at"]
    given += ["complained_at", "unsubscribed_at", "created_at"]
    others, extra = text_defaults(Send, given)
    copy_text(Send, given + others, send_lines(sends, campaign.pk, extra))
    given = ["type", "source", "occurred_at", "recorded_at", "send_id", "campaign_id", "contact_id"]
    given += ["bounce_category", "is_machine", "link_id"]
    others, extra = text_defaults(EmailEvent, given)
    copy_text(EmailEvent, given + others, event_lines(sends, campaign.pk, link_ids, extra))
    with connection.cursor() as cursor:
        for model in [Contact, Send]:
            table = model._meta.db_table
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        for table in ["crm_contact", "campaigns_send", "campaigns_emailevent"]:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("CHECKPOINT")
    print(f"  by COPY and VACUUM in {time.perf_counter() - started:.1f} s")


def prepare(args: argparse.Namespace):
    ensure_database(args.database_url)
    # The test client talks plain HTTP to "testserver".
    configure_django(args.database_url, ALLOWED_HOSTS="testserver", SESSION_COOKIE_SECURE="0")
    from django.core.management import call_command

    from campaigns.models import Campaign, EmailEvent, Send

    call_command("migrate", verbosity=0)
    campaign = Campaign.objects.filter(name=CAMPAIGN_NAME).first()
    events = expected_events(args.sends)
    if (
        args.regenerate
        or campaign is None
        or Send.objects.count() != args.sends
        or EmailEvent.objects.count() != events
    ):
        print(f"Generating {args.sends:,} sends and {events:,} events (load {load()})")
        generate(args.sends)
        campaign = Campaign.objects.get(name=CAMPAIGN_NAME)
    return campaign


# Measurements -------------------------------------------------------------------------------


class Statements:
    """Each SQL statement's duration, through Django's cursor."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float]] = []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.rows.append((sql, time.perf_counter() - started))


def best(action: Callable[[], object]) -> tuple[float, list[float]]:
    """Best of RUNS after one warm-up, and every run."""
    action()
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        runs.append(time.perf_counter() - started)
    return min(runs), runs


def statements(action: Callable[[], object]) -> list[tuple[str, float]]:
    from django.db import connection

    recorder = Statements()
    with connection.execute_wrapper(recorder):
        action()
    return recorder.rows


def baseline(campaign_id: int) -> tuple:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(BASELINE, [campaign_id])
        return cursor.fetchone()


def same_figures(campaign, figures: tuple) -> str:
    """The page's headline figures equal the hand-written statement's."""
    from campaigns.reports import campaign_performance

    performance = campaign_performance(campaign, with_details=True)
    by_status = {status: count for status, count in zip(BASELINE_STATUSES, figures[:-4], strict=True) if count}
    engaged = dict(zip(["opened", "clicked", "complained", "unsubscribed"], figures[-4:], strict=True))
    ours = {status: performance.results.by_status.get(status, 0) for status in by_status}
    assert ours == by_status, (ours, by_status)
    theirs = {name: getattr(performance, name) for name in engaged}
    assert theirs == engaged, (theirs, engaged)
    shown = ", ".join(f"{name} {count:,}" for name, count in [*by_status.items(), *engaged.items()])
    extra = (
        f"human opens {performance.opens:,}, machine opens {performance.machine_opens:,} "
        f"by {performance.machine_opened:,}, clicks {performance.clicks:,} + machine {performance.machine_clicks:,}, "
        f"{len(performance.links)} links, {len(performance.over_time)} hours"
    )
    return f"{shown}; {extra}"


def short(sql: str) -> str:
    """A statement in one table cell: its start, without Django's quoting."""
    text = " ".join(sql.replace('"', "").split())
    return (text[:150] + " …") if len(text) > 150 else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=1_000_000)
    parser.add_argument("--regenerate", action="store_true")
    add_database_url(parser, DEFAULT_DATABASE_URL)
    args = checked_args(parser)
    print(uptime())
    campaign = prepare(args)
    from campaigns.reports import campaign_performance

    client = logged_in_client()
    url = f"/admin/campaigns/campaign/{campaign.pk}/performance/"

    def page() -> None:
        response = client.get(url)
        if response.status_code != 200 or b'id="figures"' not in response.content:
            raise RuntimeError(f"GET {url} answered {response.status_code} without the figures")

    figures = baseline(campaign.pk)
    print(f"Same figures as the hand-written SQL: {same_figures(campaign, figures)}")
    print(f"Measuring (load {load()})")
    base, base_runs = best(lambda: baseline(campaign.pk))
    mine, mine_runs = best(lambda: campaign_performance(campaign, with_details=True))
    shown, page_runs = best(page)
    loads = load()
    print(uptime())

    def runs(times: list[float]) -> str:
        return ", ".join(f"{t:.3f}" for t in times)

    print()
    print(f"| {args.sends:,} sends | seconds (best of {RUNS}) | runs | hand-written SQL seconds | ratio |")
    print("|---|---:|---|---:|---:|")
    rows = [
        ("hand-written SQL: the headline figures in one `SELECT`", base, base_runs),
        ("`campaign_performance(campaign, with_details=True)`", mine, mine_runs),
        (f"GET {url} (superuser)", shown, page_runs),
    ]
    for name, seconds, times in rows:
        print(f"| {name} | {seconds:.3f} | {runs(times)} | {base:.3f} | {seconds / base:.2f} |")
    print()
    print(f"Load average (1/5/15 min) after: {loads}")
    for name, action in [("campaign_performance", lambda: campaign_performance(campaign)), ("the page", page)]:
        print()
        print(f"| {name}: statement | ms |")
        print("|---|---:|")
        for sql, seconds in statements(action):
            print(f"| {short(sql)} | {seconds * 1000:.1f} |")
    print()
    print(f"{'pass' if shown <= MAX_PAGE_SECONDS else 'FAIL'}: the page in ≤ {MAX_PAGE_SECONDS:.0f} s")


if __name__ == "__main__":
    main()
