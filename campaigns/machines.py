"""Opens and clicks that no person made: recorded, flagged, and left out of engagement and rates.

- Apple Mail Privacy Protection fetches every image of every message through Apple's proxies
  (bare `Mozilla/5.0` user agent, addresses in 17.0.0.0/8) whether or not anyone reads it.
- Security scanners (Microsoft Defender Safe Links, Mimecast, Proofpoint, …) follow every
  link within seconds of delivery, several links at once, often with a tell-tale user agent.
- Prefetchers and link checkers load the pixel at delivery, or send HEAD requests.
- An ESP that already knows (SendGrid's `sg_machine_open`) says so in the event.

Gmail's and Yahoo's image proxies are not machines: they fetch when the person opens.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta
from ipaddress import ip_address, ip_network
from typing import TYPE_CHECKING

from django.conf import settings

from campaigns.models import EventType, SendStatus

if TYPE_CHECKING:
    from campaigns.events import Observation
    from campaigns.models import Send

APPLE_PROXY_NETWORKS = (ip_network("17.0.0.0/8"),)
_AUTOMATED_AGENT = re.compile(
    r"bot\b|spider|crawl|slurp|python-requests|python-urllib|aiohttp|curl/|wget/|go-http-client|java/|okhttp"
    r"|libwww|httpclient|headlesschrome|phantomjs|facebookexternalhit|barracuda|mimecast|proofpoint|symantec"
    r"|messagelabs|trendmicro|forcepoint|fireeye|zscaler|ironport|sophos|urldefense|safelinks"
    r"|microsoft office existence discovery|ms-office",
    re.IGNORECASE,
)


def _in_networks(ip: str | None, networks) -> bool:
    try:
        address = ip_address(ip or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


def agent_reason(user_agent: str, ip: str | None, *, is_open: bool) -> str:
    """Why the client looks like a machine from its request alone, or ""."""
    agent = user_agent.strip()
    if not agent:
        return "no user agent"
    if is_open and (agent == "Mozilla/5.0" or _in_networks(ip, APPLE_PROXY_NETWORKS)):
        return "Apple Mail Privacy Protection"
    if match := _AUTOMATED_AGENT.search(agent):
        return f"automated client ({match.group(0).lower()})"
    return ""


def classify(
    observations: list[Observation], sends: dict[int, Send], recent_clicks: list[tuple[int, int | None, datetime]]
) -> None:
    """Set `machine_reason` on the opens and clicks that look automated (others keep theirs).

    `recent_clicks` are (send id, link id, time) of clicks already recorded near these ones.
    """
    prefetch = timedelta(seconds=settings.TRACKING_PREFETCH_SECONDS)
    scanner = timedelta(seconds=settings.TRACKING_SCANNER_SECONDS)
    clicks: dict[int, list[tuple[int | None, datetime]]] = defaultdict(list)
    for send_id, link_id, when in recent_clicks:
        clicks[send_id].append((link_id, when))
    for observation in observations:
        if observation.type == EventType.CLICK and observation.send_id is not None:
            clicks[observation.send_id].append((observation.link_id, observation.occurred_at))
    for observation in observations:
        if observation.type not in {EventType.OPEN, EventType.CLICK} or observation.machine_reason:
            continue
        is_open = observation.type == EventType.OPEN
        reason = agent_reason(observation.user_agent, observation.ip_address, is_open=is_open)
        handed_over = _handed_over(sends.get(observation.send_id))
        if not reason and handed_over is not None:
            # Before the hand-over we recorded (a scanner acting before the server's reply reached
            # us) is within the window too.
            since = observation.occurred_at - handed_over
            if is_open and since < prefetch:
                reason = f"opened within {settings.TRACKING_PREFETCH_SECONDS} s of delivery (prefetch)"
            elif not is_open and since < scanner:
                reason = f"clicked within {settings.TRACKING_SCANNER_SECONDS} s of delivery (security scanner)"
        if not reason and not is_open:
            reason = _burst(observation, clicks[observation.send_id])
        observation.machine_reason = reason


def _handed_over(send: Send | None) -> datetime | None:
    """When the message reached the receiving server, or a moment before it.

    A send still in its batch has no attempt written yet (the batch writes them back at its end):
    its claim time comes before its hand-over (pipeline: a slow batch renews only the sends still
    to go), so a hit soon after it is soon after the hand-over too.
    """
    if send is None:
        return None
    return send.claimed_at if send.status == SendStatus.SENDING else send.last_attempt_at


def _burst(observation: Observation, clicks: list[tuple[int | None, datetime]]) -> str:
    window = timedelta(seconds=settings.TRACKING_BURST_SECONDS)
    near = {link_id for link_id, when in clicks if abs(when - observation.occurred_at) <= window}
    if len(near) >= settings.TRACKING_BURST_LINKS:
        return f"{len(near)} links clicked within {settings.TRACKING_BURST_SECONDS} s (security scanner)"
    return ""
