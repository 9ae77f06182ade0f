"""Recommendations read a domain's recent bounces and complaints and say what to do, naming the cause."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns import events
from campaigns.models import EventSource, EventType, Send, SendStatus
from crm import consent
from crm.addresses import suggest_domain
from crm.models import ConsentAction, ConsentMethod, Contact, ContactSource
from deliverability import health
from deliverability.models import CheckStatus, SendingDomain
from deliverability.recommendations import Level, recommend
from tests.deliverability.health_history import campaign


@pytest.fixture
def domain(db) -> SendingDomain:
    return SendingDomain.objects.create(domain="news.example.com")


OUTCOME_EVENTS = {
    SendStatus.DELIVERED: EventType.DELIVERED,
    SendStatus.HARD_BOUNCED: EventType.HARD_BOUNCE,
    SendStatus.SOFT_BOUNCED: EventType.SOFT_BOUNCE,
}


def results(campaign_, now, outcomes: list[tuple[str, str, str]], *, contacts=None) -> None:
    """One send per (address, status, bounce category), its result recorded an hour ago; then the rollup."""
    handed_over = now - timedelta(hours=1)
    sends = Send.objects.bulk_create(
        Send(
            campaign=campaign_,
            contact=(contacts or {}).get(email),
            email=email,
            status=SendStatus.SENDING,
            due_at=handed_over,
            created_at=handed_over,
            first_attempt_at=handed_over,
        )
        for email, _, _ in outcomes
    )
    events.record_events(
        [
            events.Observation(
                type=OUTCOME_EVENTS[status],
                source=EventSource.SMTP,
                occurred_at=handed_over,
                send_id=send.pk,
                bounce_category=category,
                smtp_code=250 if status == SendStatus.DELIVERED else 550,
                smtp_reply="550 5.7.1 Message rejected" if category == "policy" else "",
            )
            for send, (_, status, category) in zip(sends, outcomes, strict=True)
        ],
        now=handed_over,
    )
    health.roll_up_daily_metrics(now=now)


def delivered(count: int) -> list[tuple[str, str, str]]:
    return [(f"ok{n}@example.org", SendStatus.DELIVERED, "") for n in range(count)]


def test_many_unknown_users_name_the_import_they_came_from(domain, newsletter, now):
    imported = {}
    for n in range(12):
        contact = Contact.objects.create(email=f"gone{n}@example.org", source=ContactSource.IMPORT)
        consent.record_consent(
            contact,
            action=ConsentAction.GRANTED,
            method=ConsentMethod.IMPORT,
            now=now,
            subscription_type=newsletter,
            source_detail="import #7: old-list-2019.csv",
        )
        imported[contact.email_normalized] = contact
    bounces = [(email, SendStatus.HARD_BOUNCED, "unknown_user") for email in imported]
    results(campaign(newsletter, "October"), now, delivered(188) + bounces, contacts=imported)

    [advice] = recommend(domain, now=now)

    assert (advice.level, advice.title) == (Level.CRITICAL, "Many unknown-user bounces: a list source problem")
    assert advice.detail.startswith("12 of 200 messages handed over in the last 30 days (6.0%) went to addresses")
    assert "12 from import #7: old-list-2019.csv" in advice.detail


def test_policy_bounces_name_the_failing_dns_record(domain, newsletter, now):
    domain.record_statuses = {
        "spf": {"status": CheckStatus.FAIL, "summary": "192.0.2.10 is not in the SPF record."},
        "dkim": {"status": CheckStatus.PASS, "summary": "Signing with dw2026r."},
    }
    domain.save()
    results(
        campaign(newsletter, "October"),
        now,
        delivered(90) + [(f"x{n}@corp.example", SendStatus.SOFT_BOUNCED, "policy") for n in range(10)],
    )

    [advice] = recommend(domain, now=now)

    assert advice.title == "Refused for authentication: fix the failing DNS records"
    assert "SPF: 192.0.2.10 is not in the SPF record." in advice.detail
    assert "DKIM" not in advice.detail


def test_policy_bounces_with_every_record_passing_quote_the_receiver(domain, newsletter, now):
    domain.status = CheckStatus.PASS
    domain.save()
    results(
        campaign(newsletter, "October"),
        now,
        delivered(90) + [(f"x{n}@corp.example", SendStatus.SOFT_BOUNCED, "policy") for n in range(10)],
    )

    [advice] = recommend(domain, now=now)

    assert advice.level == Level.WARNING
    assert "One receiver said: “550 5.7.1 Message rejected”" in advice.detail


def test_spam_and_reputation_bounces_call_for_content_and_volume(domain, newsletter, now):
    outcomes = [(f"s{n}@big.example", SendStatus.SOFT_BOUNCED, "spam_content") for n in range(4)]
    outcomes += [(f"r{n}@big.example", SendStatus.SOFT_BOUNCED, "reputation") for n in range(4)]
    results(campaign(newsletter, "October"), now, delivered(92) + outcomes)

    [advice] = recommend(domain, now=now)

    assert advice.title == "Content and volume"
    assert advice.detail.startswith("8 messages were refused as spam or for the sender's reputation.")


def test_bounced_addresses_at_typing_mistakes_get_the_correction(domain, newsletter, now):
    mistakes = [
        ("ann@gmial.com", SendStatus.HARD_BOUNCED, "dns_failure"),
        ("bob@gmial.com", SendStatus.HARD_BOUNCED, "dns_failure"),
        ("cid@hotmial.com", SendStatus.HARD_BOUNCED, "dns_failure"),
        ("dan@mail.com", SendStatus.SOFT_BOUNCED, "mailbox_full"),
    ]
    results(campaign(newsletter, "October"), now, delivered(996) + mistakes)

    [advice] = recommend(domain, now=now)

    assert advice.level == Level.ADVICE
    assert "gmial.com → gmail.com (2 bounced); hotmial.com → hotmail.com (1 bounced)." in advice.detail
    assert "mail.com" not in advice.detail.replace("hotmail.com", "").replace("gmail.com", "")


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("gmial.com", "gmail.com"),
        ("gmail.con", "gmail.com"),
        ("gmal.com", "gmail.com"),
        ("hotmal.com", "hotmail.com"),
        ("yaho.com", "yahoo.com"),
        ("outlok.com", "outlook.com"),
        ("gmail.com", None),
        ("ymail.com", None),
        ("mail.com", None),
        ("example.org", None),
    ],
)
def test_a_domain_one_mistake_from_a_big_provider_is_that_provider(typed, meant):
    assert suggest_domain(typed) == meant


def test_a_clean_month_recommends_nothing(domain, newsletter, now):
    results(campaign(newsletter, "October"), now, delivered(100))

    assert recommend(domain, now=now) == []
