"""What other systems' exports mean: one declarative preset per source.

A preset says where a row of its source's export keeps the address, the person fields, the
consent evidence the source kept (and which of it proves the opt-in), and the row's status
(subscribed, unsubscribed, cleaned, …); every other column is a property. Columns are found by
header name, never by a fixed position (each file's names are resolved to positions once, and
its rows read as lists of cells); Mailchimp's leading merge-field labels are localized, so its
files are recognised by their uppercase system columns.

Most of this is declared, so the import can build fields, evidence and properties in the
database; hook methods (`status`, `properties`) cover what a source does row by row.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple


class RowStatus(StrEnum):
    """What the source says about the address, from best to worst."""

    SUBSCRIBED = "subscribed"
    NONSUBSCRIBED = "nonsubscribed"
    UNSUBSCRIBED = "unsubscribed"
    CLEANED = "cleaned"


class Status(NamedTuple):
    """What a row says about its address: the status, when it changed (as the file writes it), a note."""

    status: RowStatus
    time: str = ""
    note: str = ""


SUBSCRIBED = Status(RowStatus.SUBSCRIBED)


PERSON_FIELDS = ("first_name", "last_name", "company", "phone", "time_zone", "language")
# A time zone a file gives is kept only if it is one of these.
_TIME_ZONES = frozenset(zoneinfo.available_timezones())


class Preset:
    """Base preset: subclasses declare their columns; hook methods handle the rest."""

    name = ""
    label = ""
    source_system = ""
    # Canonical field → header names that may hold it (first match wins; case-insensitive).
    columns: dict[str, tuple[str, ...]] = {}
    # Columns that are neither person fields nor properties (consumed by status/evidence).
    consumed: tuple[str, ...] = ()
    # Cells copied (trimmed, when not blank) into the evidence of the consent records.
    evidence_columns: tuple[str, ...] = ()
    # The first of these that is not blank is when the person opted in, and proves that they did.
    optin_time_columns: tuple[str, ...] = ()
    # The first of these that is an IP address is where they opted in from.
    optin_ip_columns: tuple[str, ...] = ()
    # A column with the whole name: its first word is the first name (where it has one), the
    # rest after the first space the last name.
    name_column: str | None = None

    def __init__(self, header: list[str], *, file_name: str = "") -> None:
        self.header = header
        self.file_name = file_name

    @classmethod
    def score(cls, header: list[str], file_name: str) -> int:
        """How sure this preset is that it reads this header (0: not at all)."""
        return 0

    @cached_property
    def _by_lower(self) -> dict[str, str]:
        return {name.strip().lower(): name for name in self.header}

    @cached_property
    def _positions(self) -> dict[str, int]:
        # Header names are resolved to positions once per file; rows are read by position.
        return {name: position for position, name in enumerate(self.header)}

    def column(self, canonical: str) -> str | None:
        for candidate in self.columns.get(canonical, ()):
            found = self._by_lower.get(candidate.lower())
            if found is not None:
                return found
        return None

    @cached_property
    def email_column(self) -> str | None:
        return self.column("email")

    @cached_property
    def mapped(self) -> dict[str, str]:
        """Canonical person field → header name, for the fields this file has."""
        return {name: column for name in PERSON_FIELDS if (column := self.column(name))}

    @cached_property
    def property_columns(self) -> list[str]:
        used = {self.email_column, *self.mapped.values()}
        consumed = {name.lower() for name in self.consumed}
        return [name for name in self.header if name and name not in used and name.lower() not in consumed]

    @cached_property
    def email_position(self) -> int | None:
        return self._positions[self.email_column] if self.email_column is not None else None

    @cached_property
    def field_positions(self) -> list[tuple[str, int]]:
        """(person field, position) of the fields this file has but the time zone, in PERSON_FIELDS order."""
        return [(name, self._positions[column]) for name, column in self.mapped.items() if name != "time_zone"]

    @cached_property
    def _time_zone_position(self) -> int | None:
        column = self.mapped.get("time_zone")
        return self._positions[column] if column is not None else None

    @cached_property
    def name_position(self) -> int | None:
        return self._positions.get(self.name_column) if self.name_column else None

    @cached_property
    def property_positions(self) -> list[tuple[str, int]]:
        """(name, position) of the property columns; a name the header repeats is read from its last column."""
        return [(name, self._positions[name]) for name in dict.fromkeys(self.property_columns)]

    @cached_property
    def evidence_positions(self) -> list[tuple[str, int]]:
        return self.positions(self.evidence_columns)

    @cached_property
    def optin_time_positions(self) -> list[int]:
        return [position for _, position in self.positions(self.optin_time_columns)]

    @cached_property
    def optin_ip_positions(self) -> list[int]:
        return [position for _, position in self.positions(self.optin_ip_columns)]

    def positions(self, names: tuple[str, ...]) -> list[tuple[str, int]]:
        """(name, position) of those of `names` the header has, in that order."""
        return [(name, self._positions[name]) for name in names if name in self._positions]

    def value(self, cells: list[str], name: str) -> str:
        """The trimmed cell under header `name` ("" if the file has no such column)."""
        position = self._positions.get(name)
        return cells[position].strip() if position is not None else ""

    def time_zone(self, cells: list[str]) -> str:
        """The row's time zone, trimmed; "" where the file has none or one that is not a known zone."""
        if self._time_zone_position is None:
            return ""
        zone = cells[self._time_zone_position].strip()
        return zone if zone in _TIME_ZONES else ""

    def status(self, cells: list[str]) -> Status:
        """What the row says about its address (hook for subclasses)."""
        return SUBSCRIBED

    def properties(self, cells: list[str]) -> dict[str, object] | None:
        """The row's properties when the source needs more than its columns (hook); None: the non-blank
        property columns as the file writes them (`column_properties`)."""
        return None

    def column_properties(self, cells: list[str]) -> dict[str, object]:
        """The non-blank property columns of a row, as the file writes them."""
        return {name: value for name, position in self.property_positions if (value := cells[position]).strip()}


class MailchimpPreset(Preset):
    name = "mailchimp"
    label = "Mailchimp audience export (ZIP or CSV)"
    source_system = "Mailchimp"
    SYSTEM_COLUMNS = ("MEMBER_RATING", "OPTIN_TIME", "OPTIN_IP", "CONFIRM_TIME", "CONFIRM_IP", "LEID", "EUID")
    evidence_columns = ("OPTIN_TIME", "OPTIN_IP", "CONFIRM_TIME", "CONFIRM_IP", "LEID", "EUID", "MEMBER_RATING")
    optin_time_columns = ("CONFIRM_TIME", "OPTIN_TIME")
    optin_ip_columns = ("CONFIRM_IP", "OPTIN_IP")
    columns = {
        "email": (
            "Email Address",
            "Emailadresse",
            "E-Mail-Adresse",
            "E-Mail Adresse",
            "Adresse email",
            "Adresse e-mail",
            "Adresse électronique",
            "Correo electrónico",
            "Dirección de correo electrónico",
            "Endereço de email",
            "Endereço de e-mail",
            "Indirizzo email",
            "Indirizzo e-mail",
            "E-mailadres",
            "Email",
        ),
        "first_name": ("First Name", "Vorname", "Prénom", "Nombre", "Nome", "Voornaam"),
        "last_name": ("Last Name", "Nachname", "Nom", "Apellido", "Apellidos", "Sobrenome", "Cognome", "Achternaam"),
        "company": ("Company", "Firma", "Unternehmen", "Entreprise", "Empresa", "Azienda", "Bedrijf"),
        "phone": ("Phone Number", "Telefonnummer", "Téléphone", "Teléfono", "Telefone", "Telefono"),
        "time_zone": ("TIMEZONE",),
    }
    consumed = (
        *evidence_columns,
        "LAST_CHANGED",
        "UNSUB_TIME",
        "UNSUB_CAMPAIGN_TITLE",
        "UNSUB_CAMPAIGN_ID",
        "UNSUB_REASON",
        "UNSUB_REASON_OTHER",
        "CLEAN_TIME",
        "CLEAN_CAMPAIGN_TITLE",
        "CLEAN_CAMPAIGN_ID",
    )
    _FILE_STATUS = re.compile(r"^(subscribed|unsubscribed|cleaned|nonsubscribed)_", re.IGNORECASE)

    @classmethod
    def score(cls, header: list[str], file_name: str) -> int:
        present = sum(1 for column in cls.SYSTEM_COLUMNS if column in header)
        return 10 * present if present >= 3 else 0

    @cached_property
    def email_column(self) -> str | None:
        # A localized label we do not know is still the first column: Mailchimp always puts it there.
        return self.column("email") or (self.header[0] if self.header else None)

    @cached_property
    def file_status(self) -> RowStatus:
        match = self._FILE_STATUS.match(self.file_name)
        if match:
            return RowStatus(match.group(1).lower())
        if "CLEAN_TIME" in self.header:
            return RowStatus.CLEANED
        if "UNSUB_TIME" in self.header:
            return RowStatus.UNSUBSCRIBED
        return RowStatus.SUBSCRIBED

    def status(self, cells: list[str]) -> Status:
        status = self.file_status
        if status == RowStatus.UNSUBSCRIBED:
            note = " · ".join(
                value
                for name in ("UNSUB_REASON", "UNSUB_REASON_OTHER", "UNSUB_CAMPAIGN_TITLE")
                if (value := self.value(cells, name))
            )
            return Status(status, self.value(cells, "UNSUB_TIME"), note)
        if status == RowStatus.CLEANED:
            return Status(status, self.value(cells, "CLEAN_TIME"), self.value(cells, "CLEAN_CAMPAIGN_TITLE"))
        return self._row_status

    @cached_property
    def _row_status(self) -> Status:
        return Status(self.file_status)


class ListmonkPreset(Preset):
    """listmonk's subscriber export. `enabled` is not proof of opt-in; `blocklisted` is an opt-out."""

    name = "listmonk"
    label = "listmonk subscribers export"
    source_system = "listmonk"
    columns = {"email": ("email",)}
    consumed = ("name", "attributes", "status", "uuid", "created_at", "updated_at")

    @classmethod
    def score(cls, header: list[str], file_name: str) -> int:
        names = {name.lower() for name in header}
        return 20 if {"uuid", "email", "name", "attributes", "status"} <= names else 0

    evidence_columns = ("uuid", "created_at")
    name_column = "name"

    def status(self, cells: list[str]) -> Status:
        if self.value(cells, "status").lower() == "blocklisted":
            return Status(RowStatus.UNSUBSCRIBED, self.value(cells, "updated_at"), "blocklisted in listmonk")
        return SUBSCRIBED

    def properties(self, cells: list[str]) -> dict[str, object]:
        properties = self.column_properties(cells)
        try:
            attributes = json.loads(self.value(cells, "attributes") or "{}")
        except json.JSONDecodeError:
            attributes = {"attributes": self.value(cells, "attributes")}
        if isinstance(attributes, dict):
            properties.update(attributes)
        return properties


class MauticPreset(Preset):
    name = "mautic"
    label = "Mautic contacts export"
    source_system = "Mautic"
    columns = {
        "email": ("email",),
        "first_name": ("firstname",),
        "last_name": ("lastname",),
        "company": ("company",),
        "phone": ("phone", "mobile"),
        "time_zone": ("timezone",),
        "language": ("preferred_locale",),
    }
    consumed = ("id", "doNotEmail", "dateAdded", "ip")
    evidence_columns = ("id", "dateAdded", "dateIdentified", "ip")

    @classmethod
    def score(cls, header: list[str], file_name: str) -> int:
        names = {name.lower() for name in header}
        return 15 if {"email", "firstname", "lastname"} <= names and "id" in names else 0

    def status(self, cells: list[str]) -> Status:
        if self.value(cells, "doNotEmail").lower() in {"1", "true", "yes"}:
            return Status(RowStatus.UNSUBSCRIBED, "", "do not contact (email) in Mautic")
        return SUBSCRIBED


class HubSpotPreset(Preset):
    name = "hubspot"
    label = "HubSpot contacts export"
    source_system = "HubSpot"
    columns = {
        "email": ("Email",),
        "first_name": ("First Name",),
        "last_name": ("Last Name",),
        "company": ("Company Name", "Associated Company"),
        "phone": ("Phone Number", "Mobile Phone Number"),
        "time_zone": ("Time Zone",),
        "language": ("Preferred language",),
    }
    consumed = ("Record ID", "Unsubscribed from all email", "Marketing contact status")
    evidence_columns = ("Record ID",)

    @classmethod
    def score(cls, header: list[str], file_name: str) -> int:
        return 15 if "Record ID" in header and "Email" in header else 0

    def status(self, cells: list[str]) -> Status:
        if self.value(cells, "Unsubscribed from all email").lower() in {"true", "yes", "1"}:
            return Status(RowStatus.UNSUBSCRIBED, "", "unsubscribed from all email in HubSpot")
        return SUBSCRIBED


class GenericPreset(Preset):
    """Any CSV, with the columns named by the operator (or guessed from common names)."""

    name = "generic"
    label = "Other CSV (map the columns)"
    source_system = "CSV"
    columns = {
        "email": ("email", "e-mail", "email address", "mail", "emailaddress"),
        "first_name": ("first_name", "first name", "firstname", "given name"),
        "last_name": ("last_name", "last name", "lastname", "surname", "family name"),
        "company": ("company", "organization", "organisation"),
        "phone": ("phone", "phone number", "mobile"),
        "time_zone": ("time_zone", "timezone", "time zone"),
        "language": ("language", "locale"),
    }

    def __init__(self, header: list[str], *, file_name: str = "", mapping: dict[str, str] | None = None) -> None:
        super().__init__(header, file_name=file_name)
        self.explicit = {name: column for name, column in (mapping or {}).items() if column in header}

    def column(self, canonical: str) -> str | None:
        return self.explicit.get(canonical) or super().column(canonical)

    @classmethod
    def score(cls, header: list[str], file_name: str) -> int:
        return 1


PRESETS: dict[str, type[Preset]] = {
    preset.name: preset for preset in (MailchimpPreset, HubSpotPreset, ListmonkPreset, MauticPreset, GenericPreset)
}


def detect_preset(header: list[str], file_name: str) -> type[Preset]:
    """The preset that recognises this header best (the generic one if none does)."""
    return max(PRESETS.values(), key=lambda preset: preset.score(header, file_name))
