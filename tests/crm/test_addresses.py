from __future__ import annotations

import random

import email_validator
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


def _full_validator(raw: str) -> str | None:
    try:
        info = email_validator.validate_email(raw, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    return f"{info.local_part.lower()}@{info.ascii_domain.lower()}"


def test_the_fast_path_agrees_with_the_full_validator_on_every_generated_address():
    rng = random.Random(7)

    def part(alphabet: str, low: int, high: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))

    generated = [
        f"{part('abcXYZ019._+-', 1, 12)}@"
        + ".".join(part("abcXY019-_", 1, 8) for _ in range(rng.randint(1, 3)))
        + f".{part('comXYZ19-', 1, 4)}"
        for _ in range(20_000)
    ]
    edge_cases = [
        "a@b.test",
        "a@mail.local",
        "a@xn--bcher-kva.de",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@example.c",
        "a@example.123",
        "a@" + "x" * 64 + ".com",
        "x" * 65 + "@example.com",
        "First.Last+Tag@Sub.Example.CO.UK",
        # The one character str.lower() turns into ASCII (the fast path matches lowercased text).
        "\u212aate@example.com",
        "kate@\u212aelvin.com",
    ]
    outcomes = []
    for raw in generated + edge_cases:
        try:
            ours = parse_address(raw).normalized
        except ValidationError:
            ours = None
        assert ours == _full_validator(raw), raw
        outcomes.append(ours is not None)
    # Both branches of the rule must be exercised, not just one.
    assert outcomes.count(True) > 2000 and outcomes.count(False) > 2000
