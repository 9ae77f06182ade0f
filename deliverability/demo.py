"""A demo sending domain and campaign for `make run`: one click shows every kind of result.

The recipients' local parts match the ISP simulator's rules (unknown…, full…, defer3…), so
sending the demo campaign to the simulator produces delivered, bounced, deferred and
not-sent results, each with the simulated server's own words; reader…, apple… and scanner…
mailboxes then open and click like people, Apple's privacy proxy and a security scanner, so the
campaign's Performance page fills in within half a minute.
"""

from __future__ import annotations

from datetime import datetime

from campaigns.models import Campaign
from crm import consent
from crm.models import ConsentMethod, Contact, SubscriptionType
from deliverability import signing
from deliverability.models import KeyAlgorithm, KeyState, SendingDomain

DOMAIN = "news.deliverwell.example"
RULE_ADDRESSES = {
    "ada": "delivered",
    "unknown1": "hard bounce: unknown user",
    "full1": "soft bounce: mailbox full",
    "spam1": "soft bounce: spam",
    "policy1": "soft bounce: policy",
    "defer3": "deferred three times, then delivered on a retry",
    "busy1": "deferred once (421), then delivered",
    "timeout1": "not sent: the server never answers",
    "slow1": "delivered after a slow answer",
    "reader1": "delivered; a person opens it and clicks (the ISP simulator reads it)",
    "reader2": "delivered; a person opens it and clicks",
    "reader3": "delivered; a person opens it and clicks",
    "apple1": "delivered; Apple Mail Privacy Protection fetches the pixel (a machine open)",
    "apple2": "delivered; Apple Mail Privacy Protection fetches the pixel (a machine open)",
    "scanner1": "delivered; a security scanner clicks every link at once (machine clicks)",
}
HTML = """<!doctype html>
<html><head><style>
body { font-family: Helvetica, Arial, sans-serif; color: #222; }
h1 { color: #264b5d; font-size: 22px; }
.footer { color: #777; font-size: 12px; }
</style></head>
<body>
<h1>Hello {{ contact.first_name|default:"there" }},</h1>
<p>This is Deliverwell's demo campaign. Every recipient's result comes from what the receiving
server said: open <em>Recipients</em> on the campaign to read each reply.</p>
<p><a href="https://www.deliverwell.example/docs">Read the documentation</a></p>
<p class="footer">You get this because you subscribed to the newsletter.
<a href="{{ preferences_url }}">Preferences</a> · <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""


def load_demo_campaign(*, now: datetime) -> Campaign:
    domain, _ = SendingDomain.objects.get_or_create(
        domain=DOMAIN, defaults={"content_domains": "www.deliverwell.example"}
    )
    if not domain.dkim_keys.exists():
        key = signing.create_key(domain, algorithm=KeyAlgorithm.RSA, now=now)
        # No DNS serves the demo domain, so the key is switched on without the published-record
        # check that activate_key() makes: the ISP simulator logs its DKIM result as a fail.
        key.state = KeyState.ACTIVE
        key.activated_at = now
        key.save(update_fields=["state", "activated_at"])
    newsletter, _ = SubscriptionType.objects.get_or_create(
        name="Newsletter", defaults={"description": "The monthly newsletter."}
    )
    for local_part, result in RULE_ADDRESSES.items():
        contact, created = Contact.objects.get_or_create(
            email_normalized=f"{local_part}@example.org",
            defaults={"email": f"{local_part}@example.org", "first_name": local_part.rstrip("0123456789").title()},
        )
        if created:
            contact.properties = {"demo": result}
            contact.save(update_fields=["properties"])
            consent.subscribe_contact(contact, newsletter, method=ConsentMethod.FORM, now=now)
    campaign, _ = Campaign.objects.get_or_create(
        name="Demo: every kind of result",
        defaults={
            "subscription_type": newsletter,
            "from_name": "Deliverwell demo",
            "from_email": f"news@{DOMAIN}",
            "subject": "Hello {{ contact.first_name|default:'there' }}, this is the demo",
            "html_body": HTML,
        },
    )
    return campaign
