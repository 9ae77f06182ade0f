"""The send gate holds on random populations while contacts opt out between batches (invariant 1).

Each seed builds a population over every state the gate looks at, starts a campaign, and
sends it batch by batch to the ISP simulator while random contacts unsubscribe, unsubscribe
from all, get suppressed or withdraw consent — before a batch is claimed, and between the
claim and the hand-off. No ineligible message may leave, and every refusal is recorded with
the reason `refusal()` gives at that moment.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from django.conf import settings

from campaigns import pipeline
from campaigns.gate import annotate_refusal, refusal
from campaigns.models import HANDED_OVER, Campaign, CampaignStatus, Send, SendStatus
from crm import consent, suppression
from crm.models import (
    ConsentAction,
    ConsentMethod,
    Contact,
    EmailStatus,
    EngagementStatus,
    Subscription,
    SubscriptionStatus,
    SubscriptionType,
    SuppressionReason,
)

POPULATION = 200

# How each contact starts, with weights: about half may be mailed, the rest are refused or
# outside the audience for one reason each (the extras below add more on top).
STARTING_STATES = {
    "subscribed": 40,
    "confirmed": 20,
    "regranted": 8,
    "pending": 6,
    "unsubscribed": 6,
    "unsubscribed_from_all": 6,
    "no_consent": 5,
    "withdrawn_for_type": 5,
    "withdrawn_for_all": 5,
    "other_type_only": 4,
    "no_subscription": 3,
}
BAD_EMAIL_STATUSES = [EmailStatus.HARD_BOUNCED, EmailStatus.COMPLAINED, EmailStatus.INVALID]
EARLIER_SEND_STATUSES = [*HANDED_OVER, SendStatus.SKIPPED, SendStatus.HARD_BOUNCED, SendStatus.NOT_SENT]


class Population:
    """Random contacts for one seed, built through the crm functions where one exists."""

    def __init__(self, rng: random.Random, newsletter: SubscriptionType, events: SubscriptionType, now: datetime):
        self.rng = rng
        self.newsletter = newsletter
        self.events = events
        self.now = now
        # Other campaigns' sends count against the frequency cap; one campaign per earlier send.
        self.earlier_campaigns = [
            Campaign.objects.create(
                name=f"Earlier {n}",
                subscription_type=newsletter,
                from_name="Example News",
                from_email="news@news.example.com",
                subject="Earlier",
                html_body="<p>Earlier</p>",
                status=CampaignStatus.SENT,
            )
            for n in range(settings.FREQUENCY_CAP_EMAILS + 1)
        ]

    def build(self, size: int) -> list[Contact]:
        return [self.contact(n) for n in range(size)]

    def contact(self, n: int) -> Contact:
        rng = self.rng
        contact = Contact.objects.create(
            email=f"Person{n:03}@Example.org",
            email_status=rng.choice(BAD_EMAIL_STATUSES) if rng.random() < 0.06 else EmailStatus.OK,
            engagement_status=rng.choice(list(EngagementStatus)),
        )
        state = rng.choices(list(STARTING_STATES), weights=list(STARTING_STATES.values()))[0]
        first = self.now - timedelta(days=rng.randint(10, 400))
        self.start_in(contact, state, first)
        if rng.random() < 0.08:
            reason = rng.choice(list(SuppressionReason))
            suppression.suppress_address(contact.email_normalized, reason=reason, now=first, source="import")
        if rng.random() < 0.25:
            self.earlier_sends(contact, count=rng.randint(2, settings.FREQUENCY_CAP_EMAILS + 1))
        contact.refresh_from_db()
        return contact

    def start_in(self, contact: Contact, state: str, first: datetime) -> None:
        newsletter, later, latest = self.newsletter, first + timedelta(days=1), first + timedelta(days=2)
        if state == "subscribed":
            consent.subscribe_contact(contact, newsletter, method=ConsentMethod.FORM, now=first)
        elif state == "confirmed":
            Subscription.objects.create(contact=contact, subscription_type=newsletter, requested_at=first)
            consent.record_consent(
                contact,
                action=ConsentAction.GRANTED,
                method=ConsentMethod.FORM,
                now=first,
                subscription_type=newsletter,
            )
            Subscription.objects.filter(contact=contact).update(
                status=SubscriptionStatus.SUBSCRIBED, subscribed_at=later
            )
            consent.record_consent(
                contact,
                action=ConsentAction.CONFIRMED,
                method=ConsentMethod.DOUBLE_OPT_IN,
                now=later,
                subscription_type=newsletter,
            )
        elif state == "regranted":
            consent.subscribe_contact(contact, newsletter, method=ConsentMethod.FORM, now=first)
            consent.record_consent(contact, action=ConsentAction.WITHDRAWN, method=ConsentMethod.API, now=later)
            consent.subscribe_contact(contact, newsletter, method=ConsentMethod.STAFF, now=latest)
        elif state == "pending":
            Subscription.objects.create(contact=contact, subscription_type=newsletter, requested_at=first)
            consent.record_consent(
                contact,
                action=ConsentAction.GRANTED,
                method=ConsentMethod.FORM,
                now=first,
                subscription_type=newsletter,
            )
        elif state == "unsubscribed":
            consent.subscribe_contact(contact, newsletter, method=ConsentMethod.FORM, now=first)
            consent.unsubscribe_contact(contact, newsletter, method=ConsentMethod.UNSUBSCRIBE_LINK, now=later)
        elif state == "unsubscribed_from_all":
            consent.subscribe_contact(contact, newsletter, method=ConsentMethod.IMPORT, now=first)
            consent.unsubscribe_from_all(
                Contact.objects.filter(pk=contact.pk), method=ConsentMethod.UNSUBSCRIBE_LINK, now=later
            )
        elif state == "no_consent":
            Subscription.objects.create(
                contact=contact, subscription_type=newsletter, status=SubscriptionStatus.SUBSCRIBED, subscribed_at=first
            )
        elif state in {"withdrawn_for_type", "withdrawn_for_all"}:
            consent.subscribe_contact(contact, newsletter, method=ConsentMethod.FORM, now=first)
            scope = newsletter if state == "withdrawn_for_type" else None
            consent.record_consent(
                contact,
                action=ConsentAction.WITHDRAWN,
                method=ConsentMethod.ESP_EVENT,
                now=later,
                subscription_type=scope,
            )
        elif state == "other_type_only":
            consent.subscribe_contact(contact, self.events, method=ConsentMethod.FORM, now=first)

    def earlier_sends(self, contact: Contact, *, count: int) -> None:
        for campaign in self.earlier_campaigns[:count]:
            Send.objects.create(
                campaign=campaign,
                contact=contact,
                email=contact.email_normalized,
                status=self.rng.choice(EARLIER_SEND_STATUSES),
                # Inside the cap's window or just outside it.
                first_attempt_at=self.now - timedelta(days=self.rng.choice([0, 1, 6, 6, 8]), hours=1),
                due_at=self.now,
                created_at=self.now,
            )


def opt_outs(rng: random.Random, newsletter: SubscriptionType, now: datetime) -> list[Callable[[Contact], None]]:
    """The state changes that race a send; each makes the contact ineligible for the newsletter."""

    def unsubscribe(contact: Contact) -> None:
        consent.unsubscribe_contact(contact, newsletter, method=ConsentMethod.PREFERENCE_CENTER, now=now)

    def unsubscribe_from_all(contact: Contact) -> None:
        consent.unsubscribe_from_all(
            Contact.objects.filter(pk=contact.pk), method=ConsentMethod.UNSUBSCRIBE_LINK, now=now
        )

    def suppress(contact: Contact) -> None:
        reason = rng.choice(list(SuppressionReason))
        suppression.suppress_address(contact.email_normalized, reason=reason, now=now, source="property test")

    def withdraw_consent(contact: Contact) -> None:
        consent.record_consent(
            contact,
            action=ConsentAction.WITHDRAWN,
            method=rng.choice([ConsentMethod.API, ConsentMethod.ESP_EVENT, ConsentMethod.STAFF]),
            now=now,
            subscription_type=rng.choice([newsletter, None]),
        )

    return [unsubscribe, unsubscribe_from_all, suppress, withdraw_consent]


def refusals_per_contact(campaign: Campaign, now: datetime, pks: list[int] | None = None) -> dict[int, str | None]:
    contacts = Contact.objects.all() if pks is None else Contact.objects.filter(pk__in=pks)
    return {contact.pk: refusal(contact, campaign, now=now) for contact in contacts}


def refusals_in_sql(campaign: Campaign, now: datetime) -> dict[int, str | None]:
    return dict(annotate_refusal(Contact.objects.all(), campaign, now=now).values_list("pk", "refusal"))


@pytest.mark.parametrize("seed", [7, 42, 1009, 2026])
def test_no_ineligible_message_leaves_while_contacts_opt_out_between_batches(
    seed, november, newsletter, events, isp, now, manager
):
    rng = random.Random(seed)
    november.include_unengaged = seed % 2 == 0
    november.save()
    population = Population(rng, newsletter, events, now).build(POPULATION)
    at_start = refusals_per_contact(november, now)
    assert at_start == refusals_in_sql(november, now), f"seed {seed}: refusal() and annotate_refusal() agree"
    pipeline.start_campaign(november, user=manager, now=now)
    built = {send.contact_id: send for send in Send.objects.filter(campaign=november)}
    in_audience = set(Subscription.objects.filter(subscription_type=newsletter).values_list("contact", flat=True))
    assert set(built) == in_audience
    for contact_id, send in built.items():
        expected = at_start[contact_id]
        assert (send.status, send.skip_reason) == (
            (SendStatus.QUEUED, "") if expected is None else (SendStatus.SKIPPED, expected)
        ), f"seed {seed}: contact {contact_id} at audience build"

    changes = opt_outs(rng, newsletter, now)
    step = itertools.count()
    opted_out_at: dict[int, int] = {}  # contact → step of its first opt-out

    def opt_out_some() -> None:
        queued = list(
            Send.objects.filter(campaign=november, status=SendStatus.QUEUED).values_list("contact", flat=True)
        )
        for _ in range(rng.randint(0, 4)):
            # Mostly contacts still waiting for their batch: those are the races that matter.
            target = rng.choice(queued) if queued and rng.random() < 0.75 else rng.choice(population).pk
            rng.choice(changes)(Contact.objects.get(pk=target))
            opted_out_at.setdefault(target, next(step))

    delivered: set[str] = set()
    while True:
        opt_out_some()
        claimed = pipeline.claim(november.pk, now=now, limit=rng.randint(5, 25))
        if not claimed:
            break
        opt_out_some()  # after the claim, before the hand-off
        batch = list(Send.objects.filter(pk__in=claimed))
        expected = refusals_per_contact(november, now, pks=[send.contact_id for send in batch])
        gated_at = next(step)
        attempts_before = Counter(isp.attempts)

        pipeline.send_batch(claimed, now=now)

        attempted = set(isp.attempts - attempts_before)
        may_receive = {send.email for send in batch if expected[send.contact_id] is None}
        assert attempted == may_receive, f"seed {seed}: the batch handed over exactly its eligible recipients"
        for send in Send.objects.filter(pk__in=claimed):
            opted_out_before_hand_off = opted_out_at.get(send.contact_id, gated_at) < gated_at
            assert not (opted_out_before_hand_off and send.email in attempted), f"seed {seed}: {send.email} opted out"
            reason = expected[send.contact_id]
            assert (send.status, send.skip_reason) == (
                (SendStatus.DELIVERED, "") if reason is None else (SendStatus.SKIPPED, reason)
            ), f"seed {seed}: {send.email} at hand-off"
        delivered |= may_receive

    assert not Send.objects.filter(campaign=november, status__in=[*pipeline.CLAIMABLE, SendStatus.SENDING]).exists()
    received = Counter(rcpt.lower() for message in isp.wait_for_messages(len(delivered)) for rcpt in message.rcpts)
    assert received == Counter(delivered), f"seed {seed}: each eligible recipient got one message, nobody else any"
    assert opted_out_at, f"seed {seed}: nobody opted out during the send"
    assert refusals_per_contact(november, now) == refusals_in_sql(november, now), f"seed {seed}: after the opt-outs"
