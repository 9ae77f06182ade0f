"""Import consent rules: who gets subscribed, who gets suppressed, and that nothing happens twice."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from crm import consent
from crm.importing.engine import run_import
from crm.models import (
    ConsentMethod,
    ConsentRecord,
    Contact,
    EmailStatus,
    ImportBasis,
    ImportJob,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)

MAILCHIMP_SUBSCRIBED = (
    '"Email Address","First Name","Last Name","Address","Phone Number","MEMBER_RATING","OPTIN_TIME","OPTIN_IP",'
    '"CONFIRM_TIME","CONFIRM_IP","LATITUDE","LONGITUDE","GMTOFF","DSTOFF","TIMEZONE","CC","REGION","LAST_CHANGED",'
    '"LEID","EUID","NOTES","TAGS"\r\n'
    '"ann@example.com","Ann","Lee","","+49 30 1","2","2023-01-05 10:00:00","203.0.113.5","2023-01-05 10:03:00",'
    '"203.0.113.6","","","","","Europe/Berlin","DE","","2023-02-01 00:00:00","123","abc","VIP",""\r\n'
    '"ben@example.com","Ben","","","","2","","","","","","","","","","","","2023-02-01 00:00:00","124","abd","",""\r\n'
)
MAILCHIMP_UNSUBSCRIBED = (
    '"Email Address","First Name","MEMBER_RATING","OPTIN_TIME","OPTIN_IP","CONFIRM_TIME","CONFIRM_IP","UNSUB_TIME",'
    '"UNSUB_CAMPAIGN_TITLE","UNSUB_CAMPAIGN_ID","UNSUB_REASON","UNSUB_REASON_OTHER","LEID","EUID"\r\n'
    '"cat@example.com","Cat","1","2022-01-01 00:00:00","","","","2023-03-04 05:06:07","March news","c1",'
    '"NORMAL","","7","x"\r\n'
)
MAILCHIMP_CLEANED = (
    '"Email Address","MEMBER_RATING","OPTIN_TIME","OPTIN_IP","CONFIRM_TIME","CONFIRM_IP","CLEAN_TIME",'
    '"CLEAN_CAMPAIGN_TITLE","CLEAN_CAMPAIGN_ID","LEID","EUID"\r\n'
    '"dan@example.com","1","2022-01-01 00:00:00","","","","2023-05-06 07:08:09","May news","c2","8","y"\r\n'
)


@pytest.fixture
def mailchimp_zip(tmp_path) -> Path:
    path = tmp_path / "members_export_abc123.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("subscribed_email_audience_export_abc123.csv", MAILCHIMP_SUBSCRIBED)
        archive.writestr("unsubscribed_email_audience_export_abc123.csv", MAILCHIMP_UNSUBSCRIBED)
        archive.writestr("cleaned_email_audience_export_abc123.csv", MAILCHIMP_CLEANED)
    return path


def do_import(path: Path, types, *, now, manager=None, **options) -> ImportJob:
    job = ImportJob.objects.create(
        file_name=path.name,
        file_path=str(path),
        preset=options.pop("preset", "auto"),
        created_at=now,
        created_by=manager,
        **options,
    )
    job.subscription_types.set(types)
    run_import(job, path, now=now)
    job.refresh_from_db()
    return job


def snapshot() -> tuple:
    return (
        list(Contact.objects.order_by("pk").values_list("email_normalized", "first_name", "last_name", "properties")),
        list(Subscription.objects.order_by("pk").values_list("contact__email_normalized", "status")),
        ConsentRecord.objects.count(),
        list(Suppression.objects.order_by("pk").values_list("email", "reason")),
    )


def test_a_mailchimp_zip_subscribes_proven_opt_ins_and_suppresses_the_rest(mailchimp_zip, newsletter, now):
    job = do_import(mailchimp_zip, [newsletter], now=now)
    assert job.status == "done"
    assert job.counts == {
        "rows": 4,
        "invalid": 0,
        "duplicate": 0,
        "new": 4,
        "updated": 0,
        "subscribed": 1,
        "suppressed": 2,
        "no_consent": 1,
        "kept_out": 0,
    }
    ann = Contact.objects.get(email_normalized="ann@example.com")
    assert (ann.first_name, ann.last_name, ann.phone, ann.time_zone, ann.source) == (
        "Ann",
        "Lee",
        "+49 30 1",
        "Europe/Berlin",
        "import",
    )
    assert ann.properties == {"CC": "DE", "NOTES": "VIP"}
    assert Subscription.objects.get(contact=ann).status == SubscriptionStatus.SUBSCRIBED
    record = ConsentRecord.objects.get(contact=ann)
    assert (record.action, record.method, record.ip_address) == ("granted", "import", "203.0.113.6")
    assert record.evidence["OPTIN_TIME"] == "2023-01-05 10:00:00"
    assert record.evidence["CONFIRM_IP"] == "203.0.113.6"
    assert record.evidence["source_system"] == "Mailchimp"
    assert (record.evidence["file"], record.evidence["line"]) == ("subscribed_email_audience_export_abc123.csv", 2)
    assert not Subscription.objects.filter(contact__email_normalized="ben@example.com").exists()

    unsubscribed = Suppression.objects.get(email="cat@example.com")
    assert unsubscribed.reason == SuppressionReason.IMPORTED_UNSUBSCRIBE
    assert unsubscribed.occurred_at.isoformat() == "2023-03-04T05:06:07+00:00"
    assert "March news" in unsubscribed.note
    cleaned = Suppression.objects.get(email="dan@example.com")
    assert cleaned.reason == SuppressionReason.IMPORTED_CLEANED
    assert Contact.objects.get(email_normalized="dan@example.com").email_status == EmailStatus.HARD_BOUNCED
    assert not Subscription.objects.filter(
        contact__email_normalized__in=["cat@example.com", "dan@example.com"]
    ).exists()


def test_importing_the_same_file_twice_changes_nothing_the_second_time(mailchimp_zip, newsletter, now):
    do_import(mailchimp_zip, [newsletter], now=now)
    before = snapshot()
    again = do_import(mailchimp_zip, [newsletter], now=now)
    assert snapshot() == before
    assert (again.counts["new"], again.counts["updated"], again.counts["subscribed"], again.counts["suppressed"]) == (
        0,
        0,
        0,
        0,
    )


def test_a_dry_run_reports_the_same_counts_and_changes_nothing(mailchimp_zip, newsletter, now):
    dry = do_import(mailchimp_zip, [newsletter], now=now, dry_run=True)
    assert snapshot() == ([], [], 0, [])
    real = do_import(mailchimp_zip, [newsletter], now=now)
    assert dry.counts == real.counts


def test_someone_who_unsubscribed_here_is_never_resubscribed_by_an_import(tmp_path, bob, newsletter, now):
    path = tmp_path / "subscribed.csv"
    path.write_text(MAILCHIMP_SUBSCRIBED.replace("ann@example.com", "BOB@example.com"))
    records = ConsentRecord.objects.count()
    job = do_import(path, [newsletter], now=now)
    assert Subscription.objects.get(contact=bob).status == SubscriptionStatus.UNSUBSCRIBED
    assert ConsentRecord.objects.count() == records
    assert job.counts["kept_out"] == 1


def test_a_suppressed_address_listed_as_subscribed_stays_out(tmp_path, carol, newsletter, events, now):
    path = tmp_path / "subscribed.csv"
    path.write_text(MAILCHIMP_SUBSCRIBED.replace("ann@example.com", "carol@example.net"))
    do_import(path, [events], now=now)
    assert not Subscription.objects.filter(contact=carol, subscription_type=events).exists()
    assert Suppression.objects.filter(email="carol@example.net").exists()


def test_a_suppression_is_never_lifted_and_the_worst_word_wins(tmp_path, newsletter, now):
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("subscribed_email_audience_export_1.csv", MAILCHIMP_SUBSCRIBED.replace("ann@", "cat@"))
        archive.writestr("unsubscribed_email_audience_export_1.csv", MAILCHIMP_UNSUBSCRIBED)
    job = do_import(path, [newsletter], now=now)
    assert job.counts["duplicate"] == 1
    assert Suppression.objects.filter(email="cat@example.com", reason="imported_unsubscribe").exists()
    assert not Subscription.objects.filter(contact__email_normalized="cat@example.com").exists()


def test_attested_imports_subscribe_every_row_and_record_who_attested(tmp_path, newsletter, manager, now):
    path = tmp_path / "subscribed.csv"
    path.write_text(MAILCHIMP_SUBSCRIBED)
    attestation = "Customers who ticked the newsletter box at checkout (shop terms v2)."
    do_import(path, [newsletter], now=now, manager=manager, basis=ImportBasis.ATTESTED, attestation=attestation)
    assert Subscription.objects.filter(status="subscribed").count() == 2
    record = ConsentRecord.objects.get(email="ben@example.com")
    assert (record.staff_user, record.consent_text) == (manager, attestation)
    assert record.evidence["attestation"] == attestation


def test_no_consent_imports_create_contacts_without_subscriptions(tmp_path, newsletter, now):
    path = tmp_path / "subscribed.csv"
    path.write_text(MAILCHIMP_SUBSCRIBED)
    job = do_import(path, [newsletter], now=now, basis=ImportBasis.NONE)
    assert Contact.objects.count() == 2
    assert not Subscription.objects.exists()
    assert job.counts["no_consent"] == 2


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("fill", ("Alice", "Acme")), ("overwrite", ("Alicia", "Acme")), ("skip", ("Alice", ""))],
)
def test_existing_contacts_follow_the_field_policy(tmp_path, alice, newsletter, now, policy, expected):
    path = tmp_path / "contacts.csv"
    path.write_text("email,first_name,company\nALICE@example.com,Alicia,Acme\n")
    job = do_import(path, [], now=now, field_policy=policy)
    alice.refresh_from_db()
    assert (alice.first_name, alice.company) == expected
    assert job.counts["updated"] == (0 if policy == "skip" else 1)
    assert job.counts["new"] == 0


def test_a_pending_request_is_confirmed_by_the_files_opt_in_evidence(tmp_path, newsletter, now):
    ann = Contact.objects.create(email="ann@example.com")
    Subscription.objects.create(contact=ann, subscription_type=newsletter, requested_at=now)
    path = tmp_path / "subscribed.csv"
    path.write_text(MAILCHIMP_SUBSCRIBED)
    job = do_import(path, [newsletter], now=now)
    assert Subscription.objects.get(contact=ann).status == SubscriptionStatus.SUBSCRIBED
    assert ConsentRecord.objects.get(contact=ann).evidence["CONFIRM_TIME"] == "2023-01-05 10:03:00"
    assert job.counts["subscribed"] == 1


def test_a_withdrawal_in_the_consent_log_keeps_an_address_out_even_without_its_subscription(tmp_path, newsletter, now):
    ann = Contact.objects.create(email="ann@example.com")
    consent.unsubscribe_contact(ann, newsletter, method=ConsentMethod.UNSUBSCRIBE_LINK, now=now)
    Subscription.objects.filter(contact=ann).delete()
    path = tmp_path / "subscribed.csv"
    path.write_text(MAILCHIMP_SUBSCRIBED)
    job = do_import(path, [newsletter], now=now)
    assert not Subscription.objects.filter(contact=ann).exists()
    assert list(ConsentRecord.objects.filter(contact=ann).values_list("action", flat=True)) == ["withdrawn"]
    assert job.counts["subscribed"] == 0


def test_the_first_row_of_an_address_wins_over_its_later_duplicates(tmp_path, now, db):
    path = tmp_path / "contacts.csv"
    path.write_text("email,first_name\nzoe@example.com,Zoe\nann@example.com,First\nANN@example.com,Second\n")
    job = do_import(path, [], now=now)
    assert (job.counts["new"], job.counts["duplicate"]) == (2, 1)
    assert Contact.objects.get(email_normalized="ann@example.com").first_name == "First"
