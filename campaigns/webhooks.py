"""ESP webhooks through django-anymail: authenticated in the request, parsed and recorded by a worker.

Every tracking and inbound view anymail has is mounted under /anymail/, wrapped by `accept`.
In the request only anymail's own validators run — basic auth from ANYMAIL["WEBHOOK_SECRET"]
(a list, for rotation) and the ESP's signature where it signs — and the body is queued for a
worker, so the ESP gets its answer in milliseconds (ESPs time out after a few seconds and
retry). The worker replays the request through the same anymail view's parser and sends
anymail's signals; `on_tracking` turns each normalized event into an Observation for
`events.record_events` (a batch at a time), `on_inbound` hands bounce and complaint mail to
campaigns.inbound. A body that passed authentication but cannot be parsed is kept as an
UnprocessedPayload for staff to look at and retry, never dropped.

Per-ESP differences live in the tables below, not in `if` chains.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

import redis
from anymail import urls as anymail_urls
from anymail.exceptions import AnymailError, AnymailWebhookValidationFailure
from anymail.signals import AnymailInboundEvent, AnymailTrackingEvent
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt

from campaigns import bounces, buffer, inbound
from campaigns.events import EVENT_FOR_OUTCOME, Observation, record_events
from campaigns.models import EventSource, EventType, PayloadKind, UnprocessedPayload

logger = logging.getLogger(__name__)

# Headers a parser may need; credentials and cookies are never queued or stored.
_PRIVATE_HEADERS = frozenset({"HTTP_AUTHORIZATION", "HTTP_COOKIE"})

_EVENT_TYPES = {
    "queued": EventType.ACCEPTED,
    "sent": EventType.ACCEPTED,
    "delivered": EventType.DELIVERED,
    "opened": EventType.OPEN,
    "clicked": EventType.CLICK,
    "complained": EventType.COMPLAINT,
    "unsubscribed": EventType.UNSUBSCRIBE,
    "autoresponded": EventType.AUTO_REPLY,
}


@dataclass(frozen=True)
class Details:
    """What an ESP's raw event says beyond anymail's normalized fields."""

    bounce_type: str = ""  # the ESP's own bounce class, for bounces.classify_esp
    enhanced: str = ""
    code: int | None = None
    text: str = ""
    ip: str | None = None
    machine_reason: str = ""
    unsubscribe_all: bool = False


def _get(data, *path, default=None):
    for key in path:
        if not isinstance(data, dict):
            return default
        data = data.get(key)
    return default if data is None else data


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _sendgrid(raw: dict) -> Details:
    return Details(
        bounce_type=str(_get(raw, "type", default="")),
        enhanced=str(_get(raw, "status", default="")),
        text=str(_get(raw, "reason", default="") or _get(raw, "response", default="")),
        ip=_get(raw, "ip"),
        machine_reason="flagged as a machine open by SendGrid" if _get(raw, "sg_machine_open") else "",
        # "unsubscribe" is SendGrid's global unsubscribe; "group_unsubscribe" one group's.
        unsubscribe_all=_get(raw, "event") == "unsubscribe",
    )


def _mailgun(raw: dict) -> Details:
    data = _get(raw, "event-data", default=raw)
    return Details(
        bounce_type=str(_get(data, "severity", default="")),
        code=_int(_get(data, "delivery-status", "code")),
        text=str(_get(data, "delivery-status", "message", default="") or _get(data, "reason", default="")),
        ip=_get(data, "ip"),
    )


def _postmark(raw: dict) -> Details:
    return Details(bounce_type=str(_get(raw, "Type", default="")), text=str(_get(raw, "Details", default="")))


def _amazon_ses(raw: dict) -> Details:
    kind = str(_get(raw, "eventType", default="") or _get(raw, "notificationType", default="")).lower()
    return Details(
        bounce_type=str(_get(raw, "bounce", "bounceType", default="")),
        ip=_get(raw, kind, "ipAddress"),
    )


def _sparkpost(raw: dict) -> Details:
    event = _get(raw, "msys", default={})
    body = next(iter(event.values()), {}) if isinstance(event, dict) and event else {}
    return Details(
        code=_int(_get(body, "error_code")),
        text=str(_get(body, "raw_reason", default="")),
        ip=_get(body, "ip_address"),
    )


def _mailjet(raw: dict) -> Details:
    # Only a hard bounce is a verdict: Mailjet's other "bounces" (greylisting) are deferrals.
    return Details(
        bounce_type="hardbounce" if _get(raw, "hard_bounce") is True else "",
        ip=_get(raw, "ip"),
        text=str(_get(raw, "smtp_reply", default="") or _get(raw, "error", default="")),
    )


def _brevo(raw: dict) -> Details:
    event = str(_get(raw, "event", default=""))
    return Details(
        bounce_type={"hard_bounce": "hardbounce", "soft_bounce": "softbounce"}.get(event, ""),
        ip=_get(raw, "ip"),
    )


# Keyed by anymail's esp_name as a slug.
ESP_DETAILS: dict[str, Callable[[dict], Details]] = {
    "sendgrid": _sendgrid,
    "mailgun": _mailgun,
    "postmark": _postmark,
    "amazon-ses": _amazon_ses,
    "sparkpost": _sparkpost,
    "mailjet": _mailjet,
    "brevo": _brevo,
    "sendinblue": _brevo,
}


def _jsonable(value) -> dict:
    """The ESP's raw event as JSON we can store (anymail gives dicts, QueryDicts or lists)."""
    if isinstance(value, dict):
        raw = value
    elif hasattr(value, "lists"):
        raw = dict(value.lists())
    else:
        raw = {"event": value}
    return json.loads(json.dumps(raw, default=str))


def observation_from_anymail(event: AnymailTrackingEvent, esp_name: str, *, now: datetime) -> Observation:
    """One anymail tracking event as an Observation; the ESP's verdict on bounces comes first."""
    esp = slugify(esp_name)
    payload = _jsonable(event.esp_event)
    details = ESP_DETAILS.get(esp, lambda raw: Details())(payload)
    kind = _EVENT_TYPES.get(event.event_type, EventType.OTHER)
    classification = bounces.classify_esp(
        event=event.event_type or "",
        esp_reason=event.reject_reason or "",
        code=details.code,
        text=event.mta_response or details.text or event.description or "",
        enhanced=details.enhanced,
        esp_bounce_type=details.bounce_type,
    )
    if classification is not None and event.event_type != "delivered":
        kind = EVENT_FOR_OUTCOME[classification.outcome]
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    event_id = (
        event.event_id
        or hashlib.sha256(json.dumps([event.event_type, event.recipient, payload], sort_keys=True).encode()).hexdigest()
    )
    reply = event.mta_response or details.text or event.description or ""
    return Observation(
        type=kind,
        source=EventSource.WEBHOOK,
        occurred_at=event.timestamp or now,
        send_id=_int(metadata.get("send_id")),
        message_id=event.message_id or "",
        recipient=(event.recipient or "").strip().lower(),
        esp=esp,
        event_id=str(event_id),
        bounce_category=classification.category if classification else "",
        smtp_code=classification.code if classification else None,
        smtp_reply=str(reply),
        url=event.click_url or "",
        user_agent=event.user_agent or "",
        ip_address=details.ip if isinstance(details.ip, str) else None,
        machine_reason=details.machine_reason,
        unsubscribe_all=details.unsubscribe_all,
        payload=payload,
    )


# Observations of the webhook batch being processed, when `batched` collects them.
_batch: ContextVar[list[Observation] | None] = ContextVar("webhook_batch", default=None)


@contextmanager
def batched() -> Iterator[list[Observation]]:
    """Collect the tracking events signalled inside the block, to record them as one batch."""
    collected: list[Observation] = []
    token = _batch.set(collected)
    try:
        yield collected
    finally:
        _batch.reset(token)


def on_tracking(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    """anymail's tracking signal: every normalized ESP event goes to `record_events`."""
    now = timezone.now()
    observation = observation_from_anymail(event, esp_name, now=now)
    collected = _batch.get()
    if collected is None:
        record_events([observation], now=now)
    else:
        collected.append(observation)


def on_inbound(sender, event: AnymailInboundEvent, esp_name: str, **kwargs) -> None:
    """anymail's inbound signal: mail to our return path is bounce, complaint or unsubscribe mail."""
    message = event.message
    raw = message.as_bytes() if message is not None else b""
    inbound.process_mail(raw, now=timezone.now(), envelope_recipient=getattr(message, "envelope_recipient", "") or "")


def _views() -> dict[str, type]:
    return {pattern.name: pattern.callback.view_class for pattern in anymail_urls.urlpatterns}


QUEUE_KEY = "deliverwell:webhooks"
_DRAIN_LOCK = "deliverwell:webhooks:drain"


def queue(envelope: dict, body: bytes, *, schedule_drain: Callable[[], None]) -> bool:
    """Keep an authenticated webhook in the event buffer for a worker; False if there is none.

    One Redis list item: the envelope as a JSON line, then the body as it came. A 1,000-event
    batch is half a megabyte: as a Celery message (JSON, then base64 on Redis) it would cost
    more than everything else the request does.
    """
    client = buffer.client()
    if client is None:
        return False
    try:
        if client.rpush(QUEUE_KEY, json.dumps(envelope).encode() + b"\n" + body) == 1:
            schedule_drain()
    except redis.RedisError as exc:
        logger.warning("Event buffer unavailable (%s): the webhook goes to the worker whole", exc)
        return False
    return True


def drain(*, now: datetime) -> int:
    """Record the queued webhooks, oldest first, until none is left; return how many.

    One drainer at a time (a lock in Redis). A webhook leaves the queue only once recorded (or
    kept as unprocessed): if the database fails, it and those after it stay for the next drain.
    """
    client = buffer.client()
    if client is None:
        return 0
    drained = 0
    with buffer.only_drainer(client, _DRAIN_LOCK) as held:
        while held and (item := client.lindex(QUEUE_KEY, 0)) is not None:
            header, _, body = item.partition(b"\n")
            try:
                envelope = json.loads(header)
            except ValueError:
                logger.error("Dropped an unreadable item from the webhook queue: %r", item[:200])
            else:
                process(envelope, body, now=now)
            client.lpop(QUEUE_KEY)
            drained += 1
    return drained


def _request(body: bytes, *, content_type: str, headers: dict[str, str]) -> HttpRequest:
    """The webhook request again, for the view's parser, from what the web process queued."""
    return WSGIRequest(
        {
            **headers,
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/anymail/",
            "CONTENT_TYPE": content_type,
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "443",
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(body),
        }
    )


class Unparsable(Exception):
    """anymail's parser refused the body; the message says why."""


def _record(view_name: str, body: bytes, *, content_type: str, headers: dict[str, str], now: datetime) -> int:
    view_class = _views()[view_name]
    view = view_class()
    try:
        events = view.parse_events(_request(body, content_type=content_type, headers=headers))
    except Exception as exc:
        raise Unparsable(f"{type(exc).__name__}: {exc}") from exc
    with batched() as collected:
        for event in events:
            view.signal.send(sender=view_class, event=event, esp_name=view.esp_name)
    record_events(collected, now=now)
    return len(events)


def process(envelope: dict, body: bytes | None = None, *, now: datetime) -> int:
    """Parse a webhook with its anymail view and record its events; return how many.

    The body comes with the envelope from the buffer, or inside it (base64) from Celery. A body
    the parser refuses is kept as an UnprocessedPayload (and logged), not raised: sending it
    again would fail the same way. Database errors are raised, for a retry.
    """
    if body is None:
        body = base64.b64decode(envelope["body"])
    try:
        return _record(
            envelope["view"], body, content_type=envelope["content_type"], headers=envelope["headers"], now=now
        )
    except Unparsable as exc:
        logger.warning("Could not parse a %s webhook: %s", envelope["view"], exc)
        view_class = _views().get(envelope["view"])
        UnprocessedPayload.objects.create(
            kind=PayloadKind.WEBHOOK,
            esp=slugify(getattr(view_class, "esp_name", ""))[:32],
            content_type=envelope["content_type"][:255],
            headers={"view": envelope["view"], **envelope["headers"]},
            body=body,
            error=str(exc)[:5000],
            received_at=now,
        )
        return 0


def retry_payload(payload: UnprocessedPayload, *, now: datetime) -> bool:
    """Process a kept payload again (after a fix, or once what it refers to exists); True if it worked."""
    try:
        if payload.kind == PayloadKind.WEBHOOK:
            headers = {name: value for name, value in payload.headers.items() if name.startswith("HTTP_")}
            _record(
                payload.headers.get("view", ""),
                bytes(payload.body),
                content_type=payload.content_type,
                headers=headers,
                now=now,
            )
        elif inbound.process_mail(bytes(payload.body), now=now, keep_failures=False).unreadable:
            raise Unparsable("still not a readable report")
    except (Unparsable, KeyError) as exc:
        UnprocessedPayload.objects.filter(pk=payload.pk).update(error=str(exc)[:5000], attempts=payload.attempts + 1)
        return False
    UnprocessedPayload.objects.filter(pk=payload.pk).update(processed_at=now, attempts=payload.attempts + 1)
    return True


def accept_view(name: str, view_class: type, *, enqueue: Callable[[dict], None], schedule_drain: Callable[[], None]):
    """The request half of a webhook: authenticate with anymail's validators, queue, answer.

    Queued in the event buffer, else handed to Celery with the body inside (`enqueue`).
    """
    plain_view = view_class.as_view()

    @csrf_exempt
    def accept(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method in {"HEAD", "OPTIONS"}:
            return plain_view(request, *args, **kwargs)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST", "HEAD", "OPTIONS"])
        if (_int(request.META.get("CONTENT_LENGTH")) or 0) > settings.WEBHOOK_MAX_BYTES:
            logger.warning("Refused a %s webhook of %s bytes", name, request.META.get("CONTENT_LENGTH"))
            return HttpResponse("Too large.", status=413, content_type="text/plain")
        try:
            body = request.read(settings.WEBHOOK_MAX_BYTES + 1)
        except (RequestDataTooBig, OSError):
            return HttpResponse("Too large.", status=413, content_type="text/plain")
        if len(body) > settings.WEBHOOK_MAX_BYTES:
            return HttpResponse("Too large.", status=413, content_type="text/plain")
        request._body = body
        view = view_class()
        if not getattr(view, "basic_auth", None):
            # anymail only warns; an unauthenticated webhook would let anyone suppress anyone.
            logger.error("Refused a %s webhook: set ANYMAIL['WEBHOOK_SECRET'] to accept webhooks", name)
            return HttpResponse("Webhooks are not set up here.", status=403, content_type="text/plain")
        if not request.META.get("HTTP_AUTHORIZATION"):
            # Amazon SNS sends credentials only after a 401 that asks for them.
            response = HttpResponse("Authentication required.", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Basic realm="Anymail WEBHOOK_SECRET"'
            return response
        try:
            view.run_validators(request)
        except AnymailWebhookValidationFailure as exc:
            logger.warning("Refused a %s webhook: %s", name, exc)
            return HttpResponse("Not authenticated.", status=400, content_type="text/plain")
        except (AnymailError, ValueError, KeyError, TypeError) as exc:
            logger.warning("Refused a malformed %s webhook: %s", name, exc)
            return HttpResponse("Malformed request.", status=400, content_type="text/plain")
        envelope = {
            "view": name,
            "content_type": request.META.get("CONTENT_TYPE", ""),
            "headers": {
                key: value
                for key, value in request.META.items()
                if key.startswith("HTTP_") and key not in _PRIVATE_HEADERS and isinstance(value, str)
            },
        }
        try:
            if not queue(envelope, body, schedule_drain=schedule_drain):
                enqueue({**envelope, "body": base64.b64encode(body).decode()})
        except Exception:
            logger.exception("Could not take a %s webhook: the ESP will send it again", name)
            return HttpResponse("Try again later.", status=503, content_type="text/plain")
        return HttpResponse("OK", content_type="text/plain")

    return accept


def urlpatterns(*, enqueue: Callable[[dict], None], schedule_drain: Callable[[], None]) -> list[URLPattern]:
    """anymail's webhook URLs (every ESP it supports), each answered by `accept_view`."""
    return [
        URLPattern(
            pattern.pattern,
            accept_view(pattern.name, pattern.callback.view_class, enqueue=enqueue, schedule_drain=schedule_drain),
            name=pattern.name,
        )
        for pattern in anymail_urls.urlpatterns
    ]
