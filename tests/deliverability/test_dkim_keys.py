"""DKIM keys: generated, encrypted at rest, rotated under new selectors, signing verified against DNS."""

from __future__ import annotations

import dkim
import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from crm import encryption
from deliverability import dns_checks, records, signing
from deliverability.models import DkimKey, KeyAlgorithm, KeyState
from tests.conftest import publish_key

MESSAGE = (
    b"From: News <news@news.example.com>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: November news\r\n"
    b"Date: Mon, 02 Nov 2026 09:30:00 +0000\r\n"
    b"Message-ID: <n1@news.example.com>\r\n"
    b"List-Unsubscribe: <https://crm.example.com/u/abc>, <mailto:unsubscribe@example.com>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello Alice.\r\n"
)


def test_generated_keys_have_the_promised_size_and_their_record_parses(news):
    rsa_key = news.dkim_keys.get()
    ed_key = signing.create_key(news, algorithm=KeyAlgorithm.ED25519, now=timezone.now())

    assert (rsa_key.key_bits, dns_checks.parse_dkim_record(rsa_key.record_value()).key_bits) == (2048, 2048)
    assert (ed_key.key_bits, dns_checks.parse_dkim_record(ed_key.record_value()).key_bits) == (256, 256)
    assert ed_key.record_value().startswith("v=DKIM1; k=ed25519; p=")
    assert ed_key.state == KeyState.PENDING


def test_private_keys_are_stored_encrypted_and_unreadable_without_the_key(news, settings):
    key = news.dkim_keys.get()

    assert "PRIVATE KEY" not in key.private_key_encrypted
    assert encryption.decrypt(key.private_key_encrypted).startswith("-----BEGIN RSA PRIVATE KEY-----")
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(encryption.UnreadableSecret):
        encryption.decrypt(key.private_key_encrypted)


def test_an_old_encryption_key_still_decrypts_after_a_new_one_is_put_first(news, settings):
    key = news.dkim_keys.get()
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.ENCRYPTION_KEYS]

    assert encryption.decrypt(key.private_key_encrypted).startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_a_message_signed_with_our_key_verifies_against_the_published_record(news):
    signed = signing.sign_message(MESSAGE, "news@news.example.com")

    assert signing.verify_message(signed) == [
        signing.Verification(True, domain="news.example.com", selector=news.dkim_keys.get().selector)
    ]
    signature = signed.split(b"\r\nFrom:")[0].replace(b"\r\n ", b" ").lower()
    assert b"list-unsubscribe : list-unsubscribe-post" in signature


def test_rsa_and_ed25519_keys_both_sign_and_both_verify(news, dns_server):
    ed_key = signing.create_key(news, algorithm=KeyAlgorithm.ED25519, now=timezone.now())
    publish_key(dns_server, ed_key)
    signing.activate_key(ed_key, now=timezone.now())

    verified = signing.verify_message(signing.sign_message(MESSAGE, "news@news.example.com"))

    assert sorted(v.selector for v in verified if v.ok) == sorted(news.dkim_keys.values_list("selector", flat=True))
    assert len(verified) == 2


def test_an_rsa_signature_is_byte_for_byte_the_one_dkimpy_makes_alone(news, now):
    key = news.dkim_keys.get()
    pem = encryption.decrypt(key.private_key_encrypted).encode()
    headers = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"]
    headers += [b"list-unsubscribe", b"list-unsubscribe-post"]
    by_dkimpy_alone = dkim.sign(MESSAGE, key.selector.encode(), b"news.example.com", pem, include_headers=headers)

    signed = signing.sign_message(MESSAGE, "news@news.example.com")

    assert signed == by_dkimpy_alone + MESSAGE


def test_long_folded_headers_and_an_odd_body_still_verify_with_each_algorithm(news, dns_server):
    ed_key = signing.create_key(news, algorithm=KeyAlgorithm.ED25519, now=timezone.now())
    publish_key(dns_server, ed_key)
    signing.activate_key(ed_key, now=timezone.now())
    odd = MESSAGE.replace(b"Subject: November news", b"Subject: November news,\r\n\t" + b"very long " * 20)
    odd += b"  trailing spaces   \r\n\r\n\r\n"

    verified = signing.verify_message(signing.sign_message(odd, "news@news.example.com"))

    assert [v.ok for v in verified] == [True, True]


def test_a_changed_body_or_a_missing_record_fails_verification_and_says_which(news, dns_server):
    signed = signing.sign_message(MESSAGE, "news@news.example.com")
    tampered = signed.replace(b"Hello Alice.", b"Hello Mallory.")
    selector = news.dkim_keys.get().selector

    changed = signing.verify_message(tampered)[0]
    dns_server.clear()
    unpublished = signing.verify_message(signed)[0]

    assert changed.ok is False and changed.reason.startswith("body hash mismatch")
    assert (unpublished.ok, unpublished.reason) == (
        False,
        f"no key is published at {selector}._domainkey.news.example.com",
    )


def test_a_domain_without_an_active_key_of_ours_is_left_unsigned(db, news):
    news.dkim_keys.update(state=KeyState.RETIRED)

    assert signing.sign_message(MESSAGE, "news@news.example.com") == MESSAGE


def test_a_new_key_cannot_sign_before_its_record_is_published(news):
    new = signing.create_key(news, algorithm=KeyAlgorithm.RSA, now=timezone.now())

    with pytest.raises(signing.KeyRotationError, match="is not ready: No DKIM key is published"):
        signing.activate_key(new, now=timezone.now())
    assert DkimKey.objects.get(pk=new.pk).state == KeyState.PENDING


def test_rotation_keeps_the_old_key_published_until_it_is_retired(news, dns_server, now):
    old = news.dkim_keys.get()
    signed_with_old = signing.sign_message(MESSAGE, "news@news.example.com")
    new = signing.create_key(news, algorithm=KeyAlgorithm.RSA, now=now)
    publish_key(dns_server, new)

    replaced = signing.activate_key(new, now=now)
    signed_with_new = signing.sign_message(MESSAGE, "news@news.example.com")
    state_after_switch = DkimKey.objects.get(pk=old.pk).state
    published_while_retiring = [record.name for record in records.records_to_publish(news)]
    signing.retire_key(replaced, now=now)

    assert new.selector != old.selector
    assert replaced == old and state_after_switch == KeyState.RETIRING
    assert [v.selector for v in signing.verify_message(signed_with_new)] == [new.selector]
    assert signing.verify_message(signed_with_old)[0].ok
    assert old.record_name in published_while_retiring
    assert old.record_name not in [record.name for record in records.records_to_publish(news)]
    assert DkimKey.objects.get(pk=old.pk).state == KeyState.RETIRED
    with pytest.raises(signing.KeyRotationError):
        signing.retire_key(new, now=now)


def test_selectors_never_repeat_within_a_month(news, now):
    selectors = {signing.create_key(news, algorithm=KeyAlgorithm.RSA, now=now).selector for _ in range(3)}

    assert selectors == {"dw202611r2", "dw202611r3", "dw202611r4"}


def test_a_key_dns_does_not_answer_for_is_neither_pass_nor_fail(news, dns_server, settings):
    settings.DNS_TIMEOUT_SECONDS = 0.5
    signed = signing.sign_message(MESSAGE, "news@news.example.com")
    dns_server.silence(news.dkim_keys.get().record_name)

    [verification] = signing.verify_message(signed)

    assert (verification.ok, verification.temporary) == (False, True)
    assert verification.reason.startswith("could not look up the key: the DNS server did not answer")
