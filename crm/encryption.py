"""Secrets at rest (DKIM private keys, mailbox passwords), encrypted with settings.ENCRYPTION_KEYS.

The first key encrypts; every key decrypts, so a key rotates by putting a new one first and
keeping the old one in the list for as long as secrets written with it are stored.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class UnreadableSecret(Exception):
    """The stored secret was encrypted with a key that is no longer in ENCRYPTION_KEYS."""


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key) for key in settings.ENCRYPTION_KEYS])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UnreadableSecret("None of the ENCRYPTION_KEYS opens this secret.") from None
