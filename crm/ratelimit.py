"""A per-client fixed-window rate limit in the Django cache (Redis in production)."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The visitor's IP: REMOTE_ADDR, or the last X-Forwarded-For hop when behind a trusted proxy."""
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return request.META.get("REMOTE_ADDR") or None


def allow(scope: str, key: str | None, *, limit: int, window_seconds: int, now_seconds: float) -> bool:
    """Count one hit for `key` in `scope`; False once more than `limit` hits fell in this window."""
    window = int(now_seconds // window_seconds)
    cache_key = f"ratelimit:{scope}:{key or 'unknown'}:{window}"
    # add() is atomic: only the first hit of a window creates the counter.
    if cache.add(cache_key, 1, timeout=window_seconds + 1):
        return True
    try:
        hits = cache.incr(cache_key)
    except ValueError:
        # The counter expired between add() and incr(): this is the first hit again.
        cache.add(cache_key, 1, timeout=window_seconds + 1)
        return True
    return hits <= limit
