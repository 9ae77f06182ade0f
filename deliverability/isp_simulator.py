"""A local ISP: an SMTP server on loopback that answers each recipient by rule and checks DKIM.

`make run` sends the demo campaigns here, and tests send through it, so delivered, bounced,
deferred and not-sent results come from a real SMTP conversation. Replies are decided at
RCPT TO, per recipient, as real receivers do; DATA is accepted for the recipients that were.

    simulator = IspSimulator(port=0)  # 0: any free port, read it back from .port
    simulator.start()
    ...
    simulator.wait_for_messages(1)
    simulator.stop()

Default rules match the start of the local part (`unknown7@example.com` is an unknown user);
a JSON rules file goes before them. With `readers=True` (the `isp_simulator` command) some
mailboxes also read what they get, by fetching the message's tracking pixel and links over
HTTP like a mail client: `reader…` a person who opens a while after delivery and clicks the
first link, `apple…` Apple Mail Privacy Protection fetching the pixel at once, `scanner…` a
security scanner clicking every link at once. Rules file example:

    {"rules": [
        {"address": "ceo@example.com", "reply": "550 5.1.1 No such user"},
        {"prefix": "vip", "reply": "250 2.1.5 OK"},
        {"regex": ".*@blocked\\\\.example$", "reply": "554 5.7.1 Blocked"},
        {"prefix": "later", "reply": "451 4.7.1 Try again later", "times": 5},
        {"prefix": "sloth", "delay": 10},
        {"prefix": "blackhole", "hold": true},
        {"prefix": "noise", "garble": true}
    ]}
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from email import message_from_bytes
from email import policy as email_policy
from email.parser import BytesHeaderParser
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from deliverability import signing

logger = logging.getLogger(__name__)

ACCEPT = "250 2.1.5 OK"
QUEUED = "250 2.0.0 OK: queued"
# What a broken server or a middlebox mangling the stream might send instead of a reply.
GARBLED = "~#%&!? line noise, not an SMTP reply"
DEFAULT_SLOW_SECONDS = 2.0
# Longer than any sending client waits for a reply; the client hanging up ends the hold sooner.
DEFAULT_TIMEOUT_HOLD_SECONDS = 600.0
DEFAULT_TIMES = 3
# A missing DNS server costs each lookup its full resolver timeout; a message is recorded
# "temperror" rather than waiting longer than this.
DKIM_TIMEOUT_SECONDS = 10.0
_REPLY = re.compile(r"[245]\d\d( .*)?")


class RulesError(ValueError):
    """The rules file cannot be used; the message names the rule and what is wrong."""


class MatchKind(StrEnum):
    ADDRESS = "address"
    PREFIX = "prefix"
    REGEX = "regex"


class DkimResult(StrEnum):
    # RFC 8601 result names.
    PASS = "pass"
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"


@dataclass(frozen=True)
class Rule:
    """How the server answers the recipients this rule matches.

    `times`: reply this way to the first N attempts at an address, then accept. A prefix rule
    takes N from digits right after the prefix when there are some (`defer5@` defers 5 times).
    `hold`: never answer the RCPT, so the client times out. `delay`: seconds before replying.
    A reply of GARBLED (`"garble": true` in a rules file) is a line that is not SMTP at all.
    """

    kind: MatchKind
    pattern: str
    reply: str = ACCEPT
    times: int | None = None
    delay: float = 0.0
    hold: bool = False

    def matches(self, address: str) -> bool:
        address = address.lower()
        if self.kind == MatchKind.ADDRESS:
            return address == self.pattern.lower()
        if self.kind == MatchKind.PREFIX:
            return address.partition("@")[0].startswith(self.pattern.lower())
        return re.fullmatch(self.pattern, address, re.IGNORECASE) is not None

    def times_for(self, address: str) -> int | None:
        if self.times is None or self.kind != MatchKind.PREFIX:
            return self.times
        digits = re.match(r"\d+", address.partition("@")[0][len(self.pattern) :])
        return int(digits.group()) if digits else self.times

    def reply_for(self, address: str, attempt: int) -> str | None:
        """The reply to this attempt (1 for the first) at the address; None to never answer."""
        if self.hold:
            return None
        times = self.times_for(address)
        if times is not None and attempt > times:
            return ACCEPT
        return self.reply

    def describe(self) -> str:
        if self.hold:
            outcome = "no answer (the client times out)"
        elif self.times is not None:
            outcome = f"{self.reply!r} the first {self.times} attempts, then {ACCEPT!r}"
            if self.kind == MatchKind.PREFIX:
                outcome += f" ({self.pattern}N…@: N attempts)"
        else:
            outcome = repr(self.reply)
        if self.delay:
            outcome += f" after {self.delay:g} s"
        if self.kind == MatchKind.PREFIX:
            return f"{self.pattern}…@  → {outcome}"
        return f"{self.kind} {self.pattern}  → {outcome}"


def default_rules(*, slow_seconds: float = DEFAULT_SLOW_SECONDS) -> list[Rule]:
    prefix = MatchKind.PREFIX
    return [
        Rule(prefix, "unknown", "550 5.1.1 The email account that you tried to reach does not exist."),
        Rule(prefix, "full", "552 5.2.2 Mailbox full"),
        Rule(prefix, "spam", "554 5.7.1 Message rejected as spam"),
        Rule(prefix, "policy", "554 5.7.1 Message rejected by local policy"),
        Rule(prefix, "defer", "451 4.7.1 Try again later", times=DEFAULT_TIMES),
        Rule(prefix, "busy", "421 4.7.0 Too many connections", times=DEFAULT_TIMES),
        Rule(prefix, "timeout", hold=True),
        Rule(prefix, "garbled", GARBLED),
        Rule(prefix, "slow", delay=slow_seconds),
    ]


class Rules:
    """An ordered list of rules; the first that matches a recipient wins, else accept."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = list(rules)

    @classmethod
    def default(cls, *, slow_seconds: float = DEFAULT_SLOW_SECONDS) -> Rules:
        return cls(default_rules(slow_seconds=slow_seconds))

    @classmethod
    def from_file(cls, path: str | Path, *, slow_seconds: float = DEFAULT_SLOW_SECONDS) -> Rules:
        """The file's rules, then the defaults. Raise RulesError if the file cannot be used."""
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RulesError(f"cannot read rules file {path}: {error}") from error
        if not isinstance(loaded, dict) or not isinstance(loaded.get("rules"), list):
            raise RulesError(f'{path}: expected a JSON object {{"rules": [...]}}')
        parsed = [parse_rule(entry, number) for number, entry in enumerate(loaded["rules"], start=1)]
        return cls(parsed + default_rules(slow_seconds=slow_seconds))

    def match(self, address: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.matches(address)), None)

    def describe(self) -> list[str]:
        return [rule.describe() for rule in self.rules] + ["anything else  → " + repr(ACCEPT)]


def parse_rule(entry: Any, number: int) -> Rule:
    if not isinstance(entry, dict):
        raise RulesError(f"rule {number}: expected an object, got {entry!r}")
    kinds = [kind for kind in MatchKind if kind.value in entry]
    if len(kinds) != 1:
        raise RulesError(f"rule {number}: give exactly one of address, prefix or regex")
    kind = kinds[0]
    pattern = entry[kind.value]
    unknown = set(entry) - {kind.value, "reply", "times", "delay", "hold", "garble"}
    if unknown:
        raise RulesError(f"rule {number}: unknown keys {', '.join(sorted(unknown))}")
    if not isinstance(pattern, str) or not pattern:
        raise RulesError(f"rule {number}: {kind.value} must be a non-empty string")
    if kind == MatchKind.REGEX:
        try:
            re.compile(pattern)
        except re.error as error:
            raise RulesError(f"rule {number}: bad regex {pattern!r}: {error}") from error
    reply = entry.get("reply", ACCEPT)
    if not isinstance(reply, str) or not _REPLY.fullmatch(reply):
        raise RulesError(f"rule {number}: reply must be an SMTP reply like '550 5.1.1 No such user', not {reply!r}")
    times = entry.get("times")
    if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 0):
        raise RulesError(f"rule {number}: times must be a whole number of attempts")
    delay = entry.get("delay", 0)
    if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
        raise RulesError(f"rule {number}: delay must be a number of seconds")
    hold, garble = entry.get("hold", False), entry.get("garble", False)
    if not isinstance(hold, bool) or not isinstance(garble, bool):
        raise RulesError(f"rule {number}: hold and garble must be true or false")
    if garble and "reply" in entry:
        raise RulesError(f"rule {number}: give a reply or garble, not both")
    return Rule(kind, pattern, GARBLED if garble else reply, times=times, delay=float(delay), hold=hold)


@dataclass(frozen=True)
class Reading:
    """How a mailbox reads a delivered message: what it fetches, when (seconds after delivery), as whom."""

    user_agent: str
    open_after: float | None = None
    click_after: float | None = None
    every_link: bool = False

    def describe(self) -> str:
        parts = []
        if self.open_after is not None:
            parts.append(f"opens after {self.open_after:g} s")
        if self.click_after is not None:
            parts.append(f"clicks {'every link' if self.every_link else 'the first link'} after {self.click_after:g} s")
        return f"{', '.join(parts)} as {self.user_agent!r}"

    def scaled(self, factor: float) -> Reading:
        return replace(
            self,
            open_after=None if self.open_after is None else self.open_after * factor,
            click_after=None if self.click_after is None else self.click_after * factor,
        )


# A person waits past the tracking's prefetch and scanner windows (TRACKING_PREFETCH_SECONDS,
# TRACKING_SCANNER_SECONDS) counted from the start of the sending batch.
READERS = {
    "reader": Reading(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        open_after=20.0,
        click_after=30.0,
    ),
    "apple": Reading("Mozilla/5.0", open_after=0.0),
    "scanner": Reading("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0", click_after=0.0, every_link=True),
}
_PIXEL = re.compile(r"""<img[^>]+src=["']([^"']+/t/o/[^"']+)["']""", re.IGNORECASE)
_TRACKED_LINK = re.compile(r"""href=["']([^"']+/t/c/[^"']+)["']""", re.IGNORECASE)


def reading_for(address: str) -> Reading | None:
    local = address.partition("@")[0].lower()
    return next((reading for prefix, reading in READERS.items() if local.startswith(prefix)), None)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A click's target is somewhere on the internet; the redirect itself is what we test.
    def redirect_request(self, *args, **kwargs):
        return None


def read_message(data: bytes, reading: Reading, *, fetch: str) -> list[str]:
    """Fetch the pixel and/or links of one message as `reading` says; return the URLs fetched."""
    message = message_from_bytes(data, policy=email_policy.default)
    html = next((part.get_content() for part in message.walk() if part.get_content_type() == "text/html"), "")
    urls = []
    if fetch == "open":
        urls = _PIXEL.findall(html)[:1]
    elif fetch == "click":
        links = list(dict.fromkeys(_TRACKED_LINK.findall(html)))
        urls = links if reading.every_link else links[:1]
    opener = urllib.request.build_opener(_NoRedirects)
    for url in urls:
        request = urllib.request.Request(url.replace("&amp;", "&"), headers={"User-Agent": reading.user_agent})
        try:
            opener.open(request, timeout=10).close()
        except urllib.error.HTTPError as answer:  # the click's 302
            answer.close()
        except OSError as error:
            logger.warning("reading %s: %s", url, error)
    return urls


@dataclass(frozen=True)
class Received:
    """One message accepted after DATA, with the DKIM verdict on it."""

    mail_from: str
    rcpts: tuple[str, ...]
    data: bytes
    dkim: DkimResult
    message_id: str = ""
    verifications: tuple[signing.Verification, ...] = ()


class IspSimulator:
    """The SMTP server, run by aiosmtpd in its own thread between start() and stop()."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rules: Rules | None = None,
        timeout_hold_seconds: float = DEFAULT_TIMEOUT_HOLD_SECONDS,
        tls_context: ssl.SSLContext | None = None,
        readers: bool = False,
        reading_scale: float = 1.0,
    ) -> None:
        self.host = host
        self.port = port
        self.rules = rules or Rules.default()
        self.timeout_hold_seconds = timeout_hold_seconds
        self.tls_context = tls_context
        self.readers = readers
        self.reading_scale = reading_scale
        # (address, "open" or "click", URLs) each time a reader fetched something.
        self.reads: list[tuple[str, str, list[str]]] = []
        self.received: list[Received] = []
        # RCPT TO attempts per recipient address (lower case), over all connections.
        self.attempts: Counter[str] = Counter()
        self._changed = threading.Condition()
        self._controller: _Controller | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._verifying: set[asyncio.Task] = set()

    def start(self) -> None:
        """Listen and serve; connections are accepted as soon as this returns."""
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="isp-simulator-dkim")
        self._controller = _Controller(
            self,
            hostname=self.host,
            port=self.port,
            # The name in the greeting; without one aiosmtpd asks DNS for our FQDN.
            server_hostname="isp-simulator.localhost",
            tls_context=self.tls_context,
            # Like Gmail and most large providers: internationalized addresses (RFC 6531).
            enable_SMTPUTF8=True,
        )
        self._controller.start()
        self.port = self._controller.port

    def stop(self) -> None:
        """Stop serving, drop held connections and release the port."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def clear(self) -> None:
        """Forget received messages and attempt counts (deferrals start over)."""
        with self._changed:
            self.received.clear()
            self.attempts.clear()

    def wait_for_attempts(self, address: str, count: int, *, timeout: float = 5.0) -> None:
        """Return once the server saw `count` RCPT TO attempts at the address; raise TimeoutError if not in time."""
        key = address.lower()
        with self._changed:
            if not self._changed.wait_for(lambda: self.attempts[key] >= count, timeout):
                raise TimeoutError(f"{self.attempts[key]} of {count} attempts at {address} after {timeout} s")

    def wait_for_messages(self, count: int, *, timeout: float = 5.0) -> list[Received]:
        """Return the received messages once there are `count`; raise TimeoutError if not in time.

        A message is recorded once its DKIM check ends, just after the client got its reply.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.received) >= count, timeout):
                raise TimeoutError(f"{len(self.received)} of {count} messages received after {timeout} s")
            return list(self.received)

    # aiosmtpd handler hooks ---------------------------------------------------------------

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        key = address.lower()
        with self._changed:
            self.attempts[key] += 1
            attempt = self.attempts[key]
            self._changed.notify_all()
        rule = self.rules.match(address)
        reply = rule.reply_for(address, attempt) if rule else ACCEPT
        if rule and rule.delay:
            await asyncio.sleep(rule.delay)
        if reply is None:
            logger.info("rcpt %s (attempt %d): holding without an answer", address, attempt)
            await self._hang_up(server)
            return ""
        logger.info("rcpt %s (attempt %d): %s", address, attempt, reply)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        elif reply.startswith("421"):
            # RFC 5321 4.2.2: 421 closes the channel. aiosmtpd writes the reply before this runs.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def _hang_up(self, server: SMTP) -> None:
        """Hold the connection without a word, then drop it like a dead server.

        The client hanging up first (its timeout) cancels this coroutine, as does stop().
        """
        await asyncio.sleep(self.timeout_hold_seconds)
        server.transport.close()
        # connection_lost() now cancels the session's coroutine, and this wait with it.
        await asyncio.Event().wait()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        message = Received(
            mail_from=envelope.mail_from or "",
            rcpts=tuple(envelope.rcpt_tos),
            data=data,
            dkim=DkimResult.NONE,
            message_id=_message_id(data),
        )
        # Verified after the reply, off the event loop: a slow or missing DNS server delays
        # neither this client nor any other connection.
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._verify_and_record(message))]
        if self.readers:
            for address in envelope.rcpt_tos:
                reading = reading_for(address)
                if reading is not None:
                    tasks.append(loop.create_task(self._read(address, data, reading.scaled(self.reading_scale))))
        for task in tasks:
            self._verifying.add(task)
            task.add_done_callback(self._verifying.discard)
        return QUEUED

    async def _read(self, address: str, data: bytes, reading: Reading) -> None:
        loop = asyncio.get_running_loop()
        waited = 0.0
        steps = [("open", reading.open_after), ("click", reading.click_after)]
        for fetch, after in sorted(((f, a) for f, a in steps if a is not None), key=lambda step: step[1]):
            await asyncio.sleep(after - waited)
            waited = after
            urls = await loop.run_in_executor(self._executor, partial(read_message, data, reading, fetch=fetch))
            logger.info("%s read the message (%s): %d URL(s)", address, fetch, len(urls))
            with self._changed:
                self.reads.append((address, fetch, urls))
                self._changed.notify_all()

    def wait_for_reads(self, count: int, *, timeout: float = 10.0) -> list[tuple[str, str, list[str]]]:
        """Return what readers fetched once they fetched `count` times; raise TimeoutError if not in time."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.reads) >= count, timeout):
                raise TimeoutError(f"{len(self.reads)} of {count} reads after {timeout} s")
            return list(self.reads)

    async def _verify_and_record(self, message: Received) -> None:
        loop = asyncio.get_running_loop()
        try:
            verifications = await asyncio.wait_for(
                loop.run_in_executor(self._executor, signing.verify_message, message.data), DKIM_TIMEOUT_SECONDS
            )
        except Exception as error:
            logger.warning("message %s: dkim: could not verify (%s)", message.message_id, error or type(error).__name__)
            result, verifications = DkimResult.TEMPERROR, []
        else:
            result = dkim_result(verifications)
        recorded = Received(
            mail_from=message.mail_from,
            rcpts=message.rcpts,
            data=message.data,
            dkim=result,
            message_id=message.message_id,
            verifications=tuple(verifications),
        )
        details = "; ".join(_describe(verification) for verification in verifications)
        logger.info(
            "message %s from %s to %s: dkim=%s%s",
            message.message_id or "(no Message-ID)",
            message.mail_from,
            ", ".join(message.rcpts),
            result,
            f" ({details})" if details else "",
        )
        with self._changed:
            self.received.append(recorded)
            self._changed.notify_all()


def dkim_result(verifications: list[signing.Verification]) -> DkimResult:
    """One valid signature is a pass (RFC 6376 6.1); signatures and none valid is a fail."""
    if not verifications:
        return DkimResult.NONE
    if any(verification.ok for verification in verifications):
        return DkimResult.PASS
    return DkimResult.TEMPERROR if any(v.temporary for v in verifications) else DkimResult.FAIL


def _describe(verification: signing.Verification) -> str:
    verdict = "pass" if verification.ok else f"fail: {verification.reason}"
    return f"d={verification.domain or '?'} s={verification.selector or '?'} {verdict}"


def _message_id(data: bytes) -> str:
    return (BytesHeaderParser().parsebytes(data).get("Message-ID") or "").strip()


class _Controller(Controller):
    """aiosmtpd's threaded controller, able to listen on port 0 and report the port it got."""

    async def _create_server(self) -> asyncio.AbstractServer:  # type: ignore[override]
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
        )
        # start() connects to self.port to check the server answers, so it must be the real one.
        self.port = server.sockets[0].getsockname()[1]
        return server


def tls_context(*, cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server context for STARTTLS from a PEM certificate chain and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return context
