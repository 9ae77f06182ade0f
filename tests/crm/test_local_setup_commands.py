"""The commands `make run` calls on a fresh machine."""

from __future__ import annotations

from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command

from crm.models import ConsentRecord, Contact, Subscription, SubscriptionType


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_the_local_admin_is_created_once_and_its_password_printed_once(db, client):
    first = run("create_local_admin")
    assert "shown only this once" in first
    password = first.split("with password '")[1].split("'")[0]
    assert client.login(username="admin", password=password)
    assert run("create_local_admin") == ""
    assert get_user_model().objects.count() == 1


def test_demo_data_loads_on_the_first_run_only(db):
    assert "Loaded 40 demo contacts." in run("load_demo_data", "--contacts", "40", "--if-empty")
    assert run("load_demo_data", "--contacts", "40", "--if-empty") == ""
    assert Contact.objects.count() == 40
    assert SubscriptionType.objects.count() == 3
    assert Subscription.objects.exists()
    assert ConsentRecord.objects.filter(method="double_opt_in").exists()
    assert ConsentRecord.objects.filter(method="import").exclude(evidence={}).exists()
