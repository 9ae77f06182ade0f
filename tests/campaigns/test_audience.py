"""Who a campaign goes to: lists, saved segments and exclusions, before the gate has its say."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from campaigns import audience
from campaigns.models import ContactList, ListMembership, Segment
from crm.models import Contact, EngagementStatus
from tests.conftest import subscriber


def emails(campaign, now) -> set[str]:
    return set(audience.audience(campaign, now=now).values_list("email_normalized", flat=True))


@pytest.fixture
def readers(newsletter, now):
    """Four subscribers who differ in every way a segment can tell."""
    people = {
        "ann@acme.example": {"engagement_status": EngagementStatus.ENGAGED, "properties": {"plan": "pro"}},
        "ben@acme.example": {"engagement_status": EngagementStatus.UNENGAGED, "properties": {"plan": "free"}},
        "cat@other.example": {"engagement_status": EngagementStatus.NEW, "properties": {"plan": "pro"}},
        "dan@other.example": {"engagement_status": EngagementStatus.ENGAGED, "properties": {}},
    }
    made = {email: subscriber(email, newsletter, now, **fields) for email, fields in people.items()}
    Contact.objects.filter(email_normalized="ann@acme.example").update(
        last_engaged_at=now - timedelta(days=3), created_at=now - timedelta(days=400)
    )
    Contact.objects.filter(email_normalized="dan@other.example").update(
        last_engaged_at=now - timedelta(days=40), created_at=now - timedelta(days=5)
    )
    return made


def segment(**conditions) -> Segment:
    lists = conditions.pop("in_lists", [])
    made = Segment.objects.create(name=f"segment {Segment.objects.count()}", **conditions)
    made.in_lists.set(lists)
    return made


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"engagement_statuses": ["engaged"]}, {"ann@acme.example", "dan@other.example"}),
        ({"email_domains": "acme.example\n"}, {"ann@acme.example", "ben@acme.example"}),
        ({"email_domains": "@Other.example"}, {"cat@other.example", "dan@other.example"}),
        ({"last_engaged_within_days": 30}, {"ann@acme.example"}),
        ({"created_within_days": 30}, {"ben@acme.example", "cat@other.example", "dan@other.example"}),
        ({"property_name": "plan", "property_value": "pro"}, {"ann@acme.example", "cat@other.example"}),
        (
            {"engagement_statuses": ["engaged"], "email_domains": "acme.example"},
            {"ann@acme.example"},
        ),
    ],
)
def test_a_segment_matches_contacts_on_all_its_conditions(november, readers, now, conditions, expected):
    november.segments.add(segment(**conditions))

    assert emails(november, now) == expected


def test_lists_and_segments_add_up_and_exclusions_take_away(november, readers, now):
    vip = ContactList.objects.create(name="VIP")
    ListMembership.objects.create(contact_list=vip, contact=readers["dan@other.example"])
    november.lists.add(vip)
    november.segments.add(segment(email_domains="acme.example"))
    november.exclude_segments.add(segment(engagement_statuses=["unengaged"]))

    assert emails(november, now) == {"ann@acme.example", "dan@other.example"}


def test_a_segment_of_list_members_subscribed_to_a_type(november, readers, newsletter, events, now):
    vip = ContactList.objects.create(name="VIP")
    for email in ["ann@acme.example", "cat@other.example"]:
        ListMembership.objects.create(contact_list=vip, contact=readers[email])
    november.segments.add(segment(in_lists=[vip], subscribed_to=newsletter))
    nobody = segment(subscribed_to=events)

    assert emails(november, now) == {"ann@acme.example", "cat@other.example"}
    november.segments.set([nobody])
    assert emails(november, now) == set()


def test_without_lists_or_segments_everyone_with_a_subscription_of_the_type_is_considered(november, readers, now):
    assert emails(november, now) == set(readers)


def test_a_property_name_that_could_reach_other_lookups_is_refused(db):
    bad = Segment(name="x", property_name="plan__contains")

    with pytest.raises(ValidationError, match="two underscores"):
        bad.full_clean()
