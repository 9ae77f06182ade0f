"""Sending limits shared by every worker: a global rate, rates per receiving domain, and
connections per receiving domain.

They are kept in Redis (REDIS_URL), so every worker on every host counts against one limit;
without Redis (local runs) they hold within one process only, in its local-memory cache.
Celery's own `rate_limit` is per worker and cannot do this.

A rate is a schedule (GCRA, the "virtual scheduling" form of the leaky bucket): every message
reserves the next free moment on its scope's timeline, one every 1/R seconds, and its worker
sleeps until then. A reservation may lie up to BURST_SECONDS in the past, so moments that no
worker was ready for (both workers between two batches at once) are made up right after
instead of being lost, as a counter per fixed slot loses them; over any W seconds at most
R * (W + BURST_SECONDS) + 1 messages go out.

A connection is a lease that expires: a worker holds one per receiving domain it has a
connection open to, renews it while it works, and returns it when it closes the connection.
A worker that dies holding leases stops renewing them, and they lapse.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from functools import cache as memoized
from typing import Protocol

import redis
from django.conf import settings
from django.core.cache import cache

# Made-up moments are bounded by this: at most 0.25 s of R, +2.5 % over a 10 s window.
BURST_SECONDS = 0.25
_PREFIX = "dw:send:"
_POLL_SECONDS = 0.1


class _Store(Protocol):
    def reserve(self, key: str, *, now: float, interval: float, burst: float) -> float: ...

    def lease(self, key: str, holder: str, *, now: float, until: float, limit: int) -> bool: ...

    def release(self, key: str, holder: str) -> None: ...


# KEYS[1]: the scope's next free moment. ARGV: now, interval, burst. Returns the moment reserved.
_RESERVE = """
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(free, tonumber(ARGV[1]) - tonumber(ARGV[3]))
redis.call('SET', KEYS[1], string.format('%.6f', start + tonumber(ARGV[2])), 'EX', 3600)
return string.format('%.6f', start)
"""

# KEYS[1]: the domain's holders by expiry. ARGV: now, until, holder, limit. Returns 1 if held.
_LEASE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
    -- Relative to the workers' clock, not Redis's: the set lives as long as its last lease.
    local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
    redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(last) - tonumber(ARGV[1])) + 1)
    return 1
end
return 0
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        client = _redis(url)
        self._reserve = client.register_script(_RESERVE)
        self._lease = client.register_script(_LEASE)
        self._client = client

    def reserve(self, key: str, *, now: float, interval: float, burst: float) -> float:
        return float(self._reserve(keys=[key], args=[f"{now:.6f}", f"{interval:.9f}", burst]))

    def lease(self, key: str, holder: str, *, now: float, until: float, limit: int) -> bool:
        return bool(self._lease(keys=[key], args=[f"{now:.6f}", f"{until:.6f}", holder, limit]))

    def release(self, key: str, holder: str) -> None:
        self._client.zrem(key, holder)


@memoized
def _redis(url: str) -> redis.Redis:
    # One connection pool per process, shared by every batch's limits.
    return redis.Redis.from_url(url)


class LocalStore:
    """One process's limits, in its local-memory cache (cleared with it)."""

    _lock = threading.Lock()

    def reserve(self, key: str, *, now: float, interval: float, burst: float) -> float:
        with self._lock:
            start = max(cache.get(key, 0.0), now - burst)
            cache.set(key, start + interval, timeout=3600)
        return start

    def lease(self, key: str, holder: str, *, now: float, until: float, limit: int) -> bool:
        with self._lock:
            holders = {name: expiry for name, expiry in cache.get(key, {}).items() if expiry > now}
            held = holder in holders or len(holders) < limit
            if held:
                holders[holder] = until
            cache.set(key, holders, timeout=None)
        return held

    def release(self, key: str, holder: str) -> None:
        with self._lock:
            holders = cache.get(key, {})
            holders.pop(holder, None)
            cache.set(key, holders, timeout=None)


def shared_store() -> _Store:
    return RedisStore(settings.REDIS_URL) if settings.REDIS_URL else LocalStore()


class Throttle:
    def __init__(
        self,
        *,
        rate: float,
        domain_rates: dict[str, float],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        store: _Store | None = None,
    ) -> None:
        self.rate = rate
        self.domain_rates = {domain.lower(): value for domain, value in domain_rates.items()}
        self.clock = clock
        self.sleep = sleep
        self.store = store or shared_store()

    def wait(self, recipient_domain: str) -> float:
        """Block until one more message to `recipient_domain` fits every rate; return the seconds waited."""
        waited = 0.0
        domain = recipient_domain.lower()
        if domain in self.domain_rates:
            waited += self._take(f"rate:domain:{domain}", self.domain_rates[domain])
        if self.rate:
            waited += self._take("rate:global", self.rate)
        return waited

    def _take(self, scope: str, rate: float) -> float:
        now = self.clock()
        start = self.store.reserve(_PREFIX + scope, now=now, interval=1 / rate, burst=BURST_SECONDS)
        if start <= now:
            return 0.0
        self.sleep(start - now)
        return start - now


class ConnectionLeases:
    """One holder's leases on connections to receiving domains, within each domain's limit.

    `seconds` is a lease's life without renewal: longer than the longest wait for one
    message (a dead worker's connections count that long), and `renew()` extends the
    leases held once a tenth of it has passed.
    """

    def __init__(
        self,
        *,
        default: int,
        per_domain: dict[str, int],
        seconds: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        store: _Store | None = None,
    ) -> None:
        self.default = default
        self.per_domain = {domain.lower(): limit for domain, limit in per_domain.items()}
        self.seconds = seconds
        self.clock = clock
        self.sleep = sleep
        self.store = store or shared_store()
        self.holder = secrets.token_hex(8)
        self.held: set[str] = set()
        self.renewed_at = clock()

    def limit(self, domain: str) -> int:
        return self.per_domain.get(domain.lower(), self.default)

    def take(self, domain: str) -> bool:
        """Hold a connection lease for the domain if one is free (or already held); never waits."""
        domain = domain.lower()
        if domain in self.held:
            return True
        if not self._lease(domain, now=self.clock()):
            return False
        self.held.add(domain)
        return True

    def wait_for(self, domain: str, *, seconds: float) -> bool:
        """Take a lease for the domain, waiting up to `seconds` for one to be returned or lapse."""
        # Counted in polls, not against the clock: a test's frozen clock must not make this endless.
        for _ in range(math.ceil(seconds / _POLL_SECONDS)):
            if self.take(domain):
                return True
            self.sleep(_POLL_SECONDS)
        return self.take(domain)

    def renew(self) -> None:
        """Extend the leases held once a tenth of their life has passed; forget any that lapsed meanwhile."""
        now = self.clock()
        if now - self.renewed_at < self.seconds / 10:
            return
        self.renewed_at = now
        self.held = {domain for domain in self.held if self._lease(domain, now=now)}

    def release_all(self) -> None:
        for domain in self.held:
            self.store.release(self._key(domain), self.holder)
        self.held.clear()

    def _lease(self, domain: str, *, now: float) -> bool:
        key = self._key(domain)
        return self.store.lease(key, self.holder, now=now, until=now + self.seconds, limit=self.limit(domain))

    def _key(self, domain: str) -> str:
        return f"{_PREFIX}connections:{domain}"
