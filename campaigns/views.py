from __future__ import annotations

import functools
import logging

from django.core import signing
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from campaigns import links, pipeline, tasks, tracking
from campaigns.models import EventType, Send
from crm.ratelimit import client_ip

logger = logging.getLogger(__name__)


@require_safe
def view_in_browser(request, token: str):
    """The message as its recipient got it; a stranger's guess shows a friendly page, nothing more."""
    try:
        send = Send.objects.select_related("campaign", "contact").filter(pk=links.read_view_token(token)).first()
    except signing.BadSignature:
        send = None
    if send is None or send.contact is None:
        return render(request, "campaigns/view_gone.html", status=404)
    return HttpResponse(pipeline.render_for(send.campaign, send.contact, send_id=send.pk).html)


def _capture(request, kind: str, send_id: int, *, link_id: int | None = None, url: str = "") -> None:
    """Keep the hit; whatever fails, the visitor still gets their pixel or their page."""
    now = timezone.now()
    hit = tracking.Hit(
        kind=kind,
        send_id=send_id,
        at=now,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:1000],
        ip=client_ip(request),
        link_id=link_id,
        url=url,
        method=request.method,
    )
    try:
        tracking.capture(hit, now=now, schedule_drain=tasks.schedule_drain)
    except Exception:
        logger.exception("A %s hit for send %s was lost", kind, send_id)


def _uncached(view):
    """never_cache's headers, fixed: its date formatting and header parsing cost a pixel 40 µs."""

    @functools.wraps(view)
    def uncached(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        for header, value in _NO_CACHE.items():
            response.headers[header] = value
        return response

    return uncached


_NO_CACHE = {
    "Cache-Control": "max-age=0, no-cache, no-store, must-revalidate, private",
    "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
}


@_uncached
@require_safe
def open_pixel(request, token: str):
    """The tracking pixel: always a GIF, whatever the token; a valid token records an open."""
    send_id = tracking.read_open_token(token)
    if send_id is not None:
        _capture(request, EventType.OPEN, send_id)
    return HttpResponse(tracking.PIXEL, content_type="image/gif")


@_uncached
@require_safe
def click(request, token: str):
    """Redirect to the link the email had; a token we did not make leads nowhere but a friendly page."""
    ids = tracking.read_click_token(token)
    target = None
    if ids is not None:
        try:
            target = tracking.link_target(ids[1])
        except Exception:
            logger.exception("Could not look up link %s", ids[1])
    if ids is None or target is None:
        return render(request, "campaigns/link_gone.html", status=404)
    _capture(request, EventType.CLICK, ids[0], link_id=ids[1], url=target)
    return HttpResponseRedirect(target)
