"""Event ingestion: ESP webhook batches, and the open and click endpoints under load.

(a) Webhooks. A SendGrid batch of 1,000 events (delivered, opens, clicks, bounces for 1,000
    sends) is POSTed through the real webhook view: anymail's authentication, then the body
    queued in the event buffer (Redis). The worker's half — draining the queue: anymail's
    parser and `record_events` — is timed on the same batches. Baseline in the same process: a bare view
    that only parses the JSON. Printed: the request path (what the ESP waits for) and the whole
    path, each as events/s and as a ratio to the baseline (goal ≥ 0.5x).
(b) Tracking. gunicorn serves the real project; wrk (Debian's package) loads the pixel, the
    click redirect, and, as baseline, an empty view returning the same GIF, in the same run.
    Hits go to the Redis buffer; draining them into PostgreSQL is timed afterwards. Goals:
    ≥ 500 requests/s, p95 < 20 ms, ≥ 0.7x the empty view's requests/s.

Usage: python bench/events.py [--batches 10] [--seconds 10] [--connections 32] [--database-url …]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import configure_django, ensure_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/deliverwell_bench_events"
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
SECRET = "bench:webhook-secret"
BATCH = 1000
LATENCY_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("P95_US %d\\nREQUESTS %d\\nERRORS %d\\n", latency:percentile(95), summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def configure(database_url: str) -> None:
    ensure_database(database_url)
    configure_django(
        database_url,
        ALLOWED_HOSTS="testserver,127.0.0.1",
        REDIS_URL=f"{REDIS}/12",
        EVENT_BUFFER_URL=f"{REDIS}/11",
        CELERY_BROKER_URL=f"{REDIS}/10",
        ANYMAIL=json.dumps({"WEBHOOK_SECRET": SECRET}),
    )


def prepare(sends: int):
    """A sent campaign with `sends` sends handed to the ESP, and nothing else in the event tables."""
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from campaigns import buffer, tracking, webhooks
    from campaigns.models import Campaign, Send
    from crm.models import Contact, SubscriptionType

    call_command("migrate", verbosity=0)
    buffer.client().delete(webhooks.QUEUE_KEY, tracking.BUFFER_KEY)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE campaigns_emailevent, campaigns_campaignlink, campaigns_send, campaigns_campaign, "
            "crm_consentrecord, crm_subscription, crm_suppression, crm_contact CASCADE"
        )
    now = timezone.now()
    newsletter, _ = SubscriptionType.objects.get_or_create(name="Newsletter")
    campaign = Campaign.objects.create(
        name="Bench",
        subscription_type=newsletter,
        from_name="Bench",
        from_email="news@bench.example",
        subject="Hi",
        html_body='<p><a href="https://shop.example/">Shop</a></p>',
        status="sending",
    )
    contacts = Contact.objects.bulk_create(
        [Contact(email=f"r{i}@bench.example", email_normalized=f"r{i}@bench.example") for i in range(sends)]
    )
    Send.objects.bulk_create(
        [
            Send(
                campaign=campaign,
                contact=contact,
                email=contact.email_normalized,
                status="accepted",
                due_at=now,
                created_at=now,
                attempts=1,
                first_attempt_at=now,
                last_attempt_at=now,
                message_id=f"bench-{contact.pk}",
            )
            for contact in contacts
        ],
        batch_size=5000,
    )
    return campaign


def sendgrid_batches(campaign, count: int) -> list[bytes]:
    """`count` batches of 1,000 SendGrid events, each about 1,000 different sends, as SendGrid posts them."""
    kinds = ["delivered"] * 6 + ["open", "open", "click", "bounce"]
    batches = []
    sends = list(campaign.sends.order_by("pk").values_list("message_id", "email"))
    for number in range(count):
        events = []
        for index, (message_id, email) in enumerate(sends[number * BATCH : (number + 1) * BATCH]):
            kind = kinds[index % len(kinds)]
            event = {
                "email": email,
                "timestamp": 1764500000 + index,
                "event": kind,
                "sg_event_id": f"ev-{number}-{index}",
                "sg_message_id": f"sg-{message_id}.filter0001",
                "anymail_id": message_id,
                "smtp-id": f"<{message_id}@bench.example>",
            }
            if kind == "delivered":
                event["response"] = "250 2.0.0 OK 1764500000 queued"
            elif kind in {"open", "click"}:
                event |= {"useragent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "ip": "198.51.100.20"}
                if kind == "click":
                    event["url"] = "https://shop.example/"
            else:
                event |= {"type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 The email account does not exist."}
            events.append(event)
        batches.append(json.dumps(events).encode())
    return batches


def bench_webhooks(campaign, batches: list[bytes]) -> list[tuple[str, float, float]]:
    """(path, events/s, ratio to the bare view) for the bare view, the request, the worker and the whole."""
    from django.http import HttpResponse
    from django.test import Client, override_settings
    from django.urls import path
    from django.utils import timezone
    from django.views.decorators.csrf import csrf_exempt

    from campaigns import webhooks
    from config import urls

    @csrf_exempt
    def bare(request):
        json.loads(request.body)
        return HttpResponse("OK")

    class BenchUrls:
        urlpatterns = [path("bare/", bare), *urls.urlpatterns]

    client = Client()
    credentials = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(SECRET.encode()).decode()}
    with override_settings(ROOT_URLCONF=BenchUrls):
        for body in batches[:2]:  # warm up both views (an empty batch for the webhook: nothing to record)
            client.post("/bare/", data=body, content_type="application/json")
            client.post("/anymail/sendgrid/tracking/", data=b"[]", content_type="application/json", **credentials)
        started = time.perf_counter()
        for body in batches:
            assert client.post("/bare/", data=body, content_type="application/json").status_code == 200
        bare_seconds = time.perf_counter() - started

        started = time.perf_counter()
        for body in batches:
            response = client.post(
                "/anymail/sendgrid/tracking/", data=body, content_type="application/json", **credentials
            )
            assert response.status_code == 200, response.content
        request_seconds = time.perf_counter() - started
    # The worker's half: the queued webhooks, drained as a worker does.
    started = time.perf_counter()
    webhooks.drain(now=timezone.now())
    worker_seconds = time.perf_counter() - started
    events = BATCH * len(batches)
    recorded = campaign.events.count()
    assert recorded == events, f"{recorded} events recorded of {events}"
    bare_rate = events / bare_seconds
    return [
        ("bare view: parse the JSON", bare_rate, 1.0),
        (
            "webhook request: authenticate, queue (what the ESP waits for)",
            events / request_seconds,
            (events / request_seconds) / bare_rate,
        ),
        ("worker: anymail parse + record_events", events / worker_seconds, (events / worker_seconds) / bare_rate),
        (
            "whole path: request + worker",
            events / (request_seconds + worker_seconds),
            (events / (request_seconds + worker_seconds)) / bare_rate,
        ),
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wrk(url: str, *, seconds: int, connections: int, script: Path) -> tuple[float, float, int]:
    """(requests/s, p95 ms, errors) of wrk against `url`."""
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p95 = int(re.search(r"P95_US (\d+)", output).group(1)) / 1000
    errors = int(re.search(r"ERRORS (\d+)", output).group(1))
    return rate, p95, errors


def bench_tracking(campaign, database_url: str, *, seconds: int, connections: int, workers: int) -> list[tuple]:
    """(endpoint, requests/s, p95 ms, errors, ratio to the empty view) under wrk, then the drain's hits/s."""
    import redis
    from django.conf import settings
    from django.utils import timezone

    from campaigns import tracking

    send = campaign.sends.order_by("pk").first()
    link_id = tracking.LINKS.link_id(campaign, "https://shop.example/", now=timezone.now())
    buffer = redis.Redis.from_url(settings.EVENT_BUFFER_URL)
    buffer.delete(tracking.BUFFER_KEY)
    port = _free_port()
    script = Path(ROOT / "var" / "bench-wrk.lua")
    script.parent.mkdir(exist_ok=True)
    script.write_text(LATENCY_SCRIPT)
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(ROOT),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "bench.events_wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=environment,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        urls = [
            ("empty view (baseline)", f"{base}/bench/empty.gif"),
            ("open pixel", f"{base}/t/o/{tracking.open_token(send.pk)}.gif"),
            ("click redirect", f"{base}/t/c/{tracking.click_token(send.pk, link_id)}"),
        ]
        for _, url in urls:  # warm up every worker
            _wrk(url, seconds=2, connections=connections, script=script)
        buffer.delete(tracking.BUFFER_KEY)
        results = [(name, *_wrk(url, seconds=seconds, connections=connections, script=script)) for name, url in urls]
    finally:
        server.terminate()
        server.wait(timeout=20)
    baseline = results[0][1]
    rows = [(name, rate, p95, errors, rate / baseline) for name, rate, p95, errors in results]
    hits = buffer.llen(tracking.BUFFER_KEY)
    started = time.perf_counter()
    drained = tracking.drain(now=timezone.now())
    drain_seconds = time.perf_counter() - started
    return rows, (hits, drained, drained / drain_seconds if drain_seconds else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/events.py needs wrk (apt-get install wrk)")
    configure(args.database_url)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    campaign = prepare(sends=args.batches * BATCH)

    print(f"\n(a) Webhooks: {args.batches} SendGrid batches of {BATCH} events")
    print(f"{'path':<64} {'events/s':>10} {'x bare':>8}")
    for name, rate, ratio in bench_webhooks(campaign, sendgrid_batches(campaign, args.batches)):
        print(f"{name:<64} {rate:>10,.0f} {ratio:>8.2f}")

    print(
        f"\n(b) Tracking endpoints: gunicorn {args.workers} sync workers, wrk 2 threads, "
        f"{args.connections} connections, {args.seconds} s each"
    )
    rows, (hits, drained, drain_rate) = bench_tracking(
        campaign, args.database_url, seconds=args.seconds, connections=args.connections, workers=args.workers
    )
    print(f"{'endpoint':<24} {'requests/s':>11} {'p95 ms':>8} {'errors':>7} {'x empty':>8}  verdict")
    for name, rate, p95, errors, ratio in rows:
        verdict = (
            "-"
            if name.startswith("empty")
            else ("pass" if rate >= 500 and p95 < 20 and ratio >= 0.7 and not errors else "FAIL")
        )
        print(f"{name:<24} {rate:>11,.0f} {p95:>8.1f} {errors:>7} {ratio:>8.2f}  {verdict}")
    print(f"buffered hits recorded by one drain: {drained:,} of {hits:,} at {drain_rate:,.0f} hits/s")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
