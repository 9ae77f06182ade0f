"""Signup form throughput: full public form POSTs per second against a bare view.

Each signup POST is what a real visitor sends: a new address, a solved ALTCHA challenge
(solutions are computed before timing, as the visitor's browser would), the honeypot, and
the chosen subscription types. The server verifies the proof of work and its replay
protection, checks the rate limit, writes the contact, the pending subscription and the
consent record, and queues the confirmation email. The baseline is a bare view in the same
process that parses the same POST and answers "ok".

Usage: python bench/signup.py [--posts 400] [--database-url postgres://…]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import time
from pathlib import Path

from common import configure_django, ensure_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/deliverwell_bench_signup"


def configure(database_url: str) -> None:
    ensure_database(database_url)
    configure_django(
        database_url,
        ALLOWED_HOSTS="testserver",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15"),
    )
    from django.conf import settings

    settings.ROOT_URLCONF = "bench.signup_urls"


def prepare() -> object:
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection

    from crm.models import SignupForm, SignupFormOffer, SubscriptionType

    call_command("migrate", verbosity=0)
    cache.clear()
    with connection.cursor() as cursor:
        # A bench database only: TRUNCATE passes the consent log's append-only trigger.
        cursor.execute("TRUNCATE crm_consentrecord, crm_subscription, crm_contact, crm_suppression CASCADE")
    newsletter, _ = SubscriptionType.objects.get_or_create(name="Newsletter")
    signup_form, _ = SignupForm.objects.get_or_create(
        slug="bench", defaults={"title": "Bench", "consent_text": "Yes, email me."}
    )
    SignupFormOffer.objects.get_or_create(signup_form=signup_form, subscription_type=newsletter)
    return newsletter


def solve(count: int) -> tuple[list[str], float]:
    """Solve `count` real challenges from our server, as browsers would; return them and s/solve."""
    import altcha
    from django.conf import settings
    from django_altcha import get_altcha_challenge

    solutions = []
    started = time.perf_counter()
    for _ in range(count):
        challenge = get_altcha_challenge(max_number=settings.ALTCHA_MAX_NUMBER)
        solution = altcha.solve_challenge(
            challenge.challenge, challenge.salt, challenge.algorithm, challenge.max_number
        )
        payload = {
            "algorithm": challenge.algorithm,
            "challenge": challenge.challenge,
            "number": solution.number,
            "salt": challenge.salt,
            "signature": challenge.signature,
        }
        solutions.append(base64.b64encode(json.dumps(payload).encode()).decode())
    return solutions, (time.perf_counter() - started) / count


def time_posts(path: str, bodies: list[dict], expect: int) -> list[float]:
    from django.test import Client

    client = Client()
    durations = []
    for number, body in enumerate(bodies):
        ip = f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}"
        started = time.perf_counter()
        response = client.post(path, body, REMOTE_ADDR=ip, HTTP_USER_AGENT="bench")
        durations.append(time.perf_counter() - started)
        if response.status_code != expect:
            raise SystemExit(f"{path} answered {response.status_code}, expected {expect}: {response.content[:300]!r}")
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    args = parser.parse_args()
    configure(args.database_url)
    newsletter = prepare()

    from django.conf import settings

    from crm.models import Contact

    print(f"Solving {args.posts} ALTCHA challenges (max number {settings.ALTCHA_MAX_NUMBER}) before timing…")
    solutions, solve_seconds = solve(args.posts)
    bodies = [
        {
            "email": f"person{n}@example.org",
            "first_name": "Bench",
            "subscription_types": [newsletter.pk],
            "website": "",
            "altcha": solution,
        }
        for n, solution in enumerate(solutions)
    ]
    # Warm both paths (imports, template loading, connections) outside the timing.
    time_posts("/bare/", bodies[:20], expect=200)
    time_posts("/subscribe/bench/", [dict(b, email=f"warm{n}@example.org") for n, b in enumerate(bodies[:5])], 303)
    prepare()

    bare = time_posts("/bare/", bodies, expect=200)
    signup = time_posts("/subscribe/bench/", bodies, expect=303)
    assert Contact.objects.count() == args.posts

    bare_rate = len(bare) / sum(bare)
    signup_rate = len(signup) / sum(signup)
    print()
    print(f"{'path':<32}{'posts/s':>10}{'median ms':>12}{'p95 ms':>10}")
    for name, durations, rate in (
        ("bare view (baseline)", bare, bare_rate),
        ("signup form, full", signup, signup_rate),
    ):
        p95 = statistics.quantiles(durations, n=20)[18] * 1000
        print(f"{name:<32}{rate:>10.0f}{statistics.median(durations) * 1000:>12.2f}{p95:>10.2f}")
    print()
    ratio = signup_rate / bare_rate
    print(f"signup rate / bare rate: {ratio:.3f} (a signup costs {1 / ratio:.1f} times a bare POST)")
    print(f"browser-side proof of work, for reference: {solve_seconds * 1000:.0f} ms per solution in CPython")


if __name__ == "__main__":
    main()
