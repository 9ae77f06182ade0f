"""Public pages: signup, confirmation, preference center, unsubscribe.

Views parse the request, call one function in crm.optin, and render. Every answer is the
same whether or not an address is known. Links found in email show a page on GET and act
only on POST, because mail security scanners open every link they see.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.html import json_script
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from crm import addresses, links, optin, ratelimit
from crm.forms import NewConfirmationLinkForm, PreferencesForm, PublicSignupForm
from crm.models import SignupForm, Subscription, SubscriptionStatus, SubscriptionType


def _visitor(request: HttpRequest) -> optin.Visitor:
    return optin.Visitor(
        ip_address=ratelimit.client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")[:1000]
    )


def _within_rate_limit(request: HttpRequest, scope: str) -> bool:
    return ratelimit.allow(
        scope,
        ratelimit.client_ip(request),
        limit=settings.SIGNUP_RATE_LIMIT,
        window_seconds=settings.SIGNUP_RATE_WINDOW_SECONDS,
        now_seconds=time.time(),
    )


def _rate_limited(request: HttpRequest) -> HttpResponse:
    response = render(request, "crm/public/rate_limited.html", status=429)
    response["Retry-After"] = str(settings.SIGNUP_RATE_WINDOW_SECONDS)
    return response


def _invalid_link(request: HttpRequest) -> HttpResponse:
    return render(request, "crm/public/link_invalid.html", status=404)


# The form is embedded on other sites (so it may be framed and is exempt from CSRF, whose
# cookie a third-party iframe does not get); it acts for nobody logged in, and ALTCHA, the
# honeypot and the rate limit stand in for the CSRF token.
@csrf_exempt
@xframe_options_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def subscribe(request: HttpRequest, slug: str) -> HttpResponse:
    signup_form = SignupForm.objects.filter(slug=slug, active=True).first()
    if signup_form is None:
        return render(request, "crm/public/form_not_found.html", status=404)
    embedded = request.GET.get("embed") == "1"
    if request.method != "POST":
        form = PublicSignupForm(signup_form=signup_form)
        return render(request, "crm/public/signup.html", _signup_context(signup_form, form, embedded))
    if not _within_rate_limit(request, "signup"):
        return _rate_limited(request)
    form = PublicSignupForm(request.POST, signup_form=signup_form)
    if form.is_bot():
        return redirect_to_thanks(signup_form, embedded)
    if not form.is_valid():
        return render(request, "crm/public/signup.html", _signup_context(signup_form, form, embedded), status=400)
    optin.submit_signup(
        signup_form,
        email=form.cleaned_data["email"],
        first_name=form.cleaned_data.get("first_name", ""),
        last_name=form.cleaned_data.get("last_name", ""),
        company=form.cleaned_data.get("company", ""),
        subscription_type_ids=form.cleaned_data["subscription_types"],
        visitor=_visitor(request),
        now=timezone.now(),
    )
    return redirect_to_thanks(signup_form, embedded)


# What the page's script corrects mistyped providers by (crm/suggest.js, the rule of suggest_domain):
# written once, not on every request of the busiest public page.
_TYPO_DOMAINS = json_script(
    {"providers": sorted(addresses.PROVIDERS), "typos": addresses.KNOWN_TYPOS}, "dw-typo-domains"
)


def _signup_context(signup_form: SignupForm, form: PublicSignupForm, embedded: bool) -> dict:
    return {"signup_form": signup_form, "form": form, "embedded": embedded, "typo_domains": _TYPO_DOMAINS}


def redirect_to_thanks(signup_form: SignupForm, embedded: bool) -> HttpResponse:
    response = redirect("crm:subscribe_thanks", slug=signup_form.slug)
    if embedded:
        response["Location"] += "?embed=1"
    response.status_code = 303
    return response


@xframe_options_exempt
@require_http_methods(["GET", "HEAD"])
def subscribe_thanks(request: HttpRequest, slug: str) -> HttpResponse:
    signup_form = SignupForm.objects.filter(slug=slug, active=True).first()
    if signup_form is None:
        return render(request, "crm/public/form_not_found.html", status=404)
    context = {"signup_form": signup_form, "embedded": request.GET.get("embed") == "1"}
    return render(request, "crm/public/signup_thanks.html", context)


# Token links are capabilities mailed to the address owner; they carry no session, so CSRF
# protection has nothing to protect and would break one-click clients.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    try:
        confirm_request = links.read_confirm_token(token)
    except links.ExpiredToken:
        return render(request, "crm/public/confirm_expired.html", {"token": token}, status=410)
    except links.BadToken:
        return _invalid_link(request)
    if request.method != "POST":
        types = SubscriptionType.objects.filter(pk__in=confirm_request.subscription_type_ids)
        return render(request, "crm/public/confirm.html", {"subscription_types": types})
    outcome = optin.confirm_subscriptions(confirm_request, visitor=_visitor(request), now=timezone.now())
    signup_form = SignupForm.objects.filter(pk=confirm_request.signup_form_id).first()
    if outcome.subscribed and signup_form and signup_form.confirmed_redirect_url:
        return redirect(signup_form.confirmed_redirect_url)
    contact = optin.contact_for(confirm_request.contact_id, confirm_request.email)
    context = {"outcome": outcome, "preferences_url": links.preferences_url(contact) if contact else None}
    return render(request, "crm/public/confirmed.html", context)


@csrf_exempt
@require_POST
def confirm_resend(request: HttpRequest, token: str) -> HttpResponse:
    try:
        confirm_request = links.read_confirm_token(token, allow_expired=True)
    except links.BadToken:
        return _invalid_link(request)
    if not _within_rate_limit(request, "confirm-resend"):
        return _rate_limited(request)
    optin.resend_confirmation(confirm_request.email, contact_id=confirm_request.contact_id, now=timezone.now())
    return render(request, "crm/public/confirm_new_sent.html")


@require_http_methods(["GET", "HEAD", "POST"])
def confirm_new(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return render(request, "crm/public/confirm_new.html", {"form": NewConfirmationLinkForm()})
    if not _within_rate_limit(request, "confirm-new"):
        return _rate_limited(request)
    form = NewConfirmationLinkForm(request.POST)
    if not form.is_valid():
        return render(request, "crm/public/confirm_new.html", {"form": form}, status=400)
    optin.resend_confirmation(form.cleaned_data["email"], now=timezone.now())
    return render(request, "crm/public/confirm_new_sent.html")


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    try:
        ref = links.read_preferences_token(token)
    except links.BadToken:
        return _invalid_link(request)
    outcome = None
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if request.POST.get("unsubscribe_all"):
            outcome = optin.unsubscribe_by_link(ref, visitor=_visitor(request), now=timezone.now(), everything=True)
        elif form.is_valid():
            outcome = optin.update_preferences(
                ref,
                wanted_type_ids=set(form.cleaned_data["subscription_types"]),
                visitor=_visitor(request),
                now=timezone.now(),
            )
    contact = optin.contact_for(ref.contact_id, ref.email)
    current = (
        Subscription.objects.filter(
            contact=contact, status__in=[SubscriptionStatus.SUBSCRIBED, SubscriptionStatus.PENDING]
        ).values_list("subscription_type_id", "status")
        if contact
        else []
    )
    statuses = dict(current)
    form = PreferencesForm(initial={"subscription_types": list(statuses)})
    context = {
        "form": form,
        "outcome": outcome,
        "contact": contact,
        "pending_ids": {pk for pk, status in statuses.items() if status == SubscriptionStatus.PENDING},
    }
    return render(request, "crm/public/preferences.html", context)


# RFC 8058: mailbox providers POST "List-Unsubscribe=One-Click" to this URL without cookies
# or a CSRF token and do not follow redirects; people get a page with one button.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    try:
        ref = links.read_unsubscribe_token(token)
    except links.BadToken:
        if one_click:
            return HttpResponse("Unknown unsubscribe link.\n", content_type="text/plain", status=400)
        return _invalid_link(request)
    subscription_type = (
        SubscriptionType.objects.filter(pk=ref.subscription_type_id).first() if ref.subscription_type_id else None
    )
    if request.method != "POST":
        return render(request, "crm/public/unsubscribe.html", {"subscription_type": subscription_type})
    everything = request.POST.get("everything") == "1"
    outcome = optin.unsubscribe_by_link(ref, visitor=_visitor(request), now=timezone.now(), everything=everything)
    if one_click:
        return HttpResponse("You are unsubscribed.\n", content_type="text/plain")
    contact = optin.contact_for(ref.contact_id, ref.email)
    context = {
        "outcome": outcome,
        "subscription_type": subscription_type,
        "preferences_url": links.preferences_url(contact) if contact else None,
    }
    return render(request, "crm/public/unsubscribed.html", context)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A friendly page instead of Django's technical 403 when a form's CSRF check fails."""
    return render(request, "crm/public/session_expired.html", status=403)
