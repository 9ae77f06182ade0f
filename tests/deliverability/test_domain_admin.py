"""The sending-domain pages in the admin: records to publish, checks, keys, alerts, roles."""

from __future__ import annotations

from django.utils import timezone

from crm import encryption
from deliverability import dns_checks, readiness, signing
from deliverability.models import CheckStatus, DkimKey, DomainAlert, KeyAlgorithm, KeyState, SendingDomain
from tests.conftest import messages_of, publish_key


def page_of(domain: SendingDomain) -> str:
    return f"/admin/deliverability/sendingdomain/{domain.pk}/change/"


def test_the_domain_page_lists_the_records_to_publish_and_the_check_results(manager_client, news, now):
    dns_checks.check_domain(news, now=now)
    key = news.dkim_keys.get()

    page = manager_client.get(page_of(news)).content.decode()

    assert "Records to publish" in page
    assert '<code class="dw-copyable dw-value">v=spf1 ip4:192.0.2.10 ~all</code>' in page
    assert key.record_name in page and key.public_key in page
    assert "v=DMARC1; p=reject; rua=mailto:dmarc-reports@example.com" in page
    assert "One valid SPF record, 0 of 10 DNS lookups, ending in -all; it includes the sender." in page
    assert "DMARC: from monitoring to enforcement" in page
    assert "Sending IPs: 192.0.2.10." in page
    assert "History (last 1 checks)" in page


def test_the_private_key_is_never_shown(manager_client, news):
    key = news.dkim_keys.get()
    private = encryption.decrypt(key.private_key_encrypted)

    pages = [manager_client.get(page_of(news)), manager_client.get(f"/admin/deliverability/dkimkey/{key.pk}/change/")]

    for response in pages:
        assert response.status_code == 200
        body = response.content.decode()
        assert private.splitlines()[1] not in body
        assert key.private_key_encrypted not in body


def test_check_now_reports_the_failing_record_in_plain_words(manager_client, news, dns_server):
    dns_server.remove("news.example.com", "TXT")

    response = manager_client.post(f"/admin/deliverability/sendingdomain/{news.pk}/check/", follow=True)

    assert messages_of(response) == [
        "Checked news.example.com: 1 record(s) fail. SPF: news.example.com has no SPF record."
    ]
    assert "news.example.com has no SPF record." in response.content.decode()
    news.refresh_from_db()
    assert news.status == CheckStatus.FAIL


def test_check_now_is_not_done_on_get(manager_client, news):
    response = manager_client.get(f"/admin/deliverability/sendingdomain/{news.pk}/check/")

    assert response.status_code == 403
    news.refresh_from_db()
    assert news.last_checked_at is None


def test_the_check_now_action_checks_the_selected_domains(manager_client, news):
    response = manager_client.post(
        "/admin/deliverability/sendingdomain/",
        {"action": "check_now", "_selected_action": [news.pk]},
        follow=True,
    )

    assert messages_of(response) == ["Checked news.example.com: pass."]


def test_saving_a_domain_checks_it_and_opens_its_page(
    manager_client, dns_server, sending_ips, django_capture_on_commit_callbacks
):
    dns_server.add("mail.example.org", "MX", "10 mx.example.org")
    data = {
        "domain": "mail.example.org",
        "content_domains": "www.example.org",
        "transport": "smtp",
        "sender_type": "shared",
        **{f"{p}-{k}": "0" for p in ("dkim_keys", "dkim_keys-2") for k in ("TOTAL_FORMS", "INITIAL_FORMS")},
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = manager_client.post("/admin/deliverability/sendingdomain/add/", data, follow=True)

    domain = SendingDomain.objects.get()
    assert response.redirect_chain[-1][0] == page_of(domain)
    assert domain.status == CheckStatus.FAIL
    assert domain.record_statuses["dkim"]["summary"] == "No DKIM key is set up for this domain."


def test_a_new_key_is_generated_from_the_domain_page_and_switched_on_after_confirmation(
    manager_client, news, dns_server
):
    form = manager_client.get(f"/admin/deliverability/sendingdomain/{news.pk}/dkim/new/")
    manager_client.post(f"/admin/deliverability/sendingdomain/{news.pk}/dkim/new/", {"algorithm": "ed25519"})
    key = news.dkim_keys.get(algorithm=KeyAlgorithm.ED25519)
    url = f"/admin/deliverability/dkimkey/{key.pk}/activate/"

    confirm = manager_client.get(url)
    too_early = manager_client.post(url, follow=True)
    publish_key(dns_server, key)
    switched = manager_client.post(url, follow=True)

    assert "keeps signing" in form.content.decode()
    assert "Switch on DKIM key" in confirm.content.decode()
    assert messages_of(too_early)[0].startswith(f"{key.record_name} is not ready: No DKIM key is published")
    assert messages_of(switched) == [f"DKIM key {key.record_name}: signing."]
    assert DkimKey.objects.get(pk=key.pk).state == KeyState.ACTIVE


def test_a_replaced_key_is_retired_after_confirmation(manager_client, news, dns_server, now):
    old = news.dkim_keys.get()
    new = signing.create_key(news, algorithm=KeyAlgorithm.RSA, now=now)
    publish_key(dns_server, new)
    signing.activate_key(new, now=now)

    page = manager_client.get(page_of(news)).content.decode()
    manager_client.post(f"/admin/deliverability/dkimkey/{old.pk}/retire/")

    assert f'href="/admin/deliverability/dkimkey/{old.pk}/retire/"' in page
    assert DkimKey.objects.get(pk=old.pk).state == KeyState.RETIRED


def test_esp_dkim_cnames_are_added_inline_and_sign_at_once(manager_client, db, dns_server):
    domain = SendingDomain.objects.create(domain="em.example.net", transport="sendgrid")
    data = {
        "domain": "em.example.net",
        "content_domains": "",
        "transport": "sendgrid",
        "sender_type": "shared",
        "dkim_keys-TOTAL_FORMS": "0",
        "dkim_keys-INITIAL_FORMS": "0",
        "dkim_keys-2-TOTAL_FORMS": "1",
        "dkim_keys-2-INITIAL_FORMS": "0",
        "dkim_keys-2-0-selector": "s1",
        "dkim_keys-2-0-cname_target": "s1.domainkey.u1.wl.sendgrid.net",
    }

    manager_client.post(page_of(domain), data)

    key = DkimKey.objects.get()
    assert (key.selector, key.state, key.cname_target) == ("s1", KeyState.ACTIVE, "s1.domainkey.u1.wl.sendgrid.net")


def test_an_open_alert_is_shown_until_acknowledged(manager_client, news, now, manager):
    DomainAlert.objects.create(domain=news, record="spf", raised_at=now, summary="news.example.com has no SPF record.")

    listed = manager_client.get("/admin/deliverability/sendingdomain/")
    acknowledged = manager_client.post(
        "/admin/deliverability/domainalert/",
        {"action": "acknowledge", "_selected_action": [DomainAlert.objects.get().pk]},
        follow=True,
    )
    after = manager_client.get("/admin/deliverability/sendingdomain/")

    assert messages_of(listed) == [
        "Alert for news.example.com: SPF failed on 2026-11-02 09:30 after passing: news.example.com has no SPF record."
    ]
    assert "1 open" in listed.content.decode()
    assert messages_of(acknowledged) == ["1 alert(s) acknowledged."]
    assert messages_of(after) == []
    assert DomainAlert.objects.get().acknowledged_by == manager


def test_viewers_see_domains_but_cannot_generate_keys(client, viewer, news):
    client.force_login(viewer)

    page = client.get(page_of(news))
    refused = client.post(f"/admin/deliverability/sendingdomain/{news.pk}/dkim/new/", {"algorithm": "rsa"})

    assert page.status_code == 200
    assert "New DKIM key" not in page.content.decode()
    assert refused.status_code == 403
    assert news.dkim_keys.count() == 1


def test_campaigns_learn_whether_a_from_address_may_send_and_why_not(news, dns_server, now, settings):
    dns_checks.check_domain(news, now=now)
    passing = readiness.check_from_address(["News ", "news@News.Example.com>"][1].rstrip(">"))
    dns_server.remove("news.example.com", "TXT")
    dns_checks.check_domain(news, now=now + timezone.timedelta(hours=1))
    failing = readiness.check_from_address("news@news.example.com")
    unknown = readiness.check_from_address("someone@elsewhere.example")
    settings.REQUIRE_PASSING_SENDING_DOMAIN = False
    staging = readiness.check_from_address("news@news.example.com")

    assert (passing.allowed, passing.problems) == (True, [])
    assert (failing.allowed, failing.problems) == (False, ["SPF: news.example.com has no SPF record."])
    assert unknown.problems == [
        "elsewhere.example is not a sending domain: add it under Deliverability → Sending domains."
    ]
    assert (staging.allowed, staging.problems) == (True, failing.problems)
