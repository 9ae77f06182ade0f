"""One classification table for SMTP replies, delivery reports and ESP verdicts."""

from __future__ import annotations

import email
import json
from email import policy
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from campaigns.bounces import (
    BounceCategory,
    Classification,
    Outcome,
    classify,
    classify_esp,
    expire_deferral,
    is_auto_reply,
    parse_dsn,
    parse_reply,
)

# Copied from the shared reference set (each file's origin and licence in its .src.txt), so the
# suite runs from any checkout.
REFERENCE = Path(__file__).resolve().parents[1] / "reference"
MAIL = REFERENCE / "mail"
WEBHOOKS = REFERENCE / "webhooks"

DELIVERED = Outcome.DELIVERED
DEFERRED = Outcome.DEFERRED
HARD = Outcome.HARD_BOUNCE
SOFT = Outcome.SOFT_BOUNCE
NOT_SENT = Outcome.NOT_SENT
C = BounceCategory


def classify_reply(reply: str) -> Classification:
    code, enhanced, text = parse_reply(reply)
    return classify(code, text, enhanced=enhanced)


def read_mail(name: str, mail_policy: policy.Policy = policy.compat32) -> Message:
    return email.message_from_bytes((MAIL / name).read_bytes(), policy=mail_policy)


# Replies as the providers send them (multi-line replies keep their continuation codes).
PROVIDER_REPLIES = [
    pytest.param(
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
        "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
        "550-5.1.1 unnecessary spaces. For more information, go to\r\n"
        "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1-20020a170902 - gsmtp",
        HARD,
        C.UNKNOWN_USER,
        id="gmail-no-such-user",
    ),
    pytest.param(
        "550-5.2.1 The email account that you tried to reach is disabled. Learn more at\r\n"
        "550 5.2.1  https://support.google.com/mail/?p=DisabledUser a1-20020a170902 - gsmtp",
        HARD,
        C.UNKNOWN_USER,
        id="gmail-disabled-account",
    ),
    pytest.param(
        "552-5.2.2 The email account that you tried to reach is over quota. Please direct\r\n"
        "552-5.2.2 the recipient to\r\n"
        "552 5.2.2  https://support.google.com/mail/?p=OverQuotaPerm a1-20020a170902 - gsmtp",
        SOFT,
        C.MAILBOX_FULL,
        id="gmail-over-quota-permanent",
    ),
    pytest.param(
        "452-4.2.2 The recipient's inbox is out of storage space. Please direct the\r\n"
        "452-4.2.2 recipient to\r\n"
        "452 4.2.2  https://support.google.com/mail/?p=OverQuotaTemp a1-20020a170902 - gsmtp",
        DEFERRED,
        C.MAILBOX_FULL,
        id="gmail-out-of-storage-temporary",
    ),
    pytest.param(
        "450-4.2.1 The user you are trying to contact is receiving mail at a rate that\r\n"
        "450-4.2.1 prevents additional messages from being delivered. Please resend your\r\n"
        "450-4.2.1 message at a later time. If the user is able to receive mail at that\r\n"
        "450-4.2.1 time, your message will be delivered. For more information, go to\r\n"
        "450 4.2.1  https://support.google.com/mail/?p=ReceivingRate a1-20020a170902 - gsmtp",
        DEFERRED,
        C.OTHER,
        id="gmail-recipient-receiving-too-fast",
    ),
    pytest.param(
        "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's\r\n"
        "550-5.7.26 DMARC policy. Please contact the administrator of example.com domain if\r\n"
        "550-5.7.26 this was a legitimate mail. To learn about the DMARC initiative, go to\r\n"
        "550 5.7.26  https://support.google.com/mail/?p=DmarcRejection a1-20020a170902 - gsmtp",
        SOFT,
        C.POLICY,
        id="gmail-dmarc",
    ),
    pytest.param(
        "550-5.7.26 This mail has been blocked because the sender is unauthenticated.\r\n"
        "550-5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM.\r\n"
        "550-5.7.26\r\n"
        "550-5.7.26  Authentication results:\r\n"
        "550-5.7.26  DKIM = did not pass\r\n"
        "550-5.7.26  SPF [example.com] with ip: [192.0.2.1] = did not pass\r\n"
        "550-5.7.26\r\n"
        "550-5.7.26  For instructions on setting up authentication, go to\r\n"
        "550 5.7.26  https://support.google.com/mail/answer/81126#authentication a1-2002 - gsmtp",
        SOFT,
        C.POLICY,
        id="gmail-unauthenticated-sender",
    ),
    pytest.param(
        "421-4.7.0 This message does not have authentication information or fails to\r\n"
        "421-4.7.0 pass authentication checks (SPF or DKIM). To best protect our users from\r\n"
        "421-4.7.0 spam, the message has been blocked. Please visit\r\n"
        "421 4.7.0  https://support.google.com/mail/answer/81126#authentication a1-2002 - gsmtp",
        DEFERRED,
        C.POLICY,
        id="gmail-authentication-deferral",
    ),
    pytest.param(
        "550-5.7.25 [192.0.2.1] The IP address sending this message does not have a\r\n"
        "550-5.7.25 PTR record setup, or the corresponding forward DNS entry does not\r\n"
        "550-5.7.25 point to the sending IP. As a policy, Gmail does not accept messages\r\n"
        "550-5.7.25 from IPs with missing PTR records. For more information, go to\r\n"
        "550 5.7.25  https://support.google.com/mail/answer/81126#ip-practices a1-2002 - gsmtp",
        SOFT,
        C.POLICY,
        id="gmail-missing-ptr",
    ),
    pytest.param(
        "550-5.7.1 [192.0.2.1] Our system has detected that this message is\r\n"
        "550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\r\n"
        "550-5.7.1 this message has been blocked. Please visit\r\n"
        "550-5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError\r\n"
        "550 5.7.1  for more information. a1-20020a170902 - gsmtp",
        SOFT,
        C.SPAM_CONTENT,
        id="gmail-unsolicited-message",
    ),
    pytest.param(
        "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely\r\n"
        "550-5.7.1 suspicious due to the very low reputation of the sending IP address.\r\n"
        "550-5.7.1 To best protect our users from spam, the message has been blocked.\r\n"
        "550-5.7.1 Please visit\r\n"
        "550 5.7.1  https://support.google.com/mail/answer/188131 for more information. - gsmtp",
        SOFT,
        C.REPUTATION,
        id="gmail-low-ip-reputation",
    ),
    pytest.param(
        "421-4.7.28 [192.0.2.1] Our system has detected an unusual rate of\r\n"
        "421-4.7.28 unsolicited mail originating from your IP address. To protect our\r\n"
        "421-4.7.28 users from spam, mail sent from your IP address has been temporarily\r\n"
        "421-4.7.28 rate limited. Please visit\r\n"
        "421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to\r\n"
        "421 4.7.28 review our Bulk Email Senders Guidelines. a1-20020a170902 - gsmtp",
        DEFERRED,
        C.REPUTATION,
        id="gmail-rate-limited-ip",
    ),
    pytest.param(
        "550-5.7.1 The user or domain that you are sending to (or from) has a policy that\r\n"
        "550-5.7.1 prohibited the mail that you sent. Please contact your domain\r\n"
        "550-5.7.1 administrator for further details. For more information, visit\r\n"
        "550 5.7.1  https://support.google.com/a/answer/172179 a1-20020a170902 - gsmtp",
        SOFT,
        C.POLICY,
        id="gmail-recipient-domain-policy",
    ),
    pytest.param(
        "552-5.3.4 Your message exceeded Google's message size limits. Please visit\r\n"
        "552-5.3.4  https://support.google.com/mail/?p=MaxSizeError to view our size\r\n"
        "552 5.3.4 guidelines. a1-20020a170902 - gsmtp",
        SOFT,
        C.MESSAGE_TOO_LARGE,
        id="gmail-message-too-large",
    ),
    pytest.param(
        "552-5.7.0 This message was blocked because its content presents a potential\r\n"
        "552-5.7.0 security issue. Please visit\r\n"
        "552-5.7.0  https://support.google.com/mail/?p=BlockedMessage to review our\r\n"
        "552 5.7.0 message content and attachment content guidelines. a1-2002 - gsmtp",
        SOFT,
        C.SPAM_CONTENT,
        id="gmail-dangerous-content",
    ),
    pytest.param(
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
        "[AM4PEPF00025F98.EURPRD83.prod.outlook.com]",
        HARD,
        C.UNKNOWN_USER,
        id="outlook-com-mailbox-unavailable",
    ),
    pytest.param(
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        HARD,
        C.UNKNOWN_USER,
        id="microsoft-365-recipient-not-found",
    ),
    pytest.param(
        "550 5.4.1 Recipient address rejected: Access denied. For more information see "
        "https://aka.ms/EXOSmtpErrors [AM2PEPF0001C70E.eurprd05.prod.outlook.com]",
        HARD,
        C.UNKNOWN_USER,
        id="microsoft-365-directory-based-edge-blocking",
    ),
    pytest.param(
        "550 5.7.515 Access denied, sending domain example.com does not meet the required "
        "authentication level. [DB1PEPF000509E4.eurprd03.prod.outlook.com]",
        SOFT,
        C.POLICY,
        id="outlook-bulk-sender-authentication",
    ),
    pytest.param(
        "550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification "
        "and has a DMARC policy of reject.",
        SOFT,
        C.POLICY,
        id="outlook-dmarc-reject",
    ),
    pytest.param(
        "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your "
        "Internet service provider since part of their network is on our block list (S3150). "
        "You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
        SOFT,
        C.REPUTATION,
        id="outlook-com-block-list",
    ),
    pytest.param(
        "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP "
        "reputation. For e-mail delivery information, see https://postmaster.live.com (S775)",
        DEFERRED,
        C.REPUTATION,
        id="outlook-com-rate-limited-reputation",
    ),
    pytest.param(
        "550 5.7.606 Access denied, banned sending IP [192.0.2.1]. To request removal from this "
        "list please visit https://sender.office.com/ and follow the directions.",
        SOFT,
        C.REPUTATION,
        id="microsoft-365-banned-ip",
    ),
    pytest.param(
        "550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. To request "
        "removal from this list see https://www.spamhaus.org/query/ip/192.0.2.1 (AS3130)",
        SOFT,
        C.REPUTATION,
        id="outlook-com-spamhaus",
    ),
    pytest.param(
        "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
        SOFT,
        C.MAILBOX_FULL,
        id="exchange-mailbox-full",
    ),
    pytest.param("550 5.7.1 Message rejected as spam by Content Filtering.", SOFT, C.SPAM_CONTENT, id="exchange-spam"),
    pytest.param(
        "550 5.4.316 Message expired, connection refused(Socket error code 10061)",
        SOFT,
        C.EXPIRED,
        id="exchange-message-expired",
    ),
    pytest.param(
        "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume "
        "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        DEFERRED,
        C.REPUTATION,
        id="yahoo-tss04-deferral",
    ),
    pytest.param(
        "553 5.7.2 [TSS09] All messages from 192.0.2.1 will be permanently deferred; Retrying will "
        "NOT succeed. See https://postmaster.yahooinc.com/error-codes",
        SOFT,
        C.REPUTATION,
        id="yahoo-tss09-permanent-block",
    ),
    pytest.param(
        "554 delivery error: dd This user doesn't have a yahoo.com account (nobody@yahoo.com) [0] "
        "- mta1234.mail.gq1.yahoo.com",
        HARD,
        C.UNKNOWN_USER,
        id="yahoo-no-account",
    ),
    pytest.param(
        "554 delivery error: dd Sorry your message to nobody@yahoo.com cannot be delivered. This "
        "mailbox is disabled (554.30). - mta1234.mail.bf1.yahoo.com",
        HARD,
        C.UNKNOWN_USER,
        id="yahoo-mailbox-disabled",
    ),
    pytest.param(
        "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires "
        "all senders to authenticate with either SPF or DKIM.",
        SOFT,
        C.POLICY,
        id="yahoo-unauthenticated",
    ),
    pytest.param(
        "554 5.7.9 Message not accepted for policy reasons.  See https://postmaster.yahooinc.com/error-codes",
        SOFT,
        C.POLICY,
        id="yahoo-policy-reasons",
    ),
    pytest.param(
        "552 1 Requested mail action aborted, mailbox not found", HARD, C.UNKNOWN_USER, id="yahoo-legacy-not-found"
    ),
    pytest.param("550 5.1.1 <nobody@icloud.com>: user does not exist", HARD, C.UNKNOWN_USER, id="icloud-no-user"),
    pytest.param("552 5.2.2 <full@icloud.com>: user is over quota", SOFT, C.MAILBOX_FULL, id="icloud-over-quota"),
    pytest.param(
        "554 5.7.1 [CS01] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137",
        SOFT,
        C.POLICY,
        id="icloud-local-policy",
    ),
    pytest.param(
        "550 Requested action not taken: mailbox unavailable", HARD, C.UNKNOWN_USER, id="gmx-mailbox-unavailable"
    ),
    pytest.param(
        "554-gmx.net (mxgmx117) Nemesis ESMTP Service not available\r\n"
        "554-No SMTP service\r\n"
        "554-IP address is black listed.\r\n"
        "554 For explanation visit https://postmaster.gmx.net/en/case?c=r0701&i=ip&v=192.0.2.1&r=1MxyzT",
        SOFT,
        C.REPUTATION,
        id="gmx-black-listed-ip",
    ),
    pytest.param(
        "554-web.de (mxweb112) Nemesis ESMTP Service not available\r\n"
        "554-No SMTP service\r\n"
        "554-Reject due to policy restrictions.\r\n"
        "554 For explanation visit https://postmaster.web.de/en/case?c=r0801&i=ip&v=192.0.2.1&r=1MxyzT",
        SOFT,
        C.POLICY,
        id="web-de-policy-restrictions",
    ),
    pytest.param(
        "552 Requested mail action aborted: exceeded storage allocation",
        SOFT,
        C.MAILBOX_FULL,
        id="gmx-exceeded-storage-allocation",
    ),
    pytest.param(
        "550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]",
        HARD,
        C.UNKNOWN_USER,
        id="orange-invalid-recipient",
    ),
    pytest.param(
        "552 5.2.2 Boite du destinataire pleine. Recipient overquota. OFR_417 [417]",
        SOFT,
        C.MAILBOX_FULL,
        id="orange-mailbox-full",
    ),
    pytest.param(
        "421 mwinf5c79 ME Trop de connexions, veuillez verifier votre configuration. Too many "
        "connections, slow down. OFR005_104 [104]",
        DEFERRED,
        C.OTHER,
        id="orange-too-many-connections",
    ),
    pytest.param(
        "550 Message was not accepted -- invalid mailbox. Local mailbox nobody@mail.ru is unavailable: user not found",
        HARD,
        C.UNKNOWN_USER,
        id="mail-ru-user-not-found",
    ),
    pytest.param(
        "550 Message was not accepted -- invalid mailbox. Local mailbox gone@mail.ru is "
        "unavailable: account is disabled",
        HARD,
        C.UNKNOWN_USER,
        id="mail-ru-account-disabled",
    ),
    pytest.param(
        "550 spam message rejected. Please visit http://help.mail.ru/notspam-support/id?c=AbCdEf or "
        "report details to abuse@corp.mail.ru. Error code: 0123456789ABCDEF. ID: 0123456789ABCDEF.",
        SOFT,
        C.SPAM_CONTENT,
        id="mail-ru-spam",
    ),
    pytest.param(
        "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local recipient table",
        HARD,
        C.UNKNOWN_USER,
        id="postfix-local-user-unknown",
    ),
    pytest.param(
        "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
        HARD,
        C.UNKNOWN_USER,
        id="postfix-virtual-user-unknown",
    ),
    pytest.param(
        "450 4.1.2 <someone@nowhere.example>: Recipient address rejected: Domain not found",
        DEFERRED,
        C.DNS_FAILURE,
        id="postfix-recipient-domain-not-found",
    ),
    pytest.param(
        "553 5.1.8 <news@nowhere.example>: Sender address rejected: Domain not found",
        SOFT,
        C.POLICY,
        id="postfix-our-sender-domain-not-found",
    ),
    pytest.param(
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; "
        "https://www.spamhaus.org/query/ip/192.0.2.1",
        SOFT,
        C.REPUTATION,
        id="postfix-dnsbl",
    ),
    pytest.param("554 5.7.1 <someone@example.org>: Relay access denied", SOFT, C.POLICY, id="postfix-relay-denied"),
    pytest.param("552 5.3.4 Message size exceeds fixed limit", SOFT, C.MESSAGE_TOO_LARGE, id="postfix-size"),
    pytest.param("452 4.3.1 Insufficient system storage", DEFERRED, C.OTHER, id="postfix-server-disk-full"),
    pytest.param(
        "450 4.7.1 <someone@example.org>: Recipient address rejected: Greylisted, see "
        "https://postgrey.schweikert.ch/help/example.org.html",
        DEFERRED,
        C.OTHER,
        id="postgrey-greylisting",
    ),
    pytest.param(
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]",
        DEFERRED,
        C.POLICY,
        id="postfix-reverse-dns-temporary",
    ),
    pytest.param(
        "550 5.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]",
        SOFT,
        C.POLICY,
        id="postfix-reverse-dns",
    ),
    pytest.param(
        "550 5.7.23 <someone@example.org>: Recipient address rejected: Message rejected due to: SPF "
        "fail - not authorized.",
        SOFT,
        C.POLICY,
        id="postfix-spf-policy-daemon",
    ),
    pytest.param("550 Unrouteable address", HARD, C.UNKNOWN_USER, id="exim-unrouteable-address"),
    pytest.param(
        "550-Verification failed for <news@example.org>\r\n550-Unrouteable address\r\n550 Sender verify failed",
        SOFT,
        C.POLICY,
        id="exim-sender-verify-failed",
    ),
    pytest.param("552 Message size exceeds maximum permitted", SOFT, C.MESSAGE_TOO_LARGE, id="exim-size"),
    pytest.param("550 Administrative prohibition", SOFT, C.POLICY, id="exim-administrative-prohibition"),
    pytest.param("451 Temporary local problem - please try later", DEFERRED, C.OTHER, id="exim-temporary-problem"),
    pytest.param(
        "550 rejected because 192.0.2.1 is in a black list at zen.spamhaus.org",
        SOFT,
        C.REPUTATION,
        id="exim-dnsbl",
    ),
    pytest.param("550 5.1.1 <nobody@example.com>... User unknown", HARD, C.UNKNOWN_USER, id="sendmail-user-unknown"),
    pytest.param("250 2.0.0 OK  1700000000 a1-20020a170902 - gsmtp", DELIVERED, "", id="gmail-accepted"),
    pytest.param("250 2.6.0 <id@example.com> [InternalId=1] Queued mail for delivery", DELIVERED, "", id="outlook-ok"),
    pytest.param("550", SOFT, C.OTHER, id="bare-550"),
    pytest.param("421", DEFERRED, C.OTHER, id="bare-421"),
]


@pytest.mark.parametrize(("reply", "outcome", "category"), PROVIDER_REPLIES)
def test_it_classifies_real_provider_replies(reply, outcome, category):
    result = classify_reply(reply)

    assert (result.outcome, result.category) == (outcome, category)


@pytest.mark.parametrize(("reply", "outcome", "category"), PROVIDER_REPLIES)
def test_it_classifies_smtplib_replies_the_same_as_raw_ones(reply, outcome, category):
    # smtplib strips the reply code from each line and hands back bytes.
    code, _, _ = parse_reply(reply)
    message = "\n".join(line[4:] for line in reply.splitlines()).encode()

    result = classify(code, message)

    assert (result.outcome, result.category) == (outcome, category)


@pytest.mark.parametrize(
    ("category", "reply"),
    [
        (C.UNKNOWN_USER, "550 5.1.1 User unknown"),
        (C.DNS_FAILURE, "550 5.1.2 Domain does not exist"),
        (C.MAILBOX_FULL, "552 5.2.2 Mailbox full"),
        (C.MESSAGE_TOO_LARGE, "552 5.3.4 Message too big"),
        (C.POLICY, "550 5.7.26 DMARC"),
        (C.SPAM_CONTENT, "550 5.7.1 Message rejected as spam"),
        (C.REPUTATION, "554 5.7.1 Client host blocked using Spamhaus"),
        (C.EXPIRED, "550 5.4.7 Delivery time expired"),
        (C.OTHER, "550 5.0.0 Something went wrong"),
    ],
)
def test_only_a_bad_address_makes_a_5xx_a_hard_bounce(category, reply):
    result = classify_reply(reply)

    assert result.category == category
    assert result.outcome == (HARD if category in {C.UNKNOWN_USER, C.DNS_FAILURE} else SOFT)


def test_parse_reply_joins_a_multi_line_reply():
    reply = (
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
        "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
        "550 5.1.1  unnecessary spaces. a1-20020a170902 - gsmtp"
    )

    assert parse_reply(reply) == (
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist. Please try double-checking the "
        "recipient's email address for typos or unnecessary spaces. a1-20020a170902 - gsmtp",
    )


@pytest.mark.parametrize(
    ("reply", "parsed"),
    [
        pytest.param(b"250 2.0.0 Ok: queued as 4Xyz", (250, "2.0.0", "Ok: queued as 4Xyz"), id="bytes"),
        pytest.param("smtp; 550 5.1.1 User unknown", (550, "5.1.1", "User unknown"), id="dsn-diagnostic-code"),
        pytest.param("smtp;550 5.1.1 User unknown", (550, "5.1.1", "User unknown"), id="postmark-details"),
        pytest.param("X-Postfix; Host not found", (None, "", "Host not found"), id="non-smtp-diagnostic"),
        pytest.param("5.1.1 No such user\n5.1.1 here", (None, "5.1.1", "No such user here"), id="smtplib-text"),
        pytest.param("421 Service closing", (421, "", "Service closing"), id="no-enhanced-code"),
    ],
)
def test_parse_reply_accepts_every_shape_a_reply_arrives_in(reply, parsed):
    assert parse_reply(reply) == parsed


GARBAGE = [b"\xff\xfe", b"", "", "hello", "\x00\x01", "999", "5.1.1", "-", "550-", "12 34", "\r\n\r\n", "9.9.9 x"]


@pytest.mark.parametrize("reply", GARBAGE)
def test_garbage_replies_never_raise(reply):
    code, enhanced, text = parse_reply(reply)
    classify(code, text, enhanced=enhanced)
    classify(550, reply)
    classify(None, reply, enhanced=str(reply))
    classify_esp(event="bounced", text=str(reply), enhanced=str(reply), esp_bounce_type=str(reply))


def test_a_garbled_reply_without_a_code_is_not_sent():
    assert classify_reply("hello").outcome == NOT_SENT


@pytest.mark.parametrize("text", ["timed out", "[Errno 111] Connection refused", "Connection unexpectedly closed", ""])
def test_no_answer_is_not_sent_and_not_a_bounce(text):
    assert classify(None, text).outcome == NOT_SENT


@pytest.mark.parametrize("code", [354, 334, 199, 600, -1, 0])
def test_a_reply_without_a_verdict_is_deferred_for_another_try(code):
    assert (classify(code, "Start mail input").outcome, classify(code).category) == (DEFERRED, C.OTHER)


def test_the_reply_code_decides_when_the_enhanced_class_disagrees():
    assert classify(550, "4.2.2 over quota").outcome == SOFT
    assert classify(450, "5.1.1 user unknown").outcome == DEFERRED


def test_the_text_wins_over_a_vague_enhanced_code():
    assert classify(550, "5.7.1 Requested action not taken: mailbox unavailable").category == C.UNKNOWN_USER


def test_a_precise_enhanced_code_wins_over_the_text():
    assert classify(550, "5.7.26 Message blocked: suspected spam").category == C.POLICY


def test_the_classification_keeps_the_code_and_trimmed_text():
    result = classify(552, b"5.2.2 <neko@example.org> Quota exceeded\n5.2.2   (mailbox for user is full)  ")

    assert result == Classification(
        SOFT, C.MAILBOX_FULL, 552, "5.2.2", "<neko@example.org> Quota exceeded (mailbox for user is full)"
    )


def test_a_deferral_that_runs_out_of_retries_becomes_an_expired_soft_bounce():
    deferral = classify(421, "4.7.0 [TSS04] Messages temporarily deferred due to user complaints")

    expired = expire_deferral(deferral)

    assert expired == Classification(SOFT, C.EXPIRED, 421, "4.7.0", deferral.text)


def test_expiring_anything_but_a_deferral_changes_nothing():
    hard = classify(550, "5.1.1 user unknown")

    assert expire_deferral(hard) is hard


DSNS = [
    pytest.param(
        "dsn_user_unknown.eml",
        "kijitora@example.co.jp",
        "failed",
        Classification(HARD, C.UNKNOWN_USER, 550, "5.1.1", "Address rejected kijitora@example.co.jp"),
        "<A8F82EDD-E518-4F5C-8C70-BC4EFF24AB9F@example.ne.jp>",
        id="user-unknown",
    ),
    pytest.param(
        "dsn_mailbox_full.eml",
        "neko@nyaaan.example.org",
        "failed",
        Classification(
            SOFT, C.MAILBOX_FULL, 552, "5.2.2", "<neko@nyaaan.example.org> Quota exceeded (mailbox for user is full)"
        ),
        "<BA77602D-7E1E-4C1B-92C9-4A2324E3E141@example.jp>",
        id="mailbox-full",
    ),
    pytest.param(
        "dsn_host_unknown_dns.eml",
        "kijitora@neko.example.jp",
        "failed",
        Classification(
            HARD,
            C.DNS_FAILURE,
            None,
            "5.4.4",
            "Host or domain name not found. Name service error for name=neko.example.jp type=AAAA: Host not found",
        ),
        "<20141024104625.9C81E2203D@vagrant-centos65.vagrantup.com>",
        id="host-unknown",
    ),
    pytest.param(
        "dsn_expired_timeout.eml",
        "kijitora@example.com",
        "failed",
        Classification(SOFT, C.EXPIRED, None, "4.4.1", "connect to example.com[93.184.216.119]: Connection timed out"),
        "<143E20AB-3911-4809-8B49-BB1A17513571@mail.ru>",
        id="expired-after-retries",
    ),
    pytest.param(
        "dsn_delayed_warning.eml",
        "kijitora@example.net",
        "delayed",
        Classification(DEFERRED, C.OTHER, None, "4.4.0", ""),
        "<000000000000000@list.example.jp>",
        id="delayed-warning",
    ),
]


@pytest.mark.parametrize("mail_policy", [policy.compat32, policy.default], ids=["compat32", "default"])
@pytest.mark.parametrize(("name", "recipient", "action", "classification", "original_message_id"), DSNS)
def test_it_reads_each_recipient_of_a_delivery_report(
    name, recipient, action, classification, original_message_id, mail_policy
):
    [record] = parse_dsn(read_mail(name, mail_policy))

    assert record.final_recipient == recipient
    assert record.action == action
    assert record.status == classification.enhanced
    assert record.classification == classification
    assert record.original_message_id == original_message_id


def test_a_delivery_report_keeps_the_original_recipient_and_diagnostic():
    [record] = parse_dsn(read_mail("dsn_user_unknown.eml"))

    assert record.original_recipient == "kijitora@example.co.jp"
    assert record.diagnostic_code == "smtp; 550 5.1.1 Address rejected kijitora@example.co.jp"


def test_a_delivery_report_with_several_recipients_gives_one_record_each():
    report = email.message_from_string(
        "From: MAILER-DAEMON@example.org\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n'
        "\n"
        "--b\n"
        "Content-Type: text/plain\n\nTwo failed, one delivered.\n"
        "--b\n"
        "Content-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.org\n\n"
        "Final-Recipient: rfc822; gone@example.com\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
        "Final-Recipient: rfc822; busy@example.com\nAction: FAILED\nStatus: 4.2.2\n"
        "Diagnostic-Code: smtp; 452 4.2.2 Over quota\n\n"
        "Final-Recipient: rfc822; fine@example.com\nAction: relayed\nStatus: 2.0.0\n\n"
        "--b--\n"
    )

    records = [(r.final_recipient, r.classification.outcome, r.classification.category) for r in parse_dsn(report)]

    assert records == [
        ("gone@example.com", HARD, C.UNKNOWN_USER),
        ("busy@example.com", SOFT, C.EXPIRED),
        ("fine@example.com", DELIVERED, ""),
    ]


@pytest.mark.parametrize("name", ["arf_abuse_complaint.eml", "autoreply_vacation_rfc3834.eml"])
def test_anything_but_a_delivery_report_has_no_dsn_records(name):
    assert parse_dsn(read_mail(name)) == []


def test_the_vacation_reply_is_an_auto_reply():
    assert is_auto_reply(read_mail("autoreply_vacation_rfc3834.eml"))


@pytest.mark.parametrize(
    "name",
    [
        "arf_abuse_complaint.eml",
        "dsn_delayed_warning.eml",
        "dsn_expired_timeout.eml",
        "dsn_host_unknown_dns.eml",
        "dsn_mailbox_full.eml",
        "dsn_user_unknown.eml",
    ],
)
def test_reports_are_not_auto_replies_even_when_auto_submitted(name):
    assert not is_auto_reply(read_mail(name))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param("Auto-Submitted: auto-replied", True, id="rfc3834-auto-replied"),
        pytest.param("Auto-Submitted: Auto-Generated; owner-email=x@example.org", True, id="rfc3834-auto-generated"),
        pytest.param("Auto-Submitted: no", False, id="rfc3834-no"),
        pytest.param("X-Autoreply: yes", True, id="x-autoreply"),
        pytest.param("X-Autorespond: Out of office", True, id="x-autorespond"),
        pytest.param("Precedence: auto_reply", True, id="precedence-auto-reply"),
        pytest.param("Precedence: bulk", False, id="precedence-bulk"),
        pytest.param("", False, id="a-person-writing-back"),
    ],
)
def test_it_recognises_auto_replies_by_their_headers(headers, expected):
    message = email.message_from_string(f"From: kijitora@example.net\nSubject: Re: News\n{headers}\n\nThanks!\n")

    assert is_auto_reply(message) is expected


def test_a_plain_text_bounce_from_mailer_daemon_is_not_an_auto_reply():
    bounce = email.message_from_string(
        "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        "Auto-Submitted: auto-replied\n\n"
        "This message was created automatically by mail delivery software.\n"
    )

    assert not is_auto_reply(bounce)


@pytest.mark.parametrize(
    ("event", "reason", "outcome", "category"),
    [
        ("delivered", "", DELIVERED, ""),
        ("deferred", "other", DEFERRED, C.OTHER),
        ("bounced", "bounced", SOFT, C.OTHER),
        ("bounced", "other", SOFT, C.OTHER),
        ("bounced", "invalid", HARD, C.UNKNOWN_USER),
        ("bounced", "timed_out", SOFT, C.EXPIRED),
        ("bounced", "blocked", SOFT, C.REPUTATION),
        ("bounced", "spam", SOFT, C.SPAM_CONTENT),
        ("rejected", "invalid", HARD, C.UNKNOWN_USER),
        ("rejected", "bounced", HARD, C.UNKNOWN_USER),
        ("rejected", "timed_out", SOFT, C.EXPIRED),
        ("rejected", "blocked", NOT_SENT, C.POLICY),
        ("rejected", "spam", NOT_SENT, C.OTHER),
        ("rejected", "unsubscribed", NOT_SENT, C.OTHER),
        ("rejected", "other", NOT_SENT, C.OTHER),
        ("failed", "", NOT_SENT, C.OTHER),
        ("BOUNCED", "Invalid", HARD, C.UNKNOWN_USER),
    ],
)
def test_it_follows_anymails_event_type_and_reject_reason(event, reason, outcome, category):
    result = classify_esp(event=event, esp_reason=reason)

    assert (result.outcome, result.category) == (outcome, category)


@pytest.mark.parametrize(
    "event", ["queued", "sent", "opened", "clicked", "complained", "unsubscribed", "subscribed", "unknown", ""]
)
def test_events_that_say_nothing_about_delivery_are_not_classified(event):
    assert classify_esp(event=event, esp_reason="spam", text="550 5.1.1 user unknown") is None


@pytest.mark.parametrize(
    ("bounce_type", "text", "outcome", "category"),
    [
        ("HardBounce", "", HARD, C.UNKNOWN_USER),
        ("HardBounce", "smtp;552 5.2.2 mailbox full", HARD, C.MAILBOX_FULL),
        ("SoftBounce", "smtp;550 5.1.1 user unknown", SOFT, C.UNKNOWN_USER),
        ("Transient", "", DEFERRED, C.OTHER),
        ("DnsError", "", DEFERRED, C.DNS_FAILURE),
        ("SpamNotification", "", SOFT, C.SPAM_CONTENT),
        ("Blocked", "", SOFT, C.REPUTATION),
        ("DMARCPolicy", "", SOFT, C.POLICY),
        ("permanent", "5.1.1 The email account that you tried to reach does not exist.", HARD, C.UNKNOWN_USER),
        ("permanent", "5.2.2 The email account that you tried to reach is over quota.", SOFT, C.MAILBOX_FULL),
        ("temporary", "No MX for nomx.example.com", DEFERRED, C.DNS_FAILURE),
        ("bounce", "550 5.1.1 The email account that you tried to reach does not exist.", HARD, C.UNKNOWN_USER),
        ("blocked", "554 5.7.1 Message rejected: DMARC policy", SOFT, C.POLICY),
        ("expired", "", SOFT, C.EXPIRED),
    ],
)
def test_the_esps_own_bounce_class_comes_first_then_the_table(bounce_type, text, outcome, category):
    result = classify_esp(event="bounced", esp_reason="bounced", text=text, esp_bounce_type=bounce_type)

    assert (result.outcome, result.category) == (outcome, category)


def mailgun_fields(payload: dict[str, Any]) -> dict[str, Any]:
    event_data = payload["event-data"]
    status = event_data.get("delivery-status", {})
    return {
        "code": status.get("code"),
        "text": status.get("message", ""),
        "esp_bounce_type": event_data.get("severity", ""),
    }


def postmark_fields(payload: dict[str, Any]) -> dict[str, Any]:
    return {"text": payload.get("Details", ""), "esp_bounce_type": payload.get("Type", "")}


def sendgrid_fields(payload: list[dict[str, Any]]) -> dict[str, Any]:
    [event] = payload
    return {
        "text": event.get("reason") or event.get("response", ""),
        "enhanced": event.get("status", ""),
        "esp_bounce_type": event.get("type", ""),
    }


# (file, fields, anymail event_type and reject_reason as its .src.txt records, expected)
WEBHOOK_EVENTS = [
    ("mailgun_failed_permanent.json", mailgun_fields, "bounced", "bounced", (HARD, C.UNKNOWN_USER, 550, "5.1.1")),
    ("mailgun_failed_temporary.json", mailgun_fields, "deferred", "other", (DEFERRED, C.DNS_FAILURE, 498, "")),
    ("mailgun_complained.json", mailgun_fields, "complained", "", None),
    ("mailgun_unsubscribed.json", mailgun_fields, "unsubscribed", "", None),
    ("postmark_bounce.json", postmark_fields, "bounced", "bounced", (HARD, C.UNKNOWN_USER, 550, "5.1.1")),
    ("postmark_spam_complaint.json", postmark_fields, "complained", "spam", None),
    ("postmark_subscription_change_unsubscribe.json", postmark_fields, "unsubscribed", "unsubscribed", None),
    ("sendgrid_bounce.json", sendgrid_fields, "bounced", "", (HARD, C.UNKNOWN_USER, 550, "5.1.1")),
    ("sendgrid_deferred.json", sendgrid_fields, "deferred", "", (DEFERRED, C.REPUTATION, None, "")),
    ("sendgrid_delivered.json", sendgrid_fields, "delivered", "", (DELIVERED, "", 250, "2.0.0")),
    ("sendgrid_open.json", sendgrid_fields, "opened", "", None),
    ("sendgrid_click.json", sendgrid_fields, "clicked", "", None),
]


@pytest.mark.parametrize(
    ("name", "fields", "event", "reason", "expected"),
    [pytest.param(*case, id=case[0].removesuffix(".json")) for case in WEBHOOK_EVENTS],
)
def test_it_classifies_the_reference_webhook_payloads(name, fields, event, reason, expected):
    payload = json.loads((WEBHOOKS / name).read_text())

    result = classify_esp(event=event, esp_reason=reason, **fields(payload))

    if expected is None:
        assert result is None
    else:
        assert (result.outcome, result.category, result.code, result.enhanced) == expected
