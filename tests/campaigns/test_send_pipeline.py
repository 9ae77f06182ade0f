"""The send pipeline end to end: audience, gate, render, DKIM, direct SMTP to the ISP simulator, results."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import pipeline
from campaigns.extensions import extensions
from campaigns.links import view_url
from campaigns.models import CampaignStatus, GateRefusal, Send, SendStatus
from crm import consent
from crm.eligibility import Ineligibility
from crm.models import ConsentMethod, Contact, EmailStatus, Suppression, SuppressionReason
from deliverability import signing
from tests.conftest import subscriber


def run(campaign, now) -> dict[str, int]:
    """Start the campaign and send every claimable batch now, as the workers would."""
    counts: dict[str, int] = {}
    while ids := pipeline.claim(campaign.pk, now=now, limit=50):
        for status, n in pipeline.send_batch(ids, now=now).items():
            counts[status] = counts.get(status, 0) + n
    return counts


def send_of(campaign, address: str) -> Send:
    return Send.objects.get(campaign=campaign, email=address)


def test_every_receiving_server_answer_becomes_the_right_result(november, newsletter, isp, now, manager):
    for name in ["ada", "unknown1", "full1", "spam1", "defer3", "timeout1"]:
        subscriber(f"{name}@example.org", newsletter, now)

    pipeline.start_campaign(november, user=manager, now=now)
    run(november, now)

    results = {s.email.split("@")[0]: (s.status, s.bounce_category, s.smtp_code) for s in november.sends.all()}
    assert results == {
        "ada": (SendStatus.DELIVERED, "", 250),
        "unknown1": (SendStatus.HARD_BOUNCED, "unknown_user", 550),
        "full1": (SendStatus.SOFT_BOUNCED, "mailbox_full", 552),
        "spam1": (SendStatus.SOFT_BOUNCED, "spam_content", 554),
        "defer3": (SendStatus.DEFERRED, "policy", 451),
        "timeout1": (SendStatus.NOT_SENT, "other", None),
    }
    assert send_of(november, "unknown1@example.org").smtp_reply.startswith("5.1.1 The email account")
    assert Suppression.objects.filter(email="unknown1@example.org", reason=SuppressionReason.HARD_BOUNCE).exists()
    assert Contact.objects.get(email="unknown1@example.org").email_status == EmailStatus.HARD_BOUNCED
    assert not Suppression.objects.filter(email__in=["full1@example.org", "timeout1@example.org"]).exists()


def test_a_delivered_message_is_signed_personalized_and_carries_one_click_unsubscribe(
    november, alice, isp, now, manager
):
    pipeline.start_campaign(november, user=manager, now=now)
    run(november, now)

    [received] = isp.wait_for_messages(1)
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    send = send_of(november, "alice@example.com")
    assert received.dkim == "pass"
    assert signing.verify_message(received.data)[0].ok
    assert message["Subject"] == "Hello Alice"
    assert message["Message-ID"] == send.message_id
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].strip().startswith(f"<{settings.SITE_URL}/unsubscribe/")
    assert received.mail_from.startswith(f"bounces+{send.pk}-")
    assert received.mail_from.endswith("@news.example.com")
    assert extensions.send_id_from_return_path(received.mail_from) == send.pk
    html = next(part for part in message.walk() if part.get_content_type() == "text/html").get_content()
    text = next(part for part in message.walk() if part.get_content_type() == "text/plain").get_content()
    assert '<p style="color: #333;">Hi Alice, here is our news.</p>' in html
    assert "Hi Alice, here is our news." in text and "Unsubscribe (http" in text


def test_a_deferred_send_is_retried_from_the_database_until_accepted(november, newsletter, isp, now, manager):
    subscriber("defer2@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    run(november, now)
    send = send_of(november, "defer2@example.org")
    first_retry = send.due_at
    nothing_yet = pipeline.claim(november.pk, now=now + timedelta(minutes=1), limit=50)
    run(november, first_retry)
    second_retry = send_of(november, "defer2@example.org").due_at
    run(november, second_retry)

    send.refresh_from_db()
    assert nothing_yet == []
    assert first_retry - now == timedelta(minutes=15)
    assert second_retry - first_retry == timedelta(minutes=30)
    assert (send.status, send.attempts, send.smtp_code) == (SendStatus.DELIVERED, 3, 250)


def test_a_send_still_deferred_after_72_hours_is_a_soft_bounce_expired(november, newsletter, isp, now, manager):
    subscriber("defer999@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)
    run(november, now)
    late = now + timedelta(hours=72)
    Send.objects.update(due_at=late)

    run(november, late)

    send = send_of(november, "defer999@example.org")
    assert (send.status, send.bounce_category) == (SendStatus.SOFT_BOUNCED, "expired")


def test_the_gate_is_asked_again_at_hand_off(november, alice, bob, newsletter, isp, now, manager):
    carl = subscriber("carl@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)
    # Carl unsubscribes after the audience was built, before his batch goes out.
    consent.unsubscribe_contact(carl, newsletter, method=ConsentMethod.PREFERENCE_CENTER, now=now)

    run(november, now)

    assert send_of(november, "carl@example.org").status == SendStatus.SKIPPED
    assert send_of(november, "carl@example.org").skip_reason == Ineligibility.UNSUBSCRIBED
    assert send_of(november, "bob@example.com").skip_reason == Ineligibility.UNSUBSCRIBED_FROM_ALL
    assert [list(r.rcpts) for r in isp.wait_for_messages(1)] == [["Alice@example.com"]]


def test_the_frequency_cap_skips_and_says_so(november, alice, isp, now, manager, settings):
    settings.FREQUENCY_CAP_EMAILS = 1
    earlier = Send.objects.create(
        campaign=november, contact=None, email="x@example.org", due_at=now, created_at=now, status=SendStatus.DELIVERED
    )
    Send.objects.filter(pk=earlier.pk).update(contact=alice, first_attempt_at=now - timedelta(days=6))
    other = november
    other.pk = None
    other.name = "Second"
    other.save()

    with pytest.raises(pipeline.CampaignError, match="Nobody in the audience may receive Second now"):
        pipeline.start_campaign(other, user=manager, now=now)
    assert not Send.objects.filter(campaign=other).exists()
    Send.objects.filter(pk=earlier.pk).update(first_attempt_at=now - timedelta(days=8))
    queued, skipped = pipeline.start_campaign(other, user=manager, now=now)
    assert (queued, skipped) == (1, 0)


def test_a_skipped_frequency_cap_is_recorded_with_its_reason(november, alice, newsletter, isp, now, manager, settings):
    settings.FREQUENCY_CAP_EMAILS = 1
    subscriber("zoe@example.org", newsletter, now)
    first = Send.objects.create(campaign=november, email="a", due_at=now, created_at=now, status=SendStatus.DELIVERED)
    Send.objects.filter(pk=first.pk).update(contact=alice, first_attempt_at=now)
    november.pk = None
    november.save()

    pipeline.start_campaign(november, user=manager, now=now)

    assert send_of(november, "alice@example.com").skip_reason == GateRefusal.FREQUENCY_CAP
    assert send_of(november, "zoe@example.org").status == SendStatus.QUEUED


def test_two_claims_never_get_the_same_send(november, newsletter, isp, now, manager):
    for n in range(30):
        subscriber(f"reader{n}@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    first = pipeline.claim(november.pk, now=now, limit=20)
    second = pipeline.claim(november.pk, now=now, limit=20)

    assert (len(first), len(second)) == (20, 10)
    assert not set(first) & set(second)


def test_sends_a_dead_worker_held_go_back_to_the_queue(november, alice, isp, now, manager):
    pipeline.start_campaign(november, user=manager, now=now)
    claimed = pipeline.claim(november.pk, now=now, limit=50)

    early = pipeline.recover_stale_claims(now=now + timedelta(minutes=5))
    late = pipeline.recover_stale_claims(now=now + timedelta(minutes=16))

    assert (len(claimed), early, late) == (1, 0, 1)
    assert Send.objects.get().status == SendStatus.QUEUED


def test_a_slow_batch_that_renewed_only_the_sends_still_to_go_keeps_those_it_handed_over(
    november, alice, newsletter, now, manager
):
    subscriber("bob@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)
    _handed_over, to_go = pipeline.claim(november.pk, now=now, limit=10)
    # 14 minutes in, the batch has handed the first over and renews the claim of the one still to go.
    Send.objects.filter(pk=to_go).update(claimed_at=now + timedelta(minutes=14))

    while_alive = pipeline.recover_stale_claims(now=now + timedelta(minutes=16))
    after_it_died = pipeline.recover_stale_claims(now=now + timedelta(minutes=30))

    assert (while_alive, after_it_died) == (0, 2)


def test_campaign_states_refuse_what_makes_no_sense(november, alice, now, manager):
    pipeline.start_campaign(november, user=manager, now=now)
    pipeline.pause_campaign(november, user=manager, now=now)

    with pytest.raises(pipeline.CampaignError, match="only a sending campaign pauses"):
        pipeline.pause_campaign(november, user=manager, now=now)
    with pytest.raises(pipeline.CampaignError, match="only a draft can be started"):
        pipeline.start_campaign(november, user=manager, now=now)
    assert pipeline.claim(november.pk, now=now, limit=10) == []
    pipeline.resume_campaign(november, user=manager, now=now)
    assert pipeline.cancel_campaign(november, user=manager, now=now) == 1
    with pytest.raises(pipeline.CampaignError, match="already cancelled"):
        pipeline.cancel_campaign(november, user=manager, now=now)
    assert Send.objects.get().status == SendStatus.CANCELLED


def test_a_broken_template_or_unknown_variable_blocks_the_start_with_the_line(november, alice, now, manager):
    november.html_body = "<p>Hi</p>\n<p>{{ contact.frist_name }}</p>\n{% if %}"
    november.save()

    with pytest.raises(pipeline.CampaignError) as refused:
        pipeline.start_campaign(november, user=manager, now=now)

    assert "HTML body, line 3: Unexpected end of expression in if tag." in str(refused.value)
    assert november.status == CampaignStatus.DRAFT
    assert not Send.objects.exists()


def test_a_from_address_off_the_sending_domains_blocks_the_start(november, alice, now, manager):
    november.from_email = "news@elsewhere.example"

    with pytest.raises(pipeline.CampaignError, match=r"elsewhere\.example is not a sending domain"):
        pipeline.start_campaign(november, user=manager, now=now)


def test_finished_campaigns_are_marked_sent(november, alice, isp, now, manager):
    pipeline.start_campaign(november, user=manager, now=now)
    run(november, now)

    assert pipeline.finish_campaigns(now=now) == 1
    november.refresh_from_db()
    assert november.status == CampaignStatus.SENT


def test_the_view_in_browser_link_shows_the_message_and_nothing_to_strangers(
    november, alice, isp, now, manager, client
):
    pipeline.start_campaign(november, user=manager, now=now)
    run(november, now)
    message = email.message_from_bytes(isp.wait_for_messages(1)[0].data)
    send = Send.objects.get()

    page = client.get(view_url(send.pk).removeprefix(settings.SITE_URL))
    forged = client.get("/view/abc/")

    assert page.status_code == 200 and "Hi Alice, here is our news." in page.content.decode()
    assert forged.status_code == 404 and "This message is not available" in forged.content.decode()
    assert message["Subject"] == "Hello Alice"


def test_a_slow_batch_renews_its_claim_so_it_is_not_taken_for_abandoned(
    november, newsletter, isp, now, manager, monkeypatch, settings
):
    settings.CAMPAIGN_SMTP_TIMEOUT_SECONDS = 3  # over the simulator's slow answer (2 s)
    subscriber("slow1@example.org", newsletter, now)
    subscriber("slow2@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)
    monkeypatch.setattr(pipeline, "CLAIM_RENEWAL_SECONDS", 0)

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    # The second message started after the first one's two seconds: its claim moved with it; the
    # first one's stayed before its hand-over.
    claimed = sorted(november.sends.values_list("claimed_at", flat=True))
    assert claimed[0] - now < timedelta(seconds=1)
    assert claimed[-1] - now >= timedelta(seconds=2)
    assert set(november.sends.values_list("status", flat=True)) == {SendStatus.DELIVERED}


def test_a_batch_costs_the_same_number_of_queries_whatever_its_size(november, newsletter, isp, now, manager):
    for n in range(27):
        subscriber(f"reader{n}@example.org", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)
    # The first batch of a process also loads the domain's keys and return path (cached a minute).
    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=2), now=now)
    counts = []
    for size in (5, 20):
        with CaptureQueriesContext(connection) as queries:
            pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=size), now=now)
        counts.append(len(queries))
        claim_sql = next(q["sql"] for q in queries.captured_queries if '"claim_token" =' in q["sql"])

    assert counts[0] == counts[1]
    if connection.vendor == "postgresql":
        assert "FOR UPDATE OF" in claim_sql and "SKIP LOCKED" in claim_sql


def test_a_contact_whose_data_breaks_rendering_is_not_sent_and_the_batch_goes_on(
    november, alice, newsletter, isp, now, manager
):
    odd = subscriber("odd@example.org", newsletter, now)
    Contact.objects.filter(pk=odd.pk).update(properties=["not", "an", "object"])
    pipeline.start_campaign(november, user=manager, now=now)

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    broken = send_of(november, "odd@example.org")
    assert broken.status == SendStatus.NOT_SENT
    assert broken.smtp_reply.startswith("Not sent: the message could not be rendered (ValueError")
    assert send_of(november, "alice@example.com").status == SendStatus.DELIVERED


def test_an_internationalized_address_goes_out_with_smtputf8_and_its_domain_in_idna(
    november, newsletter, isp, now, manager
):
    subscriber("Jürgen@Bücher.example", newsletter, now)
    pipeline.start_campaign(november, user=manager, now=now)

    pipeline.send_batch(pipeline.claim(november.pk, now=now, limit=10), now=now)

    assert send_of(november, "jürgen@xn--bcher-kva.example").status == SendStatus.DELIVERED
    assert [list(received.rcpts) for received in isp.wait_for_messages(1)] == [["Jürgen@xn--bcher-kva.example"]]
