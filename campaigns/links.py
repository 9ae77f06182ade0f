"""Signed links to one sent message ("view in browser")."""

from __future__ import annotations

from django.core import signing
from django.urls import reverse

from crm.links import absolute

_VIEW = "campaigns.view"


def view_token(send_id: int) -> str:
    return signing.dumps({"s": send_id}, salt=_VIEW, compress=True)


def read_view_token(token: str) -> int:
    """The send id; raises signing.BadSignature for anything we did not sign."""
    payload = signing.loads(token, salt=_VIEW)
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), int):
        raise signing.BadSignature("not a view token")
    return payload["s"]


def view_url(send_id: int) -> str:
    return absolute(reverse("campaigns:view", args=[view_token(send_id)]))
