"""DNS checks against a real authoritative server on loopback, zone by zone."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from deliverability import dns_checks, signing, tasks
from deliverability.esps import Transport
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


def results(domain: SendingDomain) -> dict[str, dns_checks.Result]:
    return {result.record: result for result in dns_checks.run_checks(domain)}


def test_a_domain_with_every_record_published_passes(news):
    checked = results(news)

    assert {kind: r.status for kind, r in checked.items()} == {
        RecordKind.FROM_DOMAIN: CheckStatus.PASS,
        RecordKind.SPF: CheckStatus.PASS,
        RecordKind.DKIM: CheckStatus.PASS,
        RecordKind.DMARC: CheckStatus.PASS,
        RecordKind.SPF_ALIGNMENT: CheckStatus.PASS,
        RecordKind.DKIM_ALIGNMENT: CheckStatus.PASS,
        RecordKind.RETURN_PATH: CheckStatus.NOT_APPLICABLE,
        RecordKind.PTR: CheckStatus.PASS,
        RecordKind.BIMI: CheckStatus.NOT_APPLICABLE,
    }
    assert "inherited from example.com" in checked[RecordKind.DMARC].summary


def test_a_missing_spf_record_fails_and_says_what_dns_has(news, dns_server):
    dns_server.remove("news.example.com", "TXT")
    dns_server.add("news.example.com", "TXT", "google-site-verification=abc")

    spf = results(news)[RecordKind.SPF]

    assert spf.status == CheckStatus.FAIL
    assert spf.summary == "news.example.com has no SPF record."
    assert "google-site-verification=abc" in spf.found


def test_nxdomain_and_an_empty_answer_are_told_apart(news, dns_server):
    # Nothing at or below the name: the DKIM key lives below it, so it goes too.
    dns_server.remove("news.example.com")
    dns_server.remove(news.dkim_keys.get().record_name)
    gone = results(news)
    dns_server.add("news.example.com", "A", "192.0.2.80")
    empty = results(news)

    assert gone[RecordKind.SPF].summary == "news.example.com does not exist in DNS, so it has no SPF record."
    assert gone[RecordKind.FROM_DOMAIN].summary == "news.example.com does not exist in DNS."
    assert empty[RecordKind.SPF].summary == "news.example.com has no SPF record."
    assert "exists but has no TXT record" in empty[RecordKind.SPF].found
    assert empty[RecordKind.FROM_DOMAIN].status == CheckStatus.WARNING
    assert "no MX record" in empty[RecordKind.FROM_DOMAIN].summary


def test_two_spf_records_fail_as_a_permanent_error(news, dns_server):
    dns_server.add("news.example.com", "TXT", "v=spf1 include:_spf.google.com ~all")

    spf = results(news)[RecordKind.SPF]

    assert spf.status == CheckStatus.FAIL
    assert spf.summary == "news.example.com has 2 SPF records; it must have exactly one."
    assert "Merge them into one record" in spf.explanation


def test_eleven_lookups_through_nested_includes_fail(news, dns_server):
    # news → a, b; a → a1..a4; b → b1..b3: 2 + 4 + 3 = 9 includes, plus mx and a: 11.
    dns_server.remove("news.example.com", "TXT")
    dns_server.add("news.example.com", "TXT", "v=spf1 ip4:192.0.2.10 include:a.spf.test include:b.spf.test mx a -all")
    dns_server.add("a.spf.test", "TXT", "v=spf1 " + " ".join(f"include:a{n}.spf.test" for n in range(1, 5)) + " ~all")
    dns_server.add("b.spf.test", "TXT", "v=spf1 " + " ".join(f"include:b{n}.spf.test" for n in range(1, 4)) + " ~all")
    for name in [*(f"a{n}" for n in range(1, 5)), *(f"b{n}" for n in range(1, 4))]:
        dns_server.add(f"{name}.spf.test", "TXT", "v=spf1 ip4:198.51.100.0/24 ~all")
    dns_server.add("news.example.com", "A", "192.0.2.10")

    spf = results(news)[RecordKind.SPF]

    assert spf.status == CheckStatus.FAIL
    assert spf.summary == "The SPF record needs 11 DNS lookups; the limit is 10."
    assert "counted through nested includes" in spf.explanation


def test_ten_lookups_still_pass(news, dns_server):
    dns_server.remove("news.example.com", "TXT")
    includes = " ".join(f"include:i{n}.spf.test" for n in range(1, 11))
    dns_server.add("news.example.com", "TXT", f"v=spf1 ip4:192.0.2.10 {includes} -all")
    for n in range(1, 11):
        dns_server.add(f"i{n}.spf.test", "TXT", "v=spf1 ip4:198.51.100.0/24 ~all")

    spf = results(news)[RecordKind.SPF]

    assert spf.status == CheckStatus.PASS
    assert "10 of 10 DNS lookups" in spf.summary


@pytest.mark.parametrize("ending", ["+all", "?all"])
def test_an_spf_record_that_lets_anyone_send_fails(news, dns_server, ending):
    dns_server.remove("news.example.com", "TXT")
    dns_server.add("news.example.com", "TXT", f"v=spf1 ip4:192.0.2.10 {ending}")

    spf = results(news)[RecordKind.SPF]

    assert spf.status == CheckStatus.FAIL
    assert spf.summary == f"The SPF record ends in {ending}: it lets anyone send as this domain."


def test_an_spf_syntax_error_is_explained(news, dns_server):
    dns_server.remove("news.example.com", "TXT")
    dns_server.add("news.example.com", "TXT", "v=spf1 ip4:192.0.2.10 inclde:mailgun.org -all")

    spf = results(news)[RecordKind.SPF]

    assert spf.status == CheckStatus.FAIL
    assert "broken" in spf.summary
    assert "inclde is not a valid SPF mechanism or modifier" in spf.explanation


def test_spf_without_our_sending_ip_fails_and_names_it(news, dns_server):
    dns_server.remove("news.example.com", "TXT")
    dns_server.add("news.example.com", "TXT", "v=spf1 ip4:198.51.100.0/24 -all")

    spf = results(news)[RecordKind.SPF]

    assert spf.status == CheckStatus.FAIL
    assert spf.summary == "The SPF record does not include the sender: ip4:192.0.2.10."


def test_our_ip_found_through_an_include_counts(news, dns_server):
    dns_server.remove("news.example.com", "TXT")
    dns_server.add("news.example.com", "TXT", "v=spf1 include:_spf.example.com -all")
    dns_server.add("_spf.example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 ~all")

    assert results(news)[RecordKind.SPF].status == CheckStatus.PASS


def test_an_esp_domain_needs_the_esps_include(db, dns_server):
    domain = SendingDomain.objects.create(domain="mail.example.org", transport=Transport.MAILGUN)
    dns_server.add("mail.example.org", "TXT", "v=spf1 include:spf.mtasv.net ~all")
    dns_server.add("spf.mtasv.net", "TXT", "v=spf1 ip4:50.31.156.0/24 -all")

    spf = results(domain)[RecordKind.SPF]
    dns_server.remove("mail.example.org", "TXT")
    dns_server.add("mail.example.org", "TXT", "v=spf1 include:mailgun.org ~all")
    dns_server.add("mailgun.org", "TXT", "v=spf1 ip4:198.61.254.0/23 ~all")

    assert spf.summary == "The SPF record does not include the sender: include:mailgun.org."
    assert results(domain)[RecordKind.SPF].status == CheckStatus.PASS


def test_a_published_key_that_is_not_ours_fails(news, dns_server):
    key = news.dkim_keys.get()
    other = signing.create_key(news, algorithm="rsa", now=timezone.now())
    dns_server.remove(key.record_name)
    publish_key_value = other.record_value()
    dns_server.add(key.record_name, "TXT", publish_key_value)

    dkim = results(news)[RecordKind.DKIM]

    assert dkim.status == CheckStatus.FAIL
    assert dkim.summary == f"The key published at {key.record_name} is not this selector's key."


def test_an_unpublished_key_fails_with_what_dns_said(news, dns_server):
    key = news.dkim_keys.get()
    dns_server.remove(key.record_name)

    dkim = results(news)[RecordKind.DKIM]

    assert dkim.status == CheckStatus.FAIL
    assert dkim.summary == (
        f"No DKIM key is published at {key.record_name}: {key.record_name} does not exist in DNS (NXDOMAIN)."
    )
    assert results(news)[RecordKind.DKIM_ALIGNMENT].status == CheckStatus.FAIL


def test_a_1024_bit_key_is_a_warning_and_a_512_bit_key_fails(news, dns_server):
    key = news.dkim_keys.get()
    for bits, status in [(1024, CheckStatus.WARNING), (512, CheckStatus.FAIL)]:
        # cryptography refuses to generate keys under 1024 bits; a public key only needs a modulus.
        public = rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 1).public_key()
        p = base64.b64encode(
            public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        ).decode()
        DkimKey.objects.filter(pk=key.pk).update(public_key=p)
        dns_server.remove(key.record_name)
        dns_server.add(key.record_name, "TXT", f"v=DKIM1; k=rsa; p={p}")

        dkim = results(news)[RecordKind.DKIM]

        assert dkim.status == status
        assert f"{bits} bits" in dkim.summary


def test_a_revoked_key_record_fails(news, dns_server):
    key = news.dkim_keys.get()
    dns_server.remove(key.record_name)
    dns_server.add(key.record_name, "TXT", "v=DKIM1; k=rsa; p=")

    assert "p= is empty: the key was revoked" in results(news)[RecordKind.DKIM].summary


def test_an_esp_dkim_cname_passes_when_it_points_at_the_esps_key(db, dns_server, news):
    domain = SendingDomain.objects.create(domain="em.example.net", transport=Transport.SENDGRID)
    DkimKey.objects.create(
        domain=domain, selector="s1", cname_target="s1.domainkey.u123.wl.sendgrid.net", state=KeyState.ACTIVE
    )
    esp_key = news.dkim_keys.get()
    dns_server.add("s1._domainkey.em.example.net", "CNAME", "s1.domainkey.u123.wl.sendgrid.net")
    dns_server.add("s1.domainkey.u123.wl.sendgrid.net", "TXT", esp_key.record_value())
    passing = results(domain)[RecordKind.DKIM]
    dns_server.remove("s1._domainkey.em.example.net")
    dns_server.add("s1._domainkey.em.example.net", "CNAME", "s1.domainkey.u999.wl.sendgrid.net")

    wrong = results(domain)[RecordKind.DKIM]

    assert passing.status == CheckStatus.PASS
    assert wrong.status == CheckStatus.FAIL
    assert wrong.summary == (
        "s1._domainkey.em.example.net points at s1.domainkey.u999.wl.sendgrid.net, "
        "not at s1.domainkey.u123.wl.sendgrid.net."
    )


def test_dmarc_p_none_is_a_warning_and_reject_passes(news, dns_server):
    dns_server.add("_dmarc.news.example.com", "TXT", "v=DMARC1; p=none; rua=mailto:dmarc@example.com")
    monitoring = results(news)[RecordKind.DMARC]
    dns_server.remove("_dmarc.news.example.com")
    dns_server.add("_dmarc.news.example.com", "TXT", "v=DMARC1; p=reject; rua=mailto:dmarc@example.com")

    enforcing = results(news)[RecordKind.DMARC]

    assert monitoring.status == CheckStatus.WARNING
    assert monitoring.summary.startswith("DMARC p=none at _dmarc.news.example.com: monitoring only")
    assert enforcing.status == CheckStatus.PASS
    assert enforcing.summary == "DMARC p=reject at _dmarc.news.example.com, with reports."


def test_a_subdomain_inherits_the_organisational_domains_subdomain_policy(news, dns_server):
    dns_server.remove("_dmarc.example.com")
    dns_server.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; sp=none; rua=mailto:dmarc@example.com")

    dmarc = results(news)[RecordKind.DMARC]

    assert dmarc.status == CheckStatus.WARNING
    assert "p=none inherited from example.com" in dmarc.summary


def test_no_dmarc_anywhere_fails(news, dns_server):
    dns_server.remove("_dmarc.example.com")

    dmarc = results(news)[RecordKind.DMARC]

    assert dmarc.status == CheckStatus.FAIL
    assert dmarc.summary == "No DMARC record at _dmarc.news.example.com or _dmarc.example.com."


def test_dmarc_without_reports_is_a_warning(news, dns_server):
    dns_server.remove("_dmarc.example.com")
    dns_server.add("_dmarc.example.com", "TXT", "v=DMARC1; p=quarantine")

    dmarc = results(news)[RecordKind.DMARC]

    assert dmarc.status == CheckStatus.WARNING
    assert "without rua" in dmarc.summary


def test_a_return_path_on_another_domain_is_not_aligned(news, dns_server):
    news.sender_type = SenderType.DEDICATED
    news.return_path_domain = "bounces.example-mail.net"
    news.return_path_target = "pm.mtasv.net"
    dns_server.add("bounces.example-mail.net", "CNAME", "pm.mtasv.net")
    dns_server.add("bounces.example-mail.net", "TXT", "v=spf1 ip4:192.0.2.10 -all")

    checked = results(news)

    assert checked[RecordKind.SPF_ALIGNMENT].status == CheckStatus.WARNING
    assert checked[RecordKind.SPF_ALIGNMENT].summary == (
        "Not aligned: the return path bounces.example-mail.net is the sending network's, not under news.example.com."
    )
    assert checked[RecordKind.DKIM_ALIGNMENT].status == CheckStatus.PASS
    assert checked[RecordKind.RETURN_PATH].status == CheckStatus.PASS


def test_strict_spf_alignment_needs_the_exact_domain(news, dns_server):
    news.sender_type = SenderType.DEDICATED
    news.return_path_domain = "bounces.news.example.com"
    dns_server.remove("_dmarc.example.com")
    dns_server.add("_dmarc.news.example.com", "TXT", "v=DMARC1; p=reject; aspf=s; rua=mailto:d@example.com")

    assert results(news)[RecordKind.SPF_ALIGNMENT].status == CheckStatus.WARNING
    news.return_path_domain = ""
    assert results(news)[RecordKind.SPF_ALIGNMENT].summary.startswith("Aligned (strict)")


def test_a_wrong_return_path_target_fails(news, dns_server, settings):
    settings.BOUNCE_MX_HOST = "bounces.deliverwell.example"
    news.sender_type = SenderType.DEDICATED
    news.return_path_domain = "rp.news.example.com"
    dns_server.add("rp.news.example.com", "MX", "10 mx.example.com")

    return_path = results(news)[RecordKind.RETURN_PATH]

    assert return_path.status == CheckStatus.FAIL
    assert return_path.summary == "rp.news.example.com should be MX bounces.deliverwell.example: 10 mx.example.com."


def test_a_cname_at_the_from_domain_fails(news, dns_server):
    dns_server.remove("news.example.com")
    dns_server.add("news.example.com", "CNAME", "hosting.example.net")
    dns_server.add("hosting.example.net", "A", "198.51.100.5")

    from_domain = results(news)[RecordKind.FROM_DOMAIN]

    assert from_domain.status == CheckStatus.FAIL
    assert from_domain.summary == "news.example.com is a CNAME to hosting.example.net."
    assert "RFC 1034" in from_domain.explanation


def test_a_sending_ip_without_matching_reverse_dns_fails(news, dns_server):
    dns_server.remove("mta1.example.com")
    dns_server.add("mta1.example.com", "A", "192.0.2.99")
    mismatch = results(news)[RecordKind.PTR]
    dns_server.remove("10.2.0.192.in-addr.arpa")

    missing = results(news)[RecordKind.PTR]

    assert mismatch.summary == (
        "192.0.2.10 → mta1.example.com, but mta1.example.com does not resolve back to 192.0.2.10."
    )
    assert missing.status == CheckStatus.FAIL
    assert missing.summary == "192.0.2.10 has no PTR record."


def test_bimi_is_judged_only_once_dmarc_enforces(news, dns_server):
    dns_server.add("default._bimi.news.example.com", "TXT", "v=BIMI1; l=https://example.com/logo.svg")
    without_certificate = results(news)[RecordKind.BIMI]
    dns_server.remove("default._bimi.news.example.com")
    dns_server.add(
        "default._bimi.news.example.com",
        "TXT",
        "v=BIMI1; l=https://example.com/logo.svg; a=https://example.com/vmc.pem",
    )
    complete = results(news)[RecordKind.BIMI]
    dns_server.remove("_dmarc.example.com")
    dns_server.add("_dmarc.example.com", "TXT", "v=DMARC1; p=none; rua=mailto:dmarc@example.com")

    not_enforced = results(news)[RecordKind.BIMI]

    assert without_certificate.status == CheckStatus.WARNING
    assert "without a certificate (a=)" in without_certificate.summary
    assert complete.status == CheckStatus.PASS
    assert not_enforced.status == CheckStatus.NOT_APPLICABLE


def test_a_server_failure_is_could_not_check_never_fail(news, dns_server):
    dns_server.servfail("news.example.com")
    dns_server.servfail("_dmarc.news.example.com")

    checked = results(news)

    assert checked[RecordKind.SPF].status == CheckStatus.UNCHECKABLE
    assert checked[RecordKind.SPF].summary == (
        "Could not check: the DNS server did not answer for news.example.com (the server failed (SERVFAIL))."
    )
    assert checked[RecordKind.FROM_DOMAIN].status == CheckStatus.UNCHECKABLE
    assert checked[RecordKind.DMARC].status == CheckStatus.UNCHECKABLE
    assert CheckStatus.FAIL not in {r.status for r in checked.values()}


def test_a_server_that_never_answers_is_could_not_check(news, dns_server, settings):
    settings.DNS_TIMEOUT_SECONDS = 0.5
    dns_server.silence("news.example.com")
    key = news.dkim_keys.get()
    dns_server.silence(key.record_name)

    checked = results(news)

    assert checked[RecordKind.SPF].status == CheckStatus.UNCHECKABLE
    assert "timed out" in checked[RecordKind.SPF].summary
    assert checked[RecordKind.DKIM].status == CheckStatus.UNCHECKABLE


def test_an_include_that_times_out_is_could_not_check(news, dns_server, settings):
    settings.DNS_TIMEOUT_SECONDS = 0.5
    dns_server.remove("news.example.com", "TXT")
    dns_server.add("news.example.com", "TXT", "v=spf1 ip4:192.0.2.10 include:slow.spf.test -all")
    dns_server.silence("slow.spf.test")

    assert results(news)[RecordKind.SPF].status == CheckStatus.UNCHECKABLE


def test_checks_are_kept_as_history_and_a_record_that_breaks_raises_an_alert(news, dns_server, now):
    dns_checks.check_domain(news, now=now)
    dns_server.remove("news.example.com", "TXT")
    later = now + timezone.timedelta(days=1)
    dns_checks.check_domain(news, now=later)
    again = dns_checks.check_domain(news, now=later + timezone.timedelta(days=1))
    dns_server.add("news.example.com", "TXT", "v=spf1 ip4:192.0.2.10 -all")
    fixed_at = later + timezone.timedelta(days=2)
    dns_checks.check_domain(news, now=fixed_at)

    alert = DomainAlert.objects.get()
    assert (alert.record, alert.raised_at, alert.resolved_at) == (RecordKind.SPF, later, fixed_at)
    assert alert.summary == "news.example.com has no SPF record."
    assert {r.record: r.status for r in again}[RecordKind.SPF] == CheckStatus.FAIL
    assert DomainCheck.objects.filter(domain=news).values("checked_at").distinct().count() == 4
    news.refresh_from_db()
    assert news.status == CheckStatus.PASS
    assert news.last_checked_at == fixed_at


def test_the_daily_job_rechecks_every_domain_and_is_scheduled_by_migrate(news, db, dns_server):
    other = SendingDomain.objects.create(domain="mail.example.org", transport=Transport.MAILGUN)

    tasks.check_all_sending_domains()
    call_command("migrate", verbosity=0)

    news.refresh_from_db()
    other.refresh_from_db()
    assert news.status == CheckStatus.PASS
    assert other.status == CheckStatus.FAIL
    task = PeriodicTask.objects.get(task="deliverability.tasks.check_all_sending_domains")
    assert task.enabled
