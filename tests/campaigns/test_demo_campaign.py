"""`make run`'s demo: one campaign whose recipients produce every kind of result at the ISP simulator."""

from __future__ import annotations

import io

from django.core.management import call_command

from campaigns import pipeline
from campaigns.models import Campaign, SendStatus


def test_the_demo_campaign_shows_every_kind_of_result(db, isp, settings, manager):
    settings.REQUIRE_PASSING_SENDING_DOMAIN = False  # as in a local run: the demo domain has no DNS
    settings.CAMPAIGN_SMTP_TIMEOUT_SECONDS = 3  # over the simulator's slow answer (2 s)
    output = io.StringIO()
    call_command("load_demo_campaign", "--if-empty", stdout=output)
    call_command("load_demo_campaign", "--if-empty", stdout=output)
    campaign = Campaign.objects.get()
    now = campaign.created_at

    pipeline.start_campaign(campaign, user=manager, now=now)
    while ids := pipeline.claim(campaign.pk, now=now, limit=50):
        pipeline.send_batch(ids, now=now)

    results = {send.email.split("@")[0]: send.status for send in campaign.sends.all()}
    assert results == {
        "ada": SendStatus.DELIVERED,
        "unknown1": SendStatus.HARD_BOUNCED,
        "full1": SendStatus.SOFT_BOUNCED,
        "spam1": SendStatus.SOFT_BOUNCED,
        "policy1": SendStatus.SOFT_BOUNCED,
        "defer3": SendStatus.DEFERRED,
        "busy1": SendStatus.DEFERRED,
        "timeout1": SendStatus.NOT_SENT,
        "slow1": SendStatus.DELIVERED,
        "reader1": SendStatus.DELIVERED,
        "reader2": SendStatus.DELIVERED,
        "reader3": SendStatus.DELIVERED,
        "apple1": SendStatus.DELIVERED,
        "apple2": SendStatus.DELIVERED,
        "scanner1": SendStatus.DELIVERED,
    }
    assert output.getvalue().count("Demo campaign ready") == 1
