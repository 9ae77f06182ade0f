"""Send pipeline throughput: real Celery workers against a bare smtplib loop, to one SMTP sink.

Every message goes through the whole pipeline: audience build (one INSERT … SELECT with the
gate), then Celery workers (`celery -A config worker --concurrency=1` subprocesses on
PostgreSQL + Redis) claim batches, ask the gate again, render, sign with DKIM (RSA-2048) and
hand each message to Postfix's `smtp-sink` over direct SMTP. The baseline, in the same run and
to the same sink, is a bare loop in this process that renders the same templates, builds the
same message with the same headers, signs it with the same DKIM signer (dkimpy with OpenSSL's
RSA, the key loaded once) and sends it over one persistent smtplib connection.

The sink prints a running message counter on every "." it receives; a reader thread stamps
each count with this process's monotonic clock, so every rate below is measured where the
mail arrives, from the first message to the last. Also measured: SQL statements per batch
in the worker path (claim + send_batch, in this process), a global rate shared by two
workers over every 10 s window, DKIM signing per algorithm, and the anymail path.

Usage: python bench/send.py [--recipients 100000] [--rate 200] [--rate-seconds 60]
                            [--batch-size 1000] [--bare 2000] [--database-url postgres://…]
Redis databases: BENCH_CACHE_URL and BENCH_BROKER_URL (defaults below); both are emptied.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from common import configure_django, ensure_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/deliverwell_bench_send"
# Redis databases of this benchmark only: the test suite uses 0, 1 and 5, bench/signup.py 14 and 15.
CACHE_URL = os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/11")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12")
SMTP_SINK = "/usr/sbin/smtp-sink"
DOMAIN = "news.bench.example"
FIRST_NAMES = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Dennis", "", "Katherine", "Ken"]
CITIES = ["Lisbon", "Oslo", "Porto", "Tallinn", "Utrecht", "Lyon", "Graz", "Cork"]

SUBJECT = "{{ contact.first_name|default:'Friend' }}, the November letter from {{ campaign.name }}"
# A typical newsletter: a style block (inlined once per campaign), ~7 KB of HTML after rendering,
# six personalized values and the three per-recipient links.
HTML = (
    "<!doctype html><html><head><meta charset='utf-8'><title>{{ campaign.subject }}</title><style>"
    "body { margin: 0; background: #f4f4f4; font-family: Helvetica, Arial, sans-serif; }"
    " .wrap { max-width: 600px; margin: 0 auto; background: #ffffff; }"
    " h1 { color: #1a1a1a; font-size: 24px; } h2 { color: #333333; font-size: 18px; }"
    " p { color: #444444; line-height: 1.5; } a.button { background: #0b5; color: #fff; padding: 10px 18px; }"
    " .foot { color: #888888; font-size: 12px; }"
    "</style></head><body><div class='wrap'>"
    "<p class='foot'><a href='{{ view_in_browser_url }}'>View this email in your browser</a></p>"
    "<h1>Hello {{ contact.first_name|default:'there' }}!</h1>"
    "<p>Here is what happened this month{% if contact.properties.city %} near {{ contact.properties.city }}"
    "{% endif %}, picked for {{ contact.company|default:'you' }}.</p>"
    + "".join(
        f"<h2>Story {n}: what we shipped</h2><p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do "
        "eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
        "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.</p>"
        f"<p><a class='button' href='https://www.bench.example/story/{n}?utm_source=newsletter'>Read story {n}</a>"
        f" <img src='https://www.bench.example/img/{n}.png' alt='Story {n}' width='560'></p>"
        for n in range(1, 9)
    )
    + "<p class='foot'>You get this because you subscribed, {{ contact.email }}. "
    "<a href='{{ preferences_url }}'>Preferences</a> · <a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>"
    "</div></body></html>"
)
TEXT = (
    "Hello {{ contact.first_name|default:'there' }}!\n\n"
    "Here is what happened this month{% if contact.properties.city %} near {{ contact.properties.city }}"
    "{% endif %}, picked for {{ contact.company|default:'you' }}.\n\n"
    + "".join(
        f"Story {n}: what we shipped\nLorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod "
        "tempor incididunt ut labore et dolore magna aliqua.\nhttps://www.bench.example/story/"
        f"{n}?utm_source=newsletter\n\n"
        for n in range(1, 9)
    )
    + "View in your browser: {{ view_in_browser_url }}\nPreferences: {{ preferences_url }}\n"
    "Unsubscribe: {{ unsubscribe_url }}\n"
)


# ---------------------------------------------------------------------------------------------
# The sink


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Sink:
    """Postfix's smtp-sink (accepts everything, one C process), with a stamped message counter."""

    def __init__(self) -> None:
        if not Path(SMTP_SINK).exists():
            raise SystemExit(f"{SMTP_SINK} is missing: apt-get install postfix (postfix itself need not run)")
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        # -c prints "sess=… quit=… mesg=N" on every ".", unbuffered; backlog 1000.
        self.process = subprocess.Popen(
            [SMTP_SINK, "-c", *user, f"127.0.0.1:{self.port}", "1000"], stdout=subprocess.PIPE
        )
        self.stamps: list[float] = []  # stamps[i]: when message i + 1 arrived
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("smtp-sink did not start")

    def _read(self) -> None:
        fd = self.process.stdout.fileno()
        while chunk := os.read(fd, 65536):
            stamp = time.monotonic()
            for match in re.finditer(rb"mesg=(\d+)", chunk):
                count = int(match.group(1))
                while len(self.stamps) < count:
                    self.stamps.append(stamp)

    @property
    def count(self) -> int:
        return len(self.stamps)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=5)


def rate_between(stamps: list[float]) -> float:
    """Messages per second from the first message to the last."""
    if len(stamps) < 2 or stamps[-1] == stamps[0]:
        return 0.0
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


# ---------------------------------------------------------------------------------------------
# Set-up


def configure(database_url: str, *, sink_port: int, batch_size: int) -> None:
    ensure_database(database_url)
    configure_django(
        database_url,
        REDIS_URL=CACHE_URL,
        CELERY_BROKER_URL=BROKER_URL,
        CAMPAIGN_SMTP_HOST="127.0.0.1",
        CAMPAIGN_SMTP_PORT=str(sink_port),
        CAMPAIGN_SMTP_TIMEOUT_SECONDS="10",
        SEND_BATCH_SIZE=str(batch_size),
        SEND_RATE_PER_SECOND="0",
        # There is no DNS here: the sending domain cannot pass its checks, so sending only warns.
        REQUIRE_PASSING_SENDING_DOMAIN="0",
        UNSUBSCRIBE_MAILTO=f"unsubscribe@{DOMAIN}",
        SITE_URL="https://www.bench.example",
        ALLOWED_HOSTS="www.bench.example",
    )


def seed(recipients: int) -> object:
    """`recipients` subscribed contacts with consent, set-based (reused when already there)."""
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from crm.models import (
        ConsentAction,
        ConsentMethod,
        ConsentRecord,
        ContactSource,
        EmailStatus,
        EngagementStatus,
        LawfulBasis,
        SubscriptionStatus,
        SubscriptionType,
    )

    call_command("migrate", verbosity=0)
    newsletter, _ = SubscriptionType.objects.get_or_create(name="Newsletter")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM crm_contact), (SELECT count(*) FROM crm_subscription"
            " WHERE subscription_type_id = %s), (SELECT count(*) FROM crm_consentrecord)",
            [newsletter.pk],
        )
        if cursor.fetchone() == (recipients, recipients, recipients):
            print(f"Reusing {recipients:,} subscribed contacts in the bench database.")
            return newsletter
        started = time.perf_counter()
        # A bench database only: TRUNCATE passes the consent log's append-only trigger.
        cursor.execute(
            "TRUNCATE crm_consentrecord, crm_subscription, crm_contact, crm_suppression, campaigns_campaign,"
            " campaigns_contactlist CASCADE"
        )
        now = timezone.now()
        cursor.execute(
            """
            INSERT INTO crm_contact (email, email_normalized, is_role_address, first_name, last_name, company,
                phone, time_zone, language, properties, source, created_at, updated_at, sends_since_engagement,
                engagement_status, email_status, do_not_contact)
            SELECT a, lower(a), false, (%(names)s::text[])[1 + n %% 10], 'Tester', CASE WHEN n %% 3 = 0
                THEN 'Company ' || n %% 997 ELSE '' END, '', 'Europe/Lisbon', 'en',
                CASE WHEN n %% 2 = 0 THEN jsonb_build_object('city', (%(cities)s::text[])[1 + n %% 8])
                ELSE '{}'::jsonb END,
                %(source)s, %(now)s, %(now)s, 0, %(engaged)s, %(ok)s, false
            FROM generate_series(1, %(count)s) AS n,
                LATERAL (SELECT format('Person%%s@%%s', n, (ARRAY['example.org', 'example.net', 'mail.example',
                    'inbox.example'])[1 + n %% 4]) AS a) AS address
            """,
            {
                "names": FIRST_NAMES,
                "cities": CITIES,
                "source": ContactSource.IMPORT.value,
                "now": now,
                "engaged": EngagementStatus.ENGAGED.value,
                "ok": EmailStatus.OK.value,
                "count": recipients,
            },
        )
        cursor.execute(
            "INSERT INTO crm_subscription (status, created_at, subscribed_at, updated_at, contact_id,"
            " subscription_type_id) SELECT %s, %s, %s, %s, id, %s FROM crm_contact",
            [SubscriptionStatus.SUBSCRIBED.value, now, now, now, newsletter.pk],
        )
        cursor.execute(
            "INSERT INTO crm_consentrecord (email, action, method, lawful_basis, source_detail, consent_text,"
            " ip_address, user_agent, evidence, created_at, contact_id, subscription_type_id)"
            " SELECT email_normalized, %s, %s, %s, '', 'Yes, email me the newsletter.', '203.0.113.9', 'bench',"
            " '{}', %s, id, %s FROM crm_contact",
            [ConsentAction.GRANTED.value, ConsentMethod.FORM.value, LawfulBasis.CONSENT.value, now, newsletter.pk],
        )
    with connection.cursor() as cursor:
        for table in ("crm_contact", "crm_subscription", "crm_consentrecord"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    assert ConsentRecord.objects.count() == recipients
    print(f"Seeded {recipients:,} subscribed contacts with consent records in {time.perf_counter() - started:.1f} s.")
    return newsletter


def make_domains() -> dict[str, object]:
    """The campaign's sending domain (one active RSA-2048 key), and domains for the DKIM and ESP timings."""
    from django.db import connection
    from django.utils import timezone

    from deliverability import signing
    from deliverability.esps import Transport
    from deliverability.models import DkimKey, KeyAlgorithm, KeyState, SendingDomain

    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE campaigns_campaign, campaigns_contactlist CASCADE")
    SendingDomain.objects.all().delete()
    domains = {}
    for name, algorithm, transport in (
        (DOMAIN, KeyAlgorithm.RSA, Transport.SMTP),
        (f"rsa.{DOMAIN}", KeyAlgorithm.RSA, Transport.SMTP),
        (f"ed.{DOMAIN}", KeyAlgorithm.ED25519, Transport.SMTP),
        (f"esp.{DOMAIN}", None, Transport.POSTMARK),
    ):
        domain = SendingDomain.objects.create(domain=name, transport=transport)
        if algorithm:
            key = signing.create_key(domain, algorithm=algorithm, now=now)
            # No DNS here to publish the key in: switched on directly, as activate_key would.
            DkimKey.objects.filter(pk=key.pk).update(state=KeyState.ACTIVE, activated_at=now)
            signing.forget_cached_keys(name)
        domains[name] = domain
    return domains


def make_list(name: str, size: int) -> object:
    """A static list of the first `size` contacts (an audience smaller than everyone)."""
    from django.db import connection

    from campaigns.models import ContactList

    contact_list = ContactList.objects.create(name=name)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_listmembership (contact_list_id, contact_id, added_at)"
            " SELECT %s, id, now() FROM crm_contact ORDER BY id LIMIT %s",
            [contact_list.pk, size],
        )
    return contact_list


def new_campaign(newsletter, *, name: str, from_domain: str = DOMAIN, contact_list=None) -> object:
    from campaigns.models import Campaign

    campaign = Campaign.objects.create(
        name=name,
        subscription_type=newsletter,
        from_name="Bench News",
        from_email=f"news@{from_domain}",
        reply_to=f"hello@{from_domain}",
        subject=SUBJECT,
        html_body=HTML,
        text_body=TEXT,
    )
    if contact_list is not None:
        campaign.lists.add(contact_list)
    return campaign


def start(campaign) -> tuple[int, float]:
    """Build the sends (audience + gate in SQL) and set the campaign sending; (queued, seconds)."""
    from django.utils import timezone

    from campaigns import pipeline

    started = time.perf_counter()
    queued, skipped = pipeline.start_campaign(campaign, user=None, now=timezone.now())
    seconds = time.perf_counter() - started
    if skipped:
        raise SystemExit(f"{skipped} recipients skipped by the gate; the bench data should all be eligible")
    return queued, seconds


def forget_sends() -> None:
    """Drop earlier campaigns: their sends would count against the frequency cap (3 in 7 days)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE campaigns_campaign CASCADE")


# ---------------------------------------------------------------------------------------------
# The baseline: a bare loop


def bare_loop(campaign, contacts: list, sink: Sink) -> tuple[list[float], dict[str, float]]:
    """Render, build, sign and send `contacts` over one smtplib connection; (stamps, seconds per phase)."""
    import smtplib

    from django.core.mail import EmailMultiAlternatives
    from django.template import Context

    from campaigns import links as campaign_links
    from campaigns import rendering
    from crm import links
    from deliverability import signing

    subject_template, html_template, text_template = rendering.compiled(campaign.subject, HTML, TEXT)
    subscription_type = campaign.subscription_type
    from_header = f"{campaign.from_name} <{campaign.from_email}>"
    phases = Counter()
    stamps = []
    connection = smtplib.SMTP("127.0.0.1", sink.port)
    connection.ehlo()
    for number, contact in enumerate(contacts, start=1):
        t0 = time.perf_counter()
        send_id = 10_000_000 + number
        context = {
            "contact": {
                "email": contact.email,
                "first_name": contact.first_name,
                "last_name": contact.last_name,
                "full_name": contact.full_name,
                "company": contact.company,
                "phone": contact.phone,
                "language": contact.language,
                "time_zone": contact.time_zone,
                "properties": contact.properties,
            },
            "campaign": {"name": campaign.name, "subject": campaign.subject},
            "unsubscribe_url": links.unsubscribe_url(contact, subscription_type, send_id=send_id),
            "preferences_url": links.preferences_url(contact),
            "view_in_browser_url": campaign_links.view_url(send_id),
        }
        plain = Context(context, autoescape=False)
        html = html_template.render(Context(context))
        text = text_template.render(plain)
        subject = " ".join(subject_template.render(plain).split())
        t1 = time.perf_counter()
        headers = {
            **links.list_unsubscribe_headers(contact, subscription_type, send_id=send_id),
            "Message-ID": f"<{send_id}.{secrets.token_hex(6)}@{DOMAIN}>",
            "Feedback-ID": f"{campaign.pk}:{subscription_type.pk}:deliverwell",
            "Reply-To": campaign.reply_to,
        }
        message = EmailMultiAlternatives(subject, text, from_header, [contact.email], headers=headers)
        message.attach_alternative(html, "text/html")
        raw = message.message().as_bytes(linesep="\r\n")
        t2 = time.perf_counter()
        signed = signing.sign_message(raw, campaign.from_email)
        t3 = time.perf_counter()
        connection.sendmail(f"bounces+{send_id}@{DOMAIN}", [contact.email], signed)
        t4 = time.perf_counter()
        stamps.append(time.monotonic())
        phases["render (3 templates, 3 signed URLs)"] += t1 - t0
        phases["build the MIME message (List-Unsubscribe token)"] += t2 - t1
        phases["DKIM sign (RSA-2048)"] += t3 - t2
        phases["SMTP transaction"] += t4 - t3
    connection.quit()
    return stamps, dict(phases)


# ---------------------------------------------------------------------------------------------
# Real Celery workers


def celery_environment(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


class Workers:
    """`celery -A config worker --concurrency=1` subprocesses with the bench's environment."""

    def __init__(self, count: int, environment: dict[str, str], log_dir: Path) -> None:
        self.processes = []
        self.logs = []
        for number in range(count):
            log = log_dir / f"worker{number}-{secrets.token_hex(3)}.log"
            self.logs.append(log)
            self.processes.append(
                subprocess.Popen(
                    [
                        *(str(ROOT / ".venv/bin/celery"), "-A", "config", "worker", "--concurrency=1"),
                        *("--loglevel=WARNING", f"--hostname=bench{number}@%h"),
                        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                    ],
                    cwd=ROOT,
                    env=environment,
                    stdout=log.open("w"),
                    stderr=subprocess.STDOUT,
                    # Its own process group: stopping it also stops its pool child, and nothing else.
                    start_new_session=True,
                )
            )
        self.wait_ready(count)

    def wait_ready(self, count: int) -> None:
        from config.celery import app

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.check_alive()
            if len(app.control.ping(timeout=0.5)) >= count:
                return
        raise SystemExit(f"workers did not answer a ping within 60 s; logs: {self.tails()}")

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise SystemExit(f"a worker exited ({process.returncode}): {self.tails()}")

    def tails(self) -> str:
        return "\n".join(f"--- {log}\n{log.read_text()[-3000:]}" for log in self.logs)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def flush_redis() -> None:
    import redis

    for url in (CACHE_URL, BROKER_URL):
        redis.Redis.from_url(url).flushdb()


def run_workers(
    campaign, *, workers: int, sink: Sink, log_dir: Path, batch_size: int, rate: int = 0, seconds: float = 0
) -> list[float]:
    """Start `workers` workers, enqueue the campaign's chains, wait until every send is done.

    With `seconds`, the campaign is cancelled that long after its first message and the batches
    in flight finish. Returns the sink's stamps for this campaign's messages.
    """
    from django.conf import settings
    from django.utils import timezone

    from campaigns import pipeline
    from campaigns.models import Send, SendStatus
    from campaigns.tasks import enqueue_campaign

    flush_redis()
    parallel = 2 * workers  # one task waiting per worker, so no worker idles between tasks
    environment = celery_environment(
        SEND_BATCH_SIZE=str(batch_size), SEND_PARALLEL_TASKS=str(parallel), SEND_RATE_PER_SECOND=str(rate)
    )
    pool = Workers(workers, environment, log_dir)
    try:
        queued = Send.objects.filter(campaign=campaign, status=SendStatus.QUEUED).count()
        first = sink.count
        settings.SEND_PARALLEL_TASKS = parallel
        enqueue_campaign(campaign.pk)
        last_progress, last_count, cancelled = time.monotonic(), sink.count, False
        while sink.count - first < queued:
            time.sleep(0.2)
            pool.check_alive()
            if sink.count != last_count:
                last_progress, last_count = time.monotonic(), sink.count
            if seconds and not cancelled and sink.count > first and time.monotonic() - sink.stamps[first] > seconds:
                pipeline.cancel_campaign(campaign, user=None, now=timezone.now())
                cancelled = True
            if cancelled and not Send.objects.filter(campaign=campaign, status=SendStatus.SENDING).exists():
                break
            if time.monotonic() - last_progress > 60:
                left = Counter(Send.objects.filter(campaign=campaign).values_list("status", flat=True))
                raise SystemExit(f"the workers stalled at {sink.count - first} of {queued}: {left}\n{pool.tails()}")
        # The last batch's results are written after its last message.
        while Send.objects.filter(campaign=campaign, status__in=[SendStatus.QUEUED, SendStatus.SENDING]).exists():
            time.sleep(0.2)
    finally:
        pool.stop()
    statuses = Counter(Send.objects.filter(campaign=campaign).values_list("status", flat=True))
    delivered = statuses.pop(SendStatus.DELIVERED, 0)
    statuses.pop(SendStatus.CANCELLED, None)
    if statuses or sink.count - first != delivered:
        raise SystemExit(f"{delivered} delivered, {sink.count - first} at the sink, and also {dict(statuses)}")
    return sink.stamps[first : first + delivered]


def windows(stamps: list[float], seconds: float = 10.0) -> tuple[int, int, int]:
    """(max, min, how many) messages over every `seconds` window inside the run.

    A window starts at every message (and at first + k/10 s); only windows that end by the
    last message count, so the ramp-up and the tail do not read as dips.
    """
    first, last = stamps[0], stamps[-1]
    starts = sorted({*stamps, *(first + k / 10 for k in range(int((last - first) * 10) + 1))})
    counts = [
        bisect.bisect_left(stamps, start + seconds) - bisect.bisect_left(stamps, start)
        for start in starts
        if start + seconds <= last
    ]
    return max(counts), min(counts), len(counts)


# ---------------------------------------------------------------------------------------------
# SQL statements in the worker path


@contextmanager
def timed_calls(target, names: list[str], spent: Counter):
    """Add the seconds spent in target.<name> to spent[name] while inside."""
    originals = {name: getattr(target, name) for name in names}

    def wrap(name, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return timed

    for name, function in originals.items():
        setattr(target, name, wrap(name, function))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(target, name, function)


def count_queries(campaign, sizes: list[int]) -> tuple[list[tuple[int, int, list[str]]], dict[str, float]]:
    """Claim and send batches of each size in this process; statements per batch.

    Returns [(batch size, messages, statement kinds)] and, for the largest batch,
    the seconds spent per part.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from campaigns import events, pipeline, transports
    from campaigns.extensions import extensions

    # Warm the per-process caches (signing keys, the sending domain) as a running worker has them.
    now = timezone.now()
    pipeline.send_batch(pipeline.claim(campaign.pk, now=now, limit=10), now=now)
    results = []
    parts: dict[str, float] = {}
    for size in sizes:
        spent: Counter = Counter()
        with (
            CaptureQueriesContext(connection) as captured,
            timed_calls(pipeline, ["render_for", "_message", "throttle"], spent),
            timed_calls(extensions, ["sign"], spent),
            timed_calls(transports.SmtpTransport, ["deliver"], spent),
            timed_calls(events, ["record_attempts"], spent),
        ):
            started = time.perf_counter()
            now = timezone.now()
            ids = pipeline.claim(campaign.pk, now=now, limit=size)
            counts = pipeline.send_batch(ids, now=now)
            total = time.perf_counter() - started
        kinds = [_kind(query["sql"]) for query in captured.captured_queries]
        results.append((size, sum(counts.values()), kinds))
        if size == max(sizes):
            sql = sum(float(query["time"]) for query in captured.captured_queries)
            parts = {
                "render (3 templates, 3 signed URLs)": spent["render_for"],
                "build the message (headers, List-Unsubscribe token)": spent["_message"] - spent["render_for"],
                "DKIM sign": spent["sign"],
                "SMTP transaction": spent["deliver"],
                "write-back and events (events.record_attempts, its SQL too)": spent["record_attempts"],
            }
            parts["the rest (claim, batch and gate SQL, MIME, bookkeeping)"] = total - sum(parts.values())
            parts["total"] = total
            parts["(all SQL statements, counted in the lines above)"] = sql
    return results, parts


def _kind(sql: str) -> str:
    """ "SELECT campaigns_send FOR UPDATE", "UPDATE campaigns_send", "BEGIN", …"""
    verb = sql.split()[0].upper()
    # A SELECT's own table is its first column's (subqueries have their own FROMs).
    table = re.match(r'SELECT\s+(?:DISTINCT\s+)?"(\w+)"', sql) or re.search(r'(?:UPDATE|INTO)\s+"(\w+)"', sql)
    for_update = " FOR UPDATE" if "FOR UPDATE" in sql.upper() else ""
    return f"{verb} {table.group(1)}{for_update}" if table else verb


# ---------------------------------------------------------------------------------------------
# DKIM and the anymail path


def dkim_cost(messages: int) -> dict[str, float]:
    """Seconds per sign_message call on the same message, per key algorithm, and for scale the
    same RSA signature by dkimpy alone (its pure-Python RSA, the PEM parsed on every call)."""
    import dkim
    from django.core.mail import EmailMultiAlternatives

    from crm import encryption
    from deliverability import signing
    from deliverability.models import DkimKey

    message = EmailMultiAlternatives(
        "Hello", TEXT, f"Bench News <news@{DOMAIN}>", ["person1@example.org"], headers=_sample_headers()
    )
    message.attach_alternative(HTML, "text/html")
    raw = message.message().as_bytes(linesep="\r\n")
    key = DkimKey.objects.get(domain__domain=f"rsa.{DOMAIN}")
    pem = encryption.decrypt(key.private_key_encrypted).encode()
    headers = [name for name in signing.SIGNED_HEADERS if b"\r\n" + name + b":" in b"\r\n" + raw.lower()]
    calls = {
        "RSA-2048": lambda: signing.sign_message(raw, f"news@rsa.{DOMAIN}"),
        "Ed25519": lambda: signing.sign_message(raw, f"news@ed.{DOMAIN}"),
        "RSA-2048, dkimpy alone": lambda: dkim.sign(
            raw, key.selector.encode(), f"rsa.{DOMAIN}".encode(), pem, include_headers=headers
        ),
    }
    costs = {}
    for label, call in calls.items():
        call()  # key cache warm, as in a worker
        started = time.perf_counter()
        for _ in range(messages):
            call()
        costs[label] = (time.perf_counter() - started) / messages
    return costs


def _sample_headers() -> dict[str, str]:
    return {
        "List-Unsubscribe": "<https://www.bench.example/unsubscribe/token/>, <mailto:unsubscribe@bench.example>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Message-ID": f"<1.abcdef@{DOMAIN}>",
        "Feedback-ID": "1:1:deliverwell",
    }


def esp_stub(port: int, ready) -> None:
    """A Postmark-shaped API: POST /email and /email/batch accept everything (runs in its own process)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm on, the client's delayed
        # ACK holds the body back ~40 ms per request.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))

            def accepted(message):
                return {
                    "To": message.get("To", ""),
                    "SubmittedAt": "2026-11-22T10:00:00Z",
                    "MessageID": secrets.token_hex(16),
                    "ErrorCode": 0,
                    "Message": "OK",
                }

            answer = [accepted(message) for message in body] if self.path.endswith("/batch") else accepted(body)
            payload = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ready.set()
    server.serve_forever()


def esp_path(newsletter, recipients: int, batch_size: int) -> list[tuple[str, int, float, str]] | None:
    """The pipeline through anymail (test backend, then a Postmark-shaped HTTP stub) and a bare
    anymail batch send to the stub; None when there is no ESP transport yet."""
    from django.core.mail import EmailMultiAlternatives, get_connection
    from django.test import override_settings
    from django.utils import timezone

    from campaigns import pipeline, transports
    from campaigns.models import Send, SendStatus
    from crm.models import Contact

    if not hasattr(transports, "EspTransport"):
        return None
    esp_list = make_list("ESP bench", recipients)
    port = free_port()
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    stub = context.Process(target=esp_stub, args=(port, ready), daemon=True)
    stub.start()
    ready.wait(10)
    postmark = {
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
        "ANYMAIL": {"POSTMARK_SERVER_TOKEN": "bench", "POSTMARK_API_URL": f"http://127.0.0.1:{port}/"},
    }
    rows = []
    try:
        for label, overrides in (
            ("pipeline → anymail test backend", {"EMAIL_BACKEND": "anymail.backends.test.EmailBackend"}),
            ("pipeline → Postmark backend → HTTP stub, one POST per message", postmark),
        ):
            campaign = new_campaign(newsletter, name=label, from_domain=f"esp.{DOMAIN}", contact_list=esp_list)
            start(campaign)
            with override_settings(**overrides):
                started = time.perf_counter()
                sent = 0
                while ids := pipeline.claim(campaign.pk, now=timezone.now(), limit=batch_size):
                    sent += sum(pipeline.send_batch(ids, now=timezone.now()).values())
                seconds = time.perf_counter() - started
            accepted = Send.objects.filter(campaign=campaign, status=SendStatus.ACCEPTED).count()
            if accepted != recipients:
                raise SystemExit(f"{label}: {accepted} of {recipients} accepted by the ESP")
            rows.append((label, sent, seconds, "claim, gate, render, hand over, record"))
            forget_sends()
        # The bare reference: the same recipients in Postmark batch calls of 500 (one content, no rendering).
        contacts = list(Contact.objects.order_by("pk")[:recipients])
        with override_settings(**postmark):
            connection = get_connection()
            started = time.perf_counter()
            for offset in range(0, len(contacts), 500):
                chunk = contacts[offset : offset + 500]
                message = EmailMultiAlternatives(
                    SUBJECT, TEXT, f"Bench News <news@esp.{DOMAIN}>", [c.email for c in chunk], connection=connection
                )
                message.attach_alternative(HTML, "text/html")
                # Per-recipient metadata makes it a batch: one /email/batch POST, a message per recipient.
                message.merge_metadata = {c.email: {"contact_id": str(c.pk)} for c in chunk}
                message.send()
            seconds = time.perf_counter() - started
        rows.append(
            ("bare anymail batch send → HTTP stub, 500 per POST", len(contacts), seconds, "same content, no DB")
        )
    finally:
        stub.terminate()
        stub.join(5)
    return rows


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000, help="subscribers, and sends per campaign")
    parser.add_argument(
        "--seconds", type=float, default=120, help="cancel each worker run this long after its first message (0: all)"
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="SEND_BATCH_SIZE (recipients per task)")
    parser.add_argument(
        "--rate", type=int, default=0, help="the global SEND_RATE_PER_SECOND to hold (0: 60 %% of 2 workers' speed)"
    )
    parser.add_argument("--rate-seconds", type=int, default=60)
    parser.add_argument("--bare", type=int, default=2000, help="messages in the bare loop")
    parser.add_argument("--esp", type=int, default=500, help="recipients for each anymail measurement")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    args = parser.parse_args()
    if args.batch_size < 100:
        parser.error("--batch-size: the goal is at least 100 recipients per task")

    sink = Sink()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-send-"))
    try:
        configure(args.database_url, sink_port=sink.port, batch_size=args.batch_size)
        report(args, sink, log_dir)
    finally:
        sink.stop()
    shutil.rmtree(log_dir, ignore_errors=True)


TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"}


def report(args, sink: Sink, log_dir: Path) -> None:
    from crm.models import Contact

    began = time.perf_counter()
    newsletter = seed(args.recipients)
    make_domains()
    flush_redis()
    print(f"smtp-sink on 127.0.0.1:{sink.port}; batches of {args.batch_size}; worker logs in {log_dir}")

    # The baseline right before each pipeline run, so both see the same load on shared cores.
    bare_campaign = new_campaign(newsletter, name="Bare loop")
    contacts = list(Contact.objects.order_by("pk")[: min(args.bare, args.recipients)])
    bare_loop(bare_campaign, contacts[:50], sink)  # warm-up: imports, template compilation

    def measure_bare() -> tuple[float, dict[str, float]]:
        before = sink.count
        _, phases = bare_loop(bare_campaign, contacts, sink)
        assert sink.count - before == len(contacts)
        rate = rate_between(sink.stamps[before:])
        print(f"bare loop: {len(contacts):,} messages, {rate:.1f} msgs/s at the sink (load {os.getloadavg()[0]:.1f})")
        return rate, phases

    # The pipeline over real workers, 1 then 2, a fresh campaign each time.
    runs = []
    bare_rates = {}
    for workers in (1, 2):
        bare_rates[workers], bare_phases = measure_bare()
        campaign = new_campaign(newsletter, name=f"{workers} worker(s)")
        queued, build_seconds = start(campaign)
        stamps = run_workers(
            campaign, workers=workers, sink=sink, log_dir=log_dir, batch_size=args.batch_size, seconds=args.seconds
        )
        runs.append((workers, queued, build_seconds, stamps))
        print(f"{workers} worker(s): {len(stamps):,} of {queued:,} sends, {rate_between(stamps):.1f} msgs/s", end="")
        print(f" (load {os.getloadavg()[0]:.1f})")
        forget_sends()
    rates = {workers: rate_between(stamps) for workers, _, _, stamps in runs}

    # SQL statements per batch, in this process.
    sizes = [100, 200, 500, 1000]
    campaign = new_campaign(
        newsletter, name="Query count", contact_list=make_list("Query count", 10 + sum(sizes) + 100)
    )
    start(campaign)
    query_rows, parts = count_queries(campaign, sizes)
    forget_sends()

    # A global rate shared by two workers, below what they reach unthrottled. The campaign is
    # larger than what goes out in --rate-seconds and is cancelled then, so every window counted
    # has both workers busy (the drain after the cancel is left out).
    rate = args.rate or max(10, int(rates[2] * 0.6) // 10 * 10)
    campaign = new_campaign(
        newsletter,
        name="Rate",
        contact_list=make_list("Rate", min(rate * (args.rate_seconds + 30), args.recipients)),
    )
    start(campaign)
    rate_stamps = run_workers(
        campaign,
        workers=2,
        sink=sink,
        log_dir=log_dir,
        batch_size=args.batch_size,
        rate=rate,
        seconds=args.rate_seconds,
    )
    rate_stamps = [stamp for stamp in rate_stamps if stamp <= rate_stamps[0] + args.rate_seconds]
    forget_sends()

    dkim = dkim_cost(1000)
    esp_rows = esp_path(newsletter, min(args.esp, args.recipients), args.batch_size)
    forget_sends()

    # ------------------------------------------------------------------ the figures
    print()
    print(f"Send pipeline: {args.recipients:,} recipients, {args.batch_size} per task", end="")
    print(f" (whole run {time.perf_counter() - began:.0f} s)")
    print()
    print(f"{'path':<46}{'messages':>10}{'seconds':>9}{'msgs/s':>9}{'x bare':>8}")
    for workers, _, _, stamps in runs:
        bare_rate = bare_rates[workers]
        row = f"{'bare loop, one smtplib connection (baseline)':<46}{len(contacts):>10,}"
        print(f"{row}{len(contacts) / bare_rate:>9.1f}{bare_rate:>9.1f}{1:>8.2f}")
        label = f"pipeline, {workers} Celery worker{'s' if workers > 1 else ''}"
        seconds = stamps[-1] - stamps[0]
        print(f"{label:<46}{len(stamps):>10,}{seconds:>9.1f}{rates[workers]:>9.1f}{rates[workers] / bare_rate:>8.2f}")
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}")
    builds = ", ".join(f"{build_seconds:.1f} s" for _, _, build_seconds, _ in runs)
    print(f"audience build + gate + checklist (start_campaign) for {runs[0][1]:,} sends: {builds}")
    print()
    print("bare loop before the 2-worker run, per message:")
    for phase, seconds in bare_phases.items():
        print(f"  {phase:<52}{seconds / len(contacts) * 1e6:>8.0f} µs")
    print(f"  {'total':<52}{sum(bare_phases.values()) / len(contacts) * 1e6:>8.0f} µs")
    print()
    print("worker path (claim + send_batch) in this process, SQL statements:")
    print(f"  {'batch':>6}{'messages':>10}{'all':>6}{'per 1,000':>11}{'without BEGIN/COMMIT':>22}{'per 1,000':>11}")
    for size, messages, kinds in query_rows:
        bare_statements = len([kind for kind in kinds if kind not in TRANSACTION_CONTROL])
        print(
            f"  {size:>6}{messages:>10}{len(kinds):>6}{len(kinds) * 1000 / messages:>11.1f}"
            f"{bare_statements:>22}{bare_statements * 1000 / messages:>11.1f}"
        )
    print("  one batch: " + "; ".join(f"{n}x {k}" for k, n in Counter(query_rows[0][2]).items()))
    print(f"  batch of {sizes[-1]}, per message:")
    for part, seconds in parts.items():
        print(f"    {part:<48}{seconds / sizes[-1] * 1e6:>8.0f} µs")
    print()
    maximum, minimum, count = windows(rate_stamps)
    sustained = rate_between(rate_stamps)
    print(f"global rate R = {rate}/s, 2 workers: {len(rate_stamps):,} messages", end="")
    print(f" over {rate_stamps[-1] - rate_stamps[0]:.1f} s")
    print(f"  {count:,} windows of 10 s: max {maximum / 10:.1f}/s ({maximum / 10 / rate:.3f} R),", end="")
    print(f" min {minimum / 10:.1f}/s ({minimum / 10 / rate:.3f} R);", end="")
    print(f" sustained {sustained:.1f}/s ({sustained / rate:.3f} R)")
    pauses = sorted((b - a for a, b in itertools.pairwise(rate_stamps)), reverse=True)[:5]
    print("  longest pauses between two messages at the sink: " + ", ".join(f"{p * 1000:.0f} ms" for p in pauses))
    print()
    print("DKIM sign_message, same message, 1,000 each:")
    for label, seconds in dkim.items():
        print(f"  {label:<24}{seconds * 1e6:>8.0f} µs")
    print(f"  RSA-2048 / Ed25519: {dkim['RSA-2048'] / dkim['Ed25519']:.1f}")
    print(f"  dkimpy alone / ours, RSA-2048: {dkim['RSA-2048, dkimpy alone'] / dkim['RSA-2048']:.1f}")
    print()
    if esp_rows is None:
        print("anymail path: not measured: no ESP transport yet")
    else:
        print("anymail path (in this process):")
        for label, messages, seconds, note in esp_rows:
            print(f"  {label:<64}{messages:>7,}{seconds:>8.2f} s{messages / seconds:>8.0f} msgs/s  ({note})")
    print()
    per_batch = [len(kinds) for _, _, kinds in query_rows]
    constant = len(set(per_batch)) == 1
    per_thousand = max(per_batch) * 1000 / args.batch_size
    verdicts = [
        ("one worker ≥ 0.6x the bare loop", rates[1] / bare_rates[1] >= 0.6, f"{rates[1] / bare_rates[1]:.2f}x"),
        ("at least 100 recipients per Celery task", args.batch_size >= 100, f"{args.batch_size} per task"),
        (
            "SQL statements per 1,000 recipients constant and ≤ 10",
            constant and per_thousand <= 10,
            f"{max(per_batch)} per batch at every size ({'constant' if constant else 'NOT constant'}),"
            f" {per_thousand:.0f} per 1,000 at {args.batch_size} per batch; ≤ 10 from {max(per_batch) * 100} per batch",
        ),
        (
            "rate within 5 % over every 10 s window",
            maximum / 10 <= 1.05 * rate and minimum / 10 >= 0.95 * rate,
            f"{minimum / 10 / rate:.3f} to {maximum / 10 / rate:.3f} R",
        ),
        ("sustains ≥ 0.9 R", sustained >= 0.9 * rate, f"{sustained / rate:.3f} R"),
    ]
    for goal, ok, figure in verdicts:
        print(f"{'pass' if ok else 'FAIL':<6}{goal}: {figure}")


if __name__ == "__main__":
    main()
