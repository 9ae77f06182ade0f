"""The pre-send checklist: what stops a campaign from sending, and what staff should look at.

`check_campaign(campaign)` returns every finding as an `Item`, blocking ones first. An item
BLOCKS when the mail would be broken, refused or deceptive; it WARNS when the mail would
send but reach fewer inboxes or read worse:

- template_error (BLOCK): a syntax error in the subject, HTML or text template.
- unknown_variable (BLOCK): a variable the template cannot see renders empty, a visible bug.
- from_domain (BLOCK): the From address is not allowed by the sending domain's checks, one
  item per failing record. WARN when the address is allowed but problems are still listed
  (staging mode).
- empty_subject (BLOCK).
- reply_prefix (BLOCK): the subject or From name starts with a reply or forward prefix
  ("Re:", "Fwd:", "AW:", "SV:", …). Every campaign is a bulk send, and bulk mail disguised
  as one-to-one mail is flagged by receivers and breaks acceptable-use rules.
- no_plain_text (WARN): it will be generated from the HTML.
- html_too_large (WARN): over 102 KB Gmail clips the message, unsubscribe link included.
- image_without_alt (WARN): images are blocked by default in many clients.
- url_shortener (WARN): shortened links are a spam signal and hide where they lead.
- no_unsubscribe_link (WARN): the List-Unsubscribe header is always added, but Gmail and
  Yahoo also want an unsubscribe link the reader can see.
- preheader_too_long (WARN): clients show about the first 150 characters.

The checks read the campaign's fields only (no database), and ask the deliverability app
about the From address through `extensions.check_from_address`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.db import models

from campaigns import rendering
from campaigns.extensions import extensions

if TYPE_CHECKING:
    from collections.abc import Iterable

    from campaigns.models import Campaign

# Gmail hides everything past 102 KB behind "[Message clipped]".
GMAIL_CLIP_BYTES = 102 * 1024
PREHEADER_MAX_CHARS = 150
MAX_LISTED = 5

URL_SHORTENERS = frozenset(
    {
        "bit.ly",
        "bitly.com",
        "tinyurl.com",
        "t.co",
        "goo.gl",
        "ow.ly",
        "is.gd",
        "buff.ly",
        "rebrand.ly",
        "cutt.ly",
        "shorturl.at",
        "tiny.cc",
        "rb.gy",
        "bl.ink",
        "lnkd.in",
        "s.id",
        "v.gd",
        "t.ly",
        "tiny.one",
        "shorte.st",
        "adf.ly",
        "qr.ae",
        "db.tt",
        "su.pr",
        "x.co",
        "snip.ly",
        "clck.ru",
        "soo.gd",
        "trib.al",
        "dlvr.it",
    }
)

# Reply and forward prefixes as mail clients write them in several languages: Re/Fw/Fwd
# (English), AW/WG (German), SV/VS (Nordic), TR (French), Antw (Dutch), RV/Enc (Spanish,
# Portuguese), Odp/PD (Polish). Clients also write "Re[2]:", "[Fwd: …]", "RE :" and, in CJK
# locales, a full-width colon.
REPLY_PREFIX = re.compile(
    r"^\s*[\[(]?\s*(re|fwd?|aw|wg|sv|vs|tr|antw|rv|enc|odp|pd)(\[\d+\]|\(\d+\)|\^\d+)?\s*[\])]?\s*[:\uff1a]",
    re.IGNORECASE,
)

# An href that uses one of these variables is an unsubscribe link the reader can see.
UNSUBSCRIBE_VARIABLE = re.compile(r"\{\{\s*(unsubscribe_url|preferences_url)\s*(\||\}\})")


class Severity(models.TextChoices):
    BLOCK = "block", "Blocks sending"
    WARN = "warn", "Warning"


@dataclass(frozen=True)
class Item:
    severity: str
    code: str
    message: str

    def __str__(self) -> str:
        return self.message


def check_campaign(campaign: Campaign) -> list[Item]:
    """Every checklist finding for the campaign as it would send now, blocking items first."""
    items = [
        *_template_items(campaign),
        *_from_items(campaign),
        *_subject_items(campaign),
        *_content_items(campaign),
    ]
    return sorted(items, key=lambda item: item.severity != Severity.BLOCK)


def blocking(items: Iterable[Item]) -> list[Item]:
    """The items that stop the campaign from sending."""
    return [item for item in items if item.severity == Severity.BLOCK]


def _template_items(campaign: Campaign) -> list[Item]:
    problems = rendering.check_templates(subject=campaign.subject, html=campaign.html_body, text=campaign.text_body)
    return [
        Item(
            Severity.BLOCK if problem.blocking else Severity.WARN,
            # check_templates reports both kinds with one type; its unknown-variable message is fixed.
            "unknown_variable" if problem.message.startswith("unknown variable") else "template_error",
            str(problem),
        )
        for problem in problems
    ]


def _from_items(campaign: Campaign) -> list[Item]:
    result = extensions.check_from_address(campaign.from_email)
    if result.allowed:
        return [Item(Severity.WARN, "from_domain", problem) for problem in result.problems]
    if not result.problems:
        return [Item(Severity.BLOCK, "from_domain", f"The From address {campaign.from_email} may not send.")]
    return [Item(Severity.BLOCK, "from_domain", problem) for problem in result.problems]


def _subject_items(campaign: Campaign) -> list[Item]:
    items = []
    if not campaign.subject.strip():
        items.append(Item(Severity.BLOCK, "empty_subject", "The subject is empty."))
    for label, value in (("subject", campaign.subject), ("From name", campaign.from_name)):
        if match := REPLY_PREFIX.match(value):
            prefix = value[: match.end()].strip()
            items.append(
                Item(
                    Severity.BLOCK,
                    "reply_prefix",
                    f'The {label} starts with "{prefix}", which makes a bulk email look like a personal reply '
                    "or forward: receivers flag that as deceptive.",
                )
            )
    preheader = campaign.preheader.strip()
    if len(preheader) > PREHEADER_MAX_CHARS:
        items.append(
            Item(
                Severity.WARN,
                "preheader_too_long",
                f"The preheader is {len(preheader)} characters; inboxes show about the first "
                f"{PREHEADER_MAX_CHARS}, so the rest is cut off.",
            )
        )
    return items


def _content_items(campaign: Campaign) -> list[Item]:
    items = []
    if not campaign.text_body.strip():
        items.append(
            Item(
                Severity.WARN,
                "no_plain_text",
                "There is no plain-text body: one will be generated from the HTML. Preview it to check it reads well.",
            )
        )
    size = len(campaign.html_body.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        items.append(
            Item(
                Severity.WARN,
                "html_too_large",
                f"The HTML is {size / 1024:.0f} KB; Gmail clips messages over 102 KB and hides the rest, "
                "unsubscribe link included. The sent copy is larger still once CSS is inlined and links tracked.",
            )
        )

    scan = _HtmlScan()
    scan.feed(campaign.html_body)
    scan.close()
    if scan.images_without_alt:
        items.append(
            Item(
                Severity.WARN,
                "image_without_alt",
                "Images without alt text (blocked images show nothing and screen readers skip them): "
                + _listing(scan.images_without_alt)
                + ".",
            )
        )
    shortened = list(dict.fromkeys(href for href in scan.links if _is_shortened(href)))
    if shortened:
        items.append(
            Item(
                Severity.WARN,
                "url_shortener",
                "Links through URL shorteners, a spam signal that also hides where they lead: "
                + _listing(shortened)
                + ". Link to the destination directly.",
            )
        )
    if not any(UNSUBSCRIBE_VARIABLE.search(href) for href in scan.links):
        items.append(
            Item(
                Severity.WARN,
                "no_unsubscribe_link",
                "The HTML has no visible unsubscribe link: add a link to {{ unsubscribe_url }} or "
                "{{ preferences_url }}. Gmail and Yahoo want one besides the List-Unsubscribe header.",
            )
        )
    return items


class _HtmlScan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images_without_alt: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img" and not (attributes.get("alt") or "").strip():
            self.images_without_alt.append(attributes.get("src") or "(no src)")
        elif tag == "a" and attributes.get("href"):
            self.links.append((attributes["href"] or "").strip())


def _is_shortened(href: str) -> bool:
    # Without a scheme ("bit.ly/x") urlsplit reads the host as a path; clients still link it.
    if "://" not in href and not href.startswith(("/", "#", "{", "mailto:", "tel:")):
        href = "//" + href
    try:
        host = urlsplit(href).hostname
    except ValueError:
        return False
    if not host:
        return False
    host = host.removeprefix("www.")
    return any(host == domain or host.endswith("." + domain) for domain in URL_SHORTENERS)


def _listing(values: list[str]) -> str:
    shown = ", ".join(values[:MAX_LISTED])
    rest = len(values) - MAX_LISTED
    return f"{shown} and {rest} more" if rest > 0 else shown
