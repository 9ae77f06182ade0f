"""The pre-send checklist: what blocks a campaign, what only warns, and that good mail passes clean."""

from __future__ import annotations

import pytest

from campaigns import checklist
from campaigns.checklist import Item, Severity
from campaigns.extensions import FromCheck, extensions
from campaigns.models import Campaign

NEWSLETTER_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>November news</title>
  <style>
    body { font-family: Helvetica, Arial, sans-serif; color: #333; }
    .button { background: #0b5fff; color: #fff; padding: 12px 20px; }
  </style>
</head>
<body>
  <table role="presentation" width="100%">
    <tr><td align="center">
      <img src="https://cdn.example.com/logo.png" alt="Example News" width="160">
    </td></tr>
    <tr><td>
      <h1>Hello {{ contact.first_name|default:"there" }},</h1>
      <p>Our autumn release is out: faster imports, a new preference center and better reports.</p>
      <img src="https://cdn.example.com/release.jpg" alt="The new preference center">
      <p><a class="button" href="https://www.example.com/blog/autumn-release?utm_source=newsletter">Read more</a></p>
      {% if contact.company %}<p>Say hello to everyone at {{ contact.company }}.</p>{% endif %}
    </td></tr>
    <tr><td style="font-size: 12px">
      <p>You get this because you subscribed at example.com.
        <a href="{{ view_in_browser_url }}">View in your browser</a> &middot;
        <a href="{{ preferences_url }}">Choose what you get</a> &middot;
        <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
      <p>Example Ltd, 1 High Street, London</p>
    </td></tr>
  </table>
</body>
</html>
"""


def make_campaign(**fields) -> Campaign:
    """A clean newsletter, in memory; the test overrides the fields it is about."""
    values = {
        "name": "November news",
        "from_name": "Example News",
        "from_email": "news@news.example.com",
        "subject": "Hello {{ contact.first_name|default:'there' }}, our autumn release is out",
        "preheader": "Faster imports, a preference center and better reports.",
        "html_body": NEWSLETTER_HTML,
        "text_body": "Hello {{ contact.first_name|default:'there' }},\n\nUnsubscribe: {{ unsubscribe_url }}\n",
    }
    values.update(fields)
    return Campaign(**values)


@pytest.fixture(autouse=True)
def from_address_passes(monkeypatch):
    """The sending domain's DNS checks (the deliverability app's) pass unless a test says otherwise."""
    monkeypatch.setattr(extensions, "check_from_address", lambda address: FromCheck(True, []))


def from_check_returns(monkeypatch, result: FromCheck) -> None:
    monkeypatch.setattr(extensions, "check_from_address", lambda address: result)


def codes(items: list[Item]) -> list[str]:
    return [item.code for item in items]


def only(items: list[Item], code: str) -> Item:
    found = [item for item in items if item.code == code]
    assert len(found) == 1, items
    return found[0]


def test_a_real_looking_newsletter_passes_clean():
    assert checklist.check_campaign(make_campaign()) == []


def test_a_template_syntax_error_blocks_with_its_line():
    items = checklist.check_campaign(make_campaign(html_body=NEWSLETTER_HTML.replace("{% endif %}", "")))

    item = only(items, "template_error")
    assert item.severity == Severity.BLOCK
    assert item.message.startswith("HTML body, line ")


def test_an_unknown_variable_blocks_naming_it_and_its_line():
    items = checklist.check_campaign(make_campaign(text_body="Hi {{ contact.nickname }}\n{{ unsubscribe_url }}"))

    item = only(items, "unknown_variable")
    assert item.severity == Severity.BLOCK
    assert item.message.startswith("text body, line 1: unknown variable {{ contact.nickname }}")


def test_a_from_address_the_domain_checks_refuse_blocks_naming_the_failing_record(monkeypatch):
    from_check_returns(monkeypatch, FromCheck(False, ["SPF: news.example.com has no SPF record."]))

    items = checklist.check_campaign(make_campaign())

    assert items == [Item(Severity.BLOCK, "from_domain", "SPF: news.example.com has no SPF record.")]


def test_a_refused_from_address_without_reasons_still_blocks(monkeypatch):
    from_check_returns(monkeypatch, FromCheck(False, []))

    item = only(checklist.check_campaign(make_campaign()), "from_domain")

    assert item.severity == Severity.BLOCK
    assert "news@news.example.com" in item.message


def test_domain_problems_on_an_allowed_from_address_only_warn(monkeypatch):
    from_check_returns(monkeypatch, FromCheck(True, ["DMARC: news.example.com has no DMARC record."]))

    items = checklist.check_campaign(make_campaign())

    assert items == [Item(Severity.WARN, "from_domain", "DMARC: news.example.com has no DMARC record.")]


def test_the_from_address_is_asked_about_the_campaigns_own_address(monkeypatch):
    asked = []
    monkeypatch.setattr(extensions, "check_from_address", lambda address: asked.append(address) or FromCheck(True))

    checklist.check_campaign(make_campaign(from_email="offers@mail.example.org"))

    assert asked == ["offers@mail.example.org"]


@pytest.mark.parametrize(
    "subject",
    [
        "Re: our call",
        "RE: our call",
        "re:our call",
        "Fwd: pricing",
        "FW: pricing",
        "AW: Angebot",
        "WG: Angebot",
        "SV: tilbud",
        "VS: tarjous",
        "TR: offre",
        "[Fwd: pricing]",
        "  Re : our call",
        "Re[2]: our call",
        "Re\uff1a our call",
    ],
)
def test_a_reply_or_forward_prefix_on_the_subject_blocks(subject):
    item = only(checklist.check_campaign(make_campaign(subject=subject)), "reply_prefix")

    assert item.severity == Severity.BLOCK
    assert "subject" in item.message


def test_a_reply_prefix_on_the_from_name_blocks():
    item = only(checklist.check_campaign(make_campaign(from_name="RE: Anna from Example")), "reply_prefix")

    assert item.severity == Severity.BLOCK
    assert 'From name starts with "RE:"' in item.message


@pytest.mark.parametrize(
    "subject", ["Recipes for autumn", "Forward planning: 2027", "Trends: what changed", "Reopening"]
)
def test_words_that_merely_start_like_a_prefix_pass(subject):
    assert "reply_prefix" not in codes(checklist.check_campaign(make_campaign(subject=subject)))


def test_an_empty_subject_blocks():
    item = only(checklist.check_campaign(make_campaign(subject="   ")), "empty_subject")

    assert item.severity == Severity.BLOCK


def test_a_missing_plain_text_body_warns_that_it_will_be_generated():
    item = only(checklist.check_campaign(make_campaign(text_body="  \n")), "no_plain_text")

    assert item.severity == Severity.WARN
    assert "generated from the HTML" in item.message


def test_html_over_102_kb_warns_that_gmail_clips_it():
    padding = "<p>" + "x" * (103 * 1024) + "</p>"
    html = NEWSLETTER_HTML.replace("</body>", padding + "</body>")

    item = only(checklist.check_campaign(make_campaign(html_body=html)), "html_too_large")

    assert item.severity == Severity.WARN
    assert "Gmail clips" in item.message


def test_html_size_counts_utf8_bytes_not_characters():
    # 40,000 three-byte characters: 117 KB on the wire, though only 40k characters long.
    html = NEWSLETTER_HTML.replace("</body>", "<p>" + "€" * 40_000 + "</p></body>")

    assert "html_too_large" in codes(checklist.check_campaign(make_campaign(html_body=html)))


def test_html_just_under_the_clip_limit_passes():
    html = NEWSLETTER_HTML.replace("</body>", "</body>".rjust(checklist.GMAIL_CLIP_BYTES - len(NEWSLETTER_HTML) + 7))
    assert len(html.encode()) == checklist.GMAIL_CLIP_BYTES

    assert "html_too_large" not in codes(checklist.check_campaign(make_campaign(html_body=html)))


def test_images_without_alt_text_warn_naming_their_src():
    html = NEWSLETTER_HTML.replace(
        "</body>", '<img src="https://cdn.example.com/a.png"><img src="b.png" alt=""><img src="c.png" alt="C"></body>'
    )

    item = only(checklist.check_campaign(make_campaign(html_body=html)), "image_without_alt")

    assert item.severity == Severity.WARN
    assert "https://cdn.example.com/a.png, b.png." in item.message
    assert "c.png" not in item.message


def test_a_self_closing_image_with_blank_alt_warns():
    html = NEWSLETTER_HTML.replace("</body>", '<img src="spacer.gif" alt="  " /></body>')

    assert "spacer.gif" in only(checklist.check_campaign(make_campaign(html_body=html)), "image_without_alt").message


def test_many_images_without_alt_are_listed_five_then_counted():
    images = "".join(f'<img src="img{n}.png">' for n in range(1, 9))
    html = NEWSLETTER_HTML.replace("</body>", images + "</body>")

    item = only(checklist.check_campaign(make_campaign(html_body=html)), "image_without_alt")

    assert "img1.png, img2.png, img3.png, img4.png, img5.png and 3 more." in item.message
    assert "img6.png" not in item.message


def test_links_to_url_shorteners_warn_naming_them():
    html = NEWSLETTER_HTML.replace(
        "</body>",
        '<a href="https://bit.ly/3xYz">deal</a> <a href="http://www.TinyURL.com/abc">more</a> '
        '<a href="https://bit.ly/3xYz">again</a> <a href="https://example.com/bit.ly">fine</a></body>',
    )

    item = only(checklist.check_campaign(make_campaign(html_body=html)), "url_shortener")

    assert item.severity == Severity.WARN
    assert "https://bit.ly/3xYz, http://www.TinyURL.com/abc." in item.message
    assert "example.com/bit.ly" not in item.message


def test_a_shortener_link_written_without_a_scheme_warns():
    html = NEWSLETTER_HTML.replace("</body>", '<a href="t.co/abc">x</a></body>')

    assert "t.co/abc" in only(checklist.check_campaign(make_campaign(html_body=html)), "url_shortener").message


def test_a_domain_that_only_ends_like_a_shortener_passes():
    html = NEWSLETTER_HTML.replace(
        "</body>", '<a href="https://habit.ly/x">x</a><a href="https://microsoft.co">y</a></body>'
    )

    assert "url_shortener" not in codes(checklist.check_campaign(make_campaign(html_body=html)))


@pytest.mark.parametrize(
    "href",
    ["{{ unsubscribe_url }}", "https://{{ contact.properties.shop }}/x", "http://[broken", "mailto:a@example.com", ""],
)
def test_template_and_odd_links_neither_crash_nor_count_as_shorteners(href):
    html = NEWSLETTER_HTML.replace("</body>", f'<a href="{href}">x</a></body>')

    assert "url_shortener" not in codes(checklist.check_campaign(make_campaign(html_body=html)))


def test_html_without_a_visible_unsubscribe_link_warns():
    html = NEWSLETTER_HTML.replace('<a href="{{ preferences_url }}">', "<a>").replace(
        '<a href="{{ unsubscribe_url }}">', "<a>"
    )

    item = only(checklist.check_campaign(make_campaign(html_body=html)), "no_unsubscribe_link")

    assert item.severity == Severity.WARN


def test_an_unsubscribe_url_outside_a_link_does_not_count_as_one():
    html = "<p>Unsubscribe here: {{ unsubscribe_url }}</p>"

    assert "no_unsubscribe_link" in codes(checklist.check_campaign(make_campaign(html_body=html)))


@pytest.mark.parametrize("href", ["{{unsubscribe_url}}", "{{ preferences_url }}", "{{ unsubscribe_url|safe }}"])
def test_a_link_to_the_unsubscribe_or_preferences_url_counts(href):
    html = f'<p><a href="{href}">Manage your email</a></p>'

    assert "no_unsubscribe_link" not in codes(checklist.check_campaign(make_campaign(html_body=html)))


def test_a_preheader_over_150_characters_warns():
    item = only(checklist.check_campaign(make_campaign(preheader="p" * 151)), "preheader_too_long")

    assert item.severity == Severity.WARN
    assert "151 characters" in item.message


def test_a_preheader_of_150_characters_passes():
    assert checklist.check_campaign(make_campaign(preheader="p" * 150)) == []


def test_blocking_items_come_first_and_blocking_keeps_only_them(monkeypatch):
    from_check_returns(monkeypatch, FromCheck(True, ["DMARC: news.example.com has no DMARC record."]))

    items = checklist.check_campaign(make_campaign(subject="Fwd: news", text_body=""))

    assert codes(items) == ["reply_prefix", "from_domain", "no_plain_text"]
    assert codes(checklist.blocking(items)) == ["reply_prefix"]
