"""What the send pipeline needs from the deliverability app, which plugs it in at start-up.

Dependencies point one way (deliverability imports campaigns, never the reverse), yet the
pipeline must sign with the sending domain's DKIM key, find a recipient domain's MX, ask
whether a From address may send and what an active repair plan allows. deliverability's
AppConfig.ready() fills these in; until it does, nothing is signed and no From address is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from django.db.models import Q

if TYPE_CHECKING:
    from campaigns.models import Campaign


class MxLookupFailed(Exception):
    """DNS did not answer for a recipient domain's MX: try again later."""


@dataclass
class FromCheck:
    allowed: bool
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RepairLimit:
    """What the repair plan active on a campaign's sending domain allows it now."""

    audience: Q  # a filter on Contact: the plan's current step
    remaining_today: int  # messages the step's daily volume still allows today


def _refuse_everything(address: str) -> FromCheck:
    return FromCheck(False, ["No sending-domain checks are installed (the deliverability app is missing)."])


@dataclass
class Extensions:
    sign: Callable[[bytes, str], bytes] = lambda message, from_address: message
    check_from_address: Callable[[str], FromCheck] = _refuse_everything
    mx_hosts: Callable[[str], list[str]] = lambda domain: [domain]
    # (From address, send id) → envelope sender: a VERP address on the return-path domain.
    envelope_from: Callable[[str, int], str] = lambda from_address, send_id: from_address
    # A VERP return-path address → the send it was made for (None when it is not one of ours).
    send_id_from_return_path: Callable[[str], int | None] = lambda address: None
    # Whether a From address's domain sends through an ESP (anymail) instead of direct SMTP.
    uses_esp: Callable[[str], bool] = lambda from_address: False
    # The limits of a repair plan active on the campaign's sending domain, or None (no plan).
    repair_limit: Callable[[Campaign, datetime], RepairLimit | None] = lambda campaign, now: None


extensions = Extensions()
