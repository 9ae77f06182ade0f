"""The Redis that holds events on their way into the database (EVENT_BUFFER_URL).

Tracking hits wait there in a list and webhook bodies under a key each, so the public endpoints
answer in a millisecond without the database and keep answering while it is down. In
production give this Redis persistence (`appendonly yes`): what waits here exists nowhere else.
Without the setting (local runs) nothing is buffered: hits are written and webhooks queued whole.
"""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


@cache
def _client(url: str) -> redis.Redis:
    # Short timeouts: a Redis that does not answer must not hold up a pixel or an ESP.
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


def client() -> redis.Redis | None:
    return _client(settings.EVENT_BUFFER_URL) if settings.EVENT_BUFFER_URL else None
