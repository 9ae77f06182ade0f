"""Connected inboxes: opening a staff member's own SMTP and IMAP servers, and saying in plain
words which step failed when one does not open — DNS, TCP, TLS or authentication.

Certificates are verified (unlike the campaign transport's opportunistic TLS to MX hosts):
a mailbox password must only ever go to the server it belongs to. ONE_TO_ONE_CA_FILE adds
certificates to trust for servers with a private CA.
"""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import models

from campaigns.extensions import extensions
from campaigns.models import ConnectedInbox, InboxKind, MailSecurity
from crm.encryption import UnreadableSecret


class Step(models.TextChoices):
    SETTINGS = "settings", "Settings"
    DNS = "dns", "DNS"
    TCP = "tcp", "Connection"
    TLS = "tls", "TLS"
    SERVER = "server", "Server"
    AUTH = "auth", "Authentication"
    FOLDER = "folder", "Folder"
    SENDING_DOMAIN = "sending_domain", "Sending domain"


class ConnectionProblem(Exception):
    """A mailbox server could not be used; `step` says where it failed, the message why."""

    def __init__(self, step: Step, message: str) -> None:
        super().__init__(f"{step.label}: {message}")
        self.step = step
        self.message = message


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.ONE_TO_ONE_CA_FILE:
        context.load_verify_locations(cafile=settings.ONE_TO_ONE_CA_FILE)
    return context


def _resolve(host: str, port: int) -> None:
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionProblem(
            Step.DNS, f"the name {host} could not be found in DNS ({exc.strerror}). Check the host name."
        ) from None
    except UnicodeError:
        raise ConnectionProblem(Step.DNS, f"{host!r} is not a valid host name.") from None


def _tcp_problem(host: str, port: int, exc: OSError) -> ConnectionProblem:
    if isinstance(exc, TimeoutError):
        return ConnectionProblem(
            Step.TCP,
            f"{host} did not answer on port {port} within {settings.ONE_TO_ONE_TIMEOUT_SECONDS} s. "
            "A firewall may be dropping the connection, or the port is wrong.",
        )
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionProblem(
            Step.TCP, f"{host} refused the connection on port {port}: nothing listens there. Check the port."
        )
    return ConnectionProblem(Step.TCP, f"could not connect to {host} on port {port}: {exc.strerror or exc}.")


def _tls_problem(host: str, exc: ssl.SSLError) -> ConnectionProblem:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectionProblem(
            Step.TLS,
            f"the certificate of {host} is not trusted ({exc.verify_message}). It may be self-signed, "
            "expired or made for another name: use the host name the provider gives, or ask your "
            "administrator to add the server's CA (ONE_TO_ONE_CA_FILE).",
        )
    reason = exc.reason or str(exc)
    if reason and "WRONG_VERSION_NUMBER" in reason:
        return ConnectionProblem(
            Step.TLS,
            f"{host} does not speak TLS from the start on this port. Choose STARTTLS (usually port 587 or 143).",
        )
    return ConnectionProblem(Step.TLS, f"the encrypted connection to {host} could not be set up ({reason}).")


def _reply(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(text.split())}".strip()


def open_smtp(inbox: ConnectedInbox) -> smtplib.SMTP:
    """A logged-in SMTP session with the inbox's own server; raises ConnectionProblem."""
    host, port, timeout = inbox.smtp_host, inbox.smtp_port, settings.ONE_TO_ONE_TIMEOUT_SECONDS
    if not host:
        raise ConnectionProblem(Step.SETTINGS, "no SMTP host is set.")
    _resolve(host, port)
    context = tls_context()
    try:
        if inbox.smtp_security == MailSecurity.TLS:
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
    except ssl.SSLError as exc:
        raise _tls_problem(host, exc) from None
    except smtplib.SMTPConnectError as exc:
        raise ConnectionProblem(
            Step.SERVER, f"{host} answered but refused the session: {_reply(exc.smtp_code, exc.smtp_error)}."
        ) from None
    except smtplib.SMTPServerDisconnected:
        raise ConnectionProblem(
            Step.SERVER, f"{host} closed the connection on port {port} without greeting: is this an SMTP port?"
        ) from None
    except OSError as exc:
        raise _tcp_problem(host, port, exc) from None
    try:
        _secure_and_log_in(client, inbox, context)
    except BaseException:
        client.close()
        raise
    return client


def _secure_and_log_in(client: smtplib.SMTP, inbox: ConnectedInbox, context: ssl.SSLContext) -> None:
    host = inbox.smtp_host
    try:
        client.ehlo()
        if inbox.smtp_security == MailSecurity.STARTTLS:
            if not client.has_extn("starttls"):
                raise ConnectionProblem(
                    Step.TLS,
                    f"{host} does not offer STARTTLS on port {inbox.smtp_port}, so the password would travel "
                    "unencrypted. Check the port, or choose TLS from the start (usually port 465).",
                )
            client.starttls(context=context)
            client.ehlo()
    except ssl.SSLError as exc:
        raise _tls_problem(host, exc) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise ConnectionProblem(Step.SERVER, f"{host} broke off the conversation: {exc}.") from None
    if not inbox.smtp_username:
        return
    try:
        client.login(inbox.smtp_username, inbox.smtp_password())
    except UnreadableSecret:
        raise ConnectionProblem(
            Step.AUTH, "the stored password cannot be decrypted with the current ENCRYPTION_KEYS: enter it again."
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise ConnectionProblem(
            Step.AUTH,
            f"{host} refused the user name or password for {inbox.smtp_username} "
            f"({_reply(exc.smtp_code, exc.smtp_error)}). Some providers want an app password.",
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise ConnectionProblem(
            Step.AUTH, f"{host} offers no log-in (AUTH) on this connection: check the security setting and port."
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise ConnectionProblem(Step.AUTH, f"logging in to {host} failed: {exc}.") from None


def open_imap(inbox: ConnectedInbox) -> imaplib.IMAP4:
    """A logged-in IMAP session with the inbox's IMAP account; raises ConnectionProblem."""
    host, port, timeout = inbox.imap_host, inbox.imap_port, settings.ONE_TO_ONE_TIMEOUT_SECONDS
    if not host:
        raise ConnectionProblem(Step.SETTINGS, "no IMAP host is set.")
    _resolve(host, port)
    context = tls_context()
    try:
        if inbox.imap_security == MailSecurity.TLS:
            client = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)
        else:
            client = imaplib.IMAP4(host, port, timeout=timeout)
    except ssl.SSLError as exc:
        raise _tls_problem(host, exc) from None
    except imaplib.IMAP4.error as exc:
        raise ConnectionProblem(Step.SERVER, f"{host} did not greet as an IMAP server on port {port}: {exc}.") from None
    except OSError as exc:
        raise _tcp_problem(host, port, exc) from None
    try:
        _secure_and_log_in_imap(client, inbox, context)
    except BaseException:
        client.shutdown()
        raise
    return client


def _secure_and_log_in_imap(client: imaplib.IMAP4, inbox: ConnectedInbox, context: ssl.SSLContext) -> None:
    host = inbox.imap_host
    if inbox.imap_security == MailSecurity.STARTTLS:
        if "STARTTLS" not in client.capabilities:
            raise ConnectionProblem(
                Step.TLS,
                f"{host} does not offer STARTTLS on port {inbox.imap_port}, so the password would travel "
                "unencrypted. Check the port, or choose TLS from the start (usually port 993).",
            )
        try:
            client.starttls(ssl_context=context)
        except ssl.SSLError as exc:
            raise _tls_problem(host, exc) from None
        except (imaplib.IMAP4.error, OSError) as exc:
            raise ConnectionProblem(Step.TLS, f"{host} refused STARTTLS: {exc}.") from None
    try:
        client.login(inbox.imap_username, inbox.imap_password())
    except UnreadableSecret:
        raise ConnectionProblem(
            Step.AUTH, "the stored IMAP password cannot be decrypted with the current ENCRYPTION_KEYS: enter it again."
        ) from None
    except imaplib.IMAP4.error as exc:
        raise ConnectionProblem(
            Step.AUTH,
            f"{host} refused the IMAP user name or password for {inbox.imap_username} ({_imap_text(exc)}).",
        ) from None
    except OSError as exc:
        raise ConnectionProblem(Step.SERVER, f"{host} broke off the conversation: {exc}.") from None


def _imap_text(exc: Exception) -> str:
    return _text(exc.args[0] if exc.args else "") or type(exc).__name__


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def select_folder(client: imaplib.IMAP4, inbox: ConnectedInbox, folder: str) -> int:
    """Open `folder` read-only (reading never changes its flags); return how many messages it holds."""
    status, data = client.select(_quoted(folder), readonly=True)
    if status != "OK":
        raise ConnectionProblem(
            Step.FOLDER,
            f"the folder {folder!r} cannot be opened on {inbox.imap_host} "
            f"({_text(data[0] if data else '')}). Check its name.",
        )
    return int(data[0] or 0)


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class ConnectionTest:
    ok: bool
    lines: list[str]

    def __str__(self) -> str:
        return " ".join(self.lines)


def check_connection(inbox: ConnectedInbox, *, now: datetime) -> ConnectionTest:
    """Try the inbox's way out (SMTP, or the hosted sending domain) and its IMAP account; keep the result."""
    lines = []
    ok = True
    if inbox.kind == InboxKind.HOSTED:
        check = extensions.check_from_address(inbox.from_email)
        if check.allowed:
            lines.append(f"Hosted sending: {inbox.from_email.rpartition('@')[2]} is a passing sending domain.")
        else:
            ok = False
            lines.append(f"{Step.SENDING_DOMAIN.label}: " + " ".join(check.problems))
    else:
        try:
            client = open_smtp(inbox)
        except ConnectionProblem as problem:
            ok = False
            lines.append(f"SMTP {problem}")
        else:
            secured = "encrypted" if isinstance(client.sock, ssl.SSLSocket) else "not encrypted"
            who = f", logged in as {inbox.smtp_username}" if inbox.smtp_username else ""
            lines.append(f"SMTP: connected to {inbox.smtp_host}:{inbox.smtp_port} ({secured}){who}.")
            close_smtp(client)
    if inbox.imap_host:
        try:
            imap = open_imap(inbox)
            count = select_folder(imap, inbox, inbox.imap_folder)
        except ConnectionProblem as problem:
            ok = False
            lines.append(f"IMAP {problem}")
        else:
            lines.append(
                f"IMAP: logged in to {inbox.imap_host} as {inbox.imap_username}; "
                f"{inbox.imap_folder} holds {count} message(s)."
            )
            close_imap(imap)
    inbox.last_test_at = now
    inbox.last_test_result = ("OK. " if ok else "Failed. ") + " ".join(lines)
    inbox.save(update_fields=["last_test_at", "last_test_result"])
    return ConnectionTest(ok, lines)


def close_smtp(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def close_imap(client: imaplib.IMAP4) -> None:
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError):
        client.shutdown()
