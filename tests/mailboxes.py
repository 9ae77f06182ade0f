"""A staff member's mailbox on loopback: an SMTP server with AUTH and STARTTLS (aiosmtpd) and a
small IMAP4rev1 server, both with a self-signed certificate the test makes.

Why a Python IMAP server and not Debian's dovecot: dovecot wants to run its login and mail
processes as dedicated system users, which a CI run as root and a developer's unprivileged
shell would each need set up differently; this server starts in milliseconds on port 0, needs
no package, and speaks the part of RFC 3501 that Python's imaplib (our client) uses — LOGIN,
STARTTLS, implicit TLS, EXAMINE/SELECT with UIDVALIDITY, UID SEARCH (UID ranges, SINCE),
UID FETCH BODY.PEEK[] with literals, APPEND with a literal — over a real TCP connection.
It records every command, so a test can show the client never changes the staff member's flags.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MAILBOX_LOGIN = "ann@sales.example.com"
MAILBOX_PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile=str(self.cert), keyfile=str(self.key))
        return context


def make_certificate(directory: Path) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "mailbox-cert.pem", directory / "mailbox-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(cert_path, key_path)


# --- SMTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    sender: str
    recipients: list[str]
    data: bytes
    login: str


class MailboxSmtpServer:
    """A provider's submission server: STARTTLS first, then AUTH, then mail.

    Recipients whose local part starts with `nobody` are refused as unknown users at RCPT.
    """

    def __init__(self, *, certificate: Certificate, username: str, password: str, smtputf8: bool = True) -> None:
        self.certificate = certificate
        self.username = username
        self.password = password
        self.smtputf8 = smtputf8
        self.port = 0
        self.received: list[Delivered] = []
        self._controller: _Controller | None = None

    def start(self) -> None:
        self._controller = _Controller(
            self,
            hostname="127.0.0.1",
            port=0,
            server_hostname="mail.localhost",
            tls_context=self.certificate.server_context(),
            require_starttls=True,
            auth_require_tls=True,
            authenticator=self._authenticate,
            enable_SMTPUTF8=self.smtputf8,
        )
        self._controller.start()
        self.port = self._controller.port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options) -> str:
        if address.partition("@")[0].lower().startswith("nobody"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else ""
        self.received.append(Delivered(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, login))
        return "250 2.0.0 Ok: queued as 4XyZ1"


class _Controller(Controller):
    """aiosmtpd's controller, listening on port 0 and reporting the port it got."""

    async def _create_server(self) -> asyncio.AbstractServer:  # type: ignore[override]
        server = await self.loop.create_server(self._factory_invoker, host=self.hostname, port=self.port)
        self.port = server.sockets[0].getsockname()[1]
        return server


# --- IMAP -------------------------------------------------------------------------------------

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"|(\([^)]*\))|([^\s()"]+)')
_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


@dataclass
class StoredMessage:
    uid: int
    data: bytes
    internal_date: dt.datetime
    flags: set[str] = field(default_factory=set)


class MailboxImapServer:
    """One IMAP account with folders, on loopback; `tls`: implicit TLS, else plain with STARTTLS."""

    UID_VALIDITY = 1_700_000_001

    def __init__(self, *, certificate: Certificate, username: str, password: str, tls: bool = True) -> None:
        self.certificate = certificate
        self.username = username
        self.password = password
        self.tls = tls
        self.folders: dict[str, list[StoredMessage]] = {"INBOX": [], "Sent": []}
        self.commands: list[str] = []
        self.port = 0
        self._next_uid = 1
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    def add(self, folder: str, data: bytes, *, internal_date: dt.datetime | None = None) -> int:
        """Put a message in a folder as delivered mail; return its UID."""
        with self._lock:
            uid = self._next_uid
            self._next_uid += 1
            when = internal_date or dt.datetime.now(dt.UTC)
            crlf = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            self.folders.setdefault(folder, []).append(StoredMessage(uid, crlf, when))
            return uid

    def start(self) -> None:
        owner = self

        class Handler(_ImapSession):
            server_owner = owner

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _ImapSession(socketserver.StreamRequestHandler):
    server_owner: MailboxImapServer
    timeout = 10

    def setup(self) -> None:
        if self.server_owner.tls:
            self.request = self.server_owner.certificate.server_context().wrap_socket(self.request, server_side=True)
            self.connection = self.request
        super().setup()
        self.logged_in = False
        self.selected: str | None = None
        self.secure = self.server_owner.tls

    def send(self, line: str | bytes) -> None:
        self.request.sendall((line.encode() if isinstance(line, str) else line) + b"\r\n")

    def capabilities(self) -> str:
        words = ["IMAP4rev1", "UIDPLUS"]
        if not self.secure:
            words.append("STARTTLS")
        return " ".join(words)

    def handle(self) -> None:
        self.send(f"* OK [CAPABILITY {self.capabilities()}] Test IMAP ready")
        while True:
            try:
                line = self.rfile.readline(65536)
            except (OSError, ssl.SSLError):
                return
            if not line:
                return
            literal = _LITERAL.search(line)
            if literal:
                self.send("+ Ready for literal data")
                payload = self.rfile.read(int(literal.group(1)))
                rest = self.rfile.readline(65536)
                line = line[: literal.start()] + b"{literal}" + rest
            else:
                payload = b""
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            command, _, arguments = rest.partition(b" ")
            name = command.decode().upper()
            if name == "UID":
                sub, _, arguments = arguments.partition(b" ")
                name = f"UID {sub.decode().upper()}"
            self.server_owner.commands.append(f"{name} {arguments.decode(errors='replace')}".strip())
            if not self.dispatch(tag.decode(), name, arguments, payload):
                return

    def dispatch(self, tag: str, name: str, arguments: bytes, payload: bytes) -> bool:
        args = [_unquote(match) for match in _TOKEN.finditer(arguments)]
        if name == "CAPABILITY":
            self.send(f"* CAPABILITY {self.capabilities()}")
            self.send(f"{tag} OK CAPABILITY completed")
        elif name == "NOOP":
            self.send(f"{tag} OK NOOP completed")
        elif name == "LOGOUT":
            self.send("* BYE Logging out")
            self.send(f"{tag} OK LOGOUT completed")
            return False
        elif name == "STARTTLS" and not self.secure:
            self.send(f"{tag} OK Begin TLS negotiation now")
            self.request = self.server_owner.certificate.server_context().wrap_socket(self.request, server_side=True)
            self.connection = self.request
            self.rfile = self.request.makefile("rb")
            self.secure = True
        elif name == "LOGIN":
            owner = self.server_owner
            if len(args) == 2 and args[0].decode() == owner.username and args[1].decode() == owner.password:
                self.logged_in = True
                self.send(f"{tag} OK [CAPABILITY {self.capabilities()}] Logged in")
            else:
                self.send(f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed.")
        elif not self.logged_in:
            self.send(f"{tag} BAD Log in first")
        elif name in {"SELECT", "EXAMINE"}:
            self.select(tag, name, args[0].decode() if args else "")
        elif name == "UID SEARCH":
            self.search(tag, args)
        elif name == "UID FETCH":
            self.fetch(tag, args)
        elif name == "APPEND":
            self.append(tag, args, payload)
        else:
            self.send(f"{tag} BAD Command not supported here: {name}")
        return True

    def select(self, tag: str, name: str, folder: str) -> None:
        messages = self.server_owner.folders.get(folder)
        if messages is None:
            self.send(f"{tag} NO [NONEXISTENT] Mailbox doesn't exist: {folder}")
            return
        self.selected = folder
        self.send(r"* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)")
        self.send(f"* {len(messages)} EXISTS")
        self.send("* 0 RECENT")
        self.send(f"* OK [UIDVALIDITY {MailboxImapServer.UID_VALIDITY}] UIDs valid")
        self.send(f"* OK [UIDNEXT {self.server_owner._next_uid}] Predicted next UID")
        mode = "READ-ONLY" if name == "EXAMINE" else "READ-WRITE"
        self.send(f"{tag} OK [{mode}] {name} completed")

    def _messages(self) -> list[StoredMessage]:
        return self.server_owner.folders.get(self.selected or "", [])

    def search(self, tag: str, args: list[bytes]) -> None:
        messages = self._messages()
        words = [arg.decode().upper() for arg in args]
        found = list(messages)
        if words[:1] == ["UID"] and len(words) > 1:
            low, _, high = words[1].partition(":")
            top = max((m.uid for m in messages), default=0)
            start = int(low)
            end = top if high == "*" else int(high or low)
            # RFC 3501: "n:*" with n above the highest UID still matches the highest.
            found = [m for m in messages if min(start, end) <= m.uid <= max(start, end)]
        elif words[:1] == ["SINCE"] and len(words) > 1:
            day, month, year = words[1].split("-")
            since = dt.date(int(year), _MONTHS.index(month.capitalize()) + 1, int(day))
            found = [m for m in messages if m.internal_date.date() >= since]
        self.send("* SEARCH " + " ".join(str(m.uid) for m in found))
        self.send(f"{tag} OK SEARCH completed")

    def fetch(self, tag: str, args: list[bytes]) -> None:
        wanted = {int(uid) for uid in args[0].decode().split(",")} if args else set()
        item = args[1].decode().upper() if len(args) > 1 else ""
        for number, message in enumerate(self._messages(), start=1):
            if message.uid not in wanted:
                continue
            if "BODY.PEEK[]" not in item:
                message.flags.add("\\Seen")  # BODY[] or RFC822 marks the message read (RFC 3501 6.4.5)
            self.send(f"* {number} FETCH (UID {message.uid} BODY[] {{{len(message.data)}}}".encode())
            self.request.sendall(message.data)
            self.send(")")
        self.send(f"{tag} OK FETCH completed")

    def append(self, tag: str, args: list[bytes], payload: bytes) -> None:
        folder = args[0].decode() if args else ""
        if folder not in self.server_owner.folders:
            self.send(f"{tag} NO [TRYCREATE] Mailbox doesn't exist: {folder}")
            return
        date = next((arg.decode() for arg in args[1:] if arg[:1].isdigit() or arg[:1] == b" "), "")
        when = _internal_date(date) or dt.datetime.now(dt.UTC)
        uid = self.server_owner.add(folder, payload, internal_date=when)
        flags = next((arg.decode() for arg in args[1:] if arg.startswith(b"(")), "")
        if flags:
            self.server_owner.folders[folder][-1].flags.update(flags.strip("()").split())
        self.send(f"{tag} OK [APPENDUID {MailboxImapServer.UID_VALIDITY} {uid}] APPEND completed")


def _unquote(match: re.Match[bytes]) -> bytes:
    quoted, listed, atom = match.groups()
    if quoted is not None:
        return re.sub(rb"\\(.)", rb"\1", quoted)
    return listed if listed is not None else atom


def _internal_date(value: str) -> dt.datetime | None:
    # "02-Nov-2026 09:30:00 +0000"
    try:
        day, month, rest = value.split("-", 2)
        return parsedate_to_datetime(f"{day} {month} {rest}")
    except (ValueError, TypeError):
        return None
