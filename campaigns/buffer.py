"""The Redis that holds events on their way into the database (EVENT_BUFFER_URL).

Tracking hits wait there in a list and webhook bodies under a key each, so the public endpoints
answer in a millisecond without the database and keep answering while it is down. In
production give this Redis persistence (`appendonly yes`): what waits here exists nowhere else.
Without the setting (local runs) nothing is buffered: hits are written and webhooks queued whole.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import redis
from django.conf import settings


@cache
def _client(url: str) -> redis.Redis:
    # Short timeouts: a Redis that does not answer must not hold up a pixel or an ESP.
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


def client() -> redis.Redis | None:
    return _client(settings.EVENT_BUFFER_URL) if settings.EVENT_BUFFER_URL else None


@contextmanager
def only_drainer(client: redis.Redis, lock: str) -> Iterator[bool]:
    """Whether this process holds the drain `lock`: one drainer at a time (the lock lapses after
    five minutes, should its holder die), released on leaving."""
    token = secrets.token_hex(8)
    held = bool(client.set(lock, token, nx=True, ex=300))
    try:
        yield held
    finally:
        if held and client.get(lock) == token.encode():
            client.delete(lock)
