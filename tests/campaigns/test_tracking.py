"""Our own opens and clicks: tracked links in the email, the pixel, the redirect, machines, the buffer."""

from __future__ import annotations

import email
import email.policy
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.core.cache.backends.redis import RedisCache

from campaigns import pipeline, tasks, tracking
from campaigns.models import CampaignLink, EmailEvent, EventType, Send, SendStatus
from crm.models import Contact, EngagementStatus
from tests.conftest import BUFFER_URL

HUMAN = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1"


@pytest.fixture
def with_links(november):
    november.html_body = (
        "<html><body><p>Hi {{ contact.first_name }}</p>"
        '<p><a href="https://shop.example/sale?ref=mail&amp;utm_source=partner">Sale</a></p>'
        "<p><a href='https://shop.example/new'>New</a> <a href=\"mailto:help@shop.example\">Help</a></p>"
        '<p><a href="https://shop.example/third">Third</a></p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    )
    november.save()
    return november


def send_to_alice(campaign, isp, now, manager):
    """Send the campaign to alice through the ISP simulator; return (send, HTML part, text part)."""
    pipeline.start_campaign(campaign, user=manager, now=now)
    pipeline.send_batch(pipeline.claim(campaign.pk, now=now, limit=10), now=now)
    [received] = isp.wait_for_messages(1)
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    html = next(part for part in message.walk() if part.get_content_type() == "text/html").get_content()
    text = next(part for part in message.walk() if part.get_content_type() == "text/plain").get_content()
    return campaign.sends.get(), html, text


def hrefs(html: str) -> list[str]:
    return re.findall(r"""href\s*=\s*["']([^"']+)["']""", html)


def path_of(url: str) -> str:
    return urlsplit(url).path


@pytest.fixture
def sent(with_links, alice, isp, now, manager, time_machine):
    """alice got the campaign with three tracked links; an hour passes."""
    send, html, text = send_to_alice(with_links, isp, now, manager)
    time_machine.move_to(now + timedelta(hours=1), tick=False)
    return send, html, text


def test_links_in_the_email_go_through_the_redirect_and_a_pixel_is_added(sent):
    send, html, text = sent

    links = hrefs(html)
    tracked = [link for link in links if "/t/c/" in link]
    assert len(tracked) == 3
    assert "mailto:help@shop.example" in links
    assert any("/unsubscribe/" in link for link in links)  # our own pages are never tracked
    assert re.search(r'<img src="[^"]+/t/o/[^"]+\.gif" width="1" height="1" alt=""', html)
    assert html.index("/t/o/") < html.index("</body>")
    assert "https://shop.example/new" in text  # the plain-text part keeps the real links
    assert CampaignLink.objects.filter(campaign_id=send.campaign_id).count() == 3


def test_a_link_whose_href_is_not_quoted_is_tracked_too(client, november, alice, isp, now, manager, time_machine):
    november.html_body = (
        "<html><body><a href=https://shop.example/plain?a=1&amp;b=2>Plain</a> "
        "<a class=button href = https://shop.example/spaced >Spaced</a> <a href=mailto:help@shop.example>Help</a>"
        "</body></html>"
    )
    november.save()
    _, html, _ = send_to_alice(november, isp, now, manager)
    time_machine.move_to(now + timedelta(hours=1), tick=False)

    plain, spaced = [link for link in hrefs(html) if "/t/c/" in link]

    assert 'class=button href = "' in html  # the attribute keeps its place, now quoted
    assert "<a href=mailto:help@shop.example>" in html
    assert client.get(path_of(plain), HTTP_USER_AGENT=HUMAN)["Location"] == "https://shop.example/plain?a=1&b=2"
    assert client.get(path_of(spaced), HTTP_USER_AGENT=HUMAN)["Location"] == "https://shop.example/spaced"


def test_a_click_redirects_to_the_link_and_is_engagement(client, sent, alice):
    send, html, _ = sent
    link = next(link for link in hrefs(html) if "/t/c/" in link)

    response = client.get(path_of(link), HTTP_USER_AGENT=HUMAN, REMOTE_ADDR="198.51.100.7")

    assert response.status_code == 302
    assert response["Location"] == "https://shop.example/sale?ref=mail&utm_source=partner"
    event = EmailEvent.objects.get(type=EventType.CLICK)
    assert (event.send_id, event.url, event.is_machine, event.ip_address) == (
        send.pk,
        response["Location"],
        False,
        "198.51.100.7",
    )
    send.refresh_from_db()
    alice.refresh_from_db()
    assert send.clicked_at is not None
    assert alice.last_click_at == send.clicked_at
    assert alice.engagement_status == EngagementStatus.ENGAGED


def test_utm_tags_are_added_when_the_campaign_asks_and_existing_ones_kept(
    client, with_links, alice, isp, now, manager, time_machine
):
    with_links.add_utm_tags = True
    with_links.utm_campaign = "november-2026"
    with_links.save()
    _, html, _ = send_to_alice(with_links, isp, now, manager)
    time_machine.move_to(now + timedelta(hours=1), tick=False)
    first, second = [link for link in hrefs(html) if "/t/c/" in link][:2]

    kept = parse_qs(urlsplit(client.get(path_of(first), HTTP_USER_AGENT=HUMAN)["Location"]).query)
    added = parse_qs(urlsplit(client.get(path_of(second), HTTP_USER_AGENT=HUMAN)["Location"]).query)

    assert kept == {
        "ref": ["mail"],
        "utm_source": ["partner"],
        "utm_medium": ["email"],
        "utm_campaign": ["november-2026"],
    }
    assert added == {"utm_source": ["deliverwell"], "utm_medium": ["email"], "utm_campaign": ["november-2026"]}


def test_a_campaign_without_tracking_keeps_its_links_as_they_are(with_links, alice, isp, now, manager):
    with_links.track_clicks = with_links.track_opens = False
    with_links.save()

    _, html, _ = send_to_alice(with_links, isp, now, manager)

    assert "/t/c/" not in html and "/t/o/" not in html
    assert "https://shop.example/new" in hrefs(html)


def test_an_open_is_recorded_once_per_fetch_and_counts_the_first(client, sent, alice):
    send, html, _ = sent
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html).group(1)

    first = client.get(path_of(pixel), HTTP_USER_AGENT=HUMAN)
    client.get(path_of(pixel), HTTP_USER_AGENT=HUMAN)

    assert first.status_code == 200
    assert first["Content-Type"] == "image/gif"
    assert "no-cache" in first["Cache-Control"]
    assert first.content == tracking.PIXEL
    assert EmailEvent.objects.filter(type=EventType.OPEN, send=send).count() == 2
    send.refresh_from_db()
    assert send.opened_at is not None and send.status == SendStatus.DELIVERED


@pytest.mark.parametrize(
    "token",
    ["", "x", "abc.def.gif", "1.AAAAAAAAAAAA.gif", "zzzzzzzzzzzzzzzzzzzzzzzzzzzz.gif", "1..gif", "%00", "1.2.3.4.5"],
)
def test_a_pixel_with_a_token_we_did_not_make_is_still_a_pixel_and_records_nothing(client, db, token):
    response = client.get(f"/t/o/{token}")

    assert response.status_code in {200, 404}
    if response.status_code == 200:
        assert response.content == tracking.PIXEL
    assert not EmailEvent.objects.exists()


def test_a_tampered_click_link_leads_to_a_friendly_page_never_elsewhere(client, sent):
    send, html, _ = sent
    link = path_of(next(link for link in hrefs(html) if "/t/c/" in link))
    send_part, link_part, mac = link.rsplit("/", 1)[1].split(".")
    other_link = CampaignLink.objects.exclude(pk=int(link_part, 36)).first()

    for token in [
        f"{send_part}.{tracking._base36(other_link.pk)}.{mac}",  # another link of the same email, old MAC
        f"{tracking._base36(send.pk + 1)}.{link_part}.{mac}",  # another recipient
        f"{send_part}.{link_part}",  # truncated
        "garbage",
        "a" * 500,
    ]:
        response = client.get(f"/t/c/{token}")
        assert response.status_code == 404
        assert b"This link does not work" in response.content
    assert not EmailEvent.objects.filter(type=EventType.CLICK).exists()


def test_tracking_endpoints_refuse_to_change_anything_on_post(client, sent):
    _, html, _ = sent
    link = next(link for link in hrefs(html) if "/t/c/" in link)

    assert client.post(path_of(link)).status_code == 405


def test_apple_privacy_proxy_opens_are_machine_and_not_engagement(client, sent, alice):
    send, html, _ = sent
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html).group(1)

    client.get(path_of(pixel), HTTP_USER_AGENT="Mozilla/5.0", REMOTE_ADDR="17.58.101.12")

    event = EmailEvent.objects.get(type=EventType.OPEN)
    alice.refresh_from_db()
    send.refresh_from_db()
    assert (event.is_machine, event.machine_reason) == (True, "Apple Mail Privacy Protection")
    assert send.opened_at is None
    assert alice.last_open_at is None


def test_gmails_image_proxy_is_a_person_opening(client, sent):
    _, html, _ = sent
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html).group(1)

    client.get(
        path_of(pixel),
        HTTP_USER_AGENT="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    )

    assert EmailEvent.objects.get(type=EventType.OPEN).is_machine is False


def test_a_scanner_clicking_every_link_within_seconds_of_delivery_is_a_machine(
    client, with_links, alice, isp, now, manager, time_machine
):
    _send, html, _ = send_to_alice(with_links, isp, now, manager)
    time_machine.move_to(now + timedelta(seconds=3), tick=False)

    for link in [link for link in hrefs(html) if "/t/c/" in link]:
        client.get(path_of(link), HTTP_USER_AGENT=HUMAN)

    reasons = set(EmailEvent.objects.filter(type=EventType.CLICK).values_list("machine_reason", flat=True))
    assert reasons == {"clicked within 10 s of delivery (security scanner)"}
    alice.refresh_from_db()
    assert alice.last_click_at is None


def test_a_click_before_the_batch_wrote_its_results_back_is_judged_from_the_claim(
    client, with_links, alice, now, manager, time_machine
):
    pipeline.start_campaign(with_links, user=manager, now=now)
    [send_id] = pipeline.claim(with_links.pk, now=now, limit=10)  # handed over; the batch goes on
    link = path_of(tracking.click_url(send_id, tracking.LINKS.link_id(with_links, "https://shop.example/new", now=now)))

    time_machine.move_to(now + timedelta(seconds=3), tick=False)
    client.get(link, HTTP_USER_AGENT=HUMAN)
    time_machine.move_to(now + timedelta(seconds=40), tick=False)
    client.get(link, HTTP_USER_AGENT=HUMAN)

    clicks = EmailEvent.objects.filter(type=EventType.CLICK).order_by("occurred_at")
    assert list(clicks.values_list("machine_reason", flat=True)) == [
        "clicked within 10 s of delivery (security scanner)",
        "",
    ]


def test_three_links_clicked_within_five_seconds_are_a_scanner_even_long_after_delivery(
    client, sent, time_machine, now
):
    _, html, _ = sent
    links = [link for link in hrefs(html) if "/t/c/" in link]

    for offset, link in enumerate(links):
        time_machine.move_to(now + timedelta(hours=1, seconds=offset), tick=False)
        client.get(path_of(link), HTTP_USER_AGENT=HUMAN)

    machine = list(
        EmailEvent.objects.filter(type=EventType.CLICK).order_by("occurred_at").values_list("is_machine", flat=True)
    )
    assert machine == [False, False, True]


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        ("", "no user agent"),
        ("python-requests/2.32", "automated client (python-requests)"),
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "automated client (barracuda)"),
    ],
)
def test_automated_clients_are_flagged(client, sent, agent, reason):
    _, html, _ = sent
    client.get(path_of(next(link for link in hrefs(html) if "/t/c/" in link)), HTTP_USER_AGENT=agent)

    assert EmailEvent.objects.get(type=EventType.CLICK).machine_reason == reason


def test_a_head_request_is_a_link_checker(client, sent):
    _, html, _ = sent
    client.head(path_of(next(link for link in hrefs(html) if "/t/c/" in link)), HTTP_USER_AGENT=HUMAN)

    assert EmailEvent.objects.get(type=EventType.CLICK).machine_reason == "HEAD request (a link checker)"


# The hit buffer, against the real Redis on loopback.


def test_hits_wait_in_the_buffer_until_a_worker_records_them_once(sent, event_buffer, now):
    send, html, _ = sent
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html).group(1)
    hit = tracking.Hit(kind=EventType.OPEN, send_id=send.pk, at=now + timedelta(hours=1), user_agent=HUMAN, ip=None)
    scheduled = []

    tracking.capture(hit, now=now, schedule_drain=lambda: scheduled.append(True))
    tracking.capture(hit, now=now, schedule_drain=lambda: scheduled.append(True))
    waiting = event_buffer.llen(tracking.BUFFER_KEY)
    recorded_before = EmailEvent.objects.filter(type=EventType.OPEN).count()
    drained = tracking.drain(now=now)

    assert (waiting, recorded_before, scheduled) == (2, 0, [True])
    assert drained == 2
    assert EmailEvent.objects.filter(type=EventType.OPEN, send=send).count() == 2
    assert event_buffer.llen(tracking.BUFFER_KEY) == 0
    assert pixel  # the same hits the endpoint captures


def test_a_batch_recorded_twice_is_recorded_once(sent, event_buffer, now):
    send, _, _ = sent
    hit = tracking.Hit(EventType.OPEN, send.pk, now + timedelta(hours=1), HUMAN, None, id="hit-1")
    event_buffer.rpush(tracking.BUFFER_KEY, hit.as_json(), hit.as_json())

    tracking.drain(now=now)
    event_buffer.rpush(tracking.BUFFER_KEY, hit.as_json())  # a worker died before trimming the list
    tracking.drain(now=now)

    assert EmailEvent.objects.filter(type=EventType.OPEN).count() == 1


def test_garbage_in_the_buffer_is_dropped_and_the_rest_recorded(sent, event_buffer, now):
    send, _, _ = sent
    hit = tracking.Hit(EventType.OPEN, send.pk, now + timedelta(hours=1), HUMAN, None, id="hit-2")
    event_buffer.rpush(tracking.BUFFER_KEY, b"\xff not json", b'["x"]', hit.as_json())

    assert tracking.drain(now=now) == 1
    assert EmailEvent.objects.filter(type=EventType.OPEN).count() == 1


def test_without_redis_a_hit_is_recorded_at_once(client, sent, settings):
    _, html, _ = sent
    settings.EVENT_BUFFER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.TRACKING_FLUSH_MS = 0

    response = client.get(path_of(next(link for link in hrefs(html) if "/t/c/" in link)), HTTP_USER_AGENT=HUMAN)

    assert response.status_code == 302
    assert EmailEvent.objects.filter(type=EventType.CLICK).count() == 1


def test_the_outbox_pushes_a_process_hits_to_the_buffer_together(client, sent, event_buffer, settings, monkeypatch):
    _, html, _ = sent
    settings.TRACKING_FLUSH_MS = 60_000  # the outbox's thread waits; the test pushes
    scheduled = []
    monkeypatch.setattr(tasks, "schedule_drain", lambda: scheduled.append(True))
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html).group(1)
    links = [link for link in hrefs(html) if "/t/c/" in link]

    answers = [client.get(path_of(url), HTTP_USER_AGENT=HUMAN).status_code for url in [pixel, *links]]
    waiting = event_buffer.llen(tracking.BUFFER_KEY)
    tracking.OUTBOX.flush()

    assert (answers, waiting) == ([200, 302, 302, 302], 0)
    assert event_buffer.llen(tracking.BUFFER_KEY) == 4
    assert scheduled == [True], "one push, one drain"
    hits = [tracking.Hit.from_json(raw) for raw in event_buffer.lrange(tracking.BUFFER_KEY, 0, -1)]
    assert [hit.kind for hit in hits] == [EventType.OPEN, EventType.CLICK, EventType.CLICK, EventType.CLICK]
    assert len({hit.id for hit in hits}) == 4


def test_the_outbox_records_its_hits_in_the_database_when_redis_does_not_answer(client, sent, settings):
    _, html, _ = sent
    settings.EVENT_BUFFER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.TRACKING_FLUSH_MS = 60_000

    response = client.get(path_of(next(link for link in hrefs(html) if "/t/c/" in link)), HTTP_USER_AGENT=HUMAN)
    recorded_before = EmailEvent.objects.filter(type=EventType.CLICK).count()
    tracking.OUTBOX.flush()

    assert (response.status_code, recorded_before) == (302, 0)
    assert EmailEvent.objects.filter(type=EventType.CLICK).count() == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.postgres
def test_the_endpoints_answer_and_lose_nothing_while_the_database_is_down(sent, event_buffer, now, tmp_path):
    send, html, _ = sent
    link = next(link for link in hrefs(html) if "/t/c/" in link)
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html).group(1)
    cache_url = BUFFER_URL.rsplit("/", 1)[0] + "/13"
    link_id = int(path_of(link).rsplit("/", 1)[1].split(".")[1], 36)
    RedisCache(cache_url, {}).set(f"deliverwell:link:{link_id}", "https://shop.example/sale", 3600)
    port = _free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/gone",  # PostgreSQL is down
        "REDIS_URL": cache_url,
        "EVENT_BUFFER_URL": BUFFER_URL,
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # so is the broker: the minute's beat job drains later
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SITE_URL": settings.SITE_URL,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=Path(settings.BASE_DIR),
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "gunicorn.log").open("wb"),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        # gunicorn imports the project before it answers: on a busy CI machine that takes a while.
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/t/o/x.gif", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "gunicorn.log").read_text()) from None
                time.sleep(0.2)
        opened = urllib.request.urlopen(urllib.request.Request(base + path_of(pixel), headers={"User-Agent": HUMAN}))
        no_redirect = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirected:
            no_redirect.open(urllib.request.Request(base + path_of(link), headers={"User-Agent": HUMAN}))
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert opened.status == 200 and opened.read() == tracking.PIXEL
    assert (redirected.value.code, redirected.value.headers["Location"]) == (302, "https://shop.example/sale")
    assert event_buffer.llen(tracking.BUFFER_KEY) == 2
    assert tracking.drain(now=now + timedelta(hours=1)) == 2
    assert sorted(EmailEvent.objects.filter(send=send).values_list("type", flat=True)) == ["click", "delivered", "open"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_hits_for_a_send_that_no_longer_exists_are_orphaned_not_errors(client, sent):
    send, html, _ = sent
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html).group(1)
    Send.objects.filter(pk=send.pk).delete()

    response = client.get(path_of(pixel), HTTP_USER_AGENT=HUMAN)

    assert response.status_code == 200
    assert EmailEvent.objects.get(type=EventType.OPEN).orphaned
    assert Contact.objects.get(pk=send.contact_id).last_open_at is None


def test_no_token_whatever_its_shape_makes_an_endpoint_fail(client, sent):
    _, html, _ = sent
    real = path_of(next(link for link in hrefs(html) if "/t/c/" in link)).rsplit("/", 1)[1]
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.~%"
    chooser = random.Random(7)
    tokens = ["".join(chooser.choice(alphabet) for _ in range(chooser.randint(1, 80))) for _ in range(150)]
    tokens += [real[:cut] for cut in range(len(real))] + [real + "x", real.upper(), "." * 40, "0.0.0", "-1.-1.x"]

    for token in tokens:
        assert client.get(f"/t/o/{token}").status_code in {200, 404}, token
        assert client.get(f"/t/c/{token}").status_code == 404, token

    assert not EmailEvent.objects.filter(type__in=[EventType.OPEN, EventType.CLICK]).exists()
