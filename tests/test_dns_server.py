from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest

from tests.dns_server import LocalDnsServer

# Six 300-byte strings: about 2,000 bytes of answer, far over the 512 bytes a plain UDP answer may carry.
LARGE_TXT = [f"record-{number}-" + "x" * 291 for number in range(6)]


@pytest.fixture
def dns_server() -> Iterator[LocalDnsServer]:
    server = LocalDnsServer()
    server.start()
    yield server
    server.stop()


def make_resolver(server: LocalDnsServer, *, lifetime: float = 1.0) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.host]
    resolver.port = server.port
    resolver.lifetime = lifetime
    return resolver


def resolve_texts(server: LocalDnsServer, name: str, rtype: str) -> list[str]:
    return sorted(rdata.to_text() for rdata in make_resolver(server).resolve(name, rtype))


def txt_strings(server: LocalDnsServer, name: str) -> list[tuple[bytes, ...]]:
    return sorted(rdata.strings for rdata in make_resolver(server).resolve(name, "TXT"))


def test_it_answers_a_and_aaaa_queries(dns_server: LocalDnsServer) -> None:
    dns_server.add("mail.example.com", "A", "192.0.2.1")
    dns_server.add("mail.example.com", "AAAA", "2001:db8::1")

    assert resolve_texts(dns_server, "mail.example.com", "A") == ["192.0.2.1"]
    assert resolve_texts(dns_server, "mail.example.com", "AAAA") == ["2001:db8::1"]


def test_it_answers_authoritatively(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "A", "192.0.2.1")

    response = make_resolver(dns_server).resolve("example.com", "A").response

    assert response.flags & dns.flags.AA


def test_it_answers_mx_records(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "MX", "10 mx1.example.com")
    dns_server.add("example.com.", "MX", "20 mx2.example.com.")

    assert resolve_texts(dns_server, "example.com", "MX") == ["10 mx1.example.com.", "20 mx2.example.com."]


def test_it_answers_ptr_records(dns_server: LocalDnsServer) -> None:
    dns_server.add("1.2.0.192.in-addr.arpa", "PTR", "mail.example.com")

    assert resolve_texts(dns_server, "1.2.0.192.in-addr.arpa", "PTR") == ["mail.example.com."]


def test_it_answers_a_txt_record(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 -all")

    assert txt_strings(dns_server, "example.com") == [(b"v=spf1 -all",)]


def test_it_splits_a_long_txt_string_into_255_byte_strings_of_one_record(dns_server: LocalDnsServer) -> None:
    key = "p=" + "A" * 400
    dns_server.add("sel._domainkey.example.com", "TXT", key)

    assert txt_strings(dns_server, "sel._domainkey.example.com") == [(key[:255].encode(), key[255:].encode())]


def test_it_serves_a_txt_record_made_of_the_given_strings(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "TXT", ["v=DKIM1; ", "p=abc"])

    assert txt_strings(dns_server, "example.com") == [(b"v=DKIM1; ", b"p=abc")]


def test_it_serves_two_txt_records_added_at_one_name(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 mx -all")
    dns_server.add("example.com", "TXT", "v=spf1 a -all")

    assert txt_strings(dns_server, "example.com") == [(b"v=spf1 a -all",), (b"v=spf1 mx -all",)]


def test_it_answers_nxdomain_for_an_unknown_name(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "A", "192.0.2.1")

    with pytest.raises(dns.resolver.NXDOMAIN):
        make_resolver(dns_server).resolve("other.example.com", "A")


def test_it_answers_nodata_for_a_name_without_that_type(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "A", "192.0.2.1")

    with pytest.raises(dns.resolver.NoAnswer):
        make_resolver(dns_server).resolve("example.com", "TXT")


def test_it_answers_nodata_for_an_empty_non_terminal(dns_server: LocalDnsServer) -> None:
    dns_server.add("sel._domainkey.example.com", "TXT", "v=DKIM1; p=abc")

    with pytest.raises(dns.resolver.NoAnswer):
        make_resolver(dns_server).resolve("_domainkey.example.com", "TXT")


def test_it_follows_a_cname_chain(dns_server: LocalDnsServer) -> None:
    dns_server.add("www.example.com", "CNAME", "web.example.com")
    dns_server.add("web.example.com", "CNAME", "host.example.net")
    dns_server.add("host.example.net", "A", "192.0.2.7")

    answer = make_resolver(dns_server).resolve("www.example.com", "A")

    assert [rdata.to_text() for rdata in answer] == ["192.0.2.7"]
    assert answer.canonical_name.to_text() == "host.example.net."


def test_it_answers_the_cname_itself_when_asked_for_a_cname(dns_server: LocalDnsServer) -> None:
    dns_server.add("www.example.com", "CNAME", "web.example.com")
    dns_server.add("web.example.com", "A", "192.0.2.7")

    assert resolve_texts(dns_server, "www.example.com", "CNAME") == ["web.example.com."]


def test_it_stops_following_a_cname_loop(dns_server: LocalDnsServer) -> None:
    dns_server.add("a.example.com", "CNAME", "b.example.com")
    dns_server.add("b.example.com", "CNAME", "a.example.com")
    query = dns.message.make_query("a.example.com", "A")

    response = dns.query.udp(query, dns_server.host, port=dns_server.port, timeout=1)

    assert [rrset.name.to_text() for rrset in response.answer] == ["a.example.com.", "b.example.com."]


def test_it_answers_servfail_for_a_failing_name(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 -all")
    dns_server.servfail("example.com")

    with pytest.raises(dns.resolver.NoNameservers):
        make_resolver(dns_server).resolve("example.com", "TXT")


def test_it_never_answers_a_silenced_name(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "TXT", "v=spf1 -all")
    dns_server.silence("example.com")

    with pytest.raises(dns.resolver.LifetimeTimeout):
        make_resolver(dns_server, lifetime=0.5).resolve("example.com", "TXT")


def test_it_never_answers_a_silenced_name_over_tcp(dns_server: LocalDnsServer) -> None:
    dns_server.silence("example.com")
    query = dns.message.make_query("example.com", "TXT")

    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(query, dns_server.host, port=dns_server.port, timeout=0.2)


def test_it_answers_over_tcp(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "A", "192.0.2.1")
    query = dns.message.make_query("example.com", "A")

    response = dns.query.tcp(query, dns_server.host, port=dns_server.port, timeout=1)

    assert [rdata.to_text() for rdata in response.answer[0]] == ["192.0.2.1"]


def test_it_truncates_a_large_udp_answer(dns_server: LocalDnsServer) -> None:
    for text in LARGE_TXT:
        dns_server.add("big.example.com", "TXT", text)
    query = dns.message.make_query("big.example.com", "TXT")

    response = dns.query.udp(query, dns_server.host, port=dns_server.port, timeout=1)

    assert response.flags & dns.flags.TC
    assert response.answer == []


def test_the_resolver_gets_a_large_answer_intact_over_tcp_after_truncation(dns_server: LocalDnsServer) -> None:
    for text in LARGE_TXT:
        dns_server.add("big.example.com", "TXT", text)

    answer = make_resolver(dns_server).resolve("big.example.com", "TXT")

    assert sorted(b"".join(rdata.strings).decode() for rdata in answer) == LARGE_TXT
    assert dns_server.queries == 2


def test_it_answers_a_large_answer_in_full_over_tcp(dns_server: LocalDnsServer) -> None:
    for text in LARGE_TXT:
        dns_server.add("big.example.com", "TXT", text)
    query = dns.message.make_query("big.example.com", "TXT")

    response = dns.query.tcp(query, dns_server.host, port=dns_server.port, timeout=1)

    assert sorted(b"".join(rdata.strings).decode() for rdata in response.answer[0]) == LARGE_TXT


def test_it_fits_a_large_answer_in_the_udp_payload_size_the_client_offers(dns_server: LocalDnsServer) -> None:
    for text in LARGE_TXT:
        dns_server.add("big.example.com", "TXT", text)
    query = dns.message.make_query("big.example.com", "TXT", use_edns=0, payload=4096)

    response = dns.query.udp(query, dns_server.host, port=dns_server.port, timeout=1)

    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == len(LARGE_TXT)


def test_it_matches_names_case_insensitively(dns_server: LocalDnsServer) -> None:
    dns_server.add("Mail.Example.COM.", "A", "192.0.2.1")
    dns_server.servfail("Broken.Example.com")

    assert resolve_texts(dns_server, "mail.example.com", "A") == ["192.0.2.1"]
    assert resolve_texts(dns_server, "MAIL.EXAMPLE.COM.", "A") == ["192.0.2.1"]
    with pytest.raises(dns.resolver.NoNameservers):
        make_resolver(dns_server).resolve("broken.EXAMPLE.com", "A")


def test_remove_deletes_one_type_or_every_record_at_a_name(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "A", "192.0.2.1")
    dns_server.add("example.com", "TXT", "v=spf1 -all")
    dns_server.add("example.com", "TXT", "other")

    dns_server.remove("example.com", "txt")
    with pytest.raises(dns.resolver.NoAnswer):
        make_resolver(dns_server).resolve("example.com", "TXT")
    assert resolve_texts(dns_server, "example.com", "A") == ["192.0.2.1"]

    dns_server.remove("EXAMPLE.com.")
    with pytest.raises(dns.resolver.NXDOMAIN):
        make_resolver(dns_server).resolve("example.com", "A")


def test_clear_forgets_records_and_special_behaviours(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "A", "192.0.2.1")
    dns_server.servfail("failing.example.com")
    dns_server.silence("silent.example.com")

    dns_server.clear()

    for name in ("example.com", "failing.example.com", "silent.example.com"):
        with pytest.raises(dns.resolver.NXDOMAIN):
            make_resolver(dns_server).resolve(name, "A")


def test_it_counts_answered_queries_but_not_silenced_ones(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "A", "192.0.2.1")
    dns_server.silence("silent.example.com")
    query = dns.message.make_query("silent.example.com", "A")

    make_resolver(dns_server).resolve("example.com", "A")
    with pytest.raises(dns.resolver.NXDOMAIN):
        make_resolver(dns_server).resolve("unknown.example.com", "A")
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(query, dns_server.host, port=dns_server.port, timeout=0.1)

    assert dns_server.queries == 2


def test_it_rejects_a_value_it_cannot_read() -> None:
    server = LocalDnsServer()

    with pytest.raises(ValueError, match="cannot read MX"):
        server.add("example.com", "MX", "mx.example.com")
    with pytest.raises(ValueError, match="cannot read A"):
        server.add("example.com", "A", "not-an-address")
    with pytest.raises(ValueError, match="cannot read TXT"):
        server.add("example.com", "TXT", ["x" * 256])
    with pytest.raises(ValueError, match="cannot read BOGUS"):
        server.add("example.com", "BOGUS", "1")
    with pytest.raises(TypeError):
        server.add("example.com", "A", ["192.0.2.1"])


def test_two_servers_get_different_ports() -> None:
    first, second = LocalDnsServer(), LocalDnsServer()
    first.start()
    second.start()
    try:
        assert first.port != second.port
    finally:
        first.stop()
        second.stop()


def test_stop_releases_the_port_quickly(dns_server: LocalDnsServer) -> None:
    dns_server.add("example.com", "A", "192.0.2.1")
    make_resolver(dns_server).resolve("example.com", "A")
    dns.query.tcp(dns.message.make_query("example.com", "A"), dns_server.host, port=dns_server.port, timeout=1)
    started = time.monotonic()

    dns_server.stop()

    assert time.monotonic() - started < 0.5
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((dns_server.host, dns_server.port))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        # Our closed connections linger in TIME_WAIT; SO_REUSEADDR is how any TCP server rebinds past them.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((dns_server.host, dns_server.port))
