"""DNS checks of sending domains. The only module that talks to DNS.

Every lookup goes to settings.DNS_NAMESERVERS on settings.DNS_PORT (tests start their own
server), never to the internet's resolvers unless the operator configured those. Results
are in plain words: what was found, what is wrong, what to publish instead. A server that
does not answer makes a check "could not check", never "fail"; a name that does not exist
(NXDOMAIN) and a name without that record (NODATA) are told apart.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import checkdmarc.dmarc
import checkdmarc.spf
import checkdmarc.utils
import dns.exception
import dns.name
import dns.resolver
import dns.reversename
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.db import transaction

from campaigns.extensions import MxLookupFailed
from deliverability.domains import organisational_domain
from deliverability.esps import ESPS, Transport
from deliverability.models import (
    CheckStatus,
    DkimKey,
    DomainAlert,
    DomainCheck,
    KeyState,
    RecordKind,
    SenderType,
    SendingDomain,
)

logger = logging.getLogger(__name__)

MAX_SPF_LOOKUPS = 10  # RFC 7208 section 4.6.4
_TRANSIENT = (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.YXDOMAIN, OSError)


class Outcome(StrEnum):
    ANSWER = "answer"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    UNANSWERED = "unanswered"


@dataclass(frozen=True)
class Lookup:
    outcome: Outcome
    records: list[str] = field(default_factory=list)
    error: str = ""

    def describe(self, name: str, rdtype: str) -> str:
        if self.outcome == Outcome.NXDOMAIN:
            return f"{name} does not exist in DNS (NXDOMAIN)"
        if self.outcome == Outcome.NODATA:
            return f"{name} exists but has no {rdtype} record"
        if self.outcome == Outcome.UNANSWERED:
            return f"the DNS server did not answer for {name} ({self.error})"
        return "; ".join(self.records)


@dataclass(frozen=True)
class Result:
    record: str
    status: str
    summary: str
    explanation: str = ""
    found: str = ""


def resolver() -> dns.resolver.Resolver:
    """A resolver on our settings, without a cache: every check sees DNS as it is now."""
    if settings.DNS_NAMESERVERS:
        configured = dns.resolver.Resolver(configure=False)
        configured.nameservers = list(settings.DNS_NAMESERVERS)
    else:
        configured = dns.resolver.Resolver()
    configured.port = settings.DNS_PORT
    # EDNS: DKIM keys and long SPF answers fit in one UDP answer instead of a truncated one and a
    # TCP retry. 1232 bytes is the DNS Flag Day 2020 size that avoids IP fragmentation.
    configured.use_edns(0, 0, 1232)
    configured.lifetime = float(settings.DNS_TIMEOUT_SECONDS)
    configured.timeout = min(1.0, configured.lifetime)
    return configured


def lookup(name: str, rdtype: str, *, using: dns.resolver.Resolver) -> Lookup:
    try:
        answer = using.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        return Lookup(Outcome.NXDOMAIN)
    except dns.resolver.NoAnswer:
        return Lookup(Outcome.NODATA)
    except _TRANSIENT as exc:
        return Lookup(Outcome.UNANSWERED, error=_short_error(exc))
    return Lookup(Outcome.ANSWER, [_text(rdata, rdtype) for rdata in answer])


def _text(rdata, rdtype: str) -> str:
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdtype == "MX":
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True)}"
    if rdtype in {"CNAME", "PTR", "NS"}:
        return rdata.target.to_text(omit_final_dot=True).lower()
    return rdata.to_text()


def _short_error(exc: Exception) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "timed out"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "the server failed (SERVFAIL)"
    return type(exc).__name__


class KeyLookupFailed(Exception):
    """DNS did not answer for a DKIM key: a verification can neither pass nor fail."""


def dkim_txt_lookup(name: bytes, timeout: int = 5) -> bytes | None:
    """dkimpy's DNS hook: the TXT record at a selector, through our resolver."""
    found = lookup(name.decode(), "TXT", using=resolver())
    if found.outcome == Outcome.UNANSWERED:
        raise KeyLookupFailed(found.describe(name.decode(), "TXT"))
    return found.records[0].encode() if found.outcome == Outcome.ANSWER else None


def _unanswered(kind: str, found: Lookup, name: str, rdtype: str) -> Result:
    return Result(kind, CheckStatus.UNCHECKABLE, f"Could not check: {found.describe(name, rdtype)}.")


# SPF ------------------------------------------------------------------------------------


def spf_domain(domain: SendingDomain) -> str:
    """Where our SPF must be: the return-path domain when there is one, else the From domain."""
    return domain.return_path_domain or domain.domain


def expected_spf_include(domain: SendingDomain) -> str:
    if domain.transport == Transport.SMTP:
        return ""
    return domain.spf_include or ESPS[domain.transport].spf_include


def check_spf(domain: SendingDomain, *, using: dns.resolver.Resolver) -> Result:
    name = spf_domain(domain)
    found = lookup(name, "TXT", using=using)
    if found.outcome == Outcome.UNANSWERED:
        return _unanswered(RecordKind.SPF, found, name, "TXT")
    if found.outcome == Outcome.NXDOMAIN:
        return Result(RecordKind.SPF, CheckStatus.FAIL, f"{name} does not exist in DNS, so it has no SPF record.")
    records = [r for r in found.records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
    if not records:
        return Result(
            RecordKind.SPF,
            CheckStatus.FAIL,
            f"{name} has no SPF record.",
            "Without SPF, receivers cannot tell that this sender may use the domain. Publish the SPF record below.",
            found=found.describe(name, "TXT"),
        )
    if len(records) > 1:
        return Result(
            RecordKind.SPF,
            CheckStatus.FAIL,
            f"{name} has {len(records)} SPF records; it must have exactly one.",
            "Receivers treat more than one SPF record as a permanent error (RFC 7208 section 4.5), so SPF "
            "fails for all of them. Merge them into one record.",
            found="\n".join(records),
        )
    record = records[0]
    checkdmarc.utils.DNS_CACHE.clear()
    try:
        parsed = checkdmarc.spf.parse_spf_record(
            record, name, ignore_too_many_lookups=True, resolver=using, timeout=using.lifetime, retries=0
        )
    except checkdmarc.spf.SPFError as exc:
        if _transient_cause(exc):
            return Result(RecordKind.SPF, CheckStatus.UNCHECKABLE, f"Could not check: {exc}", found=record)
        return Result(
            RecordKind.SPF,
            CheckStatus.FAIL,
            "The SPF record is broken: receivers return a permanent error for it.",
            str(exc),
            found=record,
        )
    except _TRANSIENT as exc:
        return Result(RecordKind.SPF, CheckStatus.UNCHECKABLE, f"Could not check: {_short_error(exc)}.", found=record)
    return _judge_spf(domain, record, parsed)


def _transient_cause(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, _TRANSIENT) or isinstance(getattr(exc, "error", None), _TRANSIENT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _judge_spf(domain: SendingDomain, record: str, parsed: dict) -> Result:
    lookups = parsed["dns_lookups"]
    if lookups > MAX_SPF_LOOKUPS:
        return Result(
            RecordKind.SPF,
            CheckStatus.FAIL,
            f"The SPF record needs {lookups} DNS lookups; the limit is {MAX_SPF_LOOKUPS}.",
            "Every include, a, mx, ptr, exists and redirect costs a lookup, counted through nested "
            "includes. Past 10, receivers return a permanent error (RFC 7208 section 4.6.4) and SPF fails. "
            "Remove includes of services that no longer send for you, or replace them with ip4/ip6.",
            found=record,
        )
    qualifier = parsed["parsed"]["all"]
    if qualifier in {"pass", "neutral"}:
        sign = "+all" if qualifier == "pass" else "?all"
        return Result(
            RecordKind.SPF,
            CheckStatus.FAIL,
            f"The SPF record ends in {sign}: it lets anyone send as this domain.",
            f"{sign} makes SPF pass (or stay neutral) for every server on the internet, so it proves "
            "nothing and spam filters distrust it. End the record with ~all or -all.",
            found=record,
        )
    missing = _missing_senders(domain, parsed["parsed"])
    if missing:
        return Result(
            RecordKind.SPF,
            CheckStatus.FAIL,
            f"The SPF record does not include the sender: {missing}.",
            "Mail from this sender fails SPF until the record names it. Add it before the all mechanism.",
            found=record,
        )
    if domain.transport == Transport.SMTP and not settings.SENDING_IPS:
        return Result(
            RecordKind.SPF,
            CheckStatus.WARNING,
            "The SPF record is valid, but SENDING_IPS is not set, so it cannot be matched to our IPs.",
            found=record,
        )
    return Result(
        RecordKind.SPF,
        CheckStatus.PASS,
        f"One valid SPF record, {lookups} of {MAX_SPF_LOOKUPS} DNS lookups, ending in "
        f"{'-all' if qualifier == 'fail' else '~all'}; it includes the sender.",
        found=record,
    )


def _mechanisms(parsed: dict | None) -> Iterator[dict]:
    if not parsed:
        return
    for mechanism in parsed["mechanisms"]:
        yield mechanism
        yield from _mechanisms(mechanism.get("parsed"))
    if parsed.get("redirect"):
        yield from _mechanisms(parsed["redirect"].get("parsed"))


def _missing_senders(domain: SendingDomain, parsed: dict) -> str:
    mechanisms = list(_mechanisms(parsed))
    if domain.transport != Transport.SMTP:
        include = expected_spf_include(domain)
        included = {m["value"].lower() for m in mechanisms if m["mechanism"] == "include"}
        return "" if not include or include in included else f"include:{include}"
    networks = []
    for mechanism in mechanisms:
        if mechanism["mechanism"] in {"ip4", "ip6"}:
            networks.append(ipaddress.ip_network(mechanism["value"], strict=False))
        for address in mechanism.get("addresses") or []:
            networks.append(ipaddress.ip_network(address))
        for host in mechanism.get("hosts") or []:
            networks += [ipaddress.ip_network(a) for a in host.get("addresses", [])]
    missing = [
        ip
        for ip in settings.SENDING_IPS
        if not any(ipaddress.ip_address(ip) in network for network in networks if network.version == _version(ip))
    ]
    return ", ".join(f"{'ip6' if _version(ip) == 6 else 'ip4'}:{ip}" for ip in missing)


def _version(ip: str) -> int:
    return ipaddress.ip_address(ip).version


# DKIM -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DkimRecord:
    tags: dict[str, str]
    key_bits: int | None
    error: str = ""


def parse_dkim_record(text: str) -> DkimRecord:
    """Parse a DKIM key record (RFC 6376 section 3.6.1) and measure its key."""
    tags = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            return DkimRecord({}, None, f"{part.strip()!r} is not a tag=value pair")
        tags[name.strip()] = "".join(value.split())
    if tags.get("v", "DKIM1") != "DKIM1":
        return DkimRecord(tags, None, f"v={tags['v']} is not DKIM1")
    if not tags.get("p"):
        return DkimRecord(tags, None, "p= is empty: the key was revoked" if "p" in tags else "there is no p= key")
    try:
        raw = base64.b64decode(tags["p"], validate=True)
    except ValueError:
        return DkimRecord(tags, None, "p= is not valid base64")
    if tags.get("k", "rsa") == "ed25519":
        return DkimRecord(tags, 256) if len(raw) == 32 else DkimRecord(tags, None, "p= is not an Ed25519 key")
    try:
        public = serialization.load_der_public_key(raw)
    except ValueError:
        return DkimRecord(tags, None, "p= is not an RSA public key")
    if not isinstance(public, rsa.RSAPublicKey):
        return DkimRecord(tags, None, "p= is not an RSA public key")
    return DkimRecord(tags, public.key_size)


def check_dkim_key(key: DkimKey, *, using: dns.resolver.Resolver | None = None) -> Result:
    """Is this selector's record in DNS, and does it hold our key (or point where the ESP says)?"""
    using = using or resolver()
    name = key.record_name
    if key.cname_target:
        alias = lookup(name, "CNAME", using=using)
        if alias.outcome == Outcome.UNANSWERED:
            return _unanswered(RecordKind.DKIM, alias, name, "CNAME")
        if alias.outcome != Outcome.ANSWER:
            return Result(
                RecordKind.DKIM,
                CheckStatus.FAIL,
                f"{name} is not published: {alias.describe(name, 'CNAME')}.",
                f"Publish {name} CNAME {key.cname_target}.",
            )
        if alias.records[0] != key.cname_target:
            return Result(
                RecordKind.DKIM,
                CheckStatus.FAIL,
                f"{name} points at {alias.records[0]}, not at {key.cname_target}.",
                "The ESP signs with the key behind its own target; another target holds another key.",
                found=alias.records[0],
            )
    found = lookup(name, "TXT", using=using)
    if found.outcome == Outcome.UNANSWERED:
        return _unanswered(RecordKind.DKIM, found, name, "TXT")
    records = [r for r in found.records if "p=" in r]
    if not records:
        return Result(
            RecordKind.DKIM,
            CheckStatus.FAIL,
            f"No DKIM key is published at {name}: {found.describe(name, 'TXT')}.",
            "Mail signed with this selector fails DKIM until the record is published.",
            found=found.describe(name, "TXT"),
        )
    if len(records) > 1:
        return Result(
            RecordKind.DKIM,
            CheckStatus.FAIL,
            f"{name} has {len(records)} DKIM records; verifiers may pick either.",
            "Keep one record per selector.",
            found="\n".join(records),
        )
    parsed = parse_dkim_record(records[0])
    if parsed.error:
        return Result(
            RecordKind.DKIM, CheckStatus.FAIL, f"The DKIM record at {name} is broken: {parsed.error}.", found=records[0]
        )
    if key.public_key and parsed.tags["p"] != key.public_key:
        return Result(
            RecordKind.DKIM,
            CheckStatus.FAIL,
            f"The key published at {name} is not this selector's key.",
            "Signatures made with our private key will not verify against it. Replace the record's value "
            "with the one shown under 'Records to publish' (a stale key or a copy-paste cut it short).",
            found=records[0],
        )
    is_rsa = parsed.tags.get("k", "rsa") == "rsa"
    if is_rsa and parsed.key_bits < 1024:
        return Result(
            RecordKind.DKIM,
            CheckStatus.FAIL,
            f"The key at {name} has {parsed.key_bits} bits; verifiers ignore keys under 1024 bits (RFC 8301).",
            found=records[0],
        )
    if is_rsa and parsed.key_bits < 2048:
        return Result(
            RecordKind.DKIM,
            CheckStatus.WARNING,
            f"The key at {name} has {parsed.key_bits} bits; 2048 is recommended.",
            found=records[0],
        )
    return Result(
        RecordKind.DKIM, CheckStatus.PASS, f"{name} holds the right {parsed.key_bits}-bit key.", found=records[0]
    )


def check_dkim(domain: SendingDomain, *, using: dns.resolver.Resolver) -> tuple[Result, bool]:
    """The domain's DKIM as a whole; also whether some key signs with d= this domain and verifies."""
    keys = list(domain.dkim_keys.exclude(state=KeyState.RETIRED).order_by("selector"))
    if not keys:
        fix = (
            "Generate a key with the 'Generate DKIM key' action."
            if domain.transport == Transport.SMTP
            else "Add the DKIM selectors and CNAME targets your ESP shows. " + ESPS[domain.transport].dkim
        )
        return Result(RecordKind.DKIM, CheckStatus.FAIL, "No DKIM key is set up for this domain.", fix), False
    results = {key: check_dkim_key(key, using=using) for key in keys}
    found = "\n".join(
        f"{key.selector} ({key.get_state_display().lower()}): {CheckStatus(result.status).label.lower()}"
        for key, result in results.items()
    )
    signing = {key: r for key, r in results.items() if key.state == KeyState.ACTIVE or key.cname_target}
    signing_ok = any(r.status in {CheckStatus.PASS, CheckStatus.WARNING} for r in signing.values())
    for statuses in ([CheckStatus.UNCHECKABLE], [CheckStatus.FAIL]):
        bad = [r for r in signing.values() if r.status in statuses]
        if bad:
            return Result(RecordKind.DKIM, bad[0].status, bad[0].summary, bad[0].explanation, found), signing_ok
    if not signing:
        ready = [key.selector for key, r in results.items() if r.status == CheckStatus.PASS]
        summary = (
            f"No key signs yet; {', '.join(ready)} is published and can be switched on."
            if ready
            else "No key signs yet, and the new key is not published."
        )
        return Result(RecordKind.DKIM, CheckStatus.FAIL, summary, found=found), False
    others = [(key, r) for key, r in results.items() if key not in signing and r.status != CheckStatus.PASS]
    if others:
        key, result = others[0]
        note = (
            "The replaced key must stay published until mail signed with it has been delivered."
            if key.state == KeyState.RETIRING
            else "Publish the new key before switching to it."
        )
        return Result(RecordKind.DKIM, CheckStatus.WARNING, f"{key.selector}: {result.summary}", note, found), True
    weak = [r for r in signing.values() if r.status == CheckStatus.WARNING]
    if weak:
        return Result(RecordKind.DKIM, CheckStatus.WARNING, weak[0].summary, found=found), True
    return Result(RecordKind.DKIM, CheckStatus.PASS, "The signing key is published and matches.", found=found), True


# DMARC ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DmarcPolicy:
    policy: str = ""
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"

    @property
    def enforced(self) -> bool:
        return self.policy in {"quarantine", "reject"}


def _dmarc_records(name: str, using: dns.resolver.Resolver) -> tuple[Lookup, list[str]]:
    found = lookup(f"_dmarc.{name}", "TXT", using=using)
    return found, [r for r in found.records if r.replace(" ", "").lower().startswith("v=dmarc1")]


def check_dmarc(domain: SendingDomain, *, using: dns.resolver.Resolver) -> tuple[Result, DmarcPolicy]:
    name = domain.domain
    found, records = _dmarc_records(name, using)
    inherited_from = ""
    root = organisational_domain(name) or name
    if found.outcome == Outcome.UNANSWERED:
        return _unanswered(RecordKind.DMARC, found, "_dmarc." + name, "TXT"), DmarcPolicy()
    if not records and root != name:
        found, records = _dmarc_records(root, using)
        inherited_from = root
        if found.outcome == Outcome.UNANSWERED:
            return _unanswered(RecordKind.DMARC, found, "_dmarc." + root, "TXT"), DmarcPolicy()
    if not records:
        return Result(
            RecordKind.DMARC,
            CheckStatus.FAIL,
            f"No DMARC record at _dmarc.{name}" + (f" or _dmarc.{root}." if root != name else "."),
            "Gmail and Yahoo require DMARC from bulk senders. Start with p=none and a rua address, "
            "then move to quarantine and reject (below).",
        ), DmarcPolicy()
    if len(records) > 1:
        return Result(
            RecordKind.DMARC,
            CheckStatus.FAIL,
            f"_dmarc.{inherited_from or name} has {len(records)} DMARC records; receivers then apply none.",
            found="\n".join(records),
        ), DmarcPolicy()
    record = records[0]
    checkdmarc.utils.DNS_CACHE.clear()
    try:
        parsed = checkdmarc.dmarc.parse_dmarc_record(
            record, inherited_from or name, resolver=using, timeout=using.lifetime, retries=0
        )
    except checkdmarc.dmarc.DMARCError as exc:
        return Result(
            RecordKind.DMARC, CheckStatus.FAIL, "The DMARC record is broken.", str(exc), found=record
        ), DmarcPolicy()
    except Exception as exc:  # checkdmarc raises its warnings (unverified report address, no MX for it)
        if _transient_cause(exc):
            return Result(
                RecordKind.DMARC, CheckStatus.UNCHECKABLE, f"Could not check: {exc}", found=record
            ), DmarcPolicy()
        return Result(RecordKind.DMARC, CheckStatus.WARNING, f"DMARC: {exc}", found=record), DmarcPolicy()
    tags = {tag: value["value"] for tag, value in parsed["tags"].items()}
    own_policy = tags.get("p", "none")
    policy = DmarcPolicy(
        policy=tags.get("sp", own_policy) if inherited_from else own_policy,
        pct=int(tags.get("pct", 100)),
        adkim=tags.get("adkim", "r"),
        aspf=tags.get("aspf", "r"),
    )
    where = f"inherited from {inherited_from}" if inherited_from else f"at _dmarc.{name}"
    if not tags.get("rua"):
        return Result(
            RecordKind.DMARC,
            CheckStatus.WARNING,
            f"DMARC p={policy.policy} {where}, but without rua: nobody receives the aggregate reports.",
            "Add rua=mailto:… so you can see who sends as your domain before enforcing.",
            found=record,
        ), policy
    if not policy.enforced:
        return Result(
            RecordKind.DMARC,
            CheckStatus.WARNING,
            f"DMARC p=none {where}: monitoring only, spoofed mail is still delivered.",
            "Once the reports show all your mail passing, move to p=quarantine, then p=reject.",
            found=record,
        ), policy
    partial = f" for {policy.pct} % of failing mail" if policy.pct < 100 else ""
    return Result(
        RecordKind.DMARC, CheckStatus.PASS, f"DMARC p={policy.policy}{partial} {where}, with reports.", found=record
    ), policy


def _aligned(a: str, b: str, mode: str) -> bool:
    if mode == "s":
        return a == b
    return organisational_domain(a) == organisational_domain(b)


def check_alignment(domain: SendingDomain, policy: DmarcPolicy, *, dkim_signs: bool) -> list[Result]:
    """The two alignment facts: SPF (return path vs From) and DKIM (d= vs From)."""
    mode = {"r": "relaxed", "s": "strict"}
    envelope = domain.envelope_domain
    if not envelope:
        spf = Result(
            RecordKind.SPF_ALIGNMENT,
            CheckStatus.UNCHECKABLE,
            "The ESP's return-path domain is not known; set a return-path domain to check SPF alignment.",
        )
    elif _aligned(envelope, domain.domain, policy.aspf):
        spf = Result(
            RecordKind.SPF_ALIGNMENT,
            CheckStatus.PASS,
            f"Aligned ({mode.get(policy.aspf, policy.aspf)}): the return path {envelope} matches the From domain.",
        )
    else:
        spf = Result(
            RecordKind.SPF_ALIGNMENT,
            CheckStatus.WARNING if dkim_signs else CheckStatus.FAIL,
            f"Not aligned: the return path {envelope} is the sending network's, not under {domain.domain}.",
            "DMARC passes on DKIM alone. With a dedicated IP, a return-path domain under your own "
            "domain aligns SPF too.",
        )
    if dkim_signs:
        dkim = Result(
            RecordKind.DKIM_ALIGNMENT,
            CheckStatus.PASS,
            f"Aligned (strict and relaxed): mail is signed with d={domain.domain}, the From domain.",
        )
    else:
        dkim = Result(
            RecordKind.DKIM_ALIGNMENT,
            CheckStatus.FAIL,
            f"Not aligned: no working key signs with d={domain.domain}.",
            "Without a DKIM signature of the From domain, DMARC depends on SPF alignment alone, which "
            "forwarding breaks.",
        )
    return [spf, dkim]


# The From domain, the return path and reverse DNS ----------------------------------------


def check_from_domain(domain: SendingDomain, *, using: dns.resolver.Resolver) -> Result:
    name = domain.domain
    alias = lookup(name, "CNAME", using=using)
    if alias.outcome == Outcome.UNANSWERED:
        return _unanswered(RecordKind.FROM_DOMAIN, alias, name, "CNAME")
    if alias.outcome == Outcome.ANSWER:
        return Result(
            RecordKind.FROM_DOMAIN,
            CheckStatus.FAIL,
            f"{name} is a CNAME to {alias.records[0]}.",
            "A name with a CNAME can hold no other record (RFC 1034 section 3.6.2), so it cannot have "
            "the TXT and MX records sending needs. Is it hosting content? Send from another subdomain.",
            found=alias.records[0],
        )
    if alias.outcome == Outcome.NXDOMAIN:
        return Result(
            RecordKind.FROM_DOMAIN,
            CheckStatus.FAIL,
            f"{name} does not exist in DNS.",
            "Receivers reject mail from a domain that does not exist. Publish its records first.",
        )
    mx = lookup(name, "MX", using=using)
    if mx.outcome == Outcome.UNANSWERED:
        return _unanswered(RecordKind.FROM_DOMAIN, mx, name, "MX")
    if mx.outcome == Outcome.ANSWER:
        return Result(
            RecordKind.FROM_DOMAIN,
            CheckStatus.PASS,
            f"{name} receives mail (MX) and has no conflicting CNAME.",
            found="\n".join(mx.records),
        )
    return Result(
        RecordKind.FROM_DOMAIN,
        CheckStatus.WARNING,
        f"{name} has no MX record: replies to the From address go nowhere.",
        "Some receivers also check that a sender's domain accepts mail. Add an MX for replies.",
    )


def check_return_path(domain: SendingDomain, *, using: dns.resolver.Resolver) -> Result:
    if domain.sender_type != SenderType.DEDICATED or not domain.return_path_domain:
        return Result(
            RecordKind.RETURN_PATH, CheckStatus.NOT_APPLICABLE, "The sending network's own return path is used."
        )
    name = domain.return_path_domain
    if domain.return_path_target:
        expected, rdtype = domain.return_path_target, "CNAME"
    else:
        expected, rdtype = settings.BOUNCE_MX_HOST, "MX"
    if not expected:
        return Result(
            RecordKind.RETURN_PATH,
            CheckStatus.WARNING,
            "Set the return-path target (or BOUNCE_MX_HOST for direct SMTP) to check where bounces go.",
        )
    found = lookup(name, rdtype, using=using)
    if found.outcome == Outcome.UNANSWERED:
        return _unanswered(RecordKind.RETURN_PATH, found, name, rdtype)
    targets = [r.split()[-1] for r in found.records]
    if expected in targets:
        return Result(RecordKind.RETURN_PATH, CheckStatus.PASS, f"{name} {rdtype} {expected}: bounces come back to us.")
    return Result(
        RecordKind.RETURN_PATH,
        CheckStatus.FAIL,
        f"{name} should be {rdtype} {expected}: {found.describe(name, rdtype)}.",
        "Bounces are sent to the return path; without this record they are lost and bounced "
        "addresses keep being mailed.",
        found="\n".join(found.records),
    )


def check_ptr(domain: SendingDomain, *, using: dns.resolver.Resolver) -> Result:
    if domain.transport != Transport.SMTP:
        return Result(RecordKind.PTR, CheckStatus.NOT_APPLICABLE, "The ESP's sending IPs have their own reverse DNS.")
    if not settings.SENDING_IPS:
        return Result(RecordKind.PTR, CheckStatus.WARNING, "SENDING_IPS is not set: reverse DNS cannot be checked.")
    problems, found = [], []
    for ip in settings.SENDING_IPS:
        reverse = dns.reversename.from_address(ip).to_text(omit_final_dot=True)
        ptr = lookup(reverse, "PTR", using=using)
        if ptr.outcome == Outcome.UNANSWERED:
            return _unanswered(RecordKind.PTR, ptr, reverse, "PTR")
        if ptr.outcome != Outcome.ANSWER:
            problems.append(f"{ip} has no PTR record")
            continue
        host = ptr.records[0]
        forward = lookup(host, "AAAA" if _version(ip) == 6 else "A", using=using)
        found.append(f"{ip} → {host}")
        if ip not in forward.records:
            problems.append(f"{ip} → {host}, but {host} does not resolve back to {ip}")
    if problems:
        return Result(
            RecordKind.PTR,
            CheckStatus.FAIL,
            "; ".join(problems) + ".",
            "Gmail and Outlook refuse or junk mail from IPs without matching forward and reverse DNS. "
            "Ask whoever runs the IPs to set the PTR.",
            found="\n".join(found),
        )
    return Result(
        RecordKind.PTR, CheckStatus.PASS, "Every sending IP has matching reverse DNS.", found="\n".join(found)
    )


def check_bimi(domain: SendingDomain, policy: DmarcPolicy, *, using: dns.resolver.Resolver) -> Result:
    name = f"default._bimi.{domain.domain}"
    if not policy.enforced or policy.pct < 100:
        return Result(
            RecordKind.BIMI,
            CheckStatus.NOT_APPLICABLE,
            "BIMI logos show only once DMARC is at quarantine or reject for 100 % of mail.",
        )
    found = lookup(name, "TXT", using=using)
    if found.outcome == Outcome.UNANSWERED:
        return _unanswered(RecordKind.BIMI, found, name, "TXT")
    records = [r for r in found.records if r.replace(" ", "").lower().startswith("v=bimi1")]
    if not records:
        if domain.bimi_logo_url:
            return Result(
                RecordKind.BIMI, CheckStatus.FAIL, f"No BIMI record at {name}.", "Publish the BIMI record below."
            )
        return Result(RecordKind.BIMI, CheckStatus.NOT_APPLICABLE, "No BIMI record (optional: shows your logo).")
    tags = dict(part.strip().partition("=")[::2] for part in records[0].split(";") if "=" in part)
    logo = tags.get("l", "").strip()
    if not logo.lower().startswith("https://") or not logo.lower().endswith(".svg"):
        return Result(
            RecordKind.BIMI,
            CheckStatus.FAIL,
            "The BIMI record's l= must be an https URL of an SVG logo.",
            found=records[0],
        )
    if not tags.get("a", "").strip():
        return Result(
            RecordKind.BIMI,
            CheckStatus.WARNING,
            "BIMI is published without a certificate (a=): Gmail and Apple Mail show the logo only with a VMC or CMC.",
            found=records[0],
        )
    return Result(
        RecordKind.BIMI, CheckStatus.PASS, "BIMI is published with a logo and a certificate.", found=records[0]
    )


# The whole domain -----------------------------------------------------------------------

_SEVERITY = [CheckStatus.FAIL, CheckStatus.UNCHECKABLE, CheckStatus.WARNING, CheckStatus.PASS]


def run_checks(domain: SendingDomain, *, using: dns.resolver.Resolver | None = None) -> list[Result]:
    using = using or resolver()
    from_domain = check_from_domain(domain, using=using)
    spf = check_spf(domain, using=using)
    dkim, dkim_signs = check_dkim(domain, using=using)
    dmarc, policy = check_dmarc(domain, using=using)
    return [
        from_domain,
        spf,
        dkim,
        dmarc,
        *check_alignment(domain, policy, dkim_signs=dkim_signs),
        check_return_path(domain, using=using),
        check_ptr(domain, using=using),
        check_bimi(domain, policy, using=using),
    ]


def overall_status(results: list[Result]) -> str:
    statuses = {r.status for r in results}
    return next((s for s in _SEVERITY if s in statuses), CheckStatus.PASS)


def check_domain(domain: SendingDomain, *, now: datetime, using: dns.resolver.Resolver | None = None) -> list[Result]:
    """Check every record, keep the results as history, and raise an alert for each record that
    went from pass to fail (resolving alerts whose record passes again)."""
    results = run_checks(domain, using=using)
    previous = domain.record_statuses
    with transaction.atomic():
        DomainCheck.objects.bulk_create(
            DomainCheck(
                domain=domain,
                checked_at=now,
                record=r.record,
                status=r.status,
                summary=r.summary[:300],
                explanation=r.explanation,
                found=r.found,
            )
            for r in results
        )
        DomainAlert.objects.bulk_create(
            DomainAlert(domain=domain, record=r.record, raised_at=now, summary=r.summary[:300])
            for r in results
            if r.status == CheckStatus.FAIL and previous.get(r.record, {}).get("status") == CheckStatus.PASS
        )
        DomainAlert.objects.filter(
            domain=domain, resolved_at=None, record__in=[r.record for r in results if r.status == CheckStatus.PASS]
        ).update(resolved_at=now)
        domain.record_statuses = {r.record: {"status": r.status, "summary": r.summary} for r in results}
        domain.status = overall_status(results)
        domain.last_checked_at = now
        domain.save(update_fields=["record_statuses", "status", "last_checked_at"])
    return results


def check_all_domains(*, now: datetime) -> int:
    """The daily re-check; one broken domain does not stop the others. Returns how many ran."""
    using = resolver()
    checked = 0
    for domain in SendingDomain.objects.all():
        try:
            check_domain(domain, now=now, using=using)
        except Exception:
            logger.exception("Checking %s failed", domain)
            continue
        checked += 1
    return checked


def mx_hosts(domain: str) -> list[str]:
    """The hosts that receive mail for `domain`, best first: the domain itself when it has no MX
    (RFC 5321 section 5.1); none for a null MX (RFC 7505) or a name that does not exist.

    Raises MxLookupFailed when DNS does not answer: the send is deferred, not bounced.
    """
    found = lookup(domain, "MX", using=resolver())
    if found.outcome == Outcome.UNANSWERED:
        raise MxLookupFailed(found.describe(domain, "MX"))
    if found.outcome == Outcome.NXDOMAIN:
        return []
    if found.outcome == Outcome.NODATA:
        return [domain]
    ranked = sorted((int(preference), host) for preference, host in (r.split() for r in found.records))
    return [host for _, host in ranked if host not in {"", ".", "@"}]
