"""Personalized campaign content: Django's template language in a closed room.

A campaign template sees only what `recipient_context()` builds — the contact's fields and
properties as plain values, the unsubscribe, preferences and view-in-browser URLs, and the
campaign's name — never a model instance, so it cannot reach relations, methods or settings.
It cannot load tag libraries or include files. Errors are found when the campaign is saved
or previewed (with the line), not at send time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser

import css_inline
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.base import FilterExpression, VariableNode
from django.template.defaulttags import ForNode, WithNode

CONTACT_FIELDS = ["email", "first_name", "last_name", "full_name", "company", "phone", "language", "time_zone"]
TOP_LEVEL = {"contact", "campaign", "unsubscribe_url", "preferences_url", "view_in_browser_url", "forloop"}


class CampaignEngine(Engine):
    # No loader tags ({% include %}, {% extends %}) and no tag libraries to {% load %}.
    default_builtins = ["django.template.defaulttags", "django.template.defaultfilters"]


_ENGINE = CampaignEngine(debug=True, autoescape=True, libraries={}, string_if_invalid="")
_TEXT_ENGINE = CampaignEngine(debug=True, autoescape=False, libraries={}, string_if_invalid="")


@dataclass(frozen=True)
class TemplateProblem:
    field: str
    line: int | None
    message: str
    blocking: bool = True

    def __str__(self) -> str:
        where = f"{self.field}, line {self.line}" if self.line else self.field
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def _compile(source: str, *, html: bool) -> Template:
    return (_ENGINE if html else _TEXT_ENGINE).from_string(source)


def _line_of(exc: TemplateSyntaxError) -> int | None:
    debug = getattr(exc, "template_debug", None)
    return debug["line"] if debug else None


def _variables(nodelist, bound: frozenset[str]):
    """Yield (variable path, bound names) for every variable the template reads."""
    for node in nodelist:
        expressions = []
        if isinstance(node, VariableNode):
            expressions.append(node.filter_expression)
        for attribute in ("sequence", "var"):
            value = getattr(node, attribute, None)
            if isinstance(value, FilterExpression):
                expressions.append(value)
        for condition, _ in getattr(node, "conditions_nodelists", []):
            expressions += _condition_expressions(condition)
        for expression in expressions:
            yield from _expression_variables(expression, bound, getattr(node, "token", None))
        inner = bound
        if isinstance(node, ForNode):
            inner = bound | set(node.loopvars)
        elif isinstance(node, WithNode):
            inner = bound | set(node.extra_context)
            for expression in node.extra_context.values():
                yield from _expression_variables(expression, bound, getattr(node, "token", None))
        for child in getattr(node, "child_nodelists", ()):
            yield from _variables(getattr(node, child, None) or [], frozenset(inner))


def _condition_expressions(condition) -> list[FilterExpression]:
    if condition is None:
        return []
    found = []
    for attribute in ("first", "second"):
        part = getattr(condition, attribute, None)
        if part is not None:
            found += _condition_expressions(part)
    value = getattr(condition, "value", None)
    if isinstance(value, FilterExpression):
        found.append(value)
    return found


def _expression_variables(expression: FilterExpression, bound, token):
    variable = expression.var
    if getattr(variable, "lookups", None):
        yield variable.lookups, bound, token
    for _, arguments in expression.filters:
        for is_variable, argument in arguments:
            if is_variable and getattr(argument, "lookups", None):
                yield argument.lookups, bound, token


def _unknown(lookups: tuple[str, ...], bound) -> bool:
    root = lookups[0]
    if root in bound or (root in TOP_LEVEL and root != "contact" and root != "campaign"):
        return False
    if root == "campaign":
        return len(lookups) > 1 and lookups[1] not in {"name", "subject"}
    if root == "contact":
        return len(lookups) > 1 and lookups[1] not in CONTACT_FIELDS and lookups[1] != "properties"
    return True


def check_templates(*, subject: str, html: str, text: str) -> list[TemplateProblem]:
    """Every syntax error and unknown variable in a campaign's three templates, with lines."""
    problems = []
    for field, source, is_html in (("subject", subject, False), ("HTML body", html, True), ("text body", text, False)):
        try:
            template = _compile(source, html=is_html)
        except TemplateSyntaxError as exc:
            problems.append(TemplateProblem(field, _line_of(exc), str(exc)))
            continue
        for lookups, bound, token in _variables(template.nodelist, frozenset()):
            if _unknown(lookups, bound):
                line = token.lineno if token is not None else None
                problems.append(
                    TemplateProblem(
                        field,
                        line,
                        f"unknown variable {{{{ {'.'.join(lookups)} }}}}: use contact.<field>, "
                        "contact.properties.<name>, unsubscribe_url, preferences_url or view_in_browser_url",
                    )
                )
    return problems


@lru_cache(maxsize=64)
def compiled(subject: str, html: str, text: str) -> tuple[Template, Template, Template | None]:
    """The three templates, compiled once per content (a batch renders thousands of recipients).

    The HTML's CSS is inlined before compiling: email clients drop <style> blocks, and
    inlining once costs less than inlining every recipient's copy.
    """
    inlined = css_inline.inline(html, keep_style_tags=False) if "<style" in html.lower() or "<link" in html else html
    return (
        _compile(subject, html=False),
        _compile(inlined, html=True),
        _compile(text, html=False) if text.strip() else None,
    )


def recipient_context(
    *,
    contact: dict,
    campaign_name: str,
    subject: str,
    unsubscribe_url: str,
    preferences_url: str,
    view_in_browser_url: str,
) -> dict:
    return {
        "contact": contact,
        "campaign": {"name": campaign_name, "subject": subject},
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
        "view_in_browser_url": view_in_browser_url,
    }


def contact_values(contact) -> dict:
    """The contact as the template sees it: plain values, no model."""
    values = {field: getattr(contact, field, "") or "" for field in CONTACT_FIELDS if field != "full_name"}
    values["full_name"] = contact.full_name
    values["properties"] = dict(contact.properties or {})
    return values


def render(*, subject: str, html: str, text: str, context: dict) -> Rendered:
    subject_template, html_template, text_template = compiled(subject, html, text)
    context_object = Context(context, autoescape=False)
    html_out = html_template.render(Context(context))
    text_out = text_template.render(context_object) if text_template else html_to_text(html_out)
    # A header cannot hold a line break; a template that produces one gets spaces.
    return Rendered(" ".join(subject_template.render(context_object).split()), html_out, text_out)


class _TextExtractor(HTMLParser):
    _BLOCKS = {"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "li", "table", "blockquote", "hr"}
    _SKIP = {"style", "script", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        if tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(alt)

    def handle_endtag(self, tag):
        if tag in self._SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        if tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith(("#", "mailto:")):
                self.parts.append(f" ({href})")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """A readable plain-text part: paragraphs kept, links written out, styles and scripts dropped."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = [line.strip() for line in "".join(extractor.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
