"""Our own opens and clicks: short signed links, a hit buffer, and recording in batches.

Every tracked link is `/t/c/<send>.<link>.<mac>` and the pixel `/t/o/<send>.<mac>.gif`: ids in
base 36 and a truncated HMAC, so a link is short, cannot be forged, and a click can only lead
to a link that was in that very email (a link id is registered per campaign when the email is
rendered; the MAC binds it to the send).

The endpoints never wait for the database, nor for Redis: a hit waits TRACKING_FLUSH_MS in its
web process's outbox, then goes with the others onto a Redis list in one push
(campaigns/buffer.py), and a worker records the list in batches through `events.record_events`,
so the endpoints keep answering while PostgreSQL is down and lose nothing: a batch leaves the
list only after it was recorded, and each hit carries its own id, so a batch recorded twice
(a worker that died before trimming the list) is still recorded once. Without a buffer a hit is
recorded at once; when Redis does not answer, at the push.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import html
import itertools
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from django.conf import settings
from django.core.cache import cache as shared_cache
from django.db import IntegrityError, connections
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from campaigns import buffer
from campaigns.events import Observation, record_events
from campaigns.models import Campaign, CampaignLink, EventSource, EventType
from crm.links import absolute

logger = logging.getLogger(__name__)

BUFFER_KEY = "deliverwell:tracking:hits"
_DRAIN_LOCK = "deliverwell:tracking:drain"
_LINK_CACHE = "deliverwell:link:{}"
_LINK_CACHE_SECONDS = 7 * 24 * 3600
_SALT = "campaigns.tracking"
# A link's href, quoted (groups 2 and 3) or not (group 4: up to a space or ">", as browsers read it).
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(?:(["'])(.*?)\2|([^\s"'>][^\s>]*))""", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = _DIGITS[digit] + digits
        if not number:
            return digits


def _mac(message: str) -> str:
    return base64.urlsafe_b64encode(salted_hmac(_SALT, message, algorithm="sha256").digest()[:9]).decode()


def _ids(parts: list[str]) -> list[int] | None:
    try:
        return [int(part, 36) for part in parts]
    except ValueError:
        return None


def open_token(send_id: int) -> str:
    sid = _base36(send_id)
    return f"{sid}.{_mac('o' + sid)}"


def click_token(send_id: int, link_id: int) -> str:
    ids = f"{_base36(send_id)}.{_base36(link_id)}"
    return f"{ids}.{_mac('c' + ids)}"


def read_open_token(token: str) -> int | None:
    """The send id of a pixel token; None for anything we did not make."""
    sid, _, mac = token.removesuffix(".gif").partition(".")
    ids = _ids([sid]) if len(sid) <= 13 else None
    if ids is None or not constant_time_compare(mac, _mac("o" + sid)):
        return None
    return ids[0]


def read_click_token(token: str) -> tuple[int, int] | None:
    """(send id, link id) of a click token; None for anything we did not make."""
    parts = token.split(".")
    if len(parts) != 3 or max(len(parts[0]), len(parts[1])) > 13:
        return None
    ids = _ids(parts[:2])
    if ids is None or not constant_time_compare(parts[2], _mac(f"c{parts[0]}.{parts[1]}")):
        return None
    return ids[0], ids[1]


def open_url(send_id: int) -> str:
    return absolute(reverse("campaigns:open", args=[f"{open_token(send_id)}.gif"]))


def click_url(send_id: int, link_id: int) -> str:
    return absolute(reverse("campaigns:click", args=[click_token(send_id, link_id)]))


def with_utm(url: str, campaign: Campaign) -> str:
    """The URL with utm_source, utm_medium and utm_campaign added; tags it already has are kept."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    tags = {
        "utm_source": settings.UTM_SOURCE,
        "utm_medium": "email",
        "utm_campaign": campaign.utm_campaign or slugify(campaign.name) or f"campaign-{campaign.pk}",
    }
    query += [(name, value) for name, value in tags.items() if name not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


class LinkBook:
    """A worker's links of each campaign: loaded once per campaign, then found without the database."""

    def __init__(self) -> None:
        self._ids: dict[int, dict[str, int | None]] = {}

    def clear(self) -> None:
        self._ids.clear()

    def link_id(self, campaign: Campaign, url: str, *, now: datetime) -> int | None:
        """The link's id, registering it on first sight; None past the campaign's link limit."""
        known = self._ids.get(campaign.pk)
        if known is None:
            known = self._ids[campaign.pk] = dict(
                CampaignLink.objects.filter(campaign=campaign).values_list("url_hash", "pk")
            )
        url_hash = _url_hash(url)
        if url_hash in known:
            return known[url_hash]
        if len(known) >= settings.TRACKING_MAX_LINKS_PER_CAMPAIGN:
            logger.warning("Campaign %s has %s links already: %s is not tracked", campaign.pk, len(known), url)
            known[url_hash] = None
            return None
        target = with_utm(url, campaign) if campaign.add_utm_tags else url
        try:
            link, _ = CampaignLink.objects.get_or_create(
                campaign=campaign,
                url_hash=url_hash,
                defaults={"url": url, "target": target, "position": len(known) + 1, "created_at": now},
            )
        except IntegrityError:  # another worker registered it a moment ago
            link = CampaignLink.objects.get(campaign=campaign, url_hash=url_hash)
        shared_cache.set(_LINK_CACHE.format(link.pk), link.target, _LINK_CACHE_SECONDS)
        known[url_hash] = link.pk
        return link.pk


# Links are never changed once registered: every batch a worker sends shares this book.
LINKS = LinkBook()


def _trackable(url: str) -> bool:
    # Our own pages (unsubscribe, preferences, view in browser) are never tracked: a scanner
    # "clicking" them would be recorded as engagement, and they must work without a redirect.
    return url.lower().startswith(("http://", "https://")) and not url.startswith(settings.SITE_URL)


def track(html_body: str, *, campaign: Campaign, send_id: int, links: LinkBook, now: datetime) -> str:
    """The rendered HTML with its links through our redirect and the open pixel, as the campaign asks."""
    if campaign.track_clicks:

        def rewrite(match: re.Match) -> str:
            quote = match.group(2) or '"'
            url = html.unescape(match.group(3) if match.group(2) else match.group(4)).strip()
            if not _trackable(url) or "data-no-track" in match.group(1).lower():
                return match.group(0)
            link_id = links.link_id(campaign, url, now=now)
            if link_id is None:
                return match.group(0)
            return f"{match.group(1)}{quote}{click_url(send_id, link_id)}{quote}"

        html_body = _HREF.sub(rewrite, html_body)
    if campaign.track_opens:
        pixel = (
            f'<img src="{open_url(send_id)}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">'
        )
        ends = list(_BODY_END.finditer(html_body))
        html_body = (
            f"{html_body[: ends[-1].start()]}{pixel}{html_body[ends[-1].start() :]}" if ends else html_body + pixel
        )
    return html_body


@lru_cache(maxsize=20_000)
def _known_target(link_id: int) -> str:
    target = shared_cache.get(_LINK_CACHE.format(link_id))
    if target is None:
        target = CampaignLink.objects.filter(pk=link_id).values_list("target", flat=True).first()
        if target is None:
            raise LookupError(link_id)  # not remembered: the link may not exist yet
        shared_cache.set(_LINK_CACHE.format(link_id), target, _LINK_CACHE_SECONDS)
    return target


def link_target(link_id: int) -> str | None:
    """Where a click on the link goes: remembered by this process (links never change), else from
    the shared cache, else the database. None for a link that does not exist."""
    try:
        return _known_target(link_id)
    except LookupError:
        return None


def forget_links() -> None:
    """Forget every link this process knows (tests, whose databases reuse ids)."""
    LINKS.clear()
    _known_target.cache_clear()


@dataclass(frozen=True)
class Hit:
    """One request to a tracking endpoint, as it arrived."""

    kind: str  # EventType.OPEN or EventType.CLICK
    send_id: int
    at: datetime
    user_agent: str
    ip: str | None
    link_id: int | None = None
    url: str = ""
    method: str = "GET"
    id: str = ""

    def as_json(self) -> str:
        return json.dumps(
            [
                self.id,
                self.kind,
                self.send_id,
                self.link_id,
                self.at.isoformat(),
                self.user_agent,
                self.ip,
                self.url,
                self.method,
            ]
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Hit | None:
        """The hit, or None for anything that is not one (logged)."""
        try:
            hit_id, kind, send_id, link_id, at, agent, ip, url, method = json.loads(raw)
            when = parse_datetime(at)
            if when is None or kind not in {EventType.OPEN, EventType.CLICK}:
                raise ValueError(f"not a hit: {raw!r}")
            return cls(kind, int(send_id), when, str(agent), ip, link_id, str(url), str(method), str(hit_id))
        except (TypeError, ValueError) as exc:
            logger.error("Dropped an unreadable tracking hit from the buffer: %s", exc)
            return None

    def observation(self) -> Observation:
        return Observation(
            type=self.kind,
            source=EventSource.TRACKING,
            occurred_at=self.at,
            send_id=self.send_id,
            event_id=self.id,
            link_id=self.link_id,
            url=self.url,
            user_agent=self.user_agent,
            ip_address=self.ip,
            machine_reason="HEAD request (a link checker)" if self.method == "HEAD" else "",
        )


class _HitIds:
    """Unique hit ids without a system call each: a random prefix per process and a counter."""

    def __init__(self) -> None:
        self._pid = 0
        self._prefix = ""
        self._counter = itertools.count()

    def next(self) -> str:
        if self._pid != os.getpid():  # a new process (a fork) gets a prefix of its own
            self._prefix = secrets.token_hex(8)
            self._pid = os.getpid()  # after the prefix: another thread reads them in this order
        return f"{self._prefix}{next(self._counter):x}"


HIT_IDS = _HitIds()


def capture(hit: Hit, *, now: datetime, schedule_drain) -> None:
    """Keep the hit: in the buffer (scheduling a drain when it was empty), else recorded at once.

    With TRACKING_FLUSH_MS the hit waits that long in the process's outbox and goes to the
    buffer with the others that came meanwhile (one round trip to Redis for them all).
    """
    hit = hit if hit.id else Hit(**{**hit.__dict__, "id": HIT_IDS.next()})
    if buffer.client() is not None and settings.TRACKING_FLUSH_MS:
        OUTBOX.put(hit, schedule_drain)
    else:
        _keep([hit], now=now, schedule_drain=schedule_drain)


def _keep(hits: list[Hit], *, now: datetime, schedule_drain) -> None:
    client = buffer.client()
    if client is not None:
        try:
            if client.rpush(BUFFER_KEY, *(hit.as_json() for hit in hits)) == len(hits):
                schedule_drain()
            return
        except redis.RedisError as exc:
            logger.warning("Tracking buffer unavailable (%s): recording %s hits directly", exc, len(hits))
    record_events([hit.observation() for hit in hits], now=now)


class _Outbox:
    """A web process's hits on their way to the buffer, pushed together by a thread of its own.

    The thread starts with the process's first hit (after a fork too) and pushes what waits
    TRACKING_FLUSH_MS after a hit arrives; a process that exits normally pushes the rest first.
    A process killed outright loses at most those milliseconds of hits.
    """

    def __init__(self) -> None:
        self._waiting = threading.Condition()
        self._hits: list[Hit] = []
        self._schedule_drain = None
        self._pid = 0

    def put(self, hit: Hit, schedule_drain) -> None:
        with self._waiting:
            if self._pid != os.getpid():
                self._pid, self._hits = os.getpid(), []
                threading.Thread(target=self._run, name="tracking-outbox", daemon=True).start()
                atexit.register(self.flush)
            self._hits.append(hit)
            self._schedule_drain = schedule_drain
            self._waiting.notify()

    def _run(self) -> None:
        while True:
            with self._waiting:
                self._waiting.wait_for(lambda: self._hits)
            time.sleep(settings.TRACKING_FLUSH_MS / 1000)
            self.flush()
            connections.close_all()  # this thread's, opened only when Redis failed

    def flush(self) -> None:
        """Push what waits now (the thread does it by itself; tests and exits call it)."""
        with self._waiting:
            hits, self._hits = self._hits, []
            schedule_drain = self._schedule_drain
        if not hits:
            return
        try:
            _keep(hits, now=timezone.now(), schedule_drain=schedule_drain)
        except Exception:
            logger.exception("%s tracking hits were lost", len(hits))


OUTBOX = _Outbox()


def drain(*, now: datetime, batch_size: int = 5000) -> int:
    """Record buffered hits, a batch at a time, until the buffer is empty; return how many.

    One drainer at a time (a lock in Redis). A batch leaves the buffer only once recorded:
    if the database fails, the hits stay for the next drain.
    """
    client = buffer.client()
    if client is None:
        return 0
    drained = 0
    with buffer.only_drainer(client, _DRAIN_LOCK) as held:
        while held:
            raw = client.lrange(BUFFER_KEY, 0, batch_size - 1)
            if not raw:
                break
            hits = [hit for hit in map(Hit.from_json, raw) if hit is not None]
            record_events([hit.observation() for hit in hits], now=now)
            client.ltrim(BUFFER_KEY, len(raw), -1)
            drained += len(hits)
            if len(raw) < batch_size:
                break
    return drained
