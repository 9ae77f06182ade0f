"""An authoritative DNS server on loopback, serving records that tests and benchmarks write at runtime.

Plain module (no pytest) so benchmark scripts can import it too:

    server = LocalDnsServer()
    server.start()
    server.add("example.com", "TXT", "v=spf1 -all")
    ...
    server.stop()
"""

from __future__ import annotations

import errno
import socketserver
import threading
from collections import Counter

from dnslib import QTYPE, RCODE, RR, TXT, DNSError, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

# RFC 1035 §4.2.1: without EDNS0 a UDP answer may be at most 512 bytes.
CLASSIC_UDP_PAYLOAD = 512
# How often the serving loops look for a stop request; this bounds how long stop() takes.
POLL_INTERVAL = 0.005


def normalize_name(name: str) -> str:
    return name.lower().rstrip(".")


def split_txt(value: str | list[str]) -> list[bytes]:
    """Return the character-strings of one TXT record: a list as given, a str cut into 255-byte pieces."""
    if isinstance(value, list):
        return [item.encode() for item in value]
    data = value.encode()
    return [data[start : start + 255] for start in range(0, len(data), 255)] or [b""]


def build_record(name: str, rtype: str, value: str | list[str], ttl: int) -> RR:
    """Return the record for a value in presentation form; raise ValueError if it cannot be read."""
    if not isinstance(value, str) and rtype != "TXT":
        raise TypeError(f"only TXT takes a list of strings, not {rtype}")
    try:
        if rtype == "TXT":
            return RR(DNSLabel(name + "."), QTYPE.TXT, ttl=ttl, rdata=TXT(split_txt(value)))
        # dnslib's zone parser knows every type's presentation form and treats relative names as absolute.
        records = RR.fromZone(f"{name}. {ttl} IN {rtype} {value}")
    except (DNSError, IndexError, ValueError) as error:
        raise ValueError(f"cannot read {rtype} value {value!r}") from error
    if len(records) != 1 or QTYPE[records[0].rtype] != rtype:
        raise ValueError(f"cannot read {rtype} value {value!r}")
    return records[0]


class ZoneResolver(BaseResolver):
    """Answers authoritatively from records kept in memory; returns None for names that must go unanswered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, list[RR]] = {}
        # How many names with records lie at or below each name: NXDOMAIN vs NODATA in one lookup.
        self.below: Counter[str] = Counter()
        self.failing: set[str] = set()
        self.silenced: set[str] = set()
        self.queries = 0

    def add(self, name: str, rtype: str, value: str | list[str], ttl: int) -> None:
        key = normalize_name(name)
        record = build_record(key, rtype.upper(), value, ttl)
        with self.lock:
            if key not in self.records:
                self._count(key, 1)
            self.records.setdefault(key, []).append(record)

    def remove(self, name: str, rtype: str | None) -> None:
        key = normalize_name(name)
        with self.lock:
            kept = [] if rtype is None else [rr for rr in self.records.get(key, []) if QTYPE[rr.rtype] != rtype.upper()]
            if kept:
                self.records[key] = kept
            elif self.records.pop(key, None) is not None:
                # An emptied name must disappear, or it would still count as existing (NODATA, not NXDOMAIN).
                self._count(key, -1)

    def _count(self, key: str, change: int) -> None:
        labels = key.split(".")
        for start in range(len(labels)):
            self.below[".".join(labels[start:])] += change

    def servfail(self, name: str) -> None:
        with self.lock:
            self.failing.add(normalize_name(name))

    def silence(self, name: str) -> None:
        with self.lock:
            self.silenced.add(normalize_name(name))

    def clear(self) -> None:
        with self.lock:
            self.records.clear()
            self.below.clear()
            self.failing.clear()
            self.silenced.clear()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord | None:
        qname = normalize_name(str(request.q.qname))
        qtype = request.q.qtype
        with self.lock:
            if qname in self.silenced:
                return None
            self.queries += 1
            reply = request.reply(ra=0, aa=1)
            if qname in self.failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            self.add_answers(reply, qname, qtype)
            if not reply.rr and not self.exists(qname):
                reply.header.rcode = RCODE.NXDOMAIN
            return reply

    def add_answers(self, reply: DNSRecord, qname: str, qtype: int) -> None:
        name, seen = qname, set()
        while name not in seen:
            seen.add(name)
            records = self.records.get(name, [])
            matching = [rr for rr in records if rr.rtype == qtype]
            if matching:
                reply.add_answer(*matching)
                return
            cname = next((rr for rr in records if rr.rtype == QTYPE.CNAME), None)
            if cname is None:
                return
            reply.add_answer(cname)
            name = normalize_name(str(cname.rdata.label))

    def exists(self, name: str) -> bool:
        # A name with nothing of its own but records below it is an empty non-terminal: it exists (RFC 8020).
        return self.below[name] > 0


class Silenced(DNSError):
    """Raised to make dnslib's handler send nothing: it swallows DNSError and only logs it (to our quiet logger)."""


class ZoneHandler(DNSHandler):
    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        if reply is None:
            if self.protocol == "tcp":
                self.hold_until_hangup()
            raise Silenced("silenced name")
        packed = reply.pack()
        if self.protocol == "udp" and len(packed) > udp_payload_size(request):
            # dnslib's own DNSRecord.truncate() drops the question too, and dnspython ignores such a reply
            # as not matching its query; keep the question so the client sees TC and retries over TCP.
            truncated = request.reply(ra=0, aa=1)
            truncated.header.tc = 1
            truncated.header.rcode = reply.header.rcode
            packed = truncated.pack()
        return packed

    def hold_until_hangup(self) -> None:
        # Closing the connection would make a TCP client fail fast with EOF; a dead server makes it time out.
        self.request.settimeout(POLL_INTERVAL)
        while not self.server.stopping.is_set():
            try:
                if not self.request.recv(512):
                    return
            except TimeoutError:
                continue


def udp_payload_size(request: DNSRecord) -> int:
    # The OPT pseudo-record carries the client's UDP payload size in its class field (RFC 6891 §6.1.2).
    sizes = [rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT]
    return max([CLASSIC_UDP_PAYLOAD, *sizes])


class QuietLogger(DNSLogger):
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


class UDPServer(socketserver.UDPServer):
    # Unlike dnslib's, no thread per datagram: a UDP answer never blocks (silence just drops it), and
    # answering inline doubles the throughput a benchmark sees.
    # dnslib's also sets SO_REUSEADDR, which on Linux lets two UDP sockets share a port: two servers
    # could then bind the same port and steal each other's queries instead of failing to bind.
    allow_reuse_address = False


class LocalDnsServer:
    """A DNS server on one random loopback port, answering UDP and TCP until stop()."""

    host: str = "127.0.0.1"

    def __init__(self) -> None:
        self.port = 0
        self.resolver = ZoneResolver()
        self.servers: list[DNSServer] = []
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()

    @property
    def queries(self) -> int:
        return self.resolver.queries

    def start(self) -> None:
        """Bind UDP and TCP on the same free port and serve; queries are answered as soon as this returns."""
        self.stopping.clear()
        self.servers = self.bind()
        self.port = self.servers[0].server.server_address[1]
        for protocol, dns_server in zip(("udp", "tcp"), self.servers, strict=True):
            dns_server.server.stopping = self.stopping
            thread = threading.Thread(
                target=dns_server.server.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL},
                name=f"dns-{protocol}-{self.port}",
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)

    def bind(self) -> list[DNSServer]:
        # The kernel only promises the port free for UDP; TCP may already use it, so try again on a collision.
        for _attempt in range(50):
            udp = DNSServer(self.resolver, self.host, 0, logger=QuietLogger(), handler=ZoneHandler, server=UDPServer)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(self.resolver, self.host, port, tcp=True, logger=QuietLogger(), handler=ZoneHandler)
            except OSError as error:
                udp.server.server_close()
                if error.errno != errno.EADDRINUSE:
                    raise
                continue
            return [udp, tcp]
        raise OSError(errno.EADDRINUSE, "no port free for both UDP and TCP on " + self.host)

    def stop(self) -> None:
        """Stop serving, release the port and join the serving threads."""
        self.stopping.set()
        for dns_server in self.servers:
            dns_server.server.shutdown()
            dns_server.server.server_close()
        for thread in self.threads:
            thread.join()
        self.servers = []
        self.threads = []

    def add(self, name: str, rtype: str, value: str | list[str], ttl: int = 300) -> None:
        """Add one record; adding twice at the same name and type makes two records."""
        self.resolver.add(name, rtype, value, ttl)

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove the records of that type at name, or all of them when rtype is None."""
        self.resolver.remove(name, rtype)

    def servfail(self, name: str) -> None:
        """Answer every query for exactly this name with SERVFAIL."""
        self.resolver.servfail(name)

    def silence(self, name: str) -> None:
        """Never answer queries for exactly this name, so that clients time out."""
        self.resolver.silence(name)

    def clear(self) -> None:
        """Forget all records, SERVFAIL names and silenced names."""
        self.resolver.clear()
