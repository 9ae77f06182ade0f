"""Sending rates shared by every worker: a global rate and rates per receiving domain.

Counted in the cache (Redis in production, so every worker on every host shares one count)
in short slots: a rate of R messages a second allows R * slot messages per slot of
max(0.1 s, 1/R). A worker over the count waits for the next slot. Short slots keep bursts at
slot boundaries small, so the rate holds over any window of a few seconds, not only on
average. Celery's own `rate_limit` is per worker and cannot do this.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from django.core.cache import cache


class Throttle:
    def __init__(
        self,
        *,
        rate: float,
        domain_rates: dict[str, float],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.domain_rates = {domain.lower(): value for domain, value in domain_rates.items()}
        self.clock = clock
        self.sleep = sleep

    def wait(self, recipient_domain: str) -> float:
        """Block until one more message to `recipient_domain` fits every rate; return the seconds waited."""
        waited = 0.0
        domain = recipient_domain.lower()
        if domain in self.domain_rates:
            waited += self._take(f"domain:{domain}", self.domain_rates[domain])
        if self.rate:
            waited += self._take("global", self.rate)
        return waited

    def _take(self, scope: str, rate: float) -> float:
        slot = max(0.1, 1 / rate)
        allowed = max(1, math.floor(rate * slot))
        waited = 0.0
        while True:
            now = self.clock()
            index = math.floor(now / slot)
            key = f"dw:send-rate:{scope}:{slot}:{index}"
            cache.add(key, 0, timeout=max(5, math.ceil(slot * 3)))
            if cache.incr(key) <= allowed:
                return waited
            pause = (index + 1) * slot - now
            self.sleep(pause)
            waited += pause
