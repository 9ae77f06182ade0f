"""Signed links in email: confirm, preferences, unsubscribe; and the List-Unsubscribe headers.

Tokens are signed with django.core.signing (tamper-proof, not secret). Each kind has its own
salt so one kind can never be used as another. Confirmation tokens expire; preference and
unsubscribe tokens do not — an old newsletter's unsubscribe link must still work. Tokens
carry the normalized address beside the contact id so an unsubscribe still suppresses the
address when the contact row has since been deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from django.conf import settings
from django.core import signing
from django.urls import reverse

from crm.models import Contact, SubscriptionType

_CONFIRM = "crm.links.confirm"
_PREFERENCES = "crm.links.preferences"
_UNSUBSCRIBE = "crm.links.unsubscribe"


class BadToken(Exception):
    """The token was tampered with, truncated or is not a token of this kind."""


class ExpiredToken(BadToken):
    """The token is genuine but too old."""


@dataclass(frozen=True)
class ConfirmRequest:
    contact_id: int
    email: str
    subscription_type_ids: tuple[int, ...]
    signup_form_id: int | None


@dataclass(frozen=True)
class ContactRef:
    """Whose link this is: a contact id and the normalized address it had."""

    contact_id: int
    email: str
    subscription_type_id: int | None = None
    send_id: int | None = None


def _dumps(payload: dict, salt: str) -> str:
    return signing.dumps(payload, salt=salt, compress=True)


def _loads(token: str, salt: str, max_age: timedelta | None = None) -> dict:
    try:
        payload = signing.loads(token, salt=salt, max_age=max_age)
    except signing.SignatureExpired:
        raise ExpiredToken from None
    except (signing.BadSignature, ValueError, TypeError, UnicodeError):
        raise BadToken from None
    if not isinstance(payload, dict):
        raise BadToken
    return payload


def _confirm_request(payload: dict) -> ConfirmRequest:
    try:
        return ConfirmRequest(
            contact_id=int(payload["c"]),
            email=str(payload["e"]),
            subscription_type_ids=tuple(int(pk) for pk in payload["t"]),
            signup_form_id=int(payload["f"]) if payload.get("f") is not None else None,
        )
    except (KeyError, TypeError, ValueError):
        raise BadToken from None


def _contact_ref(payload: dict) -> ContactRef:
    try:
        return ContactRef(
            contact_id=int(payload["c"]),
            email=str(payload["e"]),
            subscription_type_id=int(payload["t"]) if payload.get("t") is not None else None,
            send_id=int(payload["s"]) if payload.get("s") is not None else None,
        )
    except (KeyError, TypeError, ValueError):
        raise BadToken from None


def make_confirm_token(contact: Contact, subscription_type_ids: list[int], *, signup_form_id: int | None = None) -> str:
    payload = {"c": contact.pk, "e": contact.email_normalized, "t": sorted(subscription_type_ids), "f": signup_form_id}
    return _dumps(payload, _CONFIRM)


def read_confirm_token(token: str, *, allow_expired: bool = False) -> ConfirmRequest:
    """Raises ExpiredToken past DOUBLE_OPT_IN_EXPIRY_DAYS (unless allowed), BadToken if not genuine."""
    max_age = None if allow_expired else timedelta(days=settings.DOUBLE_OPT_IN_EXPIRY_DAYS)
    return _confirm_request(_loads(token, _CONFIRM, max_age))


def make_preferences_token(contact: Contact) -> str:
    return _dumps({"c": contact.pk, "e": contact.email_normalized}, _PREFERENCES)


def read_preferences_token(token: str) -> ContactRef:
    return _contact_ref(_loads(token, _PREFERENCES))


def make_unsubscribe_token(
    contact: Contact, subscription_type: SubscriptionType | None = None, *, send_id: int | None = None
) -> str:
    payload = {"c": contact.pk, "e": contact.email_normalized}
    if subscription_type is not None:
        payload["t"] = subscription_type.pk
    if send_id is not None:
        payload["s"] = send_id
    return _dumps(payload, _UNSUBSCRIBE)


def read_unsubscribe_token(token: str) -> ContactRef:
    return _contact_ref(_loads(token, _UNSUBSCRIBE))


def absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def confirm_url(contact: Contact, subscription_type_ids: list[int], *, signup_form_id: int | None = None) -> str:
    token = make_confirm_token(contact, subscription_type_ids, signup_form_id=signup_form_id)
    return absolute(reverse("crm:confirm", args=[token]))


def preferences_url(contact: Contact) -> str:
    return absolute(reverse("crm:preferences", args=[make_preferences_token(contact)]))


def unsubscribe_url(
    contact: Contact, subscription_type: SubscriptionType | None = None, *, send_id: int | None = None
) -> str:
    token = make_unsubscribe_token(contact, subscription_type, send_id=send_id)
    return absolute(reverse("crm:unsubscribe", args=[token]))


def list_unsubscribe_headers(
    contact: Contact, subscription_type: SubscriptionType | None = None, *, send_id: int | None = None
) -> dict[str, str]:
    """The RFC 2369 / RFC 8058 headers for one marketing message to `contact`.

    The https URL takes one-click POSTs; a mailto is added when UNSUBSCRIBE_MAILTO is set
    (some mailbox providers still use it).
    """
    token = make_unsubscribe_token(contact, subscription_type, send_id=send_id)
    targets = [f"<{absolute(reverse('crm:unsubscribe', args=[token]))}>"]
    if settings.UNSUBSCRIBE_MAILTO:
        targets.append(f"<mailto:{settings.UNSUBSCRIBE_MAILTO}?subject={quote('unsubscribe ' + token)}>")
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
