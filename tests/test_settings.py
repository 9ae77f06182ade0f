"""Settings come from the environment and fail loudly on nonsense."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY", "DEBUG", "REDIS_URL"}}
    clean.update({"DELIVERWELL_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings", **env})
    code = (
        "from django.conf import settings; print(settings.SECRET_KEY); print(settings.DATABASES['default']['ENGINE'])"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True)


def test_local_runs_get_a_secret_key_generated_once_into_var(tmp_path):
    first = load_settings(tmp_path)
    second = load_settings(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == second.stdout.splitlines()[0]
    assert (tmp_path / "secret_key").read_text().strip() == first.stdout.splitlines()[0]


def test_it_defaults_to_sqlite_under_var(tmp_path):
    result = load_settings(tmp_path)
    assert result.stdout.splitlines()[1] == "django.db.backends.sqlite3"


def test_it_uses_postgresql_from_database_url(tmp_path):
    result = load_settings(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/anything")
    assert result.stdout.splitlines()[1] == "django.db.backends.postgresql"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DEBUG": "false"}, "SECRET_KEY must be set when DEBUG is off"),
        ({"DATABASE_URL": "mysql://root@localhost/db"}, "DATABASE_URL='mysql://root@localhost/db': scheme must be"),
        ({"CELERY_BROKER_URL": "carrier-pigeon://"}, "CELERY_BROKER_URL"),
        ({"EMAIL_PORT": "twenty-five"}, "EMAIL_PORT='twenty-five' is not an integer"),
        ({"ANYMAIL": "{not json"}, "ANYMAIL is not valid JSON"),
        ({"ANYMAIL": "[1, 2]"}, "ANYMAIL must be a JSON object"),
        ({"SITE_URL": "example.com"}, "SITE_URL='example.com': scheme must be one of http, https"),
        ({"REDIS_URL": "memcached://x"}, "REDIS_URL='memcached://x': scheme must be"),
        ({"DNS_NAMESERVERS": "127.0.0.1,dns.example.com"}, "DNS_NAMESERVERS: 'dns.example.com' is not an IP address"),
        ({"SENDING_IPS": "192.0.2.300"}, "SENDING_IPS: '192.0.2.300' is not an IP address"),
        ({"ENCRYPTION_KEYS": "not-a-fernet-key"}, "ENCRYPTION_KEYS: not-a-… is not a Fernet key"),
        ({"SEND_DOMAIN_RATES": '{"gmail.com": "fast"}'}, "SEND_DOMAIN_RATES: every rate must be a positive number"),
        ({"SEND_WARMUP_DAILY_CAPS": "50,lots"}, "SEND_WARMUP_DAILY_CAPS='50,lots' is not a comma-separated list"),
        ({"SEND_WARMUP_DAILY_CAPS": "50,100"}, "SEND_WARMUP_DAILY_CAPS needs SEND_WARMUP_START"),
        ({"SEND_WARMUP_START": "next monday"}, "SEND_WARMUP_START='next monday' is not a date"),
    ],
)
def test_it_refuses_nonsense_with_a_clear_message(tmp_path, env, message):
    result = load_settings(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_production_settings_take_the_secret_key_from_the_environment(tmp_path):
    result = load_settings(tmp_path, DEBUG="false", SECRET_KEY="s3cret-from-env", ALLOWED_HOSTS="crm.example.com")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "s3cret-from-env"
    assert not (tmp_path / "secret_key").exists()
