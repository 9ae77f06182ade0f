"""What every benchmark does first: make its own PostgreSQL database and set Django up on it."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent


def add_database_url(parser: argparse.ArgumentParser, default: str) -> None:
    """The benchmark's --database-url (or BENCH_DATABASE_URL), checked by `checked_args`."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", default),
        help="a PostgreSQL database whose tables may be emptied (its name must contain 'bench')",
    )


def checked_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """The arguments, refusing a database whose name does not say it is a benchmark's to empty."""
    args = parser.parse_args(argv)
    if "bench" not in urlsplit(args.database_url).path:
        parser.error("the benchmark empties tables: use a database whose name contains 'bench'")
    return args


def ensure_database(database_url: str) -> None:
    """Create the benchmark database if it does not exist yet."""
    url = urlsplit(database_url)
    name = url.path.lstrip("/")
    with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def configure_django(database_url: str, **environment: str) -> None:
    """Production-like settings (no DEBUG query log, a random SECRET_KEY), then django.setup()."""
    import django

    sys.path.insert(0, str(ROOT))
    os.environ.update(
        {"DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": database_url, "DEBUG": "0", **environment}
    )
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    django.setup()


def logged_in_client():
    """A Django test client logged in as the benchmark's superuser (made on first use)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench").first()
    if user is None:
        user = user_model.objects.create_superuser("bench", "bench@example.com", None)
    client = Client()
    client.force_login(user)
    return client
