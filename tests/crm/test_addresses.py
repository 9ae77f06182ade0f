from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from crm.addresses import parse_address


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("Foo@Example.COM", "foo@example.com"),
        ("  foo@example.com  ", "foo@example.com"),
        ("Ünïcode@Bücher.de", "ünïcode@xn--bcher-kva.de"),
        ("foo@xn--bcher-kva.de", "foo@xn--bcher-kva.de"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ],
)
def test_it_normalizes_case_and_idn_domains(given, normalized):
    assert parse_address(given).normalized == normalized


def test_unicode_and_ascii_forms_of_an_idn_domain_are_one_address():
    assert parse_address("Foo@Bücher.DE").normalized == parse_address("foo@xn--bcher-kva.de").normalized


def test_it_keeps_the_address_as_given_apart_from_whitespace():
    assert parse_address(" Foo@Example.COM ").given == "Foo@Example.COM"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "not-an-email",
        "foo@",
        "@example.com",
        "foo@@example.com",
        "foo@example..com",
        "a" * 250 + "@x.com",
        None,
        42,
    ],
)
def test_it_refuses_invalid_addresses_with_a_message(bad):
    with pytest.raises(ValidationError) as excinfo:
        parse_address(bad)
    assert excinfo.value.messages[0]


@pytest.mark.parametrize(
    ("address", "is_role"),
    [
        ("postmaster@example.com", True),
        ("Abuse@example.com", True),
        ("noreply@example.com", True),
        ("no_reply@example.com", True),
        ("info+news@example.com", True),
        ("alice@example.com", False),
        ("information@example.com", False),
    ],
)
def test_it_flags_role_addresses(address, is_role):
    assert parse_address(address).is_role is is_role
