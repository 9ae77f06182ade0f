"""DNS checks of 1,000 sending domains against a bare loop of the same DNS queries.

Generates 1,000 sending domains from a fixed pattern (direct SMTP with our sending IPs and
reverse DNS, the nine ESPs with their SPF includes, nested as the real ones are, and their
DKIM CNAMEs, our own RSA and Ed25519 keys, DMARC at none, quarantine and reject, and 15 % of
domains broken in one of ten common ways) and publishes all their records in one
LocalDnsServer (tests/dns_server.py). The server runs in a child process, so it answers on
the other core instead of taking the GIL from the checks; --server-in-process runs it as a
thread of this process instead, for comparison.

An untimed first pass runs the checks with a resolver that records every (name, type) it is
asked for, checkdmarc's queries included. Then, in rounds, against the same server:

- bare: a plain dnspython Resolver.resolve loop over exactly that list of queries (the
  baseline; it is the only code here that builds its own resolver);
- run_checks for every domain: the same DNS queries plus the judging, no writes;
- check_domain for every domain: run_checks plus the history rows, alerts and status.

Usage: python bench/dns_checks.py [--domains 1000] [--rounds 1] [--server-in-process] [--database-url postgres://…]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from common import configure_django, ensure_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/deliverwell_bench_dns"
DOMAINS = 1000
SENDING_IPS = ["192.0.2.10", "192.0.2.11"]
BOUNCE_MX_HOST = "bounces.mta.deliverwell.example"
REPORTS = "reports.dmarc-service.example"  # an outside DMARC report service
ESP_TRANSPORTS = [
    "amazon_ses",
    "brevo",
    "mailgun",
    "mailjet",
    "mandrill",
    "postmark",
    "resend",
    "sendgrid",
    "sparkpost",
]
BROKEN = [
    "no SPF record",
    "two SPF records",
    "SPF +all",
    "SPF over 10 lookups",
    "DKIM key not published",
    "DKIM wrong key published",
    "no DMARC record",
    "From domain is a CNAME",
    "nothing published (NXDOMAIN)",
    "DMARC server fails (SERVFAIL)",
]
DMARC_STAGES = ["p=none", "p=quarantine; pct=25", "p=quarantine", "p=reject"]
GOOGLE = "include:_spf.google.com"
BARE = "bare dnspython loop (baseline)"

# Records every domain shares: reverse DNS of our sending IPs, the ESPs' SPF includes (with
# documentation addresses; nested like the real ones), Google Workspace's include chain, and
# the report service's wildcard authorization (RFC 7489 section 7.1).
SHARED_RECORDS = [
    ("10.2.0.192.in-addr.arpa", "PTR", "mta1.deliverwell.example"),
    ("11.2.0.192.in-addr.arpa", "PTR", "mta2.deliverwell.example"),
    ("mta1.deliverwell.example", "A", "192.0.2.10"),
    ("mta2.deliverwell.example", "A", "192.0.2.11"),
    (BOUNCE_MX_HOST, "A", "192.0.2.25"),
    ("amazonses.com", "TXT", "v=spf1 ip4:199.255.192.0/22 ip4:199.127.232.0/22 ip4:54.240.0.0/18 -all"),
    ("spf.brevo.com", "TXT", "v=spf1 ip4:1.179.112.0/20 ip4:172.246.240.0/20 include:spf.sendinblue.com ~all"),
    ("spf.sendinblue.com", "TXT", "v=spf1 ip4:185.41.28.0/22 ip4:185.107.232.0/22 ~all"),
    ("mailgun.org", "TXT", "v=spf1 include:_spf.mailgun.org include:_spf.eu.mailgun.org ~all"),
    ("_spf.mailgun.org", "TXT", "v=spf1 ip4:209.61.151.0/24 ip4:166.78.68.0/22 ip4:198.61.254.0/23 ~all"),
    ("_spf.eu.mailgun.org", "TXT", "v=spf1 ip4:141.193.32.0/23 ip4:159.135.140.80/29 ~all"),
    ("spf.mailjet.com", "TXT", "v=spf1 ip4:185.189.236.0/22 ip4:185.211.120.0/22 ip4:87.253.232.0/21 ~all"),
    ("spf.mandrillapp.com", "TXT", "v=spf1 ip4:198.2.128.0/18 ip4:148.105.8.0/21 ~all"),
    ("spf.mtasv.net", "TXT", "v=spf1 ip4:50.31.156.96/27 ip4:104.245.209.192/26 ~all"),
    ("sendgrid.net", "TXT", "v=spf1 ip4:167.89.0.0/17 ip4:208.117.48.0/20 ip4:50.31.32.0/19 ~all"),
    ("_spf.sparkpostmail.com", "TXT", "v=spf1 include:_netblocks.sparkpostmail.com ~all"),
    ("_netblocks.sparkpostmail.com", "TXT", "v=spf1 ip4:192.174.80.0/20 ip4:147.253.208.0/20 ~all"),
    ("_spf.google.com", "TXT", "v=spf1 include:_netblocks.google.com include:_netblocks2.google.com ~all"),
    ("_netblocks.google.com", "TXT", "v=spf1 ip4:35.190.247.0/24 ip4:64.233.160.0/19 ip4:66.102.0.0/20 ~all"),
    ("_netblocks2.google.com", "TXT", "v=spf1 ip6:2001:4860:4000::/36 ip6:2404:6800:4000::/36 ~all"),
    (f"*._report._dmarc.{REPORTS}", "TXT", "v=DMARC1"),
    (REPORTS, "MX", f"10 mx.{REPORTS}"),
    (f"mx.{REPORTS}", "A", "198.51.100.30"),
]
TOO_MANY_LOOKUPS = (
    f"v=spf1 a mx {GOOGLE} include:sendgrid.net include:mailgun.org include:spf.brevo.com "
    "include:_spf.sparkpostmail.com include:spf.mtasv.net ~all"
)


# The domains ------------------------------------------------------------------------------


@dataclass
class Key:
    selector: str
    algorithm: str = "rsa"
    template: int = 0  # which generated key pair it reuses
    state: str = "active"
    cname_target: str = ""


@dataclass
class Spec:
    """One generated sending domain: its fields, its DKIM selectors and what DNS serves for it."""

    fields: dict
    profile: str
    keys: list[Key] = field(default_factory=list)
    records: list[tuple[str, str, str]] = field(default_factory=list)
    servfail: list[str] = field(default_factory=list)
    published_keys: list[tuple[str, str, int]] = field(default_factory=list)  # (name, algorithm, template)


def build_spec(n: int) -> Spec:
    """Domain number n: 40 % direct SMTP, 45 % one of the nine ESPs, 15 % broken."""
    org = f"brand{n:04d}.example"
    domain = f"{['news', 'mail', 'email', 'info'][n % 4]}.{org}"
    kind = n % 20
    stage = DMARC_STAGES[n // 20 % 4]
    if kind < 8:
        spec = _direct_smtp(n, org, domain)
    elif kind < 17:
        spec = _esp(n, org, domain, ESP_TRANSPORTS[kind - 8])
    else:
        spec = _direct_smtp(n, org, domain)
    rua = f"mailto:rua@{REPORTS}" if n % 4 == 0 else f"mailto:dmarc@{org}"
    dmarc_name = f"_dmarc.{domain}" if n % 2 else f"_dmarc.{org}"
    spec.records += [
        (domain, "MX", f"10 mx.{org}"),
        (org, "MX", f"10 mx.{org}"),
        (f"mx.{org}", "A", "198.51.100.25"),
        (dmarc_name, "TXT", f"v=DMARC1; {stage}; rua={rua}"),
    ]
    if stage == "p=reject" and n % 3 == 0:
        spec.fields["bimi_logo_url"] = f"https://{org}/logo.svg"
        certificate = f"; a=https://{org}/vmc.pem" if n % 2 else ""
        spec.records.append((f"default._bimi.{domain}", "TXT", f"v=BIMI1; l=https://{org}/logo.svg{certificate}"))
    if kind >= 17:
        _break(spec, BROKEN[n // 20 % len(BROKEN)], org, domain)
    spec.fields.update(domain=domain, content_domains=f"www.{org}\nblog.{org}")
    return spec


def _direct_smtp(n: int, org: str, domain: str) -> Spec:
    spec = Spec(fields={"transport": "smtp"}, profile="direct SMTP")
    spf = [
        "v=spf1 ip4:192.0.2.0/24 -all",
        "v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 mx ~all",
        f"v=spf1 include:_spf.{org} ~all",
        f"v=spf1 ip4:192.0.2.0/24 {GOOGLE} ~all",
    ][n % 4]
    spec.records += [(domain, "TXT", spf), (domain, "TXT", f"google-site-verification=bench{n:04d}")]
    spec.records.append((f"_spf.{org}", "TXT", "v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 ~all"))
    spec.keys.append(Key("dw202611r", template=n % 4))
    if n % 5 == 0:
        spec.keys.append(Key("dw202611e", algorithm="ed25519"))
    if n % 8 == 3:  # a rotation under way: the new key is published, not signing yet
        spec.keys.append(Key("dw202612r", template=(n + 1) % 4, state="pending"))
    spec.published_keys = [(f"{k.selector}._domainkey.{domain}", k.algorithm, k.template) for k in spec.keys]
    if n % 4 == 1:
        spec.fields.update(sender_type="dedicated", return_path_domain=f"bounces.{domain}")
        # SPF is checked where the envelope is: the return-path domain.
        spec.records += [(f"bounces.{domain}", "MX", f"10 {BOUNCE_MX_HOST}"), (f"bounces.{domain}", "TXT", spf)]
    return spec


def _esp(n: int, org: str, domain: str, transport: str) -> Spec:
    from deliverability.esps import ESPS

    esp = ESPS[transport]
    spec = Spec(fields={"transport": transport}, profile=f"ESP ({transport})")
    includes = f"{GOOGLE} include:{esp.spf_include}" if n % 3 == 0 else f"include:{esp.spf_include}"
    spec.records.append((domain, "TXT", f"v=spf1 {includes} ~all"))
    for number in (1, 2):
        target = f"{transport}{number}.dkim.u{n:04d}.{esp.envelope_domain}"
        spec.keys.append(Key(f"{transport}{number}", cname_target=target))
        spec.records.append((f"{transport}{number}._domainkey.{domain}", "CNAME", target))
        spec.published_keys.append((target, "rsa", (n + number) % 4))
    if n % 5 == 0:
        target = f"u{n:04d}.bounces.{esp.envelope_domain}"
        spec.fields.update(sender_type="dedicated", return_path_domain=f"bounces.{domain}", return_path_target=target)
        spec.records.append((f"bounces.{domain}", "CNAME", target))
        spec.records.append((target, "TXT", f"v=spf1 include:{esp.spf_include} ~all"))
    return spec


def _break(spec: Spec, how: str, org: str, domain: str) -> None:
    spec.profile = f"broken: {how}"
    envelope = spec.fields.get("return_path_domain") or domain
    spf = [r for r in spec.records if r[0] == envelope and r[1] == "TXT" and r[2].startswith("v=spf1")]
    if how == "no SPF record":
        spec.records.remove(spf[0])
    elif how == "two SPF records":
        spec.records.append((envelope, "TXT", "v=spf1 include:sendgrid.net ~all"))
    elif how == "SPF +all":
        spec.records.remove(spf[0])
        spec.records.append((envelope, "TXT", "v=spf1 ip4:192.0.2.0/24 +all"))
    elif how == "SPF over 10 lookups":
        spec.records.remove(spf[0])
        spec.records.append((envelope, "TXT", TOO_MANY_LOOKUPS))
    elif how == "DKIM key not published":
        spec.published_keys = []
    elif how == "DKIM wrong key published":
        spec.published_keys = [(name, kind, (template + 1) % 4) for name, kind, template in spec.published_keys]
    elif how == "no DMARC record":
        spec.records = [r for r in spec.records if not r[0].startswith("_dmarc.")]
    elif how == "From domain is a CNAME":
        spec.records = [r for r in spec.records if r[0] != domain]
        spec.records += [(domain, "CNAME", f"{org}.cdn.example"), (f"{org}.cdn.example", "A", "198.51.100.80")]
    elif how == "nothing published (NXDOMAIN)":
        spec.records, spec.published_keys = [], []
    elif how == "DMARC server fails (SERVFAIL)":
        spec.servfail.append(f"_dmarc.{domain}")


def create_domains(specs: list[Spec]) -> tuple[list, float]:
    """Write the domains and their keys; returns the domains and the seconds spent generating key pairs."""
    from django.utils import timezone

    from deliverability import signing
    from deliverability.models import DkimKey, KeyState, SendingDomain

    domains = []
    for spec in specs:
        domain = SendingDomain(**spec.fields)
        domain.full_clean()
        domains.append(domain)
    SendingDomain.objects.bulk_create(domains)
    # RSA-2048 generation takes ~0.1 s a key: four pairs (and one Ed25519 pair) are made through
    # create_key, on the first domain, and their stored values are reused by every other domain.
    started = time.perf_counter()
    now = timezone.now()
    templates = {("rsa", t): signing.create_key(domains[0], algorithm="rsa", now=now) for t in range(4)}
    templates["ed25519", 0] = signing.create_key(domains[0], algorithm="ed25519", now=now)
    keygen_seconds = time.perf_counter() - started
    DkimKey.objects.filter(domain=domains[0]).delete()
    keys = []
    for domain, spec in zip(domains, specs, strict=True):
        for key in spec.keys:
            template = templates[key.algorithm, key.template if key.algorithm == "rsa" else 0]
            keys.append(
                DkimKey(
                    domain=domain,
                    selector=key.selector,
                    algorithm=key.algorithm,
                    key_bits=None if key.cname_target else template.key_bits,
                    public_key="" if key.cname_target else template.public_key,
                    private_key_encrypted="" if key.cname_target else template.private_key_encrypted,
                    cname_target=key.cname_target,
                    state=KeyState(key.state),
                    activated_at=now if key.state == "active" else None,
                )
            )
    DkimKey.objects.bulk_create(keys)
    for spec in specs:
        spec.records += [
            (name, "TXT", templates[algorithm, template if algorithm == "rsa" else 0].record_value())
            for name, algorithm, template in spec.published_keys
        ]
    return domains, keygen_seconds


# The DNS server ---------------------------------------------------------------------------


def start_server(records: list, servfail: list[str]):
    from tests.dns_server import LocalDnsServer

    server = LocalDnsServer()
    server.start()
    for name, rtype, value in records:
        server.add(name, rtype, value)
    for name in servfail:
        server.servfail(name)
    return server


def serve_dns(records: list, servfail: list[str], conn) -> None:
    """Child process: serve the records until told to stop, answering query counts on request."""
    server = start_server(records, servfail)
    conn.send(server.port)
    while conn.recv() != "stop":
        conn.send(server.queries)
    server.stop()


class DnsServerProcess:
    def __init__(self, records: list, servfail: list[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve_dns, args=(records, servfail, child), daemon=True)
        self.process.start()
        self.port = self.conn.recv()

    @property
    def queries(self) -> int:
        self.conn.send("queries")
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(timeout=10)


class DnsServerThread:
    def __init__(self, records: list, servfail: list[str]) -> None:
        self.server = start_server(records, servfail)
        self.port = self.server.port

    @property
    def queries(self) -> int:
        return self.server.queries

    def stop(self) -> None:
        self.server.stop()


# Timing -----------------------------------------------------------------------------------


@dataclass
class Recording:
    queries: list[tuple[str, str]] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)  # overall status: domains
    records: Counter = field(default_factory=Counter)  # (record, status): domains
    seconds: float = 0.0
    dns_seconds: float = 0.0
    sql_seconds: float = 0.0
    statements: int = 0
    from_checkdmarc: int = 0


def record_checks(domains: list) -> Recording:
    """Run the checks once through a resolver that notes and times every query, timing SQL too."""
    from django.db import connection

    from deliverability import dns_checks

    seen = Recording()
    using = dns_checks.resolver()
    resolve = using.resolve

    def noting(qname, rdtype="A", *args, **kwargs):
        seen.queries.append((str(qname), str(rdtype)))
        # dns_checks.lookup makes the checks' own queries; the others come from checkdmarc.
        seen.from_checkdmarc += sys._getframe(1).f_code.co_name != "lookup"
        started = time.perf_counter()
        try:
            return resolve(qname, rdtype, *args, **kwargs)
        finally:
            seen.dns_seconds += time.perf_counter() - started

    def timing(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            seen.sql_seconds += time.perf_counter() - started
            seen.statements += 1

    using.resolve = noting
    started = time.perf_counter()
    with connection.execute_wrapper(timing):
        for domain in domains:
            results = dns_checks.run_checks(domain, using=using)
            seen.statuses[dns_checks.overall_status(results)] += 1
            seen.records.update((r.record, r.status) for r in results)
    seen.seconds = time.perf_counter() - started
    return seen


def bare_loop(queries: list[tuple[str, str]]) -> None:
    import dns.resolver
    from django.conf import settings

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = list(settings.DNS_NAMESERVERS)
    resolver.port = settings.DNS_PORT
    resolver.lifetime = float(settings.DNS_TIMEOUT_SECONDS)
    resolver.timeout = min(1.0, resolver.lifetime)
    # The same EDNS buffer as the checks' resolver, so both send exactly the same packets.
    resolver.use_edns(0, 0, 1232)
    for name, rdtype in queries:
        with contextlib.suppress(dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            resolver.resolve(name, rdtype, search=False)


def run_checks_loop(domains: list) -> None:
    from deliverability import dns_checks

    using = dns_checks.resolver()
    for domain in domains:
        dns_checks.run_checks(domain, using=using)


def check_domain_loop(domains: list) -> None:
    from django.utils import timezone

    from deliverability import dns_checks

    using = dns_checks.resolver()
    now = timezone.now()
    for domain in domains:
        dns_checks.check_domain(domain, now=now, using=using)


def timed(loop, argument) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds for one loop."""
    wall, cpu = time.perf_counter(), time.process_time()
    loop(argument)
    return time.perf_counter() - wall, time.process_time() - cpu


# Main -------------------------------------------------------------------------------------


def prepare(database_url: str) -> None:
    ensure_database(database_url)
    configure_django(
        database_url,
        DNS_NAMESERVERS="127.0.0.1",
        DNS_TIMEOUT_SECONDS="2",
        SENDING_IPS=",".join(SENDING_IPS),
        BOUNCE_MX_HOST=BOUNCE_MX_HOST,
    )
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE deliverability_domaincheck, deliverability_domainalert, deliverability_dkimkey, "
            "deliverability_sendingdomain CASCADE"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=DOMAINS)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--server-in-process", action="store_true", help="serve DNS from a thread of this process")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    args = parser.parse_args()
    prepare(args.database_url)

    from django.conf import settings

    from deliverability.models import RecordKind

    started = time.perf_counter()
    specs = [build_spec(n) for n in range(args.domains)]
    domains, keygen_seconds = create_domains(specs)
    records = SHARED_RECORDS + [record for spec in specs for record in spec.records]
    servfail = [name for spec in specs for name in spec.servfail]
    server = (DnsServerThread if args.server_in_process else DnsServerProcess)(records, servfail)
    settings.DNS_PORT = server.port
    print(
        f"{len(domains)} domains, {len(records)} DNS records, in {time.perf_counter() - started:.1f} s "
        f"(of which {keygen_seconds:.1f} s generating 4 RSA-2048 and 1 Ed25519 key pairs, reused across domains); "
        f"DNS server {'in a thread of this process' if args.server_in_process else 'in a child process'}"
    )
    print("Profiles:", ", ".join(f"{count} {name}" for name, count in Counter(s.profile for s in specs).most_common()))

    # The recording pass also warms everything up (imports, checkdmarc, the connection).
    before = server.queries
    seen = record_checks(domains)
    queries = seen.queries
    types = ", ".join(f"{rdtype} {count}" for rdtype, count in Counter(t for _, t in queries).most_common())
    print(
        f"Recorded {len(queries)} queries ({len(queries) / len(domains):.1f} per domain; the server counted "
        f"{server.queries - before}, TCP retries of truncated answers included); {seen.from_checkdmarc} of them "
        f"by checkdmarc (SPF includes and mechanisms, DMARC report addresses, its own checks); types: {types}"
    )
    print("Overall statuses:", ", ".join(f"{status} {count}" for status, count in seen.statuses.most_common()))
    for kind in RecordKind:
        counts = ", ".join(f"{status} {n}" for (record, status), n in sorted(seen.records.items()) if record == kind)
        print(f"  {kind.label}: {counts}")

    phases = {BARE: (bare_loop, queries), "run_checks": (run_checks_loop, domains)}
    phases["check_domain"] = (check_domain_loop, domains)
    wall: dict[str, list[float]] = {name: [] for name in phases}
    cpu: dict[str, list[float]] = {name: [] for name in phases}
    served: dict[str, int] = {}
    for _round in range(args.rounds):
        for name, (loop, argument) in phases.items():
            before = server.queries
            seconds, cpu_seconds = timed(loop, argument)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
            served[name] = server.queries - before
    server.stop()

    bare, bare_cpu = statistics.median(wall[BARE]), statistics.median(cpu[BARE])
    print()
    print(f"Median of {args.rounds} round(s), {len(domains)} domains, {len(queries)} queries each:")
    print(
        f"{'phase':<32}{'seconds':>8}{'domains/s':>10}{'ms/domain':>10}{'x bare':>7}"
        f"{'CPU s':>7}{'x bare':>7}{'served':>8}  rounds (s)"
    )
    for name in phases:
        seconds, cpu_seconds = statistics.median(wall[name]), statistics.median(cpu[name])
        print(
            f"{name:<32}{seconds:>8.2f}{len(domains) / seconds:>10.0f}{seconds / len(domains) * 1000:>10.2f}"
            f"{seconds / bare:>7.2f}{cpu_seconds:>7.2f}{cpu_seconds / bare_cpu:>7.2f}{served[name]:>8}"
            f"  {' '.join(f'{t:.2f}' for t in wall[name])}"
        )
    print()
    for name in ("run_checks", "check_domain"):
        ratio = statistics.median(wall[name]) / bare
        print(f"{name} / bare: {ratio:.2f} (wall clock; {statistics.median(cpu[name]) / bare_cpu:.2f} in client CPU)")
    rest = seen.seconds - seen.dns_seconds - seen.sql_seconds
    print(
        f"Where run_checks' time goes (the recording pass, timed inside): {seen.seconds:.2f} s = DNS round trips "
        f"{seen.dns_seconds:.2f} s + SQL {seen.sql_seconds:.2f} s ({seen.statements} statements) + the rest "
        f"(checkdmarc's parsing, key parsing, judging) {rest:.2f} s"
    )


if __name__ == "__main__":
    main()
