"""Public forms: what strangers can post, validated before anything touches the database."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django_altcha import AltchaField

from crm.addresses import Address, parse_address
from crm.models import SignupForm, SubscriptionType

HONEYPOT_FIELD = "website"


def valid_address(value: str) -> Address:
    """The parsed address, or a ValidationError a visitor understands (no parser jargon)."""
    try:
        return parse_address(value)
    except ValidationError as exc:
        raise ValidationError("Enter a valid email address, like name@example.com.") from exc


def altcha_field() -> AltchaField:
    """ALTCHA proof of work: solved by the visitor's browser, verified here, each solution once."""
    field = AltchaField(
        label="", maxnumber=settings.ALTCHA_MAX_NUMBER, expire=settings.ALTCHA_CHALLENGE_EXPIRE, hidefooter=True
    )
    field.error_messages.update(
        required="Please wait for the check below to finish (it proves you are not a robot).",
        invalid="The robot check failed. Please try again.",
        error="The robot check failed. Please try again.",
        replay="This form was already sent. Please reload the page and try again.",
    )
    return field


class PublicSignupForm(forms.Form):
    """The fields a SignupForm asks for, plus ALTCHA proof of work and a honeypot."""

    email = forms.CharField(
        label="Email address", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    first_name = forms.CharField(label="First name", max_length=150, required=False)
    last_name = forms.CharField(label="Last name", max_length=150, required=False)
    company = forms.CharField(label="Company", max_length=200, required=False)
    subscription_types = forms.TypedMultipleChoiceField(
        label="What would you like to receive?", coerce=int, widget=forms.CheckboxSelectMultiple
    )
    # Bots fill every field; people never see this one (hidden by CSS, not by type=hidden).
    website = forms.CharField(label="Leave this field empty", required=False, max_length=200)

    def __init__(self, *args, signup_form: SignupForm, **kwargs):
        super().__init__(*args, **kwargs)
        self.signup_form = signup_form
        offers = signup_form.offers.filter(subscription_type__active=True).select_related("subscription_type")
        self.fields["subscription_types"].choices = [(o.subscription_type_id, o.subscription_type.name) for o in offers]
        self.fields["subscription_types"].initial = [o.subscription_type_id for o in offers if o.pre_ticked]
        self.type_descriptions = {o.subscription_type_id: o.subscription_type.description for o in offers}
        for name, asked in (
            ("first_name", signup_form.ask_first_name),
            ("last_name", signup_form.ask_last_name),
            ("company", signup_form.ask_company),
        ):
            if not asked:
                del self.fields[name]
        self.fields["altcha"] = altcha_field()

    def clean_email(self) -> str:
        return valid_address(self.cleaned_data["email"]).given

    def is_bot(self) -> bool:
        return bool(self.data.get(HONEYPOT_FIELD))


class PreferencesForm(forms.Form):
    subscription_types = forms.TypedMultipleChoiceField(
        label="Send me", coerce=int, required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        types = SubscriptionType.objects.filter(public=True, active=True)
        self.fields["subscription_types"].choices = [(t.pk, t.name) for t in types]
        self.type_descriptions = {t.pk: t.description for t in types}


class NewConfirmationLinkForm(forms.Form):
    email = forms.CharField(
        label="Email address", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["altcha"] = altcha_field()

    def clean_email(self) -> str:
        return valid_address(self.cleaned_data["email"]).normalized
