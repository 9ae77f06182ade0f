"""Staff roles: Marketing manager, Marketer and Viewer, created by migrations."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from crm.models import Suppression
from crm.roles import MARKETER, MARKETING_MANAGER, VIEWER, sync_roles


def test_migrations_create_the_three_role_groups(db):
    assert set(Group.objects.values_list("name", flat=True)) >= {MARKETING_MANAGER, MARKETER, VIEWER}


@pytest.mark.parametrize(
    ("persona", "permission", "allowed"),
    [
        ("manager", "crm.delete_contact", True),
        ("manager", "crm.delete_suppression", True),
        ("manager", "django_celery_beat.change_periodictask", True),
        ("manager", "crm.delete_consentrecord", False),
        ("manager", "crm.change_consentrecord", False),
        ("marketer", "crm.change_contact", True),
        ("marketer", "crm.add_subscriptiontype", True),
        ("marketer", "crm.add_suppression", True),
        ("marketer", "crm.delete_suppression", False),
        ("marketer", "crm.delete_consentrecord", False),
        ("marketer", "crm.view_consentrecord", True),
        ("viewer", "crm.view_contact", True),
        ("viewer", "crm.change_contact", False),
        ("viewer", "crm.add_contact", False),
    ],
)
def test_each_role_has_exactly_its_permissions(request, persona, permission, allowed):
    user = request.getfixturevalue(persona)
    assert user.has_perm(permission) is allowed


def test_a_viewer_can_read_contacts_but_not_change_them(client, viewer, alice):
    client.force_login(viewer)
    assert client.get("/admin/crm/contact/").status_code == 200
    change_page = client.get(f"/admin/crm/contact/{alice.pk}/change/")
    assert change_page.status_code == 200
    assert b'name="_save"' not in change_page.content
    assert client.get("/admin/crm/contact/add/").status_code == 403


def test_a_marketer_cannot_lift_a_suppression(client, marketer, carol):
    client.force_login(marketer)
    suppression = Suppression.objects.get(email=carol.email_normalized)
    response = client.post(f"/admin/crm/suppression/{suppression.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403


def test_syncing_roles_twice_changes_nothing(db):
    before = {g.name: set(g.permissions.values_list("pk", flat=True)) for g in Group.objects.all()}
    sync_roles()
    sync_roles()
    assert {g.name: set(g.permissions.values_list("pk", flat=True)) for g in Group.objects.all()} == before
