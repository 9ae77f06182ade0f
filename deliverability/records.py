"""What staff must publish in DNS for a sending domain, and what recipients' IT must allowlist."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from deliverability.dns_checks import expected_spf_include, spf_domain
from deliverability.domains import organisational_domain
from deliverability.esps import ESPS, Transport
from deliverability.models import CheckStatus, KeyState, RecordKind, SendingDomain


@dataclass(frozen=True)
class PublishRecord:
    kind: str
    name: str
    rdtype: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class DmarcStage:
    label: str
    value: str
    published: bool
    next: bool


def spf_value(domain: SendingDomain) -> str:
    if domain.transport == Transport.SMTP:
        mechanisms = [f"{'ip6' if ':' in ip else 'ip4'}:{ip}" for ip in settings.SENDING_IPS] or [
            "ip4:<your sending IP>"
        ]
    else:
        mechanisms = [f"include:{expected_spf_include(domain) or '<your ESP include>'}"]
    return " ".join(["v=spf1", *mechanisms, "~all"])


def report_address(domain: SendingDomain) -> str:
    return domain.dmarc_report_address or f"dmarc-reports@{organisational_domain(domain.domain) or domain.domain}"


def dmarc_stages(domain: SendingDomain) -> list[DmarcStage]:
    """The staged path from monitoring to enforcement, marking what DNS shows and what comes next."""
    rua = f"rua=mailto:{report_address(domain)}"
    values = [
        ("1. Monitor: collect reports, change nothing", f"v=DMARC1; p=none; {rua}"),
        ("2. Quarantine a quarter of failing mail", f"v=DMARC1; p=quarantine; pct=25; {rua}"),
        ("3. Quarantine all failing mail", f"v=DMARC1; p=quarantine; {rua}"),
        ("4. Reject failing mail", f"v=DMARC1; p=reject; {rua}"),
    ]
    published = _published_dmarc(domain)
    if "p=reject" in published:
        stage = 3
    elif "p=quarantine" in published:
        stage = 1 if "pct=" in published and "pct=100" not in published else 2
    elif "p=none" in published:
        stage = 0
    else:
        stage = -1
    upcoming = min(stage + 1, len(values) - 1)
    return [
        DmarcStage(label, value, published=index == stage, next=index == upcoming and index != stage)
        for index, (label, value) in enumerate(values)
    ]


def _published_dmarc(domain: SendingDomain) -> str:
    latest = domain.checks.filter(record=RecordKind.DMARC).order_by("-checked_at").first()
    return latest.found.replace(" ", "").lower() if latest else ""


def records_to_publish(domain: SendingDomain) -> list[PublishRecord]:
    records = [
        PublishRecord(
            "SPF",
            spf_domain(domain),
            "TXT",
            spf_value(domain),
            "If the name already has an SPF record, add the include or IPs to it: a second SPF record breaks both.",
        )
    ]
    for key in domain.dkim_keys.exclude(state=KeyState.RETIRED).order_by("selector"):
        note = {
            KeyState.PENDING: "New key: publish it, then switch it on.",
            KeyState.RETIRING: "Replaced key: keep it published a few days more, then retire it.",
        }.get(key.state, "")
        if key.cname_target:
            records.append(PublishRecord("DKIM", key.record_name, "CNAME", key.cname_target, note))
        else:
            records.append(PublishRecord("DKIM", key.record_name, "TXT", key.record_value(), note))
    stages = dmarc_stages(domain)
    upcoming = next((stage for stage in stages if stage.next), stages[-1])
    note = f"Next step: {upcoming.label}." if upcoming.next else "Enforced: nothing left to tighten."
    records.append(PublishRecord("DMARC", f"_dmarc.{domain.domain}", "TXT", upcoming.value, note))
    if domain.return_path_domain:
        if domain.return_path_target:
            records.append(PublishRecord("Return path", domain.return_path_domain, "CNAME", domain.return_path_target))
        else:
            records.append(
                PublishRecord(
                    "Return path",
                    domain.return_path_domain,
                    "MX",
                    f"10 {settings.BOUNCE_MX_HOST or '<the host that receives bounces>'}",
                )
            )
    if domain.bimi_logo_url:
        value = f"v=BIMI1; l={domain.bimi_logo_url}" + (
            f"; a={domain.bimi_certificate_url}" if domain.bimi_certificate_url else ""
        )
        enforced = domain.record_statuses.get(RecordKind.DMARC, {}).get("status") == CheckStatus.PASS
        records.append(
            PublishRecord(
                "BIMI",
                f"default._bimi.{domain.domain}",
                "TXT",
                value,
                "" if enforced else "Publish once DMARC is at quarantine or reject: until then it has no effect.",
            )
        )
    return records


def allowlist_advice(domain: SendingDomain) -> list[str]:
    """What an organisation's IT adds to its filters to let our mail through."""
    if domain.transport == Transport.SMTP:
        ips = ", ".join(settings.SENDING_IPS) or "(SENDING_IPS is not set)"
        return [
            f"Sending IPs: {ips}.",
            f"Envelope (return-path) domain: {domain.envelope_domain}.",
            f"From domain: {domain.domain}, DKIM-signed with d={domain.domain}.",
        ]
    esp = ESPS[domain.transport]
    advice = [esp.allowlist, f"Envelope (return-path) domain: {domain.envelope_domain or 'as your ESP shows'}."]
    if expected_spf_include(domain):
        advice.append(f"SPF include to add to the From domain's record: include:{expected_spf_include(domain)}.")
    return advice
