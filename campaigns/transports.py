"""The two transports: direct SMTP (the receiving server's word, exactly as it said it) and
an ESP through django-anymail.

One connection per receiving host, kept open for the whole batch (a batch is hundreds of
messages; connection set-up costs more than a message). Each message is its own
MAIL/RCPT/DATA transaction because every message is personalized, so the reply to RCPT or
DATA is that recipient's result. STARTTLS is used whenever offered, opportunistically and
without certificate checks, as MTAs do (RFC 7435).

Delivering to the recipients' MX hosts, a worker holds a lease per receiving domain it has a
connection open to (campaigns.throttle.ConnectionLeases), so all workers together keep
within each domain's connection limit. Through a smarthost there is no such limit: the
smarthost queues and spreads the mail itself.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from anymail.exceptions import AnymailError, AnymailRecipientsRefused
from django.core.mail import EmailMessage, get_connection

from campaigns.extensions import MxLookupFailed
from campaigns.throttle import ConnectionLeases

# RFC 5321 4.2: a reply line starts with a three-digit code whose first digit is 2 to 5.
_REPLY_CODE = re.compile(rb"[2-5][0-9]{2}")
_LONGEST_REPLY_LINE = 8192  # smtplib's own limit


@dataclass(frozen=True)
class Outgoing:
    envelope_from: str
    recipient: str
    message: bytes


@dataclass(frozen=True)
class Reply:
    """A receiving server's reply; code None when it never answered (not sent, not a bounce)."""

    code: int | None
    text: str


def _decoded(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


class GarbledReply(smtplib.SMTPException):
    """The server sent something that is not an SMTP reply; the connection is closed."""

    def __init__(self, line: bytes) -> None:
        super().__init__(repr(_decoded(line[:200]).strip()))


class _SmtpClient(smtplib.SMTP):
    """smtplib's client, except for how it reads a reply.

    smtplib passes on a line without a reply code as code -1, and makes up "500 Line too
    long." for an overlong line, which would read as a bounce. Here both end the connection
    as a GarbledReply, and a server that goes silent raises TimeoutError, not a "connection
    unexpectedly closed".
    """

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None:
            self.file = self.sock.makefile("rb")
        texts = []
        while True:
            try:
                line = self.file.readline(_LONGEST_REPLY_LINE + 1)
            except TimeoutError:
                self.close()
                raise
            except OSError as exc:
                self.close()
                raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}") from exc
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            if len(line) > _LONGEST_REPLY_LINE or not _REPLY_CODE.match(line):
                self.close()
                raise GarbledReply(line)
            texts.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(texts)


class SmtpTransport:
    def __init__(
        self,
        *,
        timeout: float,
        mx_hosts: Callable[[str], list[str]],
        smarthost: tuple[str, int] | None = None,
        port: int = 25,
        local_hostname: str | None = None,
        leases: ConnectionLeases | None = None,
    ) -> None:
        self.timeout = timeout
        self.mx_hosts = mx_hosts
        self.smarthost = smarthost
        self.port = port
        self.local_hostname = local_hostname
        self.leases = None if smarthost else leases
        self.connections: dict[tuple[str, int], smtplib.SMTP] = {}
        self._tls = ssl.create_default_context()
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for connection in self.connections.values():
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()
        self.connections.clear()
        if self.leases is not None:
            self.leases.release_all()

    def _hosts(self, recipient: str) -> list[tuple[str, int]] | Reply:
        if self.smarthost:
            return [self.smarthost]
        domain = recipient.rpartition("@")[2]
        try:
            hosts = self.mx_hosts(domain)
        except MxLookupFailed as exc:
            return Reply(451, f"4.4.3 Could not look up the MX of {domain}: {exc}")
        if not hosts:
            return Reply(550, f"5.1.2 {domain} does not accept mail: no MX and no address (our lookup)")
        return [(host, self.port) for host in hosts]

    def _connection(self, address: tuple[str, int]) -> smtplib.SMTP:
        connection = self.connections.get(address)
        if connection is None:
            connection = _SmtpClient(timeout=self.timeout, local_hostname=self.local_hostname)
            connection.connect(*address)
            connection.ehlo()
            if connection.has_extn("starttls"):
                connection.starttls(context=self._tls)
                connection.ehlo()
            self.connections[address] = connection
        return connection

    def _drop(self, address: tuple[str, int]) -> None:
        connection = self.connections.pop(address, None)
        if connection is not None:
            connection.close()

    def _lease(self, leases: ConnectionLeases, domain: str) -> Reply | None:
        """Hold a lease on a connection to the domain; the reply to record when none came free in time."""
        leases.renew()
        if leases.take(domain):
            return None
        # A worker waiting while it holds other domains' leases could wait for one that waits for it.
        self.close()
        if leases.wait_for(domain, seconds=self.timeout):
            return None
        return Reply(
            451,
            f"4.4.5 Not tried: all {leases.limit(domain)} connections to {domain} allowed to our workers"
            f" stayed in use for {self.timeout:g} s; trying again later",
        )

    def deliver(self, outgoing: Outgoing) -> Reply:
        hosts = self._hosts(outgoing.recipient)
        if isinstance(hosts, Reply):
            return hosts
        if self.leases is not None:
            refused = self._lease(self.leases, outgoing.recipient.rpartition("@")[2])
            if refused is not None:
                return refused
        reply = Reply(None, "no receiving host")
        # The next MX is tried only when a host cannot be reached: a host that answers decides.
        for address in hosts:
            try:
                return self._transaction(self._connection(address), outgoing)
            except TimeoutError:
                reply = Reply(None, f"{address[0]} did not answer within {self.timeout:g} s")
            except GarbledReply as exc:
                reply = Reply(None, f"{address[0]} answered something that is not SMTP: {exc}")
            except smtplib.SMTPConnectError as exc:
                reply = Reply(exc.smtp_code, _decoded(exc.smtp_error))
                if 500 <= exc.smtp_code < 600:
                    self._drop(address)
                    return reply
            except smtplib.SMTPResponseException as exc:
                reply = Reply(exc.smtp_code, _decoded(exc.smtp_error))
                self._drop(address)
                return reply
            except (smtplib.SMTPException, OSError, UnicodeError) as exc:
                reply = Reply(None, f"{address[0]}: {exc or type(exc).__name__}")
            self._drop(address)
        return reply

    def _transaction(self, connection: smtplib.SMTP, outgoing: Outgoing) -> Reply:
        options = []
        if not outgoing.recipient.isascii():
            # A non-ASCII mailbox name needs SMTPUTF8 (RFC 6531); without it the server cannot take it.
            if not connection.has_extn("smtputf8"):
                return Reply(None, "The receiving server does not accept internationalized addresses (no SMTPUTF8).")
            options.append("SMTPUTF8")
        code, text = connection.mail(outgoing.envelope_from, options)
        if code == 250:
            code, text = connection.rcpt(outgoing.recipient)
            if code in {250, 251}:
                code, text = connection.data(outgoing.message)
                return Reply(code, _decoded(text))
        reply = Reply(code, _decoded(text))
        # 421 closes the connection (RFC 5321 3.8); the reply stands whatever RSET then does.
        try:
            connection.rset()
        except (smtplib.SMTPException, OSError):
            self.connections = {a: c for a, c in self.connections.items() if c is not connection}
            connection.close()
        return reply


@dataclass(frozen=True)
class Handoff:
    """What an ESP said when handed a message: its own message id and per-recipient status."""

    status: str
    message_id: str
    text: str


class EspTransport:
    """Any ESP django-anymail supports, through EMAIL_BACKEND and one reused connection.

    The ESP accepts or refuses at once; delivery, bounces and opens arrive later by webhook
    and are matched on the ESP's message id. The ESP signs with its own DKIM set-up.
    """

    def __init__(self) -> None:
        self.connection = get_connection(fail_silently=False)

    def __enter__(self) -> EspTransport:
        self.connection.open()
        return self

    def __exit__(self, *exc) -> None:
        self.connection.close()

    def hand_over(self, message: EmailMessage, recipient: str, *, metadata: dict[str, str]) -> Handoff:
        message.connection = self.connection
        message.metadata = metadata
        try:
            message.send()
        except AnymailRecipientsRefused:
            pass
        except (AnymailError, OSError) as exc:
            # The ESP's API failed or timed out: nothing was accepted, try again later.
            return Handoff("failed", "", str(exc)[:500])
        status = message.anymail_status
        recipient_status = status.recipients.get(recipient.lower()) or status.recipients.get(recipient)
        if recipient_status is None:
            return Handoff(status.status.pop() if len(status.status or ()) == 1 else "unknown", "", "")
        # ESPs give their id as text; anymail's test backend gives its outbox index, an int.
        message_id = "" if recipient_status.message_id is None else str(recipient_status.message_id)
        return Handoff(recipient_status.status or "unknown", message_id, "")
